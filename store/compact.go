package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/fleetkv/fleetkv/hlog"
)

// Compaction is lookup-based: it scans the oldest part of the log on the
// device, copies to the tail every record that is still the newest of its
// key, and moves the log's begin past the part it scanned. A record is
// dead when a newer record of its key is in its chain; a tombstone is
// always dropped (every older record of its key is below it, so below the
// new begin too).
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
}

// Compact compacts the log from its begin up to until (rounded down to a
// page, and at most the head: only records on the device are compacted),
// while sessions keep working, and returns once the begin has moved. One
// runs at a time. The space below the new begin can be released once a
// checkpoint has recorded it (Checkpoint.Begin). The calling goroutine
// must not hold a protected Session.
func (st *Store) Compact(ctx context.Context, until uint64) (CompactStats, error) {
	st.compact.Lock()
	defer st.compact.Unlock()
	if st.closed.Load() {
		return CompactStats{}, ErrClosed
	}
	l := st.log
	c := &compactor{st: st, ctx: ctx, s: st.compact.s}
	c.stats.Begin = l.Begin()
	c.stats.Until = min(until, l.Head()) &^ (l.PageSize() - 1)
	if c.stats.Until <= c.stats.Begin {
		c.stats.Until = c.stats.Begin
		return c.stats, nil
	}
	_, err := hlog.ScanDevice(l.Device(), l.PageBits(), c.stats.Begin, c.stats.Until, c.record)
	c.s.Suspend()
	if err != nil {
		return c.stats, fmt.Errorf("store: compact [%d, %d): %w", c.stats.Begin, c.stats.Until, err)
	}
	if err := l.ShiftBegin(ctx, c.stats.Until); err != nil {
		return c.stats, fmt.Errorf("store: compact: %w", err)
	}
	return c.stats, nil
}

// Release gives back the device space below begin, which must be at or
// below the begin of every checkpoint that may still be recovered (space
// below a begin is reclaimed only once a checkpoint records it: until
// then a crash recovers the older begin).
func (st *Store) Release(begin uint64) error {
	return st.log.Device().Release(min(begin, st.log.Begin()) &^ (st.log.PageSize() - 1))
}

// compactor is one compaction's state.
type compactor struct {
	st    *Store
	ctx   context.Context
	s     *Session // the store's compaction session
	buf   []byte   // device reads of chain records
	stats CompactStats
}

// record decides one scanned record: copied when it is its key's newest
// and not a tombstone, dropped otherwise.
func (c *compactor) record(addr uint64, rec []byte) error {
	h, kl, _, vl, _ := hlog.DecodePrefix(rec)
	c.stats.Records++
	c.stats.ScannedBytes += hlog.RecordSize(kl, vl)
	if h.Tombstone() {
		return nil
	}
	key, value := rec[hlog.PrefixSize:hlog.PrefixSize+kl], rec[hlog.PrefixSize+kl:]
	hash := Hash(key)
	for {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		live, entry, err := c.newest(key, hash, addr)
		if err != nil || !live {
			return err
		}
		switch err := c.copy(key, hash, value, entry); err {
		case nil:
			c.stats.Copied++
			c.stats.CopiedBytes += hlog.RecordSize(kl, vl)
			return nil
		case errCASLost:
			c.stats.CopiesLost++ // a write of the key came first: judge again
		default:
			return err
		}
	}
}

// newest reports whether the record of key at addr is the newest in its
// chain, and the chain's head it found that under. The part of the chain
// in memory is walked under protection; the part on the device with
// synchronous reads, unprotected (records below head stay on the device
// and never change).
func (c *compactor) newest(key []byte, hash, addr uint64) (bool, uint64, error) {
	s, l := c.s, c.st.log
	if err := s.begin(); err != nil {
		return false, 0, err
	}
	_, e, ok := c.st.index.Find(s.g, hash)
	if !ok {
		s.end()
		return false, 0, nil
	}
	entry := e.Address()
	a, _, found := s.trace(key, entry, max(l.Head(), addr+1))
	s.end()
	s.Suspend()
	for !found && a > addr {
		var rec []byte
		var err error
		rec, c.buf, err = hlog.ReadRecord(l.Device(), a, c.buf)
		c.stats.ChainReads++
		if err != nil {
			return false, 0, err
		}
		h, kl, _, _, _ := hlog.DecodePrefix(rec)
		found = bytes.Equal(rec[hlog.PrefixSize:hlog.PrefixSize+kl], key)
		a = h.Prev()
	}
	return !found && a == addr, entry, nil
}

// copy appends value as key's newest record, linked in front of entry,
// if the key's index entry is still entry.
func (c *compactor) copy(key []byte, hash uint64, value []byte, entry uint64) error {
	s := c.s
	for spins := 0; ; spins++ {
		if err := s.begin(); err != nil {
			return err
		}
		err := c.copyOnce(key, hash, value, entry)
		s.end()
		if err != errRetryTail {
			return err
		}
		s.waitForTail(spins)
	}
}

func (c *compactor) copyOnce(key []byte, hash uint64, value []byte, entry uint64) error {
	s := c.s
	slot, e, ok := c.st.index.Find(s.g, hash)
	if !ok || e.Address() != entry {
		return errCASLost
	}
	addr, r, err := s.allocRecord(key, len(value))
	if err != nil {
		return err
	}
	copy(r.Init(key, len(value), len(value)), value)
	return s.install(slot, e, addr, r, false)
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
	judge := func(addr uint64, rec []byte) error {
		h, kl, _, vl, _ := hlog.DecodePrefix(rec)
		size := hlog.RecordSize(kl, vl)
		total += size
		live := false
		if !h.Tombstone() {
			var err error
			live, _, err = c.newest(rec[hlog.PrefixSize:hlog.PrefixSize+kl], Hash(rec[hlog.PrefixSize:hlog.PrefixSize+kl]), addr)
			if err != nil {
				return err
			}
		}
		if !live {
			dead += size
		}
		return ctx.Err()
	}
	for i := 0; i < pages; i++ {
		p := first + rng.Uint64N(last-first)
		if err := hlog.SampleRecords(l.Device(), p<<l.PageBits(), buf, judge); err != nil {
			c.s.Suspend()
			return 0, err
		}
	}
	c.s.Suspend()
	if total == 0 {
		return 0, nil
	}
	return float64(dead) / float64(total), nil
}
