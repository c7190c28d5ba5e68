package store

import (
	"context"
	"fmt"
	"time"
)

// Flush drops every key at once (Redis's FLUSHALL). While pause keeps every
// writing session stopped between two operations, the index is swapped for
// an empty table of the same size and the tail is read: each operation is
// then entirely before the flush or entirely after it. The records below
// that tail are unreachable from then on, and the store's begin (Begin)
// moves to it, so the next checkpoint records a log that starts after them
// (a recovery from it holds none of them) and compaction skips them. The
// log's own begin follows to the last page of them on the device at once
// and to the rest at a later compaction.
//
// A checkpoint, a compaction or an index growth that runs when Flush starts
// finishes first, and none starts until it returns: those are the writers
// besides the sessions (Pause stops those), and a copy one of them linked
// into the old table would be replayed by a recovery. A read a session left
// pending across the pause may still answer what it found (it began before
// the flush). The calling goroutine must not hold a protected Session.
func (st *Store) Flush(ctx context.Context, pause Pause) error {
	st.ckpt.Lock()
	defer st.ckpt.Unlock()
	st.compact.Lock()
	defer st.compact.Unlock()
	st.reaping.Lock() // ReapExpired's deletes, which it does not stop
	defer st.reaping.Unlock()
	if err := st.holdGrowth(ctx); err != nil {
		return fmt.Errorf("store: flush: %w", err)
	}
	defer st.growing.Store(false)
	if st.closed.Load() {
		return ErrClosed
	}
	var at uint64
	var resetErr error
	st.keys.resolve.Lock()
	defer st.keys.resolve.Unlock()
	err := pause(ctx, func() {
		at = st.log.Tail()
		if resetErr = st.index.Reset(); resetErr == nil {
			st.flushedAt.Store(at)
			st.keys.reset(at)
			st.dropIndirections() // the keys they cover go too
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("store: flush: pausing the sessions: %w", err)
	case resetErr != nil:
		return fmt.Errorf("store: flush: %w", resetErr)
	}
	// Whole pages of flushed records on the device: no reason to keep them
	// in the log (reads pending on them start over from the new index).
	// The keys are gone already: a failure here (ctx ended) only leaves
	// those pages to a later compaction.
	to := min(at, st.log.Head()) &^ (st.log.PageSize() - 1)
	_ = st.log.ShiftBegin(ctx, to)
	return nil
}

// holdGrowth waits until no index growth runs and keeps any from starting
// (the caller stores false in st.growing when done).
func (st *Store) holdGrowth(ctx context.Context) error {
	for !st.growing.CompareAndSwap(false, true) {
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Begin returns the lowest log address that may hold a live record: the
// log's begin, or where the last Flush cut the log when that is higher. A
// checkpoint records it.
func (st *Store) Begin() uint64 { return max(st.log.Begin(), st.flushedAt.Load()) }

// FlushedAt returns where the last Flush of this store cut the log (0:
// none since it was opened). An index snapshot whose start is at or below
// it may hold entries of flushed keys and must not be reused.
func (st *Store) FlushedAt() uint64 { return st.flushedAt.Load() }
