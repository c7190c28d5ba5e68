package store

import (
	"bytes"
	"context"

	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/keyhash"
)

// ReapStats say what one step of the active expiry pass did.
type ReapStats struct {
	// Next is the index position the next step starts at; 0 when this
	// step reached the end (the pass starts over).
	Next uint64
	// Keys counts the keys whose newest record the step met in memory,
	// Expiring those with an expiry, Expired those past it, which it
	// deleted (unless a write of the key came first).
	Keys, Expiring, Expired int
	// TTLMillis sums the time left to the expiring keys not past it.
	TTLMillis int64
}

// ReapExpired runs one step of the active expiry pass: it walks the
// in-memory part of the chains of the index buckets from position from,
// about want keys' worth (ScanStep), and deletes every key whose newest
// record there holds an expired value, with an Update ReapExpired (so the
// key count loses it, and a write of the key that lands first wins). It
// reads nothing from the device: a key whose newest record is there stays
// until compaction passes it, which drops an expired record as it goes. A
// pass that starts at 0 and follows Next until it comes back to 0 visits
// every key in memory throughout, however the index grows meanwhile (a
// SCAN's guarantee). The calling goroutine must not hold a protected
// Session.
func (st *Store) ReapExpired(ctx context.Context, from uint64, want int) (ReapStats, error) {
	if st.closed.Load() {
		return ReapStats{}, ErrClosed
	}
	to := st.reapStep(from, want)
	var stats ReapStats
	if to != ^uint64(0) {
		stats.Next = to + 1
	}
	heads, bits, err := st.chainHeads(from, to)
	if err != nil {
		return stats, err
	}
	s, err := st.NewSession()
	if err != nil {
		return stats, err
	}
	defer s.Close()
	var failed error
	s.SetCompletion(func(c Completion) {
		if c.Err != nil && failed == nil {
			failed = c.Err
		}
	})
	var expired [][]byte
	seen := map[uint64]bool{}
	for _, hd := range heads {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		if expired, err = st.expiredInChain(s, hd, from, to, bits, seen, expired[:0], &stats); err != nil {
			return stats, err
		}
		if err := st.reap(s, expired); err != nil {
			return stats, err
		}
	}
	return stats, failed
}

// reap deletes keys whose values expired (an Update ReapExpired each) and
// completes those that went pending, holding reaping shared: a paused
// checkpoint or a Flush reads the key count with none of them half done.
// A pause of the loops may wait for the epoch, so the session waits for
// the lock unprotected.
func (st *Store) reap(s *Session, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	s.Suspend() // waits for the lock unprotected: the epoch need not wait for it
	st.reaping.RLock()
	defer st.reaping.RUnlock()
	for _, k := range keys {
		if _, _, err := s.Update(k, Update{If: ReapExpired}, nil); err != nil {
			return err
		}
	}
	s.CompletePending(true)
	return nil
}

// maxReapBuckets bounds the index buckets one step of ReapExpired exports
// and walks: a sparse or empty index (ScanStep sizes steps by the key
// count) costs a bounded slice per step.
const maxReapBuckets = 1 << 14

// reapStep returns the end of the positions a step from from covers:
// ScanStep's, at most maxReapBuckets buckets of the index's size now.
func (st *Store) reapStep(from uint64, want int) uint64 {
	to := st.ScanStep(from, want)
	shift := 64 - st.index.Stats().Bits
	if last := from>>shift + maxReapBuckets - 1; last < to>>shift {
		return (last+1)<<shift - 1
	}
	return to
}

// expiredInChain appends to dst the keys of the chain at hd whose newest
// record in memory holds an expired value: keys of hd's bucket (in a
// table of bits) at positions [from, to]. The walk stops at head. It
// knows the keys it met by their hashes (no allocation per key): a key
// whose hash equals a newer one's in the chain is skipped this pass,
// which only delays its reaping (the Update decides from the index).
func (st *Store) expiredInChain(s *Session, hd chainHead, from, to uint64, bits uint, seen map[uint64]bool, dst [][]byte, stats *ReapStats) ([][]byte, error) {
	clear(seen)
	if err := s.begin(); err != nil {
		return dst, err
	}
	defer s.end()
	l := st.log
	now := st.cfg.Now()
	for addr := hd.addr; addr >= l.Head() && addr >= l.Begin(); {
		r := l.Record(addr)
		key := r.Key()
		hdr, at := r.ReadExpiry()
		addr = hdr.Prev()
		h := keyhash.Hash(key)
		if p := index.Position(h); p < from || p > to || index.BucketOf(h, bits) != hd.bucket || seen[h] {
			continue
		}
		seen[h] = true
		if hdr.Tombstone() || hdr.Invalid() {
			continue
		}
		stats.Keys++
		if at != 0 {
			stats.Expiring++
		}
		switch {
		case Expired(at, now):
			stats.Expired++
			dst = append(dst, bytes.Clone(key))
		case at != 0:
			stats.TTLMillis += at - now
		}
	}
	return dst, nil
}
