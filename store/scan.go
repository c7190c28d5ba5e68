package store

import (
	"context"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/internal/keyset"
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
	w := chainScanner{st: st, s: s, in: in, bits: bits, fn: fn, cut: cut, indirect: indirect,
		done: make(chan *chainWalk, scanReads)}
	err = w.run(ctx, heads)
	for w.inFlight > 0 { // no buffer is dropped under the device
		<-w.done
		w.inFlight--
	}
	return err
}

// scanReads is how many chains a scan walks on the device at once, each
// with one read in flight. One at a time, a scan of records on the device
// waits out a read per record behind whatever the loops keep queued there:
// a migration's first slot group took longer than the 10 s its source
// waits for progress. 32 at once still waited on the device's latency:
// 128 scan 1.6-2x the records a second (BenchmarkScanDevice,
// BENCHMARKS.md).
const scanReads = 128

// scanAhead is how many chains ahead of the one it walks a scan prefetches
// a chain's first record: in memory, each is a miss at an address the
// index's order does not predict.
const scanAhead = 8

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

// chainScanner walks chains for Scan: each chain's in-memory part under
// protection, one chain at a time, then its device part, up to scanReads
// chains side by side. Everything but the device's callbacks runs on the
// scan's goroutine: fn is never called concurrently.
type chainScanner struct {
	st   *Store
	s    *Session
	in   func(h uint64) bool // the keys the scan visits
	bits uint                // the size of the table the chains were read in
	fn   ScanFunc
	// ScanCut's: where chains are cut, and what gets the cuts.
	cut      uint64
	indirect func(bits uint, chain, addr uint64) error
	// The device walks: idle ones to reuse, and those whose read is done.
	idle     []*chainWalk
	made     int // walks made, at most scanReads
	done     chan *chainWalk
	inFlight int
}

// chainWalk is one chain being walked.
type chainWalk struct {
	// bucket is the bucket of the chain, in a table of bits: a key of
	// another bucket in it is met in its own.
	bucket, tag uint64
	addr        uint64     // the next record to visit
	seen        keyset.Set // keys of the chain's bucket met in it
	dead        bool       // it visited a deleted or expired key: no cut
	read        hlog.RecordRead
	n           int // the read's outcome
	err         error
	done        chan<- *chainWalk
}

// IODone is the device's callback for the walk's read; the channel holds
// every walk, so it never blocks.
func (c *chainWalk) IODone(n int, err error) {
	c.n, c.err = n, err
	c.done <- c
}

// run walks the chains of heads.
func (w *chainScanner) run(ctx context.Context, heads []chainHead) error {
	l := w.st.log
	for i, hd := range heads {
		if err := ctx.Err(); err != nil {
			return err
		}
		if i+scanAhead < len(heads) {
			l.Prefetch(heads[i+scanAhead].addr) // a miss each, overlapped (Prefetch checks the address)
		}
		c, err := w.walker()
		if err != nil {
			return err
		}
		c.bucket, c.tag, c.addr, c.dead = hd.bucket, hd.tag, hd.addr, false
		c.seen.Reset()
		if err := w.inMemory(c); err != nil {
			return err
		}
		if err := w.onDevice(c); err != nil {
			return err
		}
	}
	for w.inFlight > 0 {
		if err := w.complete(); err != nil {
			return err
		}
	}
	return nil
}

// walker returns an idle walk, waiting for a read when every one is busy.
func (w *chainScanner) walker() (*chainWalk, error) {
	for len(w.idle) == 0 {
		if w.made < scanReads {
			w.made++
			return &chainWalk{done: w.done}, nil
		}
		if err := w.complete(); err != nil {
			return nil, err
		}
	}
	c := w.idle[len(w.idle)-1]
	w.idle = w.idle[:len(w.idle)-1]
	return c, nil
}

// cuts reports whether c's walk ends at addr with an indirection.
func (w *chainScanner) cuts(c *chainWalk, addr uint64) bool {
	return w.indirect != nil && addr < w.cut && !c.dead
}

// cutAt hands the rest of c's chain, from addr, to indirect.
func (w *chainScanner) cutAt(c *chainWalk, addr uint64) error {
	return w.indirect(w.bits, index.ChainID(c.bucket, c.tag), addr)
}

// inMemory visits the keys of c's chain while it is in memory, under
// protection, and leaves c.addr where it goes on.
func (w *chainScanner) inMemory(c *chainWalk) error {
	l := w.st.log
	if err := w.s.begin(); err != nil {
		return err
	}
	defer w.s.Suspend()
	defer w.s.end()
	for c.addr >= l.Head() && c.addr >= l.Begin() && !w.cuts(c, c.addr) {
		r := l.Record(c.addr)
		// The header and expiry as one moment (a value updated in place
		// meanwhile may still be torn: Scan's doc), so that liveness never
		// comes from a header that does not match the bytes split by it.
		h, at := r.ReadExpiry()
		v, _ := hlog.SplitValue(h, r.Value())
		if err := w.met(c, r.Key(), v, at, h, c.addr); err != nil {
			return err
		}
		c.addr = h.Prev()
	}
	return nil
}

// onDevice goes on with c's chain at c.addr, unprotected: it cuts it
// there, or issues the read of its next record, or (at the chain's end)
// makes c idle.
func (w *chainScanner) onDevice(c *chainWalk) error {
	l := w.st.log
	switch {
	case c.addr < l.Begin() || c.addr < hlog.FirstAddress:
	case w.cuts(c, c.addr):
		if err := w.cutAt(c, c.addr); err != nil {
			return err
		}
	default:
		w.inFlight++
		c.read.Start(l.Device(), c.addr, c)
		return nil
	}
	w.idle = append(w.idle, c)
	return nil
}

// complete waits for a read and visits its record.
func (w *chainScanner) complete() error {
	c := <-w.done
	w.inFlight--
	rec, again, err := c.read.Finish(c.n, c.err, c)
	switch {
	case again:
		w.inFlight++
		return nil
	case err != nil:
		return err
	}
	h, kl, _, vl, _ := hlog.DecodePrefix(rec)
	key := rec[hlog.PrefixSize : hlog.PrefixSize+kl]
	v, at := hlog.SplitValue(h, rec[hlog.PrefixSize+kl:hlog.PrefixSize+kl+vl])
	if err := w.met(c, key, v, at, h, c.addr); err != nil {
		return err
	}
	c.addr = h.Prev()
	return w.onDevice(c)
}

// met visits key when it is in the range, of c's bucket, and not met
// before in c's chain: its newest record, with header hdr, value v and
// expiry at.
//
// With a cut (ScanCut), a deleted or expired key of the chain's bucket
// keeps the chain from being cut, whether or not it is in the range: a
// table made of several scans covers their ranges together.
func (w *chainScanner) met(c *chainWalk, key, v []byte, at int64, hdr hlog.Header, addr uint64) error {
	h := keyhash.Hash(key)
	if index.BucketOf(h, w.bits) != c.bucket || !c.seen.Add(h, key) {
		return nil
	}
	dead := hdr.Invalid() || hdr.Tombstone() || w.st.expired(at)
	c.dead = c.dead || dead
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
