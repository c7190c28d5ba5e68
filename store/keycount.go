package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fleetkv/fleetkv/hlog"
)

// The store counts its live keys (DBSIZE). Every write that changes
// whether its key is live adds its change to its session's count when it
// takes effect: an insert of a key with no live record +1, a delete of a
// live one -1, an in-place revival of a deleted record +1. A write decides
// from the key's newest record, which it has in memory: a mutable record it
// locks first (and seals when it appends past it), so no in-place writer
// changes it meanwhile.
//
// A blind upsert or delete whose key's chain goes on to the device does not
// know, nor does one that finds the key's record in the fuzzy region
// (which it must not lock: a writer that has not seen it turn read-only
// may still change it): it counts what an absent key would give (+1, 0),
// marks its record FlagDoubt and lists its address with its session (a
// doubt). Resolving a doubt, after an epoch barrier (those writers are
// done then), walks the record's chain below it, which no one changes any
// more, and subtracts 1 when it finds the key live there.
//
// Doubts are resolved in address order, a prefix at a time: every doubt
// below resolvedBelow is in corr, none above it. A checkpoint records the
// count as it stands and resolvedBelow, and a recovery resolves the
// records marked FlagDoubt between there and the checkpoint's end, so no
// checkpoint waits for device reads. Keys resolves every doubt before it
// answers; compaction resolves them all before its begin moves past the
// records they would read.
//
// Lock order: Store.ckpt, Store.compact, keyCount.resolve, keyCount.mu,
// Session.doubts.mu.
type keyCount struct {
	resolve sync.Mutex // one resolution at a time; held by whoever needs none meanwhile
	mu      sync.Mutex // guards everything below but corr's reads
	// sessions are the open sessions, whose counts and doubts Keys sums.
	sessions map[*Session]struct{}
	// base is the recovered count plus the counts of closed sessions.
	base          int64
	orphans       []uint64     // doubts of closed sessions (and of a failed resolution)
	resolvingN    int          // doubts taken off the lists by a resolution that has not settled them
	corr          atomic.Int64 // corrections of the doubts below resolvedBelow
	resolvedBelow uint64
	err           string       // set once by a recovery whose count may be off
	since         atomic.Int64 // doubts listed since the last background resolution began
	resolving     atomic.Bool  // a background resolution runs
}

// sessionKeys is a session's part of the count.
type sessionKeys struct {
	n      atomic.Int64 // changes its writes made, doubts counted as absent keys
	doubts struct {
		sync.Mutex
		addrs []uint64
	}
}

// register adds s to the sessions whose counts make the total.
func (k *keyCount) register(s *Session) {
	k.mu.Lock()
	if k.sessions == nil {
		k.sessions = map[*Session]struct{}{}
	}
	k.sessions[s] = struct{}{}
	k.mu.Unlock()
}

// unregister folds a closing session's count and doubts into the base.
func (k *keyCount) unregister(s *Session) {
	k.mu.Lock()
	delete(k.sessions, s)
	k.base += s.keys.n.Swap(0)
	k.orphans = append(k.orphans, s.takeDoubts()...)
	k.mu.Unlock()
}

// provisional sums the counts as they stand, doubts counted as absent
// keys.
func (k *keyCount) provisional() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.provisionalLocked()
}

// stats returns the provisional count and the doubts listed.
func (k *keyCount) stats() (int64, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := len(k.orphans) + k.resolvingN
	for s := range k.sessions {
		s.keys.doubts.Lock()
		d += len(s.keys.doubts.addrs)
		s.keys.doubts.Unlock()
	}
	return k.provisionalLocked(), d
}

// takeDoubtsBelow removes and returns, sorted, every doubt listed below
// limit (a session lists its doubts in address order). They count as
// doubts (stats) until settle or relist.
func (k *keyCount) takeDoubtsBelow(limit uint64) []uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var d, rest []uint64
	for _, a := range k.orphans {
		if a < limit {
			d = append(d, a)
		} else {
			rest = append(rest, a)
		}
	}
	k.orphans = rest
	for s := range k.sessions {
		d = append(d, s.takeDoubtsBelow(limit)...)
	}
	k.resolvingN += len(d)
	slices.Sort(d)
	return d
}

// settle records that every doubt below limit is resolved, with
// corrections c: the n that takeDoubtsBelow took.
func (k *keyCount) settle(limit uint64, c int64, n int) {
	k.mu.Lock()
	k.corr.Add(c)
	k.resolvedBelow = max(k.resolvedBelow, limit)
	k.resolvingN -= n
	k.mu.Unlock()
}

// relist lists doubts that takeDoubtsBelow took again, unresolved.
func (k *keyCount) relist(addrs []uint64) {
	k.mu.Lock()
	k.orphans = append(k.orphans, addrs...)
	k.resolvingN -= len(addrs)
	k.mu.Unlock()
}

// atCheckpoint returns the count as it stands and the address below which
// every doubt is resolved (while every writer is stopped).
func (k *keyCount) atCheckpoint() (int64, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.provisionalLocked(), k.resolvedBelow
}

// reset makes the count 0 and drops every doubt (Flush, while every
// session is stopped).
func (k *keyCount) reset(at uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.base, k.orphans, k.resolvedBelow = 0, nil, at
	k.corr.Store(0)
	for s := range k.sessions {
		s.keys.n.Store(0)
		s.takeDoubts()
	}
}

// countKeys adds d to the session's count.
func (s *Session) countKeys(d int64) {
	if d != 0 {
		s.keys.n.Add(d)
	}
}

// doubt lists the record at addr, which the session just installed with
// FlagDoubt. A session's doubts are listed in address order (it allocates
// its records one after the other, at a tail that only grows):
// takeDoubtsBelow relies on it.
func (s *Session) doubt(addr uint64) {
	s.keys.doubts.Lock()
	s.keys.doubts.addrs = append(s.keys.doubts.addrs, addr)
	s.keys.doubts.Unlock()
	if k := &s.st.keys; k.since.Add(1) >= int64(s.st.cfg.MaxDoubts) && !k.resolving.Load() {
		s.st.resolveInBackground()
	}
}

// resolveInBackground starts a resolution of every doubt listed, unless
// one runs: MaxDoubts bounds what waits (8 bytes each, and a recovery's
// work) whether or not anyone asks for the count.
func (st *Store) resolveInBackground() {
	k := &st.keys
	if !k.resolving.CompareAndSwap(false, true) {
		return
	}
	k.since.Store(0)
	st.bg.Add(1) // sessions list doubts, and Close comes after every session closed
	go func() {
		defer st.bg.Done()
		err := st.ResolveKeys(context.Background()) // what fails is listed again
		k.resolving.Store(false)
		// Doubts listed meanwhile saw it running: the next round is ours.
		if err == nil && k.since.Load() >= int64(st.cfg.MaxDoubts) {
			st.resolveInBackground()
		}
	}()
}

func (s *Session) takeDoubts() []uint64 { return s.takeDoubtsBelow(^uint64(0)) }

// takeDoubtsBelow removes and returns the session's doubts below limit.
func (s *Session) takeDoubtsBelow(limit uint64) []uint64 {
	s.keys.doubts.Lock()
	defer s.keys.doubts.Unlock()
	a := s.keys.doubts.addrs
	n, _ := slices.BinarySearch(a, limit)
	d := slices.Clone(a[:n])
	s.keys.doubts.addrs = append(a[:0], a[n:]...)
	return d
}

// Keys returns how many live keys the store holds, once every doubt
// listed when it starts is resolved (device reads): exact when no write
// runs meanwhile. The calling goroutine must not hold a protected Session.
func (st *Store) Keys(ctx context.Context) (int64, error) {
	st.keys.resolve.Lock()
	defer st.keys.resolve.Unlock()
	if err := st.resolveAll(ctx); err != nil {
		return 0, err
	}
	return st.keys.provisional(), nil
}

// ResolveKeys resolves the key count's doubts listed now (device reads).
// The store starts one in the background whenever Config.MaxDoubts have
// been listed since the last. The calling goroutine must not hold a
// protected Session.
func (st *Store) ResolveKeys(ctx context.Context) error {
	st.keys.resolve.Lock()
	defer st.keys.resolve.Unlock()
	return st.resolveAll(ctx)
}

// resolveAll resolves every doubt of a record below the tail as it is
// now; the caller holds keys.resolve. The barrier lets every write that
// allocated below that tail list its doubt (and every writer that may
// still change a fuzzy record below one finish).
func (st *Store) resolveAll(ctx context.Context) error {
	limit := st.log.Tail()
	if err := st.epochs.Barrier(ctx); err != nil {
		return err
	}
	addrs := st.keys.takeDoubtsBelow(limit)
	c, err := st.resolveDoubts(ctx, addrs)
	if err != nil {
		st.keys.relist(addrs)
		return err
	}
	st.keys.settle(limit, c, len(addrs))
	return nil
}

// resolveDoubts returns the corrections of the doubts at addrs: -1 for
// each whose key was live below its record. The chain walks run on up to
// doubtWalkers goroutines (their device reads wait in parallel); each
// walk's result depends on nothing the others do.
func (st *Store) resolveDoubts(ctx context.Context, addrs []uint64) (int64, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	n := min(doubtWalkers, (len(addrs)+doubtsPerWalker-1)/doubtsPerWalker)
	var c atomic.Int64
	var next atomic.Int64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.walkDoubts(ctx, addrs, &next, &c)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("store: counting keys: %w", err)
	}
	return c.Load(), nil
}

const (
	doubtWalkers    = 8   // goroutines resolving doubts at once
	doubtsPerWalker = 256 // fewer doubts than this per walker: fewer walkers
)

// walkDoubts resolves the doubts of addrs that next hands it, adding
// their corrections to c, on a session of its own.
func (st *Store) walkDoubts(ctx context.Context, addrs []uint64, next, c *atomic.Int64) error {
	s, err := st.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	w := doubtWalker{st: st, s: s}
	for i := next.Add(1) - 1; i < int64(len(addrs)); i = next.Add(1) - 1 {
		live, err := w.liveBefore(addrs[i])
		switch {
		case err != nil:
		case st.closed.Load():
			err = ErrClosed // Close waits for a background round: end it
		default:
			err = ctx.Err()
		}
		if err != nil {
			return err
		}
		if live {
			c.Add(-1)
		}
	}
	return nil
}

// doubtWalker resolves doubts.
type doubtWalker struct {
	st  *Store
	s   *Session
	key []byte
	buf []byte
}

// liveBefore reports whether the key of the record at addr had a live
// record below it: the newest record of the key in its chain, in memory
// under protection, then on the device, down to the log's begin.
func (w *doubtWalker) liveBefore(addr uint64) (bool, error) {
	l := w.st.log
	if err := w.s.begin(); err != nil {
		return false, err
	}
	head := l.Head()
	var prev uint64
	if addr >= head {
		r := l.Record(addr)
		w.key, prev = append(w.key[:0], r.Key()...), r.Header().Prev()
	}
	for addr >= head && prev >= head && prev >= l.Begin() {
		r := l.Record(prev)
		if bytes.Equal(r.Key(), w.key) {
			live := !r.Header().Tombstone()
			w.s.end()
			w.s.Suspend()
			return live, nil
		}
		prev = r.Header().Prev()
	}
	w.s.end()
	w.s.Suspend()
	if addr < head {
		rec, buf, err := hlog.ReadRecord(l.Device(), addr, w.buf)
		if w.buf = buf; err != nil {
			return false, err
		}
		h, kl, _, _, _ := hlog.DecodePrefix(rec)
		w.key, prev = append(w.key[:0], rec[hlog.PrefixSize:hlog.PrefixSize+kl]...), h.Prev()
	}
	for prev >= l.Begin() && prev >= hlog.FirstAddress {
		rec, buf, err := hlog.ReadRecord(l.Device(), prev, w.buf)
		if w.buf = buf; err != nil {
			return false, err
		}
		h, kl, _, _, _ := hlog.DecodePrefix(rec)
		if bytes.Equal(rec[hlog.PrefixSize:hlog.PrefixSize+kl], w.key) {
			return !h.Tombstone(), nil
		}
		prev = h.Prev()
	}
	return false, nil
}

// provisionalLocked is provisional with keys.mu held.
func (k *keyCount) provisionalLocked() int64 {
	n := k.base + k.corr.Load()
	for s := range k.sessions {
		n += s.keys.n.Load()
	}
	return n
}
