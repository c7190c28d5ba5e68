package manual

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
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

// Populate brings every page of a fresh block into memory and changes none
// of its bytes, also while another goroutine writes the block; on a kernel
// without MADV_POPULATE_WRITE it reports false and the block still works.
func TestPopulateFaultsPagesInAndKeepsContents(t *testing.T) {
	const n = 8 << 20
	b, err := Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(b)
	ps := unix.Getpagesize()
	pages := n / ps
	if r, err := Resident(b); err != nil || r == pages {
		t.Fatalf("fresh block: %d of %d pages resident (err %v); want fewer", r, pages, err)
	}
	done := make(chan struct{})
	go func() { // writes beside Populate: every 7th page of the first quarter gets its index
		defer close(done)
		for p := 0; p < pages/4; p += 7 {
			b[p*ps] = byte(p)
		}
	}()
	ok := Populate(b)
	<-done
	r, err := Resident(b) // before the reads below, which map pages of zeros in
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < pages; p++ {
		want := byte(0)
		if p%7 == 0 && p < pages/4 {
			want = byte(p)
		}
		if b[p*ps] != want || b[p*ps+ps-1] != 0 {
			t.Fatalf("page %d holds %d…%d after Populate, want %d…0", p, b[p*ps], b[p*ps+ps-1], want)
		}
	}
	if !ok {
		t.Skipf("MADV_POPULATE_WRITE refused on this kernel (%d of %d pages resident by the writes)", r, pages)
	}
	if r != pages {
		t.Fatalf("after Populate %d of %d pages resident", r, pages)
	}
}
