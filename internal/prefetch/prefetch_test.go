package prefetch

import (
	"testing"
	"unsafe"
)

// Prefetching must be harmless for any address, mapped or not, and must not
// change memory.
func TestLineIsHarmless(t *testing.T) {
	b := []byte{1, 2, 3}
	Line(unsafe.Pointer(&b[0]))
	Line(nil)
	line(0xdead0000) // an unmapped address on purpose
	if b[0] != 1 || b[1] != 2 || b[2] != 3 {
		t.Fatal("prefetch changed memory")
	}
}

func BenchmarkLine(b *testing.B) {
	buf := make([]byte, 64<<20)
	for i := 0; b.Loop(); i++ {
		Line(unsafe.Pointer(&buf[(i*4099*64)&(len(buf)-1)]))
	}
}
