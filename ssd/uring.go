package ssd

import "github.com/fleetkv/fleetkv/internal/uring"

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

func (e *uringEngine) read(fd int, p []byte, off int64, cb Callback) { e.r.Read(fd, p, off, cb) }

func (e *uringEngine) write(fd int, p []byte, off int64, cb Callback) { e.r.Write(fd, p, off, cb) }

func (e *uringEngine) inFlight() int { return e.r.InFlight() }

func (e *uringEngine) close() error { return e.r.Close() }
