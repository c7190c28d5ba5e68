package cluster

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// PlanID names a plan in its cluster; ids grow.
type PlanID uint64

// PlanKind is what a plan was made for.
type PlanKind string

const (
	PlanAdd   PlanKind = "add"   // give a server its fair share of the slots
	PlanDrain PlanKind = "drain" // move every slot of a server to the others
)

// StepState is where a step of a plan stands.
//
// Invariant: a step is running exactly while Migration names a migration
// the step started that is not final; done, skipped and cancelled are
// final.
type StepState string

const (
	StepPending   StepState = "pending"
	StepRunning   StepState = "running"
	StepDone      StepState = "done"      // its migration completed (or the slots reached its target otherwise)
	StepSkipped   StepState = "skipped"   // its slots changed owner outside the plan (Note says how)
	StepCancelled StepState = "cancelled" // the plan was cancelled before the step completed
)

func (s StepState) final() bool { return s != StepPending && s != StepRunning }

// Step is one migration of a plan: Ranges from Source to Target.
type Step struct {
	Source    ServerID    `json:"source"`
	Target    ServerID    `json:"target"`
	Ranges    []Range     `json:"ranges"`
	State     StepState   `json:"state"`
	Migration MigrationID `json:"migration,omitempty"` // the latest migration started for it
	Tries     int         `json:"tries,omitempty"`     // migrations started for it
	Note      string      `json:"note,omitempty"`      // why it was skipped, or its last try cancelled
}

// Slots returns how many slots the step moves.
func (s *Step) Slots() int {
	n := 0
	for _, r := range s.Ranges {
		n += r.Len()
	}
	return n
}

// Plan is a change of the cluster's shape carried out as migrations: add a
// server (it takes a fair share of every other server's slots) or drain
// one (its slots go to the others). It lives in the metadata store, so a
// planner that stops resumes it where it stood: Next, from any state of the
// store, returns the one change that moves it on.
//
// Invariant: at most one step per source runs at a time (a source moves
// one range at a time; several sources move in parallel). A plan ends
// (Ended) when every step is final; it failed when Reason is set.
type Plan struct {
	ID              PlanID    `json:"id"`
	Kind            PlanKind  `json:"kind"`
	Server          ServerID  `json:"server"`
	Steps           []Step    `json:"steps"`
	At              time.Time `json:"at,omitzero"`                // when it was made (by its maker's clock)
	CancelRequested bool      `json:"cancel_requested,omitempty"` // an operator's cancel: no step starts, running ones are cancelled
	Ended           bool      `json:"ended,omitempty"`
	Reason          string    `json:"reason,omitempty"` // why it ended before every step was done
	// Revision is the store's revision of the record when read (0: not
	// stored yet). It is not part of the stored value.
	Revision int64 `json:"-"`
}

// MaxStepTries is how many migrations a step starts before its plan fails:
// a migration cancelled by a silent target is tried again.
const MaxStepTries = 3

// Errors of plans.
var (
	ErrPlanRunning = errors.New("cluster: another plan is running (see fleetkv cluster plans; cancel-plan ID ends it)")
	ErrBalanced    = errors.New("cluster: nothing to move")
)

func (p *Plan) String() string {
	return fmt.Sprintf("plan %d (%s %s)", p.ID, p.Kind, p.Server)
}

// Summary counts the plan's steps and slots by state.
func (p *Plan) Summary() string {
	count := map[StepState]int{}
	slots, moved := 0, 0
	for i := range p.Steps {
		s := &p.Steps[i]
		count[s.State]++
		slots += s.Slots()
		if s.State == StepDone {
			moved += s.Slots()
		}
	}
	var parts []string
	for _, st := range []StepState{StepDone, StepRunning, StepPending, StepSkipped, StepCancelled} {
		if count[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[st], st))
		}
	}
	return fmt.Sprintf("%d of %d slots moved; steps: %s", moved, slots, strings.Join(parts, ", "))
}

// NewPlan returns the plan of kind for server id over st, to be stored
// with Metadata.SwapPlan. An add gives id (in the map already) an even
// share: every server that owns slots, and id, ends with the same number
// of slots, or one more. A drain gives all of id's slots to the other
// servers that own slots, evenly. Each step moves at most maxSlots slots
// (0: a source's whole share to a target in one step). No other plan may
// be running, nor any migration.
func NewPlan(st State, kind PlanKind, id ServerID, maxSlots int) (Plan, error) {
	if st.Map == nil {
		return Plan{}, ErrNoMap
	}
	if _, ok := st.Map.Servers[id]; !ok {
		return Plan{}, fmt.Errorf("%w: %q", ErrUnknownServer, id)
	}
	for _, p := range st.Plans {
		if !p.Ended {
			return Plan{}, fmt.Errorf("%w: %s", ErrPlanRunning, &p)
		}
	}
	for i := range st.Migrations {
		if m := &st.Migrations[i]; !m.Phase.Final() {
			return Plan{}, fmt.Errorf("%w: %v; wait until it ends", ErrMigrating, m)
		}
	}
	members := map[ServerID]bool{}
	for _, a := range st.Map.Ranges {
		members[a.Owner] = true
	}
	switch kind {
	case PlanAdd:
		members[id] = true
	case PlanDrain:
		delete(members, id)
		if len(members) == 0 {
			return Plan{}, fmt.Errorf("cluster: %s is the only server that owns slots: nothing to drain it to", id)
		}
	default:
		return Plan{}, fmt.Errorf("cluster: unknown plan kind %q", kind)
	}
	steps := balance(st.Map, slices.Sorted(maps.Keys(members)), maxSlots)
	switch {
	case len(steps) == 0 && kind == PlanDrain:
		return Plan{}, fmt.Errorf("%w: %s owns no slot", ErrBalanced, id)
	case len(steps) == 0:
		return Plan{}, fmt.Errorf("%w: %s holds its share already", ErrBalanced, id)
	}
	p := Plan{Kind: kind, Server: id, Steps: steps}
	for _, o := range st.Plans {
		p.ID = max(p.ID, o.ID)
	}
	p.ID++
	return p, nil
}

// balance returns the steps that leave every member with an even share of
// the slots m assigns (the total over members, or one more; the servers
// that own more keep the extra ones) and every other server with none.
// Each source gives from the top of what it owns; sources and targets are
// paired in the order of their ids.
func balance(m *Map, members []ServerID, maxSlots int) []Step {
	owned := map[ServerID]*SlotSet{}
	total := 0
	for _, id := range m.ServerIDs() {
		owned[id] = m.Owned(id)
		total += owned[id].Count()
	}
	for _, id := range members {
		if owned[id] == nil {
			owned[id] = &SlotSet{}
		}
	}
	target := shares(owned, members, total)
	var donors, takers []ServerID
	for _, id := range slices.Sorted(maps.Keys(owned)) {
		switch n := owned[id].Count(); {
		case n > target[id]:
			donors = append(donors, id)
		case n < target[id]:
			takers = append(takers, id)
		}
	}
	var steps []Step
	for _, d := range donors {
		give := owned[d].Count() - target[d]
		for give > 0 && len(takers) > 0 {
			t := takers[0]
			k := min(give, target[t]-owned[t].Count())
			for _, chunk := range takeTop(owned[d], k, maxSlots) {
				for _, r := range chunk {
					owned[t].Add(r)
				}
				steps = append(steps, Step{Source: d, Target: t, Ranges: chunk, State: StepPending})
			}
			give -= k
			if owned[t].Count() == target[t] {
				takers = takers[1:]
			}
		}
	}
	return steps
}

// shares returns each member's even share of total slots: the members that
// own most now get the remainder's extra slot (fewest moves); others 0.
func shares(owned map[ServerID]*SlotSet, members []ServerID, total int) map[ServerID]int {
	byOwned := slices.Clone(members)
	slices.SortStableFunc(byOwned, func(a, b ServerID) int { return owned[b].Count() - owned[a].Count() })
	target := map[ServerID]int{}
	for i, id := range byOwned {
		target[id] = total / len(members)
		if i < total%len(members) {
			target[id]++
		}
	}
	return target
}

// takeTop removes the k highest slots from t and returns them as sorted
// ranges, in chunks of at most maxSlots slots (0: one chunk), lowest
// chunk first.
func takeTop(t *SlotSet, k, maxSlots int) [][]Range {
	if maxSlots <= 0 {
		maxSlots = k
	}
	var chunks [][]Range
	var chunk []Range // descending while filled
	n := 0
	for s := Slots - 1; s >= 0 && k > 0; s-- {
		if !t.Has(uint16(s)) {
			continue
		}
		t.Remove(Range{uint16(s), uint16(s)})
		if last := len(chunk) - 1; last >= 0 && int(chunk[last].First) == s+1 {
			chunk[last].First--
		} else {
			chunk = append(chunk, Range{uint16(s), uint16(s)})
		}
		n, k = n+1, k-1
		if n == maxSlots || k == 0 {
			slices.Reverse(chunk)
			chunks, chunk, n = append(chunks, chunk), nil, 0
		}
	}
	slices.Reverse(chunks)
	return chunks
}

// PlanSwap is one transaction of the metadata store: the plan stored if its
// revision is still Plan.Revision (0: no plan with its id yet), and with
// it, when Migration is set, that migration record if its revision is
// still Migration.Revision. Either both are stored or neither.
type PlanSwap struct {
	Plan      Plan
	Migration *Migration
}

// Next returns the one change that moves the plan on from st, and false
// when there is none until st changes (or the plan ended). Applied with
// Metadata.SwapPlan, then Next again from a fresh read, it carries the plan
// to its end: a step whose migration ended is done (or tried again after a
// cancel the operator did not ask for, MaxStepTries in all; after an
// operator's cancel, or the last try, the plan fails, starts no more steps
// and ends once its running ones ended), the next step of every idle source
// starts once its slots are served by it and not migrating, and a cancel
// request cancels the running migrations and then ends the plan.
func (p Plan) Next(st State) (PlanSwap, bool) {
	if p.Ended {
		return PlanSwap{}, false
	}
	p.Steps = slices.Clone(p.Steps)
	if w, ok := p.settleRunning(st); ok {
		return w, true
	}
	if p.CancelRequested || p.Reason != "" {
		return p.endStopped()
	}
	if w, ok := p.startNext(st); ok {
		return w, true
	}
	for i := range p.Steps {
		if !p.Steps[i].State.final() {
			return PlanSwap{}, false
		}
	}
	p.Ended = true
	return PlanSwap{Plan: p}, true
}

// settleRunning returns the change for the first running step whose
// migration ended (or, on a cancel, is still to be asked to cancel).
func (p Plan) settleRunning(st State) (PlanSwap, bool) {
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.State != StepRunning {
			continue
		}
		m, ok := st.MigrationByID(s.Migration)
		switch {
		case !ok:
			// Invariant broken outside the plan (the record was removed):
			// try the step again.
			s.State, s.Note = StepPending, fmt.Sprintf("migration %d vanished", s.Migration)
		case m.Phase == PhaseComplete:
			s.State = StepDone
		case m.Phase == PhaseCancelled && p.CancelRequested:
			s.State = StepCancelled
		case m.Phase == PhaseCancelled && m.CancelRequested:
			// An operator cancelled the plan's migration: the plan stops
			// rather than start it again.
			s.State, s.Note = StepCancelled, fmt.Sprintf("migration %d cancelled by an operator", m.ID)
			p.Reason = fmt.Sprintf("step %d (%s → %s): %s", i+1, s.Source, s.Target, s.Note)
		case m.Phase == PhaseCancelled:
			s.Note = fmt.Sprintf("migration %d cancelled: %s", m.ID, m.Reason)
			s.State = StepPending
			if s.Tries >= MaxStepTries {
				s.State = StepCancelled
				p.Reason = fmt.Sprintf("step %d (%s → %s) failed %d times; last: %s", i+1, s.Source, s.Target, s.Tries, s.Note)
			}
		case p.CancelRequested && !m.CancelRequested:
			m.CancelRequested, m.Reason = true, fmt.Sprintf("%s cancelled", &p)
			return PlanSwap{Plan: p, Migration: &m}, true
		default:
			continue
		}
		return PlanSwap{Plan: p}, true
	}
	return PlanSwap{}, false
}

// endStopped ends a plan that starts no more steps (an operator cancelled
// it, or a step failed: Reason) once none of its steps runs.
func (p Plan) endStopped() (PlanSwap, bool) {
	for i := range p.Steps {
		if p.Steps[i].State == StepRunning {
			return PlanSwap{}, false // settleRunning waits for it
		}
	}
	p.cancelPending()
	p.Ended = true
	if p.Reason == "" {
		p.Reason = "cancelled by an operator"
	}
	return PlanSwap{Plan: p}, true
}

func (p *Plan) cancelPending() {
	for i := range p.Steps {
		if s := &p.Steps[i]; s.State == StepPending {
			s.State = StepCancelled
		}
	}
}

// startNext starts (or settles) the first pending step of a source that
// runs none, whose slots its source serves and no migration holds.
func (p Plan) startNext(st State) (PlanSwap, bool) {
	busy := map[ServerID]bool{}
	for i := range p.Steps {
		if p.Steps[i].State == StepRunning {
			busy[p.Steps[i].Source] = true
		}
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.State != StepPending || busy[s.Source] {
			continue
		}
		if st.NotMigrating(s.Ranges) != nil {
			busy[s.Source] = true // another migration holds them: wait for its end
			continue
		}
		switch holder := assignedTo(st.Map, s.Ranges); holder {
		case s.Source:
		case s.Target:
			s.State, s.Note = StepDone, "the slots reached the target outside the plan"
			return PlanSwap{Plan: p}, true
		default:
			s.State, s.Note = StepSkipped, "the slots changed owner outside the plan"
			return PlanSwap{Plan: p}, true
		}
		rec, err := NewMigration(st, s.Source, s.Target, s.Ranges)
		switch {
		case errors.Is(err, ErrNotOwner):
			busy[s.Source] = true // handed over to it, not served yet: wait
			continue
		case err != nil:
			s.State, s.Note = StepSkipped, err.Error()
			return PlanSwap{Plan: p}, true
		}
		s.State, s.Migration, s.Tries = StepRunning, rec.ID, s.Tries+1
		return PlanSwap{Plan: p, Migration: &rec}, true
	}
	return PlanSwap{}, false
}

// assignedTo returns the one server m assigns every slot of rs to, or ""
// when they are not all one server's.
func assignedTo(m *Map, rs []Range) ServerID {
	if m == nil {
		return ""
	}
	var owner ServerID
	for _, r := range rs {
		for s := int(r.First); s <= int(r.Last); s++ {
			a, ok := m.Owner(uint16(s))
			switch {
			case !ok || owner != "" && a.Owner != owner:
				return ""
			case owner == "":
				owner = a.Owner
			}
		}
	}
	return owner
}

// PlanByID returns the plan with id in st.
func (st State) PlanByID(id PlanID) (Plan, bool) {
	for _, p := range st.Plans {
		if p.ID == id {
			return p, true
		}
	}
	return Plan{}, false
}
