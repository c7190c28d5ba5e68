package epoch

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"
)

// Invariant: current >= 1 and only increases; safe only increases.
// Invariant: a slot's local epoch is 0 (unprotected) or a value current had
// when the owning worker last protected or refreshed.
// Invariant: an action registered by Bump at epoch e runs exactly once, and
// only once safe >= e, that is, once every slot scanned after the bump was
// unprotected or had moved past e.
//
// What callers must do for that to mean anything (all atomics here are
// sequentially consistent):
//   - publish a state change before the Bump whose action depends on it;
//   - read shared state only after storing their local epoch (Protect,
//     Refresh), never keep anything read before.
// A worker that loaded current just before a bump and stores it just after
// the scan is then harmless: it reads the new state.
// Actions may run concurrently on different drainers and out of the order
// they were registered in; each must tolerate that (hlog's use maxStore).

// DefaultSlots is the number of worker slots a Manager has unless told otherwise.
const DefaultSlots = 128

// drainListSize bounds the number of actions waiting for their epoch. Bump
// helps drain (and, when full, waits) rather than growing the list.
const drainListSize = 256

const (
	entryFree = ^uint64(0)     // drain entry holds no action
	entryBusy = ^uint64(0) - 1 // drain entry is being filled or run
)

// ErrNoSlots is returned by Acquire when every slot is taken.
var ErrNoSlots = errors.New("epoch: no free worker slot")

const cacheLine = 64

// slot is one worker's published epoch, alone on its cache line so that
// refreshes by different workers never share a line.
type slot struct {
	local atomic.Uint64
	inUse atomic.Bool
	_     [cacheLine - 16]byte
}

// drainEntry is an action waiting for its epoch to become safe.
type drainEntry struct {
	epoch  atomic.Uint64 // entryFree, entryBusy or the epoch the action waits for
	action func()        // written only by the goroutine that moved epoch away from entryFree
}

// Manager is one epoch domain: a table of worker slots, the current and safe
// epochs and the list of deferred actions. All methods are safe from any
// goroutine.
type Manager struct {
	current atomic.Uint64
	_       [cacheLine - 8]byte
	safe    atomic.Uint64
	_       [cacheLine - 8]byte
	pending atomic.Int64 // number of entries in the drain list that hold an action
	_       [cacheLine - 8]byte
	hiSlot  atomic.Int64 // one past the highest slot index ever acquired
	slots   []slot
	drain   [drainListSize]drainEntry
}

// New returns a Manager with n worker slots (DefaultSlots when n <= 0).
func New(n int) *Manager {
	if n <= 0 {
		n = DefaultSlots
	}
	m := &Manager{slots: make([]slot, n)}
	m.current.Store(1)
	for i := range m.drain {
		m.drain[i].epoch.Store(entryFree)
	}
	return m
}

// Current returns the current epoch.
func (m *Manager) Current() uint64 { return m.current.Load() }

// Safe returns the newest epoch that every worker has left.
func (m *Manager) Safe() uint64 { return m.safe.Load() }

// Acquire claims a free slot for one worker. The Guard starts unprotected.
func (m *Manager) Acquire() (*Guard, error) {
	for i := range m.slots {
		s := &m.slots[i]
		if s.inUse.Load() || !s.inUse.CompareAndSwap(false, true) {
			continue
		}
		for {
			hi := m.hiSlot.Load()
			if int64(i) < hi || m.hiSlot.CompareAndSwap(hi, int64(i)+1) {
				break
			}
		}
		return &Guard{m: m, s: s}, nil
	}
	return nil, ErrNoSlots
}

// Bump advances the current epoch and registers action to run once every
// worker protected now has refreshed. It returns the epoch the action waits
// for. The action runs on whichever goroutine drains it (a worker inside
// Refresh, or this call), so it must be short and must not block.
//
// When the drain list is full, Bump helps drain and waits. Only a goroutine
// that holds no protected Guard may call it: a protected caller could be the
// very worker the full list waits for. Workers use TryBump.
func (m *Manager) Bump(action func()) uint64 {
	for spins := 0; ; spins++ {
		if e, ok := m.TryBump(action); ok {
			return e
		}
		m.tryDrain()
		if spins > 8 {
			runtime.Gosched()
		}
	}
}

// TryBump is Bump that never waits: it returns ok == false, with the action
// not registered, when the drain list is full. Protected workers use it and
// retry after their next Refresh. A nil action only advances the epoch.
func (m *Manager) TryBump(action func()) (epoch uint64, ok bool) {
	prior := m.current.Add(1) - 1
	if action != nil && !m.enqueue(prior, action) {
		return prior, false
	}
	m.tryDrain()
	return prior, true
}

// enqueue stores action in a free drain entry; false when the list is full.
func (m *Manager) enqueue(e uint64, action func()) bool {
	for i := range m.drain {
		d := &m.drain[i]
		if d.epoch.Load() != entryFree || !d.epoch.CompareAndSwap(entryFree, entryBusy) {
			continue
		}
		d.action = action
		m.pending.Add(1)
		d.epoch.Store(e)
		return true
	}
	return false
}

// computeSafe recomputes the safe epoch from the slot table and returns it.
func (m *Manager) computeSafe() uint64 {
	oldest := m.current.Load()
	hi := m.hiSlot.Load()
	for i := int64(0); i < hi; i++ {
		if e := m.slots[i].local.Load(); e != 0 && e < oldest {
			oldest = e
		}
	}
	newSafe := oldest - 1
	for {
		old := m.safe.Load()
		if newSafe <= old {
			return old
		}
		if m.safe.CompareAndSwap(old, newSafe) {
			return newSafe
		}
	}
}

// tryDrain runs every registered action whose epoch is safe.
func (m *Manager) tryDrain() {
	if m.pending.Load() == 0 {
		return
	}
	safe := m.computeSafe()
	for i := range m.drain {
		d := &m.drain[i]
		e := d.epoch.Load()
		if e > safe || !d.epoch.CompareAndSwap(e, entryBusy) {
			continue // free, busy, not yet safe, or claimed by another drainer
		}
		action := d.action
		d.action = nil
		d.epoch.Store(entryFree)
		m.pending.Add(-1)
		action()
	}
}

// Drain runs the actions that are safe now. It is for goroutines that hold no
// Guard (a background task waiting on a deferred action); workers get the same
// effect from Refresh.
func (m *Manager) Drain() { m.tryDrain() }

// Barrier returns once every worker protected when it was called has
// refreshed (or left protection), or when ctx ends. It drains due actions
// while it waits, since idle workers do not. Only a goroutine that holds no
// protected Guard may call it.
func (m *Manager) Barrier(ctx context.Context) error {
	done := make(chan struct{})
	m.Bump(func() { close(done) })
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Microsecond):
			m.tryDrain()
		}
	}
}

// Pending reports how many deferred actions wait for their epoch.
func (m *Manager) Pending() int { return int(m.pending.Load()) }
