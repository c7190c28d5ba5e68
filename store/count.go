package store

import (
	"context"
	"fmt"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/keyhash"
)

// CountKeys returns how many live keys hash into [lo, hi] (a slot range:
// keyhash.FirstHash, LastHash), by Scan: operations going on meanwhile may
// or may not be counted. The calling goroutine must not hold a protected
// Session.
func (st *Store) CountKeys(ctx context.Context, lo, hi uint64) (int64, error) {
	var n int64
	err := st.Scan(ctx, lo, hi, func(_, _ []byte, live bool, _ uint64) error {
		if live {
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("store: count keys: %w", err)
	}
	return n, nil
}

// Scan calls fn with the newest record of every key that hashes into
// [lo, hi] (a slot range: keyhash.FirstHash, LastHash): its key, its value,
// whether it is live (false: deleted) and its log address. It walks every chain that
// starts in the range's run of index buckets, newest record first; records
// on the device are read from it, so it runs off the loops (it blocks for
// I/O). key and value are valid only during the call, and a value that
// another session updates in place meanwhile may be torn: a migration scans
// slots that no one serves. Operations going on meanwhile may or may not be
// seen. fn runs under the store's epoch protection while the scan is in
// memory: it must not block (copy what it keeps; send it after). An error
// from fn ends the scan. The calling goroutine must not hold a protected
// Session.
func (st *Store) Scan(ctx context.Context, lo, hi uint64, fn func(key, value []byte, live bool, addr uint64) error) error {
	if st.closed.Load() {
		return ErrClosed
	}
	var heads []uint64
	if err := st.index.ExportRange(lo, hi, func(e index.Entry) error {
		heads = append(heads, e.Address())
		return nil
	}); err != nil {
		return err
	}
	s, err := st.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	w := chainScanner{st: st, s: s, lo: lo, hi: hi, seen: map[string]bool{}, fn: fn}
	for _, a := range heads {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.walk(a); err != nil {
			return err
		}
	}
	return nil
}

// chainScanner walks chains for Scan.
type chainScanner struct {
	st     *Store
	s      *Session
	lo, hi uint64
	seen   map[string]bool // keys met in the chain being walked
	buf    []byte
	fn     func(key, value []byte, live bool, addr uint64) error
}

// walk visits the keys of the chain from addr: its in-memory part under
// protection, then its device part.
func (w *chainScanner) walk(addr uint64) error {
	clear(w.seen)
	l := w.st.log
	if err := w.s.begin(); err != nil {
		return err
	}
	for addr >= l.Head() && addr >= l.Begin() {
		r := l.Record(addr)
		h := r.Header()
		if err := w.met(r.Key(), r.Value(), h.Tombstone() || h.Invalid(), addr); err != nil {
			w.s.end()
			return err
		}
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
		h, kl, _, vl, _ := hlog.DecodePrefix(rec)
		key := rec[hlog.PrefixSize : hlog.PrefixSize+kl]
		if err := w.met(key, rec[hlog.PrefixSize+kl:hlog.PrefixSize+kl+vl], h.Tombstone() || h.Invalid(), addr); err != nil {
			return err
		}
		addr = h.Prev()
	}
	return nil
}

// met visits key when it is in the range and not met before in the chain.
func (w *chainScanner) met(key, value []byte, dead bool, addr uint64) error {
	h := keyhash.Hash(key)
	if h < w.lo || h > w.hi || w.seen[string(key)] {
		return nil
	}
	w.seen[string(key)] = true
	if dead {
		value = nil
	}
	return w.fn(key, value, !dead, addr)
}
