package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/keyhash"
)

// Compaction is lookup-based: it scans the oldest part of the log on the
// device, copies to the tail every record that is still the newest of its
// key, and moves the log's begin past the part it scanned. A record is
// dead when a newer record of its key is in its chain; a tombstone is
// always dropped (every older record of its key is below it, so below the
// new begin too). A newest record whose value has expired is replaced by
// a tombstone, under the same CAS as a copy, which the key count sees as
// the key's delete.
//
// Invariant: a record is copied only with a CAS of its key's index entry
// from the entry it was found newest under, so a write of the key that
// lands first (an upsert, an RMW, a delete's tombstone) makes the copy
// lose and the record be judged again: a deleted key never comes back.
// Invariant: begin moves only after every live record below it has been
// re-linked at the tail, and only once every worker has refreshed since
// (hlog.ShiftBegin): an operation that loaded the old chain finishes first.
// A pending operation that finds begin moved under it starts over from the
// index (pendingSet.restart).

// CompactStats say what a compaction did.
type CompactStats struct {
	Begin, Until uint64 // the range compacted: the new begin is Until
	Records      int    // records scanned
	Copied       int    // records still live, copied to the tail
	ScannedBytes uint64 // bytes of the records scanned
	CopiedBytes  uint64 // bytes appended at the tail
	ChainReads   int    // device reads to decide whether a record is live
	CopiesLost   int    // copies a concurrent write of their key overtook
	Expired      int    // newest records of their keys that had expired: deleted, not copied
}

// Compact compacts the log from its begin up to until (rounded down to a
// page, and at most the head: only records on the device are compacted),
// while sessions keep working, and returns once the begin has moved. One
// runs at a time. The space below the new begin can be released once a
// checkpoint has recorded it (Checkpoint.Begin). The calling goroutine
// must not hold a protected Session.
func (st *Store) Compact(ctx context.Context, until uint64) (CompactStats, error) {
	return st.CompactPaced(ctx, until, nil)
}

// CompactPaced is Compact that calls pace (unless nil) after each batch of
// records it judged and copied, with no session of its protected: pace
// may rest (admit.Duty.Wait) to leave the foreground its share.
func (st *Store) CompactPaced(ctx context.Context, until uint64, pace func(context.Context)) (CompactStats, error) {
	st.compact.Lock()
	defer st.compact.Unlock()
	if st.closed.Load() {
		return CompactStats{}, ErrClosed
	}
	l := st.log
	c := &compactor{st: st, ctx: ctx, s: st.compact.s, pace: pace}
	c.stats.Begin = st.Begin() // records below a Flush's cut are dead unread
	c.stats.Until = min(until, l.Head()) &^ (l.PageSize() - 1)
	if c.stats.Until <= c.stats.Begin {
		c.stats.Until = c.stats.Begin
		return c.stats, nil
	}
	_, err := hlog.ScanDevice(l.Device(), l.PageBits(), c.stats.Begin, c.stats.Until, c.record)
	if err == nil {
		err = c.flush()
	}
	c.s.Suspend()
	if err != nil {
		return c.stats, fmt.Errorf("store: compact [%d, %d): %w", c.stats.Begin, c.stats.Until, err)
	}
	if err := st.shiftBeginCounted(ctx, c.stats.Until); err != nil {
		return c.stats, fmt.Errorf("store: compact: %w", err)
	}
	return c.stats, nil
}

// shiftBeginCounted moves the log's begin to until once every doubt of the
// key count is resolved: a doubt's walk may need records below until.
// (resolveAll's barrier lets every write that installed a doubt list it.)
func (st *Store) shiftBeginCounted(ctx context.Context, until uint64) error {
	st.keys.resolve.Lock()
	defer st.keys.resolve.Unlock()
	if err := st.resolveAll(ctx); err != nil {
		return err
	}
	return st.log.ShiftBegin(ctx, until)
}

// Release gives back the device space below begin, which must be at or
// below the begin of every checkpoint that may still be recovered (space
// below a begin is reclaimed only once a checkpoint records it: until
// then a crash recovers the older begin).
func (st *Store) Release(begin uint64) error {
	return st.log.Device().Release(min(begin, st.log.Begin()) &^ (st.log.PageSize() - 1))
}

// compactor is one compaction's state. Scanned records are judged in
// batches: the in-memory part of each chain walk under protection, one
// record after the other, then the device parts of the walks in parallel
// (a walk reads one record per step and the device serves many at once),
// then the live ones are copied.
type compactor struct {
	st    *Store
	ctx   context.Context
	s     *Session              // the store's compaction session
	pace  func(context.Context) // after each batch; nil: none
	arena []byte                // the batch's record bytes
	batch []candidate
	reads atomic.Int64 // device reads of chain records
	stats CompactStats
}

// candidate is a scanned record waiting for its verdict.
type candidate struct {
	addr   uint64
	off, n int    // its bytes: arena[off:off+n]
	entry  uint64 // the chain head it was judged under
	walk   uint64 // where the chain walk goes on on the device; 0: it ended in memory
	live   bool
	err    error
}

// Batching and parallelism of the judging.
const (
	compactBatchBytes = 1 << 20
	compactBatchLen   = 4096
	compactWalkers    = 32 // device walks in flight
)

// record queues one scanned record; tombstones are dropped at once.
func (c *compactor) record(addr uint64, rec []byte) error {
	h, kl, _, vl, _ := hlog.DecodePrefix(rec)
	c.stats.Records++
	c.stats.ScannedBytes += hlog.RecordSize(kl, vl)
	switch key := rec[hlog.PrefixSize : hlog.PrefixSize+kl]; c.cover(addr, key) {
	case belowSince:
		return nil // an older owner's copy: the remote chain overrides it
	case uncovered:
		if h.Tombstone() {
			return nil
		}
	}
	c.add(addr, rec)
	if len(c.arena) >= compactBatchBytes || len(c.batch) >= compactBatchLen {
		if err := c.flush(); err != nil || c.pace == nil {
			return err
		}
		c.pace(c.ctx) // flush left the session unprotected
	}
	return nil
}

// coverage is what an indirection (indirect.go) makes of a record.
type coverage int

const (
	uncovered  coverage = iota
	belowSince          // dead: the remote chain overrides it
	// aboveSince: a tombstone hides a value in the remote log, so it
	// stays while it is its key's newest record, judged and copied like a
	// live one.
	aboveSince
)

// cover returns what an installed indirection makes of key's record at
// addr.
func (c *compactor) cover(addr uint64, key []byte) coverage {
	if p := c.st.indirections.Load(); p == nil {
		return uncovered // no table: no key to hash
	}
	switch ind, _ := c.st.covered(keyhash.Hash(key)); {
	case ind == nil:
		return uncovered
	case addr < ind.Since:
		return belowSince
	}
	return aboveSince
}

// add queues a copy of the record at addr for judging.
func (c *compactor) add(addr uint64, rec []byte) {
	c.batch = append(c.batch, candidate{addr: addr, off: len(c.arena), n: len(rec)})
	c.arena = append(c.arena, rec...)
}

// rec returns the candidate's key and what its record holds.
func (c *compactor) rec(k *candidate) ([]byte, prior) {
	rec := c.arena[k.off : k.off+k.n]
	h, kl, _, _, _ := hlog.DecodePrefix(rec)
	return rec[hlog.PrefixSize : hlog.PrefixSize+kl], c.st.priorOf(h, rec[hlog.PrefixSize+kl:])
}

// size returns the bytes of the candidate's record.
func (c *compactor) size(k *candidate) uint64 {
	_, kl, _, vl, _ := hlog.DecodePrefix(c.arena[k.off : k.off+k.n])
	return hlog.RecordSize(kl, vl)
}

// flush judges the batch and copies its live records to the tail. A copy
// that a write of its key overtook is judged again, alone.
func (c *compactor) flush() error {
	defer func() { c.batch, c.arena = c.batch[:0], c.arena[:0] }()
	defer c.s.Suspend() // the next page is read from the device unprotected
	if err := c.judge(c.batch); err != nil {
		return err
	}
	for i := range c.batch {
		k := &c.batch[i]
		for k.live {
			key, old := c.rec(k)
			switch err := c.copy(key, keyhash.Hash(key), old, k.entry, c.tombstone(k)); err {
			case nil:
				if old.live || c.tombstone(k) {
					c.stats.Copied++
					c.stats.CopiedBytes += c.size(k)
				} else {
					c.stats.Expired++
				}
				k.live = false
			case errCASLost:
				c.stats.CopiesLost++ // a write of the key came first: judge again
				if err := c.judge(c.batch[i : i+1]); err != nil {
					return err
				}
			default:
				return err
			}
		}
	}
	return c.ctx.Err()
}

// judge decides for each candidate whether it is the newest record of its
// key's chain, and under which chain head (live and entry).
func (c *compactor) judge(batch []candidate) error {
	var walks []int
	for i := range batch {
		if err := c.judgeInMemory(&batch[i]); err != nil {
			return err
		}
		if batch[i].walk != 0 {
			walks = append(walks, i)
		}
	}
	c.s.Suspend()
	c.walkDevice(batch, walks)
	c.stats.ChainReads = int(c.reads.Load())
	for _, i := range walks {
		if batch[i].err != nil {
			return batch[i].err
		}
	}
	return nil
}

// judgeInMemory walks the part of k's chain above k that is in memory,
// under protection: it ends at a newer record of k's key (dead), at k
// (live), below k (not in the chain: dead), or below head, where k.walk
// says the device part starts.
func (c *compactor) judgeInMemory(k *candidate) error {
	s, l := c.s, c.st.log
	k.live, k.walk, k.err = false, 0, nil
	key, _ := c.rec(k)
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	_, e, ok := c.st.index.Find(s.g, keyhash.Hash(key))
	if !ok {
		return nil
	}
	k.entry = e.Address()
	a, _, found := s.trace(key, k.entry, max(l.Head(), k.addr+1))
	switch {
	case found || a < k.addr:
	case a == k.addr:
		k.live = true
	default:
		k.walk = a
	}
	return nil
}

// walkDevice finishes the chain walks of batch[walks] on the device,
// compactWalkers at a time, unprotected: records below head stay on the
// device and never change.
func (c *compactor) walkDevice(batch []candidate, walks []int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(compactWalkers, len(walks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for j := int(next.Add(1)) - 1; j < len(walks); j = int(next.Add(1)) - 1 {
				k := &batch[walks[j]]
				key, _ := c.rec(k)
				k.live, buf, k.err = c.walk(key, k.walk, k.addr, buf)
			}
		}()
	}
	wg.Wait()
}

// walk follows key's chain on the device from a down to addr: live when
// it reaches addr without meeting a newer record of key.
func (c *compactor) walk(key []byte, a, addr uint64, buf []byte) (bool, []byte, error) {
	dev := c.st.log.Device()
	for a > addr {
		rec, nb, err := hlog.ReadRecord(dev, a, buf)
		buf = nb
		c.reads.Add(1)
		if err != nil {
			return false, buf, err
		}
		h, kl, _, _, _ := hlog.DecodePrefix(rec)
		if bytes.Equal(rec[hlog.PrefixSize:hlog.PrefixSize+kl], key) {
			return false, buf, nil
		}
		a = h.Prev()
	}
	return a == addr, buf, nil
}

// tombstone reports whether the candidate is a tombstone (a covered one:
// see covers).
func (c *compactor) tombstone(k *candidate) bool {
	h, _, _, _, _ := hlog.DecodePrefix(c.arena[k.off : k.off+k.n])
	return h.Tombstone()
}

// copy appends old's value as key's newest record, linked in front of
// entry, if the key's index entry is still entry; a tombstone instead when
// the value has expired (the key count loses the key) or when the record
// is a tombstone (tomb: it counts nothing).
func (c *compactor) copy(key []byte, hash uint64, old prior, entry uint64, tomb bool) error {
	s := c.s
	if !old.live && !tomb {
		// A delete, with its count change: never inside a paused
		// checkpoint (Store.reaping), waited for unprotected so that the
		// epoch does not wait for this session meanwhile.
		s.Suspend()
		c.st.reaping.RLock()
		defer c.st.reaping.RUnlock()
	}
	for spins := 0; ; spins++ {
		if err := s.begin(); err != nil {
			return err
		}
		var err error
		switch {
		case old.live:
			err = s.appendIfChainIs(key, hash, old.value, old.at, entry, 0)
		case tomb:
			err = s.reapIfChainIs(key, hash, entry, 0)
		default:
			err = s.reapIfChainIs(key, hash, entry, -1)
		}
		s.end()
		if err != errRetryTail {
			return err
		}
		s.waitForTail(spins)
	}
}

// Garbage estimates the share of the log's bytes on the device that are
// dead (superseded, deleted, or tombstones): it reads the first sample
// bytes of up to pages random pages between begin and head and judges each
// record in them as compaction would. It returns 0 when no page is on the
// device. The calling goroutine must not hold a protected Session.
func (st *Store) Garbage(ctx context.Context, pages, sample int, rng *rand.Rand) (float64, error) {
	st.compact.Lock()
	defer st.compact.Unlock()
	if st.closed.Load() {
		return 0, ErrClosed
	}
	l := st.log
	first, last := l.Begin()>>l.PageBits(), l.Head()>>l.PageBits() // pages [first, last) are on the device
	if last <= first {
		return 0, nil
	}
	al := uint64(max(l.Device().Alignment(), 1))
	sample = int(min(uint64(sample), l.PageSize()) / al * al)
	buf := ioBuffer(sample, al)
	c := &compactor{st: st, ctx: ctx, s: st.compact.s}
	var dead, total uint64
	collect := func(addr uint64, rec []byte) error {
		h, kl, _, vl, _ := hlog.DecodePrefix(rec)
		size := hlog.RecordSize(kl, vl)
		total += size
		if h.Tombstone() {
			dead += size
			return nil
		}
		c.add(addr, rec)
		return nil
	}
	for i := 0; i < pages; i++ {
		p := first + rng.Uint64N(last-first)
		if err := hlog.SampleRecords(l.Device(), p<<l.PageBits(), buf, collect); err != nil {
			c.s.Suspend()
			return 0, err
		}
	}
	err := c.judge(c.batch)
	c.s.Suspend()
	if err != nil {
		return 0, err
	}
	for i := range c.batch {
		k := &c.batch[i]
		if _, old := c.rec(k); !k.live || !old.live {
			dead += c.size(k)
		}
	}
	if total == 0 {
		return 0, nil
	}
	return float64(dead) / float64(total), nil
}
