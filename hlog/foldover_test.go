package hlog

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fleetkv/fleetkv/ssd"
)

// writeLog is a device that records the writes it was given, in order.
type writeLog struct {
	ssd.Device
	mu     sync.Mutex
	writes []span
}

type span struct{ off, n uint64 }

func (d *writeLog) WriteAsync(p []byte, off uint64, cb ssd.Callback) {
	d.mu.Lock()
	d.writes = append(d.writes, span{off, uint64(len(p))})
	d.mu.Unlock()
	d.Device.WriteAsync(p, off, cb)
}

// take returns the writes since the last call.
func (d *writeLog) take() []span {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.writes
	d.writes = nil
	return w
}

// TestFoldOverWritesTheRecordsOfItsPage: a fold-over ends at the tail and
// leaves the tail page open (no filler, no address space or frame spent),
// writes the records of that page from the sector where the last part
// ended up to the sector of the tail, and the pages below; such a page,
// once full, is written from the sector where its parts ended, a page
// that records filled is written whole, and the device reads back every
// record below each end.
func TestFoldOverWritesTheRecordsOfItsPage(t *testing.T) {
	const pageBits = 16 // 64 KiB pages, 16 sectors
	const page, sector = 1 << pageBits, ssd.SectorSize
	dev := &writeLog{Device: ssd.NewMemDevice()}
	l, em := newTestLogOn(t, Config{PageBits: pageBits, MemoryBytes: 8 << pageBits}, dev)
	g, _ := em.Acquire()
	var want []written
	add := func(n int) {
		g.Protect()
		for range n {
			k, v := []byte(fmt.Sprintf("key-%d", len(want))), []byte(fmt.Sprintf("value-%d", len(want)))
			want = append(want, written{appendRecord(t, l, g, k, v, 0), k, v})
		}
		g.Unprotect()
	}
	fold := func() uint64 {
		t.Helper()
		tail := l.Tail()
		end, err := l.FoldOver(context.Background())
		if err != nil || end != tail || l.Tail() != tail {
			t.Fatalf("FoldOver: end %d, %v, tail %d; want the tail %d, unmoved", end, err, l.Tail(), tail)
		}
		return end
	}
	up := func(a uint64) uint64 { return (a + sector - 1) &^ (sector - 1) }
	add(120) // past the first sector
	end1 := fold()
	if w := dev.take(); len(w) != 1 || w[0] != (span{0, up(end1)}) {
		t.Fatalf("the first fold-over wrote %v, want [0, %d)", w, up(end1))
	}
	add(20)
	end2 := fold()
	if from := end1 &^ (sector - 1); from == 0 || !slices.Equal(dev.take(), []span{{from, up(end2) - from}}) || end2 >= page {
		t.Fatalf("the second fold-over (end %d) did not write just [%d, %d)", end2, from, up(end2))
	}
	if l.Tail() >= page {
		t.Fatalf("two fold-overs took the log to %d, past its first page", l.Tail())
	}
	scanTo(t, dev, pageBits, end2, want)
	add(3000) // past page 1: page 1 ends in an allocation's small filler
	end3 := fold()
	writes := dev.take()
	if from := end2 &^ (sector - 1); len(writes) < 3 || writes[0] != (span{from, page - from}) || writes[1] != (span{page, page}) {
		t.Fatalf("the third fold-over (end %d) wrote %v, want page 0 from %d (the sector of the records written) and page 1 whole first", end3, writes, from)
	}
	if last := writes[len(writes)-1]; last.off != end3&^(page-1) || last.n != up(end3&(page-1)) {
		t.Fatalf("the third fold-over (end %d) wrote %v last, want the records of its page", end3, last)
	}
	scanTo(t, dev, pageBits, end3, want)
}

// TestFoldOverBesideAppends: while a worker appends, every fold-over's
// end is the tail it found, and the device then holds exactly the records
// below it, each as written.
func TestFoldOverBesideAppends(t *testing.T) {
	const pageBits = 14 // 16 KiB pages: the appends cross pages between fold-overs
	dev := ssd.NewMemDevice()
	l, em := newTestLogOn(t, Config{PageBits: pageBits, MemoryBytes: 64 << pageBits}, dev)
	g, _ := em.Acquire()
	var mu sync.Mutex
	var want []written
	appendSome := func(n int, started chan<- struct{}) { // one record per protection, as a worker's operations
		for j := range n {
			if j == 100 {
				close(started)
			}
			mu.Lock()
			i := len(want)
			mu.Unlock()
			k, v := []byte(fmt.Sprintf("key-%d", i)), []byte(fmt.Sprintf("value-%d-%s", i, strings.Repeat("v", i%50)))
			g.Protect()
			addr := appendRecord(t, l, g, k, v, 0)
			mu.Lock() // before the refresh that lets a fold-over past this record
			want = append(want, written{addr, k, v})
			mu.Unlock()
			g.Unprotect()
		}
	}
	ends := map[uint64]bool{}
	beside := 0 // fold-overs that ended among the records of their round
	for range 20 {
		started, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			appendSome(1000, started)
		}()
		<-started // this round's records are under way: the end differs from the last
		end, err := l.FoldOver(context.Background())
		<-done
		if err != nil {
			t.Fatal(err)
		}
		ends[end] = true
		if end < l.Tail() {
			beside++
		}
		mu.Lock()
		var below []written
		for _, w := range want {
			if w.addr < end {
				below = append(below, w)
			}
		}
		mu.Unlock()
		scanTo(t, dev, pageBits, end, below)
	}
	if len(ends) != 20 {
		t.Fatalf("%d distinct ends of 20 fold-overs", len(ends))
	}
	t.Logf("%d of 20 fold-overs ended while their round appended", beside)
}

// scanTo checks that the device holds exactly want from FirstAddress to end.
func scanTo(t *testing.T, dev ssd.Device, pageBits uint, end uint64, want []written) {
	t.Helper()
	var got []written
	if _, err := ScanDevice(dev, pageBits, FirstAddress, end, func(addr uint64, rec []byte) error {
		_, kl, _, vl, _ := DecodePrefix(rec)
		got = append(got, written{addr, append([]byte(nil), rec[PrefixSize:PrefixSize+kl]...), append([]byte(nil), rec[PrefixSize+kl:PrefixSize+kl+vl]...)})
		return nil
	}); err != nil {
		t.Fatalf("scan to %d: %v", end, err)
	}
	if len(got) != len(want) {
		t.Fatalf("scanned %d records below %d, wrote %d", len(got), end, len(want))
	}
	for i := range want {
		if got[i].addr != want[i].addr || string(got[i].key) != string(want[i].key) || string(got[i].value) != string(want[i].value) {
			t.Fatalf("record %d: scanned %d %q=%q, wrote %d %q=%q", i, got[i].addr, got[i].key, got[i].value, want[i].addr, want[i].key, want[i].value)
		}
	}
}
