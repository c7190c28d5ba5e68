package hlog

import (
	"github.com/fleetkv/fleetkv/internal/invariants"
	"github.com/fleetkv/fleetkv/internal/manual"
)

// Allocate reserves size bytes at the tail and returns their address. size
// must be a multiple of 8. The caller must hold epoch protection, and before
// its next refresh must either publish a record there (and SetInvalid it if
// it never becomes reachable) or Abandon the bytes.
//
// Allocate never waits: when the next page's frame is not free yet it returns
// ErrRetryLater, and the caller must drop every record view, refresh its epoch
// and retry its operation from the start.
func (l *Log) Allocate(size uint64) (uint64, error) {
	if size > l.pageSize {
		return 0, ErrTooLarge
	}
	if invariants.Enabled && (size%8 != 0 || size < 8) {
		invariants.Fail("allocation of %d bytes", size)
	}
	for {
		t := l.tail.Load()
		p := t >> l.pageBits
		if p > l.opened.Load() {
			// The last record ended exactly at a page end.
			if err := l.openPage(p); err != nil {
				return 0, err
			}
			continue
		}
		off := t & l.pageMask
		if off+size <= l.pageSize {
			if l.tail.CompareAndSwap(t, t+size) {
				return t, nil
			}
			continue
		}
		if err := l.openPage(p + 1); err != nil {
			return 0, err
		}
		if l.tail.CompareAndSwap(t, (p+1)<<l.pageBits) {
			// The end of page p is ours now: mark it as skippable.
			frameRecord(l.mem, l.frameOffset(t)).Publish(fillerHeader(l.pageSize - off))
		}
	}
}

// openPage makes page q's frame ready for records. It shifts readOnly so the
// mutable region keeps its size, and when q's frame still holds an older page
// it starts the head shift that frees it and returns ErrRetryLater.
func (l *Log) openPage(q uint64) error {
	if l.opened.Load() >= q {
		return nil
	}
	if err := l.flush.error(); err != nil {
		return err
	}
	if (q+1)<<l.pageBits > 1<<AddressBits {
		return ErrAddressSpace
	}
	if invariants.Enabled && l.opened.Load()+1 < q {
		invariants.Fail("opening page %d after page %d", q, l.opened.Load())
	}
	l.shiftReadOnly(q)
	if !l.frameFree(q) {
		l.shiftHead(q)
		return ErrRetryLater
	}
	if l.opened.CompareAndSwap(q-1, q) { // once per page
		l.populateAhead(q)
	}
	l.checkMarkers()
	return nil
}

// populateAhead starts faulting in the frame of page q+1 while page q
// fills, on the first lap through the frames (later laps reuse frames
// already in memory), so that whoever opens q+1 does not stop for a
// fault on each of its pages.
func (l *Log) populateAhead(q uint64) {
	if q+1 < l.firstPage+l.frames {
		l.populate(q + 1)
	}
}

// populate faults in the frame of page p in a goroutine of l.populating.
func (l *Log) populate(p uint64) {
	frame := l.frameBytes(p)
	l.populating.Go(func() { manual.Populate(frame) })
}

// frameFree reports whether page q's frame no longer holds a page any worker
// may read.
func (l *Log) frameFree(q uint64) bool {
	return q < l.frames || l.safeHead.Load() >= (q-l.frames+1)<<l.pageBits
}

// shiftReadOnly moves readOnly so that, with page q open, the newest
// mutablePages pages are mutable, and makes sure the deferred action that
// publishes safeReadOnly and flushes the new read-only pages is queued.
func (l *Log) shiftReadOnly(q uint64) {
	if q+1 > l.mutablePages {
		maxStore(&l.readOnly, (q+1-l.mutablePages)<<l.pageBits)
	}
	if l.safeReadOnly.Load() < l.readOnly.Load() {
		l.queueReadOnly()
	}
}

// queueReadOnly registers, at most once at a time, the action that runs when
// every worker has seen the current readOnly. The action is a method value
// made once, and its target travels in roTarget (only one is queued at a
// time), so page turns do not allocate.
func (l *Log) queueReadOnly() {
	if !l.roActionQueued.CompareAndSwap(false, true) {
		return
	}
	l.roTarget.Store(l.readOnly.Load())
	if _, ok := l.epochs.TryBump(l.roAction); !ok {
		l.roActionQueued.Store(false) // the next page turn tries again
	}
}

// onReadOnlySafe runs once no worker can still update below roTarget in
// place.
func (l *Log) onReadOnlySafe() {
	target := l.roTarget.Load()
	maxStore(&l.safeReadOnly, target)
	l.roActionQueued.Store(false)
	l.flush.issueUntil(target)
	if l.readOnly.Load() > target {
		l.queueReadOnly()
	}
}

// shiftHead moves head up to what is flushed, at most far enough to free
// page q's frame, and queues the action that frees the frames below it.
func (l *Log) shiftHead(q uint64) {
	want := (q - l.frames + 1) << l.pageBits
	maxStore(&l.head, min(want, l.flushedUntil.Load()))
	if l.safeHead.Load() < l.head.Load() {
		l.queueHead()
	}
}

func (l *Log) queueHead() {
	if !l.headActionQueued.CompareAndSwap(false, true) {
		return
	}
	l.headTarget.Store(l.head.Load())
	if _, ok := l.epochs.TryBump(l.headAction); !ok {
		l.headActionQueued.Store(false)
	}
}

// onHeadSafe runs once no worker can still read a frame below headTarget.
func (l *Log) onHeadSafe() {
	target := l.headTarget.Load()
	maxStore(&l.safeHead, target)
	l.headActionQueued.Store(false)
	if l.head.Load() > target {
		l.queueHead()
	}
}

// checkMarkers verifies the address order under -tags invariants.
func (l *Log) checkMarkers() {
	if !invariants.Enabled {
		return
	}
	// Load from the lowest marker up: markers only grow, so a marker loaded
	// later is never below its value when a lower one was loaded.
	begin := l.begin.Load()
	sh := l.safeHead.Load()
	head := l.head.Load()
	fl := l.flushedUntil.Load()
	sro := l.safeReadOnly.Load()
	ro := l.readOnly.Load()
	tail := l.tail.Load()
	if !(begin <= head && sh <= head && head <= fl && fl <= sro && sro <= ro && ro <= tail) {
		invariants.Fail("marker order: begin %d safeHead %d head %d flushed %d safeRO %d RO %d tail %d",
			begin, sh, head, fl, sro, ro, tail)
	}
}

// Abandon turns an allocation the caller will not publish into a filler, so
// that scans skip it. Only for bytes returned by Allocate and not yet written.
func (l *Log) Abandon(addr, size uint64) {
	frameRecord(l.mem, l.frameOffset(addr)).Publish(fillerHeader(size))
}
