package cluster

import "maps"

// Routing is what one server's loops route by: its view, the slots it
// serves and the map they come from. A Routing is immutable once made; the
// loops share one through an atomic pointer and read it once per turn.
type Routing struct {
	View    uint64
	Serving *SlotSet
	Map     *Map // nil for a server outside any cluster
	// Misses, when set, are served slots whose records may not all have
	// arrived (a migration's target, WithHolds): an operation that would
	// decide from a key's absence there is answered as for a slot not
	// served, and the client tries again.
	Misses *SlotSet
	// Accept names the migrations whose records the loops may insert,
	// and for which slots.
	Accept []Accepting
	// Lend names the migrations whose target may read records here, and
	// for which slots (Holds.Lend).
	Lend []Accepting
	// Sample names the migrations whose keys the loops remember, and for
	// which slots (Holds.Sample).
	Sample []Accepting
}

// WithHolds returns the routing the loops route by under a Migrator's
// holds: r without the held slots, with h's Misses and Accept. The server
// installs the two together, in one routing, so that no loop sees one
// without the other.
func (r *Routing) WithHolds(h *Holds) *Routing {
	if h == nil {
		return r
	}
	serving := *r.Serving
	serving.subtract(h.Hold)
	out := &Routing{View: r.View, Serving: &serving, Map: r.Map, Accept: h.Accept, Lend: h.Lend, Sample: h.Sample}
	if misses := *h.Misses; misses != (SlotSet{}) {
		out.Misses = &misses
	}
	return out
}

// Standalone returns the routing of a server outside any cluster: it
// serves every slot under view.
func Standalone(view uint64) *Routing { return &Routing{View: view, Serving: AllSlots()} }

// Ready is what a Follower asks its server to do next.
type Ready struct {
	// Install, when set, is to be installed on every loop and, with the
	// set it serves, persisted in the server's data directory; then the
	// server calls Installed.
	Install *Routing
	// Ack, when not 0, is the view to report as applied (to the metadata
	// store); then the server calls Acked.
	Ack uint64
}

// Follower turns the cluster's metadata into what one server serves. It is
// a pure state machine: the server feeds it the maps and applied views it
// reads (StepMap, StepApplied) and does what Ready says.
//
// Invariant: Ready acks a view only after a routing with that view was
// installed on every loop and persisted (Installed): a server that reports
// view v no longer serves any slot that its view v does not give it, even
// after a restart from its data directory.
// Invariant: the routing Ready installs serves only slots the newest map
// assigns to the server and whose handover is complete, or slots the
// installed routing already serves under an older map that still assigns
// them to it. (A restart may not know what others applied; it keeps serving
// what it persisted it served.)
type Follower struct {
	self      ServerID
	m         *Map
	applied   map[ServerID]uint64
	installed *Routing // confirmed on every loop
	inFlight  *Routing // handed out by Ready, not yet confirmed
	acked     uint64
}

// NewFollower returns a follower for server self. restored is the routing
// the server persisted before it stopped (nil: none); it is what the
// server serves until the metadata store says otherwise.
func NewFollower(self ServerID, restored *Routing) *Follower {
	f := &Follower{self: self, applied: map[ServerID]uint64{}, installed: restored}
	if restored != nil {
		f.m, f.acked = restored.Map, 0
	}
	return f
}

// StepMap takes a map read from the metadata store. An older map than the
// one held (lower epoch) is ignored.
func (f *Follower) StepMap(m *Map) {
	if m != nil && (f.m == nil || m.Epoch > f.m.Epoch) {
		f.m = m
	}
}

// StepApplied takes the views servers reported as applied.
func (f *Follower) StepApplied(applied map[ServerID]uint64) {
	for id, v := range applied {
		if v > f.applied[id] {
			f.applied[id] = v
		}
	}
}

// Applied returns a copy of the applied views the follower knows.
func (f *Follower) Applied() map[ServerID]uint64 { return maps.Clone(f.applied) }

// Installed confirms that r, from Ready, is on every loop and persisted.
func (f *Follower) Installed(r *Routing) {
	if f.inFlight == r {
		f.installed, f.inFlight = r, nil
	}
}

// Acked confirms that view was reported.
func (f *Follower) Acked(view uint64) { f.acked = max(f.acked, view) }

// Current returns the routing installed on every loop (nil: none yet).
func (f *Follower) Current() *Routing { return f.installed }

// Map returns the newest map the follower holds.
func (f *Follower) Map() *Map { return f.m }

// Ready returns what the server should do next; false when nothing.
func (f *Follower) Ready() (Ready, bool) {
	if f.inFlight != nil {
		return Ready{Install: f.inFlight}, true // not confirmed yet: again
	}
	if want := f.want(); want != nil && !f.same(want) {
		f.inFlight = want
		return Ready{Install: want}, true
	}
	if f.installed != nil && f.installed.View > f.acked {
		return Ready{Ack: f.installed.View}, true
	}
	return Ready{}, false
}

// want is the routing the newest map and applied views give; nil without a
// map.
func (f *Follower) want() *Routing {
	if f.m == nil {
		return nil
	}
	serving := f.m.Serving(f.self, f.applied)
	if cur := f.installed; cur != nil {
		// Keep serving what the installed routing serves and the map still
		// assigns here (a restart does not know what the others applied).
		owned := f.m.Owned(f.self)
		for i := range serving {
			serving[i] |= cur.Serving[i] & owned[i]
		}
	}
	return &Routing{View: f.m.Views[f.self], Serving: serving, Map: f.m}
}

// same reports whether want changes nothing of the installed routing.
func (f *Follower) same(want *Routing) bool {
	cur := f.installed
	return cur != nil && cur.View == want.View && *cur.Serving == *want.Serving && cur.Map != nil && cur.Map.Epoch == want.Map.Epoch
}

// Snapshot is what a server tells clients about the cluster (the
// CLUSTER_MAP operation): a standalone server serves every slot under
// View; a member gives the map it routes by.
type Snapshot struct {
	Standalone bool     `json:"standalone,omitempty"`
	View       uint64   `json:"view"`
	Self       ServerID `json:"self,omitempty"`
	Map        *Map     `json:"map,omitempty"`
}

// SnapshotOf returns the snapshot of routing r on server self.
func SnapshotOf(r *Routing, self ServerID) Snapshot {
	return Snapshot{Standalone: r.Map == nil, View: r.View, Self: self, Map: r.Map}
}
