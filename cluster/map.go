package cluster

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
)

// ServerID names a server in its cluster.
type ServerID string

// Server is a server's entry in the map: how clients reach it.
type Server struct {
	ID     ServerID `json:"id"`
	Native string   `json:"native"`          // the binary protocol, host:port
	RESP   string   `json:"resp,omitempty"`  // the Redis protocol, host:port
	Admin  string   `json:"admin,omitempty"` // admin HTTP, host:port
	Loops  int      `json:"loops,omitempty"`
	// Tier is the shared tier the server's log goes to (--shared-tier):
	// a migration's source hands chains to a target as indirections only
	// when both name the same one.
	Tier string `json:"tier,omitempty"`
}

// Assignment gives a range of slots to its owner.
//
// Invariant: when From is set, Owner serves the range only once From has
// reported (Applied) a view of at least FromView, the view of From's that
// no longer has the range: From has stopped serving it by then. A change of
// the range's owner waits until that has happened (Assign refuses it), so at
// most one server serves a slot at any time.
type Assignment struct {
	Range
	Owner    ServerID `json:"owner"`
	From     ServerID `json:"from,omitempty"`
	FromView uint64   `json:"from_view,omitempty"`
}

// Map is the cluster's slot map: who owns which slots, every server's view
// and addresses. A Map is never changed once published: changes make a new
// one (Assign, WithServer), stored with a compare-and-swap on the revision
// it was read at.
//
// Invariant: Ranges are sorted, disjoint and each within 0..Slots-1; slots
// in none are unassigned. Every owner and From is in Servers and has a view.
// Invariant: a server's view grows by one at every change of the slots it
// owns, so a view names one owned set: views are fencing tokens.
type Map struct {
	Cluster string              `json:"cluster"`
	Epoch   uint64              `json:"epoch"` // one more at every change
	Ranges  []Assignment        `json:"ranges"`
	Views   map[ServerID]uint64 `json:"views"`
	Servers map[ServerID]Server `json:"servers"`
}

// Errors of map changes.
var (
	ErrUnknownServer  = errors.New("cluster: no such server")
	ErrHandoffPending = errors.New("cluster: slots still being handed over (their previous owner has not yet reported that it stopped serving them)")
	ErrNoMap          = errors.New("cluster: no slot map yet (run fleetkv cluster init)")
	ErrInvalidMap     = errors.New("cluster: invalid slot map")
)

// NewMap spreads every slot evenly over servers, in the order of their ids;
// every view starts at 1.
func NewMap(cluster string, servers []Server) (*Map, error) {
	if len(servers) == 0 {
		return nil, errors.New("cluster: no servers to give slots to")
	}
	m := &Map{Cluster: cluster, Epoch: 1, Views: map[ServerID]uint64{}, Servers: map[ServerID]Server{}}
	ids := make([]ServerID, 0, len(servers))
	for _, s := range servers {
		if s.ID == "" {
			return nil, errors.New("cluster: a server without an id")
		}
		m.Servers[s.ID] = s
		m.Views[s.ID] = 1
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	first := 0
	for i, id := range ids {
		last := (i+1)*Slots/len(ids) - 1
		m.Ranges = append(m.Ranges, Assignment{Range: Range{uint16(first), uint16(last)}, Owner: id})
		first = last + 1
	}
	return m, nil
}

// Owner returns the assignment holding slot s; false when s is unassigned.
func (m *Map) Owner(s uint16) (Assignment, bool) {
	i := sort.Search(len(m.Ranges), func(i int) bool { return m.Ranges[i].Last >= s })
	if i < len(m.Ranges) && m.Ranges[i].First <= s {
		return m.Ranges[i], true
	}
	return Assignment{}, false
}

// Owned returns the slots assigned to id, handed over or not.
func (m *Map) Owned(id ServerID) *SlotSet {
	var t SlotSet
	for _, a := range m.Ranges {
		if a.Owner == id {
			t.Add(a.Range)
		}
	}
	return &t
}

// Serving returns the slots id serves under the map given what servers
// have applied: those assigned to it whose handover is complete.
func (m *Map) Serving(id ServerID, applied map[ServerID]uint64) *SlotSet {
	var t SlotSet
	for _, a := range m.Ranges {
		if a.Owner == id && a.handedOver(applied) {
			t.Add(a.Range)
		}
	}
	return &t
}

func (a Assignment) handedOver(applied map[ServerID]uint64) bool {
	return a.From == "" || applied[a.From] >= a.FromView
}

// ServerIDs returns the map's servers, sorted.
func (m *Map) ServerIDs() []ServerID { return slices.Sorted(maps.Keys(m.Servers)) }

// clone returns a deep copy with the epoch one higher.
func (m *Map) clone() *Map {
	return &Map{Cluster: m.Cluster, Epoch: m.Epoch + 1, Ranges: slices.Clone(m.Ranges),
		Views: maps.Clone(m.Views), Servers: maps.Clone(m.Servers)}
}

// WithServer returns the map with s's addresses recorded (a new server has
// no slots and view 1); nil when nothing changes.
func (m *Map) WithServer(s Server) *Map {
	if old, ok := m.Servers[s.ID]; ok && old == s {
		return nil
	}
	n := m.clone()
	n.Servers[s.ID] = s
	if _, ok := n.Views[s.ID]; !ok {
		n.Views[s.ID] = 1
	}
	return n
}

// Assign returns the map with the slots of rs given to server to: each
// slot's previous owner gives it up (its view grows, and to serves the slot
// once it has applied that view), and to's view grows. applied is what
// servers have reported (Applied): a slot whose previous handover is not
// complete is refused with ErrHandoffPending. It returns nil when to owns
// every slot of rs already.
func (m *Map) Assign(rs []Range, to ServerID, applied map[ServerID]uint64) (*Map, error) {
	if len(rs) == 0 {
		return nil, errNoSlots
	}
	if _, ok := m.Servers[to]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownServer, to)
	}
	slots := m.expand()
	losers := map[ServerID]bool{}
	changed := false
	for _, r := range rs {
		if !r.valid() {
			return nil, fmt.Errorf("cluster: slot range %v outside 0..%d", r, Slots-1)
		}
		for s := int(r.First); s <= int(r.Last); s++ {
			a := slots[s]
			if a.Owner == to {
				continue
			}
			if !a.handedOver(applied) {
				return nil, fmt.Errorf("%w: slot %d from %s to %s", ErrHandoffPending, s, a.From, a.Owner)
			}
			if a.Owner != "" {
				losers[a.Owner] = true
			}
			slots[s] = Assignment{Owner: to, From: a.Owner}
			changed = true
		}
	}
	if len(losers) == 0 && !changed {
		return nil, nil
	}
	n := m.clone()
	n.Views[to]++
	for id := range losers {
		n.Views[id]++
	}
	for s := range slots {
		if a := &slots[s]; a.Owner == to && a.From != "" && losers[a.From] && a.FromView == 0 {
			a.FromView = n.Views[a.From]
		}
	}
	n.Ranges = compress(slots)
	return n, n.Validate()
}

// expand returns the owner of every slot ("" for none) with its handover.
func (m *Map) expand() []Assignment {
	slots := make([]Assignment, Slots)
	for _, a := range m.Ranges {
		for s := int(a.First); s <= int(a.Last); s++ {
			slots[s] = Assignment{Owner: a.Owner, From: a.From, FromView: a.FromView}
		}
	}
	return slots
}

// compress turns per-slot assignments back into maximal ranges.
func compress(slots []Assignment) []Assignment {
	var out []Assignment
	for s := 0; s < len(slots); s++ {
		a := slots[s]
		if a.Owner == "" {
			continue
		}
		first := s
		for s+1 < len(slots) && slots[s+1].Owner == a.Owner && slots[s+1].From == a.From && slots[s+1].FromView == a.FromView {
			s++
		}
		a.Range = Range{uint16(first), uint16(s)}
		out = append(out, a)
	}
	return out
}

// Validate checks the map's invariants.
func (m *Map) Validate() error {
	prev := -1
	for _, a := range m.Ranges {
		switch {
		case !a.valid() || int(a.First) <= prev:
			return fmt.Errorf("%w: range %v out of order or out of bounds", ErrInvalidMap, a.Range)
		case a.Owner == "" || m.Views[a.Owner] == 0:
			return fmt.Errorf("%w: range %v owned by %q, which has no view", ErrInvalidMap, a.Range, a.Owner)
		case a.From != "" && (m.Views[a.From] == 0 || a.FromView == 0):
			return fmt.Errorf("%w: range %v handed over from %q without a view", ErrInvalidMap, a.Range, a.From)
		}
		if _, ok := m.Servers[a.Owner]; !ok {
			return fmt.Errorf("%w: range %v owned by %q, which is not a server of the map", ErrInvalidMap, a.Range, a.Owner)
		}
		prev = int(a.Last)
	}
	return nil
}
