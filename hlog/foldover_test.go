package hlog

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/fleetkv/fleetkv/ssd"
)

// writeSizes is a device that records how many bytes each write at an
// offset carried (the last one).
type writeSizes struct {
	ssd.Device
	mu    sync.Mutex
	sizes map[uint64]int
}

func (d *writeSizes) WriteAsync(p []byte, off uint64, cb ssd.Callback) {
	d.mu.Lock()
	d.sizes[off] = len(p)
	d.mu.Unlock()
	d.Device.WriteAsync(p, off, cb)
}

func (d *writeSizes) size(off uint64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sizes[off]
}

// TestFoldOverWritesItsPaddedPageThroughTheFiller: a fold-over pads the
// tail page, and the flusher writes that page only through the filler's
// header (rounded up to a sector), not the untouched rest of the frame;
// the device then reads back every record of both fold-overs, and a page
// that records filled is written whole.
func TestFoldOverWritesItsPaddedPageThroughTheFiller(t *testing.T) {
	const pageBits = 16 // 64 KiB pages, 16 sectors
	mem := ssd.NewMemDevice()
	dev := &writeSizes{Device: mem, sizes: map[uint64]int{}}
	l, em := newTestLogOn(t, Config{PageBits: pageBits, MemoryBytes: 8 << pageBits}, dev)
	g, _ := em.Acquire()
	fold, _ := em.Acquire()
	var want []written
	add := func(n int) {
		g.Protect()
		for range n {
			k, v := []byte(fmt.Sprintf("key-%d", len(want))), []byte(fmt.Sprintf("value-%d", len(want)))
			want = append(want, written{appendRecord(t, l, g, k, v, 0), k, v})
		}
		g.Unprotect()
	}
	const page = 1 << pageBits
	add(20)
	end, err := l.FoldOver(context.Background(), fold)
	if err != nil || end != page {
		t.Fatalf("FoldOver: end %d, %v; want %d", end, err, page)
	}
	if n := dev.size(0); n != ssd.SectorSize {
		t.Fatalf("the padded page 0 was written with %d bytes, want one sector (%d)", n, ssd.SectorSize)
	}
	add(3000) // past page 1's end: page 1 ends in an allocation's small filler
	end, err = l.FoldOver(context.Background(), fold)
	if err != nil || end <= 2*page {
		t.Fatalf("FoldOver: end %d, %v; want past page 2", end, err)
	}
	if n := dev.size(page); n != page {
		t.Fatalf("page 1, filled by records, was written with %d bytes, want %d", n, page)
	}
	if n := dev.size(end - page); n >= page || n%ssd.SectorSize != 0 {
		t.Fatalf("the padded last page was written with %d bytes, want a multiple of %d under %d", n, ssd.SectorSize, page)
	}
	var got []written
	if _, err := ScanDevice(dev, pageBits, FirstAddress, end, func(addr uint64, rec []byte) error {
		_, kl, _, vl, _ := DecodePrefix(rec)
		got = append(got, written{addr, append([]byte(nil), rec[PrefixSize:PrefixSize+kl]...), append([]byte(nil), rec[PrefixSize+kl:PrefixSize+kl+vl]...)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("scanned %d records, wrote %d", len(got), len(want))
	}
	for i := range want {
		if got[i].addr != want[i].addr || string(got[i].key) != string(want[i].key) || string(got[i].value) != string(want[i].value) {
			t.Fatalf("record %d: scanned %d %q=%q, wrote %d %q=%q", i, got[i].addr, got[i].key, got[i].value, want[i].addr, want[i].key, want[i].value)
		}
	}
}
