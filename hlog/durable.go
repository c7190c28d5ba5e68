package hlog

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// What a checkpoint and a recovery need from the log: make everything
// below the tail durable (a fold-over), and start a log again after the
// durable end of an earlier one.

// FoldOver makes the log durable up to its current tail, end, and returns
// end: it makes everything below end read-only, waits until every worker
// has seen that (no record below end is being written or updated in place
// from then on), until the whole pages below end are on the device, and
// has the flusher seal and write the records of end's page below end
// (writePartial). The tail page is not closed: workers go on appending to
// it meanwhile, after end, and a later fold-over writes that page again
// from the sector where this one's records ended. The caller syncs the
// device.
//
// FASTER's fold-over flushes the same way. Closing the tail page with a
// filler instead cost a page of address space and of memory per fold-over:
// with a checkpoint every 5 s, a 2 GiB log of 32 MiB pages turned over its
// frames (and sent its records to the device) every 5 min 20 s, however
// little was written.
func (l *Log) FoldOver(ctx context.Context) (uint64, error) {
	end := l.tail.Load()
	maxStore(&l.readOnly, end)
	l.queueReadOnly()
	full := end &^ l.pageMask // the pages below it are written whole
	if err := l.waitFor(ctx, func() bool { return l.safeReadOnly.Load() >= end && l.flushedUntil.Load() >= full }); err != nil {
		return 0, err
	}
	whole, err := l.flush.writePartial(ctx, end)
	if err != nil {
		return 0, err
	}
	if whole {
		// The page filled and went to the device whole meanwhile.
		if err := l.waitFor(ctx, func() bool { return l.flushedUntil.Load() >= full+l.pageSize }); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// waitFor waits until done holds, running the due epoch actions (the
// read-only shift that issues the flush) from here, since idle workers do
// not refresh. It fails when the flush failed or ctx ended.
func (l *Log) waitFor(ctx context.Context, done func() bool) error {
	for !done() {
		if err := l.flush.error(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		l.epochs.Drain()
		if l.safeReadOnly.Load() < l.readOnly.Load() {
			l.queueReadOnly()
		}
		time.Sleep(50 * time.Microsecond)
	}
	return nil
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
	l.firstPage = start >> l.pageBits
	l.populate(l.firstPage) // openPage does the next
	l.flush.mu.Lock()
	l.flush.mu.issued, l.flush.mu.handed = start, start
	l.flush.mu.Unlock()
	l.checkMarkers()
	return nil
}
