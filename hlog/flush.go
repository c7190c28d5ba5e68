package hlog

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/fleetkv/fleetkv/ssd"
)

// flushState writes read-only pages to the device and tracks which have
// landed. Pages are sealed (their records' checksums written, checksum.go)
// and handed to the device by the flusher goroutine, so that neither cost
// lands on the worker whose epoch refresh ran the read-only action.
//
// Invariant: flushedUntil only passes page p once p's write completed and
// every page before p has passed; pages may complete out of order.
// Invariant: a page is written whole (its frame holds only complete records
// and fillers once it is below safeReadOnly), except that a page ending in a
// filler is written through the filler's header, rounded up to a sector
// (sealPage): an allocation's filler costs the bytes the page holds, not a
// page of untouched frame memory (which the kernel would fault in and zero
// to write it). What the device holds past that header is never read. And
// a page whose first records a fold-over wrote (writePartial) is written
// from the sector where they end: they are on the device already, sealed,
// and below safeReadOnly nothing changes them.
// Invariant: a fold-over's write of part of a page (writePartial) and the
// page's whole write are issued by the flusher goroutine, one after the
// other, and the part is complete before anything else is issued: the page
// write that lands last on the device is always the newest.
type flushState struct {
	l  *Log
	mu struct {
		sync.Mutex
		issued uint64 // writes are requested for every page below this address
		handed uint64 // and handed to the device below this one (<= issued)
	}
	kick     chan struct{} // wakes the flusher; one pending wake is enough
	partials chan *partial // fold-overs' requests (writePartial)
	stop     chan struct{}
	stopped  chan struct{}
	done     []atomic.Uint64 // per frame: 1 + the page whose write completed
	cbs      []pageWrite     // per frame: the callback of its current page's write
	firstErr atomic.Pointer[error]
	// written is the end of the records a fold-over wrote of a page not yet
	// handed over: they are sealed and on the device from the page's start
	// (its sector is where the next part, or the rest of the page, starts).
	// Only the flusher goroutine uses it.
	written uint64
}

// partial is a fold-over's request to write the records below end in the
// page that holds it, and its answer.
type partial struct {
	end   uint64
	whole bool // the page was handed over whole already: nothing written
	err   error
	done  chan struct{}
}

type pageWrite struct {
	f    *flushState
	page uint64
	n    int // bytes written: the page, or less (the invariant above)
}

func (w *pageWrite) IODone(n int, err error) { w.f.complete(w.page, w.n, n, err) }

func (f *flushState) init(l *Log) {
	f.l = l
	f.mu.issued, f.mu.handed = FirstAddress, FirstAddress
	f.done = make([]atomic.Uint64, l.frames)
	f.cbs = make([]pageWrite, l.frames)
	for i := range f.cbs {
		f.cbs[i].f = f
	}
	f.kick = make(chan struct{}, 1)
	f.partials = make(chan *partial)
	f.stop, f.stopped = make(chan struct{}), make(chan struct{})
	go f.run()
}

// issueUntil requests device writes for every read-only page below target;
// the flusher goroutine seals and writes them. It never blocks.
func (f *flushState) issueUntil(target uint64) {
	f.mu.Lock()
	if target > f.mu.issued {
		f.mu.issued = target
	}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// run is the flusher: it seals and writes the requested pages in order
// until stop is closed.
func (f *flushState) run() {
	defer close(f.stopped)
	for {
		select {
		case <-f.kick:
		case r := <-f.partials:
			for f.handOver() { // the whole pages first, in order
			}
			r.whole, r.err = f.writeRecordsOf(r.end)
			close(r.done)
		case <-f.stop:
			return
		}
		for f.handOver() {
		}
	}
}

// writePartial has the flusher seal and write the records of end's page
// below end, every record there being complete and read-only (end <=
// safeReadOnly), and waits for the write. whole reports that the page was
// handed over whole already, so that nothing was written: the caller
// waits for that write instead.
func (f *flushState) writePartial(ctx context.Context, end uint64) (whole bool, err error) {
	if end&f.l.pageMask == 0 {
		return false, nil // no page holds records below end but whole ones
	}
	r := &partial{end: end, done: make(chan struct{})}
	select {
	case f.partials <- r:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-f.stopped:
		return false, ErrFlush
	}
	<-r.done // the flusher does not wait on anyone: it answers
	return r.whole, r.err
}

// writeRecordsOf is writePartial on the flusher goroutine: it seals the
// records of end's page from where the last part ended (or the page's
// start) to end and writes them from that part's sector, rounded up to a
// sector at end. The bytes past end in that sector may be records being
// written: they land on the device with the rest, past every durable end,
// and the page's next write (a part, or the page) covers them.
func (f *flushState) writeRecordsOf(end uint64) (whole bool, err error) {
	l := f.l
	start := end &^ l.pageMask
	f.mu.Lock()
	handed := f.mu.handed
	f.mu.Unlock()
	if handed >= start+l.pageSize {
		return true, nil
	}
	from := start
	if f.written > start {
		from = f.written // records below it are sealed and written
	}
	if from >= end {
		return false, nil
	}
	first := from - start
	if start == 0 {
		first = max(first, FirstAddress)
	}
	page := l.frameBytes(start >> l.pageBits)
	sealPage(page[:end-start], first, false)
	lo := (from - start) &^ (ssd.SectorSize - 1)
	hi := min(l.pageSize, (end-start+ssd.SectorSize-1)&^(ssd.SectorSize-1))
	if err := WritePage(l.dev, page[lo:hi], start+lo); err != nil {
		werr := fmt.Errorf("%w: records of page %d up to %d: %w", ErrFlush, start>>l.pageBits, end, err)
		f.firstErr.CompareAndSwap(nil, &werr)
		return false, werr
	}
	f.written = end
	return false, nil
}

// handOver seals and writes the pages requested since the last call; false
// when there were none.
func (f *flushState) handOver() bool {
	l := f.l
	f.mu.Lock()
	from, target := f.mu.handed, f.mu.issued
	f.mu.handed = target
	f.mu.Unlock()
	for p := from >> l.pageBits; p < target>>l.pageBits; p++ {
		page := l.frameBytes(p)
		first := uint64(0)
		if p == 0 {
			first = FirstAddress
		}
		// The records a fold-over wrote of this page are sealed and on the
		// device: the write starts at the sector where they end.
		lo := uint64(0)
		if start := p << l.pageBits; f.written > start && f.written < start+l.pageSize {
			first = f.written - start
			lo = first &^ (ssd.SectorSize - 1)
		}
		used := sealPage(page, first, false)
		hi := min(l.pageSize, (used+ssd.SectorSize-1)&^(ssd.SectorSize-1))
		cb := &f.cbs[p%l.frames]
		cb.page, cb.n = p, int(hi-lo)
		if cb.n == 0 {
			cb.IODone(0, nil) // nothing past the records written
			continue
		}
		l.dev.WriteAsync(page[lo:hi], p<<l.pageBits+lo, cb)
	}
	return target > from
}

// close stops the flusher once it has handed over everything requested.
func (f *flushState) close() {
	for f.handOver() {
	}
	close(f.stop)
	<-f.stopped
}

// complete records one page write of want bytes, n of which were
// written, and advances flushedUntil over every page that is now
// contiguously flushed.
func (f *flushState) complete(page uint64, want, n int, err error) {
	l := f.l
	if err == nil && n != want {
		err = fmt.Errorf("short write of %d of %d bytes", n, want)
	}
	if err != nil {
		werr := fmt.Errorf("%w: page %d: %w", ErrFlush, page, err)
		f.firstErr.CompareAndSwap(nil, &werr)
		return
	}
	f.done[page%l.frames].Store(page + 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := l.flushedUntil.Load() >> l.pageBits; f.done[p%l.frames].Load() == p+1; p++ {
		l.flushedUntil.Store((p + 1) << l.pageBits)
	}
}

// settled reports whether every issued write has completed (or failed):
// the whole pages below issued (a fold-over's read-only shift may issue up
// to an address inside a page, whose records writePartial writes).
func (f *flushState) settled() bool {
	f.mu.Lock()
	issued := f.mu.issued &^ f.l.pageMask
	f.mu.Unlock()
	return f.l.flushedUntil.Load() >= issued || f.firstErr.Load() != nil
}

// error returns the first flush failure, or nil.
func (f *flushState) error() error {
	if e := f.firstErr.Load(); e != nil {
		return *e
	}
	return nil
}
