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
	pages := (1 << pageBits) / os.Getpagesize()
	l.populating.Wait()
	if resident(0) == 0 {
		t.Skip("MADV_POPULATE_WRITE refused on this kernel: nothing is faulted in ahead")
	}
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
	if got := l.populated.Load(); got != 4 {
		t.Fatalf("populated = %d frames after page 2 opened, want 4", got)
	}
}
