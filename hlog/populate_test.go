package hlog

import (
	"os"
	"testing"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/internal/manual"
)

// populateBits makes 4 MiB frames: each holds whole huge pages.
const populateBits = 22

// newPopulateLog is a log of frames frames of 1<<populateBits bytes; the
// test skips where the kernel refuses MADV_POPULATE_WRITE, on which
// nothing is faulted in ahead by design.
func newPopulateLog(t *testing.T, frames uint64) (*Log, *epoch.Manager) {
	t.Helper()
	if !manual.CanPopulate() {
		t.Skip("MADV_POPULATE_WRITE refused on this kernel: nothing is faulted in ahead")
	}
	l, em, _ := newTestLog(t, Config{PageBits: populateBits, MemoryBytes: frames << populateBits})
	return l, em
}

// checkFrames waits for l's populating goroutines, then checks that every
// page of the frames in is in memory and none of the frames out.
func checkFrames(t *testing.T, l *Log, in, out []uint64) {
	t.Helper()
	l.populating.Wait()
	pages := (1 << populateBits) / os.Getpagesize()
	for _, f := range in {
		if r, err := manual.Resident(l.frameBytes(f)); err != nil || r != pages {
			t.Fatalf("frame %d: %d of %d pages in memory (err %v), want all", f, r, pages, err)
		}
	}
	for _, f := range out {
		if r, err := manual.Resident(l.frameBytes(f)); err != nil || r != 0 {
			t.Fatalf("frame %d: %d of %d pages in memory (err %v), want none", f, r, pages, err)
		}
	}
}

// fillUntilPage appends records until page p is open.
func fillUntilPage(t *testing.T, l *Log, em *epoch.Manager, p uint64) {
	t.Helper()
	g, err := em.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	g.Protect()
	defer g.Unprotect()
	value := make([]byte, 1<<16)
	for l.Tail()>>populateBits < p {
		appendRecord(t, l, g, []byte("k"), value, 0)
	}
}

// The frames of pages 0 and 1 are faulted in when the log is made, and the
// frame of page q+1 when page q opens, on the first lap only: the frames
// further ahead stay out of memory until their turn. (A huge page at an
// unaligned edge of a frame may bring in part of the next one, so only
// frames two or more ahead of the populated ones must be out entirely.)
func TestFramesArePopulatedOnePageAhead(t *testing.T) {
	l, em := newPopulateLog(t, 8)
	checkFrames(t, l, []uint64{0, 1}, []uint64{3, 4, 5, 6, 7})
	fillUntilPage(t, l, em, 2)
	checkFrames(t, l, []uint64{0, 1, 2, 3}, []uint64{5, 6, 7})
}

// After a restart at page 4, the frames are fresh from page 4 on: page 4's
// is faulted in at the restart and page q+1's when page q opens, while
// the frames of pages two or more ahead stay out of memory.
func TestFramesArePopulatedAheadAfterRestart(t *testing.T) {
	l, em := newPopulateLog(t, 16)
	if err := l.Restart(FirstAddress, 4<<populateBits); err != nil {
		t.Fatal(err)
	}
	checkFrames(t, l, []uint64{4}, []uint64{6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	fillUntilPage(t, l, em, 5)
	checkFrames(t, l, []uint64{4, 5, 6}, []uint64{8, 9, 10, 11, 12, 13, 14, 15})
}
