package tier

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/fleetkv/fleetkv/ssd"
)

// Reader reads another server's log through its segments in the tier. It
// is an ssd.Device that only reads, so a store can follow a hash chain into
// that log with the same code that follows one into its own device.
//
// A read runs on a goroutine of its own (at most depth at once; the rest
// wait for a turn on theirs, never on the caller's) and completes there.
// A read that starts in a missing segment fails with ErrNotFound; bytes
// past the end of a present segment that fall in a missing one read as
// zeros, as a device returns for bytes never written (a store's first read
// of a record reaches past it speculatively).
type Reader struct {
	segs *Segments
	sem  chan struct{}
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	shut bool // under mu: Close ran; reads fail with ssd.ErrClosed
}

// ErrReadOnly is returned for a write to a Reader.
var ErrReadOnly = errors.New("tier: a log read through the tier is read-only")

// Reader returns a Reader of the segments with at most depth reads at
// once (at least 1).
func (g *Segments) Reader(depth int) *Reader {
	ctx, stop := context.WithCancel(context.Background())
	return &Reader{segs: g, sem: make(chan struct{}, max(depth, 1)), ctx: ctx, stop: stop}
}

// Alignment implements ssd.Device: the tier has no alignment rule.
func (r *Reader) Alignment() int { return 1 }

// WriteAsync implements ssd.Device: it always fails.
func (r *Reader) WriteAsync(p []byte, off uint64, cb ssd.Callback) { cb.IODone(0, ErrReadOnly) }

// ReadAsync implements ssd.Device.
func (r *Reader) ReadAsync(p []byte, off uint64, cb ssd.Callback) {
	r.mu.Lock()
	if r.shut {
		r.mu.Unlock()
		cb.IODone(0, ssd.ErrClosed)
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		r.sem <- struct{}{}
		err := r.read(p, off)
		<-r.sem
		if err != nil {
			cb.IODone(0, err)
			return
		}
		cb.IODone(len(p), nil)
	}()
}

// read fills p from the log at off, one segment's part at a time.
func (r *Reader) read(p []byte, off uint64) error {
	size := r.segs.size
	for done := 0; done < len(p); {
		pos := off + uint64(done)
		n, in := pos/size, pos%size
		part := p[done:min(len(p), done+int(size-in))]
		err := r.segs.store.ReadAt(r.ctx, r.segs.Name(n), part, int64(in))
		switch {
		case errors.Is(err, ErrNotFound) && done > 0:
			clear(part)
		case err != nil:
			return fmt.Errorf("log %s at %d: %w", r.segs.logID, pos, err)
		}
		done += len(part)
	}
	return nil
}

// Sync implements ssd.Device: nothing is written.
func (r *Reader) Sync() error { return nil }

// Release implements ssd.Device: the tier's segments are deleted by
// whoever knows no index reaches them, not by a reader.
func (r *Reader) Release(uint64) error { return nil }

// Close implements ssd.Device: reads in progress end (failing) and later
// ones fail with ssd.ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	r.shut = true
	r.mu.Unlock()
	r.stop()
	r.wg.Wait()
	return nil
}
