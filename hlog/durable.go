package hlog

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/fleetkv/fleetkv/epoch"
)

// What a checkpoint and a recovery need from the log: make everything
// below the tail durable (a fold-over), and start a log again after the
// durable end of an earlier one.

// FoldOver makes the log durable up to its current tail: it closes the tail
// page with a filler (so the durable end is a page boundary and the last
// page is flushed whole), makes everything below that read-only, and waits
// until those pages are on the device. It returns that end address. Workers
// go on appending meanwhile; their records land after the end.
//
// g must be a guard of the log's epoch manager that no worker uses; FoldOver
// protects it only while it pads the tail. The caller syncs the device.
func (l *Log) FoldOver(ctx context.Context, g *epoch.Guard) (uint64, error) {
	end, err := l.closeTailPage(ctx, g)
	if err != nil {
		return 0, err
	}
	maxStore(&l.readOnly, end)
	l.queueReadOnly()
	for l.flushedUntil.Load() < end {
		if err := l.flush.error(); err != nil {
			return 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		// Idle workers do not refresh: run the due actions (the read-only
		// shift that issues the flush) from here too.
		l.epochs.Drain()
		if l.safeReadOnly.Load() < end {
			l.queueReadOnly()
		}
		time.Sleep(50 * time.Microsecond)
	}
	return end, nil
}

// closeTailPage pads the tail to the end of its page and returns the page
// boundary it reached (the tail itself when it is already on one).
func (l *Log) closeTailPage(ctx context.Context, g *epoch.Guard) (uint64, error) {
	g.Protect()
	defer g.Unprotect()
	for spins := 0; ; spins++ {
		// The fence goes up to the end before the padding goes in: every
		// record past the end is appended after it, so an operation that
		// follows such an append (in its session) updates nothing below the
		// end in place, and the checkpoint has no hole.
		end := (l.tail.Load() + l.pageMask) &^ l.pageMask
		maxStore(&l.fence, end)
		t := l.tail.Load()
		switch {
		case t > end:
			continue // the tail crossed into the next page meanwhile
		case t == end:
			return end, nil
		}
		size := end - t
		addr, err := l.Allocate(size)
		switch {
		case errors.Is(err, ErrRetryLater):
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			g.Refresh()
			if spins > 4 {
				runtime.Gosched()
			}
			continue
		case err != nil:
			return 0, fmt.Errorf("hlog: closing the tail page: %w", err)
		}
		l.Abandon(addr, size)
		if addr == t {
			return end, nil
		}
		// Another worker allocated first and our bytes went to the next
		// page: they are skipped like any abandoned allocation; try again.
	}
}

// Restart sets up a new, empty log whose first record will be at start, a
// page boundary, over a device that holds a durable log below it, with
// begin as the lowest address still part of the log. Everything below
// start counts as flushed and evicted: reads of it go to the device. Only
// before any worker uses the log.
func (l *Log) Restart(begin, start uint64) error {
	switch {
	case start&l.pageMask != 0 || start < l.pageSize:
		return fmt.Errorf("hlog: restart at %d: not a page boundary after the first page", start)
	case begin < FirstAddress || begin > start:
		return fmt.Errorf("hlog: restart at %d: begin %d outside [%d, %d]", start, begin, FirstAddress, start)
	case l.tail.Load() != FirstAddress:
		return errors.New("hlog: restart of a log that was used")
	}
	for _, m := range []*paddedUint64{&l.tail, &l.readOnly, &l.safeReadOnly, &l.head, &l.safeHead, &l.flushedUntil} {
		m.Store(start)
	}
	l.begin.Store(begin)
	l.opened.Store(start>>l.pageBits - 1)
	l.flush.mu.Lock()
	l.flush.mu.issued, l.flush.mu.handed = start, start
	l.flush.mu.Unlock()
	l.checkMarkers()
	return nil
}
