package hlog

import (
	"os"
	"testing"

	"github.com/fleetkv/fleetkv/internal/manual"
)

// The frames of pages 0 and 1 are faulted in when the log is made, and the
// frame of page q+1 when page q opens, on the first lap only: the frames
// further ahead stay out of memory until their turn.
func TestFramesArePopulatedOnePageAhead(t *testing.T) {
	const pageBits = 22 // 4 MiB frames: each holds whole huge pages
	l, em, _ := newTestLog(t, Config{PageBits: pageBits, MemoryBytes: 8 << pageBits})
	frame := func(f uint64) []byte { return l.mem[f<<pageBits : (f+1)<<pageBits] }
	resident := func(f uint64) int {
		n, err := manual.Resident(frame(f))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if !manual.CanPopulate() {
		t.Skip("MADV_POPULATE_WRITE refused on this kernel: nothing is faulted in ahead")
	}
	pages := (1 << pageBits) / os.Getpagesize()
	// A huge page at an unaligned edge of a frame may bring in part of the
	// next one, so only frames two or more ahead must be out entirely.
	check := func(open uint64) {
		t.Helper()
		l.populating.Wait()
		for f := range l.frames {
			switch r := resident(f); {
			case f <= open+1 && r != pages:
				t.Fatalf("page %d open: frame %d has %d of %d pages in memory, want all", open, f, r, pages)
			case f >= open+3 && r != 0:
				t.Fatalf("page %d open: frame %d has %d of %d pages in memory, want none", open, f, r, pages)
			}
		}
	}
	check(0)
	g, err := em.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	g.Protect()
	defer g.Unprotect()
	value := make([]byte, 1<<16)
	for l.Tail()>>pageBits < 2 {
		appendRecord(t, l, g, []byte("k"), value, 0)
	}
	check(2)
}

// After a restart at page 4, the frames are fresh from page 4 on: page 4's
// is faulted in at the restart and page q+1's when page q opens, while
// the frames of pages two or more ahead stay out of memory.
func TestFramesArePopulatedAheadAfterRestart(t *testing.T) {
	const pageBits = 22
	l, em, _ := newTestLog(t, Config{PageBits: pageBits, MemoryBytes: 16 << pageBits})
	if err := l.Restart(FirstAddress, 4<<pageBits); err != nil {
		t.Fatal(err)
	}
	pages := (1 << pageBits) / os.Getpagesize()
	check := func(in, out []uint64) {
		t.Helper()
		l.populating.Wait()
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
	if !manual.CanPopulate() {
		t.Skip("MADV_POPULATE_WRITE refused on this kernel: nothing is faulted in ahead")
	}
	check([]uint64{4}, []uint64{6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	g, err := em.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	g.Protect()
	defer g.Unprotect()
	value := make([]byte, 1<<16)
	for l.Tail()>>pageBits < 5 {
		appendRecord(t, l, g, []byte("k"), value, 0)
	}
	check([]uint64{4, 5, 6}, []uint64{8, 9, 10, 11, 12, 13, 14, 15})
}
