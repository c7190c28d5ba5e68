package store

import (
	"context"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/keyhash"
)

// ScanFunc receives one key's newest record from a scan: its key, its value
// and the value's expiry (Unix milliseconds, 0: none), whether it is live
// (false: deleted or expired, value nil) and its log address.
type ScanFunc func(key, value []byte, expireAt int64, live bool, addr uint64) error

// Scan calls fn with the newest record of every key that hashes into
// [lo, hi] (a slot range: keyhash.FirstHash, LastHash). It walks every chain that
// starts in the range's run of index buckets, newest record first; records
// on the device are read from it, so it runs off the loops (it blocks for
// I/O). key and value are valid only during the call, and a value that
// another session updates in place meanwhile may be torn: a migration scans
// slots that no one serves. Operations going on meanwhile may or may not be
// seen. fn runs under the store's epoch protection while the scan is in
// memory: it must not block (copy what it keeps; send it after). An error
// from fn ends the scan. The calling goroutine must not hold a protected
// Session.
func (st *Store) Scan(ctx context.Context, lo, hi uint64, fn ScanFunc) error {
	in := func(h uint64) bool { return h >= lo && h <= hi }
	return st.scan(ctx, index.Position(lo), index.Position(hi), in, fn, 0, nil)
}

// ScanCut is Scan that does not read the records below cut (those a
// shared tier holds, from the log's begin on): a chain ends at the first
// record below cut, and indirect gets the chain (index.ChainID under a
// table of 2^bits buckets) and that record's address, where a reader of
// the tier goes on (indirect.go). A chain in which the scan visited a key
// that is deleted or expired is walked to its end as Scan walks it: a
// reader following it into the tier would meet that key's older records.
// indirect runs unprotected and may block.
func (st *Store) ScanCut(ctx context.Context, lo, hi, cut uint64, fn ScanFunc, indirect func(bits uint, chain, addr uint64) error) error {
	in := func(h uint64) bool { return h >= lo && h <= hi }
	return st.scan(ctx, index.Position(lo), index.Position(hi), in, fn, cut, indirect)
}

// ScanPositions is Scan over the keys whose index.Position lies in
// [from, to] and whose hash keep accepts (nil: every one): the keys of a
// run of index buckets at any table size. A scan that resumes at the
// position after the last one it covered (ScanStep gives ranges of whole
// buckets) meets every key present throughout exactly once, however the
// index grows meanwhile: SCAN's cursor.
func (st *Store) ScanPositions(ctx context.Context, from, to uint64, keep func(h uint64) bool, fn ScanFunc) error {
	in := func(h uint64) bool {
		p := index.Position(h)
		return p >= from && p <= to && (keep == nil || keep(h))
	}
	return st.scan(ctx, from, to, in, fn, 0, nil)
}

// ScanStep returns the end of the range of positions a scan resuming at
// from covers to meet about want keys: whole index buckets at the index's
// size now, judged by the live keys per bucket (the key count as it
// stands), at least from's own bucket; ^uint64(0) when the range reaches
// the end (at once for an empty store: one step).
func (st *Store) ScanStep(from uint64, want int) uint64 {
	is := st.index.Stats()
	keys := st.keys.provisional()
	if keys <= 0 {
		return ^uint64(0)
	}
	perBucket := max(float64(keys)/float64(is.Buckets), 1.0/64)
	shift := 64 - is.Bits
	n := uint64(min(float64(want)/perBucket+1, float64(is.Buckets))) // buckets
	first := from >> shift
	if last := first + n - 1; last < is.Buckets-1 {
		return (last+1)<<shift - 1
	}
	return ^uint64(0)
}

// scan walks the chains of the buckets that hold positions [from, to] for
// Scan, visiting the keys whose hash in accepts; with indirect, it cuts
// them below cut (ScanCut).
func (st *Store) scan(ctx context.Context, from, to uint64, in func(h uint64) bool, fn ScanFunc,
	cut uint64, indirect func(bits uint, chain, addr uint64) error) error {
	if st.closed.Load() {
		return ErrClosed
	}
	heads, bits, err := st.chainHeads(from, to)
	if err != nil {
		return err
	}
	s, err := st.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	w := chainScanner{st: st, s: s, in: in, bits: bits, seen: map[string]bool{}, fn: fn, cut: cut, indirect: indirect}
	for _, hd := range heads {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.bucket, w.tag = hd.bucket, hd.tag
		if err := w.walk(hd.addr); err != nil {
			return err
		}
	}
	return nil
}

// chainHeads returns where the chains of the buckets that hold positions
// [from, to] start, and the size (bits) of the table they were read in.
func (st *Store) chainHeads(from, to uint64) ([]chainHead, uint, error) {
	var heads []chainHead
	var bits uint
	err := st.index.ExportPositions(from, to, func(e index.Entry, bucket uint64, b uint) error {
		heads, bits = append(heads, chainHead{e.Address(), bucket, e.Tag()}), b
		return nil
	})
	return heads, bits, err
}

// chainHead is where a chain of the scanned buckets starts.
type chainHead struct {
	addr, bucket, tag uint64
}

// chainScanner walks chains for Scan.
type chainScanner struct {
	st *Store
	s  *Session
	in func(h uint64) bool // the keys the scan visits
	// bucket is the bucket of the chain being walked, in a table of bits:
	// a key of another bucket in it is met in its own.
	bucket, tag uint64
	bits        uint
	seen        map[string]bool // keys of the chain's bucket met in the chain being walked
	buf         []byte
	fn          ScanFunc
	// ScanCut's: where chains are cut, and what gets the cuts; dead: the
	// chain being walked visited a deleted or expired key (no cut).
	cut      uint64
	indirect func(bits uint, chain, addr uint64) error
	dead     bool
}

// cuts reports whether the walk ends at addr with an indirection.
func (w *chainScanner) cuts(addr uint64) bool { return w.indirect != nil && addr < w.cut && !w.dead }

// cutAt hands the rest of the chain, from addr, to indirect.
func (w *chainScanner) cutAt(addr uint64) error {
	return w.indirect(w.bits, index.ChainID(w.bucket, w.tag), addr)
}

// walk visits the keys of the chain from addr: its in-memory part under
// protection, then its device part.
func (w *chainScanner) walk(addr uint64) error {
	clear(w.seen)
	w.dead = false
	l := w.st.log
	if err := w.s.begin(); err != nil {
		return err
	}
	for addr >= l.Head() && addr >= l.Begin() {
		if w.cuts(addr) {
			w.s.end()
			w.s.Suspend()
			return w.cutAt(addr)
		}
		r := l.Record(addr)
		// The header and expiry as one moment (a value updated in place
		// meanwhile may still be torn: Scan's doc), so that liveness never
		// comes from a header that does not match the bytes split by it.
		h, at := r.ReadExpiry()
		v, _ := hlog.SplitValue(h, r.Value())
		if err := w.met(r.Key(), v, at, h, addr); err != nil {
			w.s.end()
			return err
		}
		addr = h.Prev()
	}
	w.s.end()
	w.s.Suspend()
	dev := l.Device()
	for addr >= l.Begin() && addr >= hlog.FirstAddress {
		if w.cuts(addr) {
			return w.cutAt(addr)
		}
		rec, buf, err := hlog.ReadRecord(dev, addr, w.buf)
		w.buf = buf
		if err != nil {
			return err
		}
		h, kl, _, vl, _ := hlog.DecodePrefix(rec)
		key := rec[hlog.PrefixSize : hlog.PrefixSize+kl]
		v, at := hlog.SplitValue(h, rec[hlog.PrefixSize+kl:hlog.PrefixSize+kl+vl])
		if err := w.met(key, v, at, h, addr); err != nil {
			return err
		}
		addr = h.Prev()
	}
	return nil
}

// met visits key when it is in the range, of the chain's bucket, and not
// met before in the chain: its newest record, with header hdr, value v and
// expiry at.
//
// With a cut (ScanCut), a deleted or expired key of the chain's bucket
// keeps the chain from being cut, whether or not it is in the range: a
// table made of several scans covers their ranges together.
func (w *chainScanner) met(key, v []byte, at int64, hdr hlog.Header, addr uint64) error {
	h := keyhash.Hash(key)
	if index.BucketOf(h, w.bits) != w.bucket || w.seen[string(key)] {
		return nil
	}
	w.seen[string(key)] = true
	dead := hdr.Invalid() || hdr.Tombstone() || w.st.expired(at)
	w.dead = w.dead || dead
	switch {
	case !w.in(h):
		return nil
	case hdr.Invalid() || hdr.Tombstone():
		return w.fn(key, nil, 0, false, addr)
	case dead:
		return w.fn(key, nil, at, false, addr)
	}
	return w.fn(key, v, at, true, addr)
}
