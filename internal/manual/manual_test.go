package manual

import (
	"testing"
	"unsafe"
)

func TestAllocIsZeroedAlignedAndWritable(t *testing.T) {
	for _, n := range []int{1, 4095, 4096, 1 << 20, 3<<20 + 7} {
		b, err := Alloc(n)
		if err != nil {
			t.Fatalf("Alloc(%d): %v", n, err)
		}
		if len(b) != n {
			t.Fatalf("Alloc(%d) gave len %d", n, len(b))
		}
		if p := uintptr(unsafe.Pointer(&b[0])); p%4096 != 0 {
			t.Fatalf("Alloc(%d) at %#x: not page aligned", n, p)
		}
		for i := 0; i < n; i += 997 {
			if b[i] != 0 {
				t.Fatalf("byte %d not zero", i)
			}
			b[i] = byte(i)
		}
		b[n-1] = 0xff
		if err := Free(b); err != nil {
			t.Fatalf("Free: %v", err)
		}
	}
}

func TestAllocRejectsNonPositive(t *testing.T) {
	if _, err := Alloc(0); err == nil {
		t.Fatal("Alloc(0) succeeded")
	}
	if err := Free(nil); err != nil {
		t.Fatalf("Free(nil): %v", err)
	}
}
