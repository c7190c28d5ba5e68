package ssd

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fleetkv/fleetkv/internal/uring"
)

// waiter is a Callback that a test waits on.
type waiter struct {
	ch chan result
}

func newWaiter() *waiter { return &waiter{ch: make(chan result, 1)} }

func (w *waiter) IODone(n int, err error) { w.ch <- result{n, err, true} }

func (w *waiter) wait() (int, error) {
	r := <-w.ch
	return r.n, r.err
}

var engines = []string{IOPread, IOUring}

func openTestFile(t *testing.T, dir, io string) *FileDevice {
	t.Helper()
	d, err := OpenFile(FileConfig{Dir: dir, SegmentSize: 1 << 20, IO: io, Workers: 4})
	if io == IOUring && errors.Is(err, uring.ErrUnsupported) {
		t.Skipf("io_uring unavailable here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func pattern(n int, seed uint64) []byte {
	b := AlignedBuffer(n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestFileDeviceRoundTripAcrossSegments(t *testing.T) {
	for _, io := range engines {
		t.Run(io, func(t *testing.T) {
			dir := t.TempDir()
			d := openTestFile(t, dir, io)
			if d.Engine() != io {
				t.Fatalf("engine %s, asked for %s", d.Engine(), io)
			}
			// 64 KiB pages into three segments of 1 MiB, from 4 goroutines.
			const page = 64 << 10
			var wg sync.WaitGroup
			for g := 0; g < 4; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < 48; i += 4 {
						w := newWaiter()
						d.WriteAsync(pattern(page, uint64(i)), uint64(i)*page, w)
						if n, err := w.wait(); n != page || err != nil {
							t.Errorf("write page %d: %d, %v", i, n, err)
						}
					}
				}()
			}
			wg.Wait()
			for i := 0; i < 48; i++ {
				got := AlignedBuffer(page)
				w := newWaiter()
				d.ReadAsync(got, uint64(i)*page, w)
				if n, err := w.wait(); n != page || err != nil || !bytes.Equal(got, pattern(page, uint64(i))) {
					t.Fatalf("read page %d: %d, %v, equal %v", i, n, err, bytes.Equal(got, pattern(page, uint64(i))))
				}
			}
			// A read across the boundary of segments 0 and 1 is split and joined.
			got := AlignedBuffer(8 << 10)
			w := newWaiter()
			d.ReadAsync(got, 1<<20-4096, w)
			want := append(pattern(page, 15)[page-4096:], pattern(page, 16)[:4096]...)
			if n, err := w.wait(); n != len(got) || err != nil || !bytes.Equal(got, want) {
				t.Fatalf("cross-segment read: %d, %v, equal %v", n, err, bytes.Equal(got, want))
			}
			// A segment never written reads as zeros.
			w = newWaiter()
			d.ReadAsync(got, 10<<20, w)
			if n, err := w.wait(); n != len(got) || err != nil || !bytes.Equal(got, make([]byte, len(got))) {
				t.Fatalf("unwritten read: %d, %v", n, err)
			}
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "log.*"))
			if len(segs) != 3 {
				t.Fatalf("segment files %v, want 3", segs)
			}
			if fi, err := os.Stat(segs[0]); err != nil || fi.Size() != 1<<20 {
				t.Fatalf("segment %s: %v, %v; want preallocated to 1 MiB", segs[0], fi, err)
			}
			// Reopened, the device finds its segments and their data.
			d = openTestFile(t, dir, io)
			defer d.Close()
			got = AlignedBuffer(page)
			w = newWaiter()
			d.ReadAsync(got, 33*page, w)
			if n, err := w.wait(); n != page || err != nil || !bytes.Equal(got, pattern(page, 33)) {
				t.Fatalf("read after reopen: %d, %v", n, err)
			}
		})
	}
}

func TestFileDeviceRejectsBadIO(t *testing.T) {
	for _, io := range engines {
		t.Run(io, func(t *testing.T) {
			d := openTestFile(t, t.TempDir(), io)
			buf := AlignedBuffer(8192)
			for _, c := range []struct {
				name string
				p    []byte
				off  uint64
			}{
				{"offset", buf[:4096], 100},
				{"length", buf[:100], 0},
				{"address", buf[1:4097], 0},
			} {
				w := newWaiter()
				d.WriteAsync(c.p, c.off, w)
				if _, err := w.wait(); !errors.Is(err, ErrMisaligned) {
					t.Errorf("misaligned %s write: %v", c.name, err)
				}
				d.ReadAsync(c.p, c.off, w)
				if _, err := w.wait(); !errors.Is(err, ErrMisaligned) {
					t.Errorf("misaligned %s read: %v", c.name, err)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			w := newWaiter()
			d.WriteAsync(buf[:4096], 0, w)
			if _, err := w.wait(); !errors.Is(err, ErrClosed) {
				t.Errorf("write after close: %v", err)
			}
			if err := d.Sync(); !errors.Is(err, ErrClosed) {
				t.Errorf("sync after close: %v", err)
			}
		})
	}
}

func TestFileConfigErrors(t *testing.T) {
	for _, c := range []FileConfig{
		{},
		{Dir: t.TempDir(), SegmentSize: 3 << 20},
		{Dir: t.TempDir(), SegmentSize: 4096},
		{Dir: t.TempDir(), IO: "carrier-pigeon"},
	} {
		if d, err := OpenFile(c); err == nil {
			d.Close()
			t.Errorf("OpenFile(%+v) succeeded", c)
		}
	}
}

func TestAlignedBuffer(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 10000, 1 << 20} {
		b := AlignedBuffer(n)
		if len(b) != n || cap(b) != n || (n > 0 && addrOf(b)%SectorSize != 0) {
			t.Fatalf("AlignedBuffer(%d): len %d cap %d addr %#x", n, len(b), cap(b), addrOf(b))
		}
	}
}

// TestTruncatedSegmentReadsAsZeros: a read that reaches past the end of a
// truncated segment file returns its whole length, the bytes the file still
// has, then zeros (the Device contract for bytes never written), through
// either engine, whether the file ends on a sector boundary or not.
func TestTruncatedSegmentReadsAsZeros(t *testing.T) {
	for _, io := range engines {
		for _, cut := range []int64{3 * SectorSize, 3*SectorSize + 1000, 0} {
			t.Run(fmt.Sprintf("%s/%d", io, cut), func(t *testing.T) {
				dir := t.TempDir()
				d := openTestFile(t, dir, io)
				const size = 8 * SectorSize
				want := pattern(size, 7)
				w := newWaiter()
				d.WriteAsync(want, 0, w)
				if _, err := w.wait(); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(filepath.Join(dir, segmentName(0)), cut); err != nil {
					t.Fatal(err)
				}
				got := pattern(size, 9) // not zeros, so that zero-filling shows
				r := newWaiter()
				d.ReadAsync(got, 0, r)
				n, err := r.wait()
				if err != nil || n != size {
					t.Fatalf("read %d of %d: %v", n, size, err)
				}
				if !bytes.Equal(got[:cut], want[:cut]) || !bytes.Equal(got[cut:], make([]byte, size-cut)) {
					t.Fatal("want the file's bytes, then zeros")
				}
				d.Close()
			})
		}
	}
}
