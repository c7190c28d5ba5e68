package cluster

import (
	"errors"
	"fmt"
	"slices"
)

// MigrationID names a migration in its cluster; ids grow.
type MigrationID uint64

// Phase is where a migration stands. A migration goes Sample → Prepare →
// Transfer → Move → Complete, or from any phase before Complete to
// Cancelled (directly before Transfer; through Cancelling, which returns
// what the target holds to the source, from Transfer on).
//
// Invariant: phases only grow (the order of the constants); Complete and
// Cancelled are final.
type Phase uint8

const (
	PhaseSample     Phase = iota + 1 // the source copies what clients touch in the ranges to its tail and remembers it as hot
	PhasePrepare                     // the target drops what it held in the ranges, holds their operations and says so
	PhaseTransfer                    // the map gives the ranges to the target; the source stops serving them and sends the hot records
	PhaseMove                        // the target serves (operations on keys it lacks wait); the source streams the rest
	PhaseComplete                    // the target has every record, durably; the source's copies are garbage
	PhaseCancelling                  // the map gives the ranges back; the target ships what it holds back to the source
	PhaseCancelled                   // the source holds every record again, durably, and serves
)

var phaseNames = [...]string{"", "sample", "prepare", "transfer", "move", "complete", "cancelling", "cancelled"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) && p != 0 {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Final reports whether nothing follows p.
func (p Phase) Final() bool { return p == PhaseComplete || p == PhaseCancelled }

// Migration is a migration's record in the metadata store. The source
// changes it, one compare-and-swap on Revision per phase, before the phase
// takes effect; the phases that move ownership change the map in the same
// transaction (MigrationSwap).
type Migration struct {
	ID     MigrationID `json:"id"`
	Source ServerID    `json:"source"`
	Target ServerID    `json:"target"`
	Ranges []Range     `json:"ranges"`
	Phase  Phase       `json:"phase"`
	// CancelRequested asks the source to cancel (an operator's cancel);
	// it cancels unless the target already holds every record.
	CancelRequested bool   `json:"cancel_requested,omitempty"`
	Reason          string `json:"reason,omitempty"` // why it was cancelled
	// Revision is the store's revision of the record when read (0: not
	// stored yet). It is not part of the stored value.
	Revision int64 `json:"-"`
}

// TaskProgress is how far a running data task of a migration (a move, a
// ship-back) got on its server: the slots of its ranges, those whose every
// record was sent, and the records sent, over Seconds since it started.
type TaskProgress struct {
	Migration MigrationID `json:"migration"`
	Task      string      `json:"task"`
	Slots     int         `json:"slots"`
	SlotsDone int64       `json:"slots_done"`
	Records   int64       `json:"records"`
	Seconds   float64     `json:"seconds"`
}

// Slots returns the migration's slots as a set.
func (m *Migration) Slots() *SlotSet {
	var t SlotSet
	for _, r := range m.Ranges {
		t.Add(r)
	}
	return &t
}

func (m *Migration) String() string {
	return fmt.Sprintf("migration %d %v %s→%s %s", m.ID, m.Ranges, m.Source, m.Target, m.Phase)
}

// MigrationSwap is one transaction of the metadata store: the migration
// record stored if its revision is still Migration.Revision (0: no record
// with its id yet), and with it, when Map is set, the map if it is still at
// MapRevision. Either both are stored or neither.
type MigrationSwap struct {
	Migration   Migration
	Map         *Map
	MapRevision int64
}

// Errors of migrations.
var (
	ErrMigrating  = errors.New("cluster: slots already migrating")
	ErrNotOwner   = errors.New("cluster: the source does not serve every slot to migrate")
	ErrSameServer = errors.New("cluster: a migration needs two servers")
)

// NewMigration returns the record that starts moving ranges from server
// from to server to, in its first phase, to be stored with
// Metadata.SwapMigration: from must own every slot and have completed its
// handover, and no migration that is not final may hold any of them.
func NewMigration(st State, from, to ServerID, ranges []Range) (Migration, error) {
	switch {
	case st.Map == nil:
		return Migration{}, ErrNoMap
	case from == to:
		return Migration{}, ErrSameServer
	case len(ranges) == 0:
		return Migration{}, errNoSlots
	}
	for _, id := range []ServerID{from, to} {
		if _, ok := st.Map.Servers[id]; !ok {
			return Migration{}, fmt.Errorf("%w: %q", ErrUnknownServer, id)
		}
	}
	m := Migration{Source: from, Target: to, Ranges: slices.Clone(ranges), Phase: PhaseSample}
	for _, r := range ranges {
		if !r.valid() {
			return Migration{}, fmt.Errorf("cluster: slot range %v outside 0..%d", r, Slots-1)
		}
	}
	serving := st.Map.Serving(from, st.Applied)
	want := m.Slots()
	for i := range want {
		if want[i]&^serving[i] != 0 {
			return Migration{}, fmt.Errorf("%w: %s, slots %v", ErrNotOwner, from, m.Ranges)
		}
	}
	if err := st.NotMigrating(ranges); err != nil {
		return Migration{}, err
	}
	for _, o := range st.Migrations {
		m.ID = max(m.ID, o.ID)
	}
	m.ID++
	return m, nil
}

// overlaps reports whether t and u share a slot.
func (t *SlotSet) overlaps(u *SlotSet) bool {
	for i := range t {
		if t[i]&u[i] != 0 {
			return true
		}
	}
	return false
}

// covers reports whether t holds every slot of u.
func (t *SlotSet) covers(u *SlotSet) bool {
	for i := range t {
		if u[i]&^t[i] != 0 {
			return false
		}
	}
	return true
}

func (t *SlotSet) subtract(u *SlotSet) {
	for i := range t {
		t[i] &^= u[i]
	}
}

func (t *SlotSet) union(u *SlotSet) {
	for i := range t {
		t[i] |= u[i]
	}
}

// NotMigrating returns ErrMigrating when a migration that is not final
// holds a slot of rs: an assignment of its slots would change the map
// behind it.
func (st State) NotMigrating(rs []Range) error {
	var t SlotSet
	for _, r := range rs {
		t.Add(r)
	}
	for i := range st.Migrations {
		if m := &st.Migrations[i]; !m.Phase.Final() && m.Slots().overlaps(&t) {
			return fmt.Errorf("%w: %v", ErrMigrating, m)
		}
	}
	return nil
}

// Collectable returns the migration records of st that no server needs
// any more, in id order, to be deleted (Metadata.DeleteMigration): final,
// below the clean-up floors of both their source and their target
// (State.Cleaned: neither saves the record with its holds nor has a drop
// of it to run), and not the migration of a running step of a plan that
// has not ended (the plan reads how it ended). The newest keep records
// stay, and always the newest one: a new migration's id is one above the
// highest stored, and an id must never name two migrations, since a
// server remembers the ones it took part in by id. (That holds for
// creators that read the store fresh: one whose read missed more than
// keep records created and then deleted since could repeat an id.)
func Collectable(st State, keep int) []Migration {
	running := map[MigrationID]bool{}
	for _, p := range st.Plans {
		for _, s := range p.Steps {
			if !p.Ended && s.State == StepRunning {
				running[s.Migration] = true
			}
		}
	}
	var out []Migration
	for _, m := range st.Migrations[:max(len(st.Migrations)-max(keep, 1), 0)] {
		if m.Phase.Final() && m.ID < st.Cleaned[m.Source] && m.ID < st.Cleaned[m.Target] && !running[m.ID] {
			out = append(out, m)
		}
	}
	return out
}

// MigrationByID returns the migration with id in st.
func (st State) MigrationByID(id MigrationID) (Migration, bool) {
	for _, m := range st.Migrations {
		if m.ID == id {
			return m, true
		}
	}
	return Migration{}, false
}
