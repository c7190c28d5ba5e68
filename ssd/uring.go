package ssd

import (
	"sync"

	"github.com/fleetkv/fleetkv/internal/uring"
)

// uringEngine submits I/O through an io_uring; completions run on the
// ring's reaper goroutine.
//
// The ring's submitter and reaper goroutines each get a P (reserveProcs).
type uringEngine struct{ r *uring.Ring }

func newUringEngine(entries uint32) (engine, error) {
	r, err := uring.Open(entries)
	if err != nil {
		return nil, err
	}
	reserveProcs(2)
	return &uringEngine{r}, nil
}

func (e *uringEngine) name() string { return IOUring }

func (e *uringEngine) read(fd int, p []byte, off int64, cb Callback) {
	r := uringReads.Get().(*uringRead)
	*r = uringRead{e: e, fd: fd, p: p, off: off, cb: cb}
	e.r.Read(fd, p, off, r)
}

// uringRead carries one read through short transfers, as the pread
// engine's transfer does: a transfer that stops early on a sector boundary
// goes on; one that stops at the segment file's end (a truncated file; an
// unaligned or empty transfer) has the rest of the buffer read as zeros, as
// the Device contract says for bytes never written. Pooled, so that reads
// on the request path do not allocate.
type uringRead struct {
	e    *uringEngine
	fd   int
	p    []byte
	off  int64
	done int
	cb   Callback
}

var uringReads = sync.Pool{New: func() any { return new(uringRead) }}

func (r *uringRead) IODone(n int, err error) {
	r.done += n
	if err == nil && n > 0 && r.done < len(r.p) && r.done%SectorSize == 0 {
		r.e.r.Read(r.fd, r.p[r.done:], r.off+int64(r.done), r)
		return
	}
	if err == nil && r.done < len(r.p) {
		clear(r.p[r.done:])
		r.done = len(r.p)
	}
	cb, done := r.cb, r.done
	*r = uringRead{}
	uringReads.Put(r)
	cb.IODone(done, err)
}

func (e *uringEngine) write(fd int, p []byte, off int64, cb Callback) { e.r.Write(fd, p, off, cb) }

func (e *uringEngine) inFlight() int { return e.r.InFlight() }

func (e *uringEngine) close() error { return e.r.Close() }
