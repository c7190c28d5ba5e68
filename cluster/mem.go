package cluster

import (
	"context"
	"maps"
	"slices"
	"sync"
)

// Mem is an in-memory Metadata for tests and simulations: one process's
// map, registrations and applied views. Registrations last until Expire.
type Mem struct {
	mu      sync.Mutex
	rev     int64
	m       *Map
	mapRev  int64
	live    map[ServerID]Server
	applied map[ServerID]uint64
	cleaned map[ServerID]MigrationID
	migs    map[MigrationID]Migration // with their revisions
	plans   map[PlanID]Plan           // with their revisions
	loads   map[ServerID]ServerLoad
	watch   []chan struct{}
	down    bool
	// The planner's leader ("": none), the channel closed when it loses
	// the lead, and one closed when the lead is free (then replaced).
	leader ServerID
	lost   chan struct{}
	free   chan struct{}
}

// NewMem returns an empty in-memory metadata store.
func NewMem() *Mem {
	return &Mem{live: map[ServerID]Server{}, applied: map[ServerID]uint64{}, cleaned: map[ServerID]MigrationID{}, migs: map[MigrationID]Migration{}, plans: map[PlanID]Plan{},
		loads: map[ServerID]ServerLoad{}, free: make(chan struct{})}
}

var _ Metadata = (*Mem)(nil)

// ErrUnavailable is what a Mem that is down answers (SetDown).
var ErrUnavailable = unavailableError{}

type unavailableError struct{}

func (unavailableError) Error() string { return "cluster: metadata store unavailable" }

// SetDown makes every call fail with ErrUnavailable (down) or work again;
// going down ends the planner's lead.
func (s *Mem) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	if down {
		s.resignLocked(s.lost)
	}
}

// Lead makes id the planner's leader once no one is; ctx's end, Expire of
// id and SetDown end its lead.
func (s *Mem) Lead(ctx context.Context, id ServerID) (<-chan struct{}, error) {
	for {
		s.mu.Lock()
		if s.down {
			s.mu.Unlock()
			return nil, ErrUnavailable
		}
		if s.leader == "" {
			lost := make(chan struct{})
			s.leader, s.lost = id, lost
			s.changedLocked()
			s.mu.Unlock()
			context.AfterFunc(ctx, func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.resignLocked(lost)
			})
			return lost, nil
		}
		free := s.free
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-free:
		}
	}
}

// Leader returns the planner's leader, "" for none.
func (s *Mem) Leader() ServerID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader
}

// resignLocked ends the lead that lost belongs to, if it is the current one.
func (s *Mem) resignLocked(lost chan struct{}) {
	if lost == nil || s.lost != lost {
		return
	}
	close(lost)
	close(s.free)
	s.leader, s.lost, s.free = "", nil, make(chan struct{})
	s.changedLocked()
}

func (s *Mem) Load(context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return State{}, ErrUnavailable
	}
	st := State{Map: s.m, MapRevision: s.mapRev, Live: maps.Clone(s.live), Applied: maps.Clone(s.applied), Loads: maps.Clone(s.loads),
		Cleaned: maps.Clone(s.cleaned)}
	for _, id := range slices.Sorted(maps.Keys(s.migs)) {
		st.Migrations = append(st.Migrations, s.migs[id])
	}
	for _, id := range slices.Sorted(maps.Keys(s.plans)) {
		st.Plans = append(st.Plans, clonePlan(s.plans[id])) // a caller's change is not the store's
	}
	return st, nil
}

func (s *Mem) SwapMigration(_ context.Context, w MigrationSwap) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return 0, ErrUnavailable
	}
	if s.migs[w.Migration.ID].Revision != w.Migration.Revision || w.Map != nil && w.MapRevision != s.mapRev {
		return 0, ErrConflict
	}
	rev := s.changedLocked()
	if w.Map != nil {
		s.m, s.mapRev = w.Map, rev
	}
	rec := w.Migration
	rec.Ranges, rec.Revision = slices.Clone(rec.Ranges), rev
	s.migs[rec.ID] = rec
	return rev, nil
}

func (s *Mem) SwapPlan(_ context.Context, w PlanSwap) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return 0, ErrUnavailable
	}
	if s.plans[w.Plan.ID].Revision != w.Plan.Revision || w.Migration != nil && s.migs[w.Migration.ID].Revision != w.Migration.Revision {
		return 0, ErrConflict
	}
	rev := s.changedLocked()
	p := clonePlan(w.Plan)
	p.Revision = rev
	s.plans[p.ID] = p
	if w.Migration != nil {
		rec := *w.Migration
		rec.Ranges, rec.Revision = slices.Clone(rec.Ranges), rev
		s.migs[rec.ID] = rec
	}
	return rev, nil
}

func (s *Mem) DeletePlan(_ context.Context, id PlanID, rev int64) error {
	return deleteAt(s, s.plans, id, rev, func(p Plan) int64 { return p.Revision })
}

func (s *Mem) DeleteMigration(_ context.Context, id MigrationID, rev int64) error {
	return deleteAt(s, s.migs, id, rev, func(m Migration) int64 { return m.Revision })
}

// deleteAt removes entry id of m (one of s's maps) if it is still at
// revision rev (revOf reads it).
func deleteAt[K comparable, V any](s *Mem, m map[K]V, id K, rev int64, revOf func(V) int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch v, ok := m[id]; {
	case s.down:
		return ErrUnavailable
	case !ok || revOf(v) != rev:
		return ErrConflict
	}
	delete(m, id)
	s.changedLocked()
	return nil
}

func (s *Mem) SwapMap(_ context.Context, prev int64, m *Map) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return 0, ErrUnavailable
	}
	if prev != s.mapRev {
		return 0, ErrConflict
	}
	s.m = m
	s.mapRev = s.changedLocked()
	return s.mapRev, nil
}

func (s *Mem) Register(_ context.Context, srv Server) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return ErrUnavailable
	}
	s.live[srv.ID] = srv
	s.changedLocked()
	return nil
}

// Expire drops server id's registration, as a lease that ran out would.
func (s *Mem) Expire(id ServerID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, id)
	delete(s.loads, id)
	if s.leader == id {
		s.resignLocked(s.lost) // its lease lapsed
	}
	s.changedLocked()
}

func (s *Mem) ReportLoad(_ context.Context, id ServerID, l ServerLoad) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return ErrUnavailable
	}
	l.Slots = slices.Clone(l.Slots)
	s.loads[id] = l
	return nil
}

func (s *Mem) ReportApplied(_ context.Context, id ServerID, view uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return ErrUnavailable
	}
	if view > s.applied[id] {
		s.applied[id] = view
		s.changedLocked()
	}
	return nil
}

func (s *Mem) ReportCleaned(_ context.Context, id ServerID, floor MigrationID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return ErrUnavailable
	}
	if floor > s.cleaned[id] {
		s.cleaned[id] = floor
		s.changedLocked()
	}
	return nil
}

// Changes returns a channel signalled after every change from now on.
func (s *Mem) Changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{}, 1)
	s.watch = append(s.watch, c)
	return c
}

func (s *Mem) changedLocked() int64 {
	s.rev++
	for _, c := range s.watch {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return s.rev
}

func (s *Mem) Close() error { return nil }

// clonePlan copies p deeply (its steps and their ranges), as a store
// that serialises it would.
func clonePlan(p Plan) Plan {
	p.Steps = slices.Clone(p.Steps)
	for i := range p.Steps {
		p.Steps[i].Ranges = slices.Clone(p.Steps[i].Ranges)
	}
	return p
}
