package ssd

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// releaseDevices are the devices Release is checked on, each with the
// unit it frees (a file device frees whole segments).
func releaseDevices(t *testing.T) map[string]func() Device {
	devs := map[string]func() Device{
		"mem":   func() Device { return NewMemDevice() },
		"crash": func() Device { return NewCrashDevice(SectorSize) },
	}
	for _, io := range engines {
		devs["file-"+io] = func() Device { return openTestFile(t, t.TempDir(), io) }
	}
	return devs
}

// TestReleaseFreesThePrefix writes 3 MiB, releases below 2 MiB + 4 KiB,
// and checks that reads below fail with ErrReleased, reads above still
// return what was written, a lower Release changes nothing, and a file
// device deleted exactly the segment files wholly below.
func TestReleaseFreesThePrefix(t *testing.T) {
	const mib = 1 << 20
	for name, open := range releaseDevices(t) {
		t.Run(name, func(t *testing.T) {
			d := open()
			defer d.Close()
			data := pattern(3*mib, 7)
			mustWrite(t, d, data, 0)
			cut := uint64(2*mib + SectorSize)
			if err := d.Release(cut); err != nil {
				t.Fatal(err)
			}
			if err := d.Release(mib); err != nil {
				t.Fatal(err)
			}
			for _, off := range []uint64{0, mib, 2 * mib} {
				if _, err := alignedRead(d, off); !errors.Is(err, ErrReleased) {
					t.Errorf("read at %d after Release(%d): %v, want ErrReleased", off, cut, err)
				}
			}
			for _, off := range []uint64{cut, 3*mib - SectorSize} {
				if got, err := alignedRead(d, off); err != nil || !bytes.Equal(got, data[off:off+SectorSize]) {
					t.Errorf("read at %d after Release(%d): %v, or the bytes differ", off, cut, err)
				}
			}
			fd, ok := d.(*FileDevice)
			if !ok {
				return
			}
			for i, want := range []bool{false, false, true} {
				_, err := os.Stat(filepath.Join(fd.Dir(), segmentName(uint64(i))))
				if (err == nil) != want {
					t.Errorf("segment %d exists: %v, want %v", i, err == nil, want)
				}
			}
		})
	}
}

// TestReleaseWaitsForReadsInFlight releases a segment while reads of it
// are queued behind a busy pread pool: they complete with the segment's
// bytes (its descriptor stays open for them), later reads fail.
func TestReleaseWaitsForReadsInFlight(t *testing.T) {
	const mib = 1 << 20
	d := openTestFile(t, t.TempDir(), IOPread)
	defer d.Close()
	data := pattern(2*mib, 9)
	mustWrite(t, d, data, 0)
	const n = 64
	ws := make([]*waiter, n)
	bufs := make([][]byte, n)
	for i := range ws {
		ws[i], bufs[i] = newWaiter(), AlignedBuffer(16*SectorSize)
		d.ReadAsync(bufs[i], uint64(i%16)*16*SectorSize, ws[i])
	}
	if err := d.Release(mib); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		n, err := w.wait()
		off := uint64(i%16) * 16 * SectorSize
		if err != nil || n != len(bufs[i]) || !bytes.Equal(bufs[i], data[off:off+uint64(n)]) {
			t.Fatalf("read %d issued before Release: %d bytes, %v, equal %v", i, n, err,
				err == nil && bytes.Equal(bufs[i], data[off:off+uint64(n)]))
		}
	}
	if _, err := alignedRead(d, 0); !errors.Is(err, ErrReleased) {
		t.Fatalf("read after Release: %v", err)
	}
}

// alignedRead reads one sector at off into an aligned buffer and waits.
func alignedRead(d Device, off uint64) ([]byte, error) {
	p := AlignedBuffer(SectorSize)
	w := newWaiter()
	d.ReadAsync(p, off, w)
	n, err := w.wait()
	if err == nil && n != len(p) {
		err = errors.New("short read")
	}
	return p, err
}
