package hlog

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// flushState writes read-only pages to the device and tracks which have
// landed.
//
// Invariant: flushedUntil only passes page p once p's write completed and
// every page before p has passed; pages may complete out of order.
// Invariant: a page is written whole (its frame holds only complete records
// and fillers once it is below safeReadOnly).
type flushState struct {
	l  *Log
	mu struct {
		sync.Mutex
		issued uint64 // writes are issued for every page below this address
	}
	done     []atomic.Uint64 // per frame: 1 + the page whose write completed
	cbs      []pageWrite     // per frame: the callback of its current page's write
	firstErr atomic.Pointer[error]
}

type pageWrite struct {
	f    *flushState
	page uint64
}

func (w *pageWrite) IODone(n int, err error) { w.f.complete(w.page, n, err) }

func (f *flushState) init(l *Log) {
	f.l = l
	f.mu.issued = FirstAddress
	f.done = make([]atomic.Uint64, l.frames)
	f.cbs = make([]pageWrite, l.frames)
	for i := range f.cbs {
		f.cbs[i].f = f
	}
}

// issueUntil starts device writes for every read-only page below target that
// has not been issued yet. Completions may run before it returns.
func (f *flushState) issueUntil(target uint64) {
	l := f.l
	f.mu.Lock()
	from := f.mu.issued
	if target > from {
		f.mu.issued = target
	}
	f.mu.Unlock()
	for p := from >> l.pageBits; p < target>>l.pageBits; p++ {
		cb := &f.cbs[p%l.frames]
		cb.page = p
		l.dev.WriteAsync(l.frameBytes(p), p<<l.pageBits, cb)
	}
}

// complete records one page write and advances flushedUntil over every page
// that is now contiguously flushed.
func (f *flushState) complete(page uint64, n int, err error) {
	l := f.l
	if err == nil && uint64(n) != l.pageSize {
		err = fmt.Errorf("short write of %d bytes", n)
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

// settled reports whether every issued write has completed (or failed).
func (f *flushState) settled() bool {
	f.mu.Lock()
	issued := f.mu.issued
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
