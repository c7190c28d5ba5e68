package server

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// sessionTable says where each native session stands, so that a client
// can resume its session on a new connection (OPEN with the session's id):
// after a restart at its commit point in the checkpoint the server
// recovered; in the same process at the last operation it executed. The
// client re-issues what came after.
//
// Invariant: durable holds the commit points recorded in the newest
// checkpoint (and recovered from it): every operation of session id up to
// durable[id] is in that checkpoint. An id is in open while a connection
// uses it, and in closed once one stopped using it in this process.
type sessionTable struct {
	mu      sync.Mutex
	open    map[uint64]struct{}
	closed  map[uint64]uint64 // last executed serial at close
	durable map[uint64]uint64
}

// maxSessionPoints bounds the closed and durable tables: past it the
// lowest (oldest) ids are forgotten, and those sessions can no longer be
// resumed.
const maxSessionPoints = 1 << 16

func newSessionTable(durable map[uint64]uint64) *sessionTable {
	t := &sessionTable{open: map[uint64]struct{}{}, closed: map[uint64]uint64{}, durable: durable}
	if t.durable == nil {
		t.durable = map[uint64]uint64{}
	}
	return t
}

func (t *sessionTable) opened(id uint64) {
	t.mu.Lock()
	t.open[id] = struct{}{}
	t.mu.Unlock()
}

// closedAt records that session id's connection closed after executing
// its operations up to executed.
func (t *sessionTable) closedAt(id, executed uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.open, id)
	if executed > 0 {
		t.closed[id] = executed
		trim(t.closed)
	}
}

// forget drops an id that was never used (replaced by a resumed one).
func (t *sessionTable) forget(id uint64) {
	t.mu.Lock()
	delete(t.open, id)
	t.mu.Unlock()
}

var errUnknownSession = errors.New("unknown session")

// resume claims session id for a new connection and returns the serial up
// to which its operations were executed (the new connection goes on after
// it) and the one up to which they are durable.
func (t *sessionTable) resume(id uint64) (executed, durable uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, busy := t.open[id]; busy {
		return 0, 0, fmt.Errorf("session %d is open on another connection", id)
	}
	durable, known := t.durable[id]
	executed, live := t.closed[id]
	switch {
	case live:
		delete(t.closed, id)
	case known:
		executed = durable
	default:
		return 0, 0, fmt.Errorf("%w %d (never opened, or forgotten)", errUnknownSession, id)
	}
	t.open[id] = struct{}{}
	return executed, durable, nil
}

// points returns the durable table with the CPR points of a checkpoint
// being taken merged in: what that checkpoint's file records.
func (t *sessionTable) points(cprs map[uint64]uint64) map[uint64]uint64 {
	t.mu.Lock()
	m := maps.Clone(t.durable)
	t.mu.Unlock()
	for id, p := range cprs {
		m[id] = max(m[id], p)
	}
	trim(m)
	return m
}

// recorded makes m, recorded in a checkpoint that is now durable, the
// durable table.
func (t *sessionTable) recorded(m map[uint64]uint64) {
	t.mu.Lock()
	t.durable = m
	t.mu.Unlock()
}

// trim forgets the lowest ids of m down to maxSessionPoints, once m has
// an eighth more (so that the sort is paid once per many closes).
func trim(m map[uint64]uint64) {
	if len(m) <= maxSessionPoints+maxSessionPoints/8 {
		return
	}
	ids := slices.Sorted(maps.Keys(m))
	for _, id := range ids[:len(ids)-maxSessionPoints] {
		delete(m, id)
	}
}
