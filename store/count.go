package store

import (
	"context"
	"fmt"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/keyhash"
)

// CountKeys returns how many live keys hash into [lo, hi] (a slot range:
// keyhash.FirstHash, LastHash). It walks every chain that starts in the
// range's run of index buckets, newest record first: the first record met
// of each key is its newest, counted unless it is a tombstone. Records on
// the device are read from it, so it runs off the loops (it blocks for
// I/O); operations going on meanwhile may or may not be counted. The
// calling goroutine must not hold a protected Session.
func (st *Store) CountKeys(ctx context.Context, lo, hi uint64) (int64, error) {
	if st.closed.Load() {
		return 0, ErrClosed
	}
	var heads []uint64
	if err := st.index.ExportRange(lo, hi, func(e index.Entry) error {
		heads = append(heads, e.Address())
		return nil
	}); err != nil {
		return 0, err
	}
	s, err := st.NewSession()
	if err != nil {
		return 0, err
	}
	defer s.Close()
	w := chainCounter{st: st, s: s, lo: lo, hi: hi, seen: map[string]bool{}}
	for _, a := range heads {
		if err := ctx.Err(); err != nil {
			return w.n, err
		}
		if err := w.walk(a); err != nil {
			return w.n, fmt.Errorf("store: count keys: %w", err)
		}
	}
	return w.n, nil
}

// chainCounter walks chains for CountKeys.
type chainCounter struct {
	st     *Store
	s      *Session
	lo, hi uint64
	seen   map[string]bool // keys met in the chain being walked
	buf    []byte
	n      int64
}

// walk counts the keys of the chain from addr: its in-memory part under
// protection, then its device part.
func (w *chainCounter) walk(addr uint64) error {
	clear(w.seen)
	l := w.st.log
	if err := w.s.begin(); err != nil {
		return err
	}
	for addr >= l.Head() && addr >= l.Begin() {
		r := l.Record(addr)
		h := r.Header()
		w.met(r.Key(), h.Tombstone() || h.Invalid())
		addr = h.Prev()
	}
	w.s.end()
	w.s.Suspend()
	dev := l.Device()
	for addr >= l.Begin() && addr >= hlog.FirstAddress {
		rec, buf, err := hlog.ReadRecord(dev, addr, w.buf)
		w.buf = buf
		if err != nil {
			return err
		}
		h, kl, _, _, _ := hlog.DecodePrefix(rec)
		w.met(rec[hlog.PrefixSize:hlog.PrefixSize+kl], h.Tombstone() || h.Invalid())
		addr = h.Prev()
	}
	return nil
}

// met counts key when it is in the range and not met before in the chain.
func (w *chainCounter) met(key []byte, dead bool) {
	h := keyhash.Hash(key)
	if h < w.lo || h > w.hi || w.seen[string(key)] {
		return
	}
	w.seen[string(key)] = true
	if !dead {
		w.n++
	}
}
