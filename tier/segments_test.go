package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// readWait is an ssd.Callback a test waits on.
type readWait chan error

func (w readWait) IODone(n int, err error) { w <- err }

func readLog(dev ssd.Device, p []byte, off uint64) error {
	w := make(readWait, 1)
	dev.ReadAsync(p, off, w)
	return <-w
}

// TestSegmentsUploadAndRead fills a log device, uploads two of its three
// segments and reads the log back through the tier at random offsets,
// across segment ends and into the missing one.
func TestSegmentsUploadAndRead(t *testing.T) {
	ctx := context.Background()
	const size = MinSegmentSize
	for kind, s := range openTest(t) {
		t.Run(kind, func(t *testing.T) {
			dev, err := ssd.OpenFile(ssd.FileConfig{Dir: t.TempDir(), SegmentSize: 1 << 20, IO: ssd.IOPread})
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			log := make([]byte, 3*size)
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range log {
				log[i] = byte(rng.Uint32())
			}
			page := ssd.AlignedBuffer(size)
			for off := uint64(0); off < 3*size; off += size {
				copy(page, log[off:])
				if err := hlog.WritePage(dev, page, off); err != nil {
					t.Fatal(err)
				}
			}
			segs, err := NewSegments(s, "0123abcd", size)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []uint64{0, 1} {
				if err := segs.Upload(ctx, dev, n, 0); err != nil {
					t.Fatal(err)
				}
			}
			if ns, err := segs.List(ctx); err != nil || !reflect.DeepEqual(ns, []uint64{0, 1}) {
				t.Fatalf("segments %v, %v; want [0 1]", ns, err)
			}
			r := segs.Reader(4)
			defer r.Close()
			br := segs.BlockReader(4, 1) // one block kept: every segment change reads again
			defer br.Close()
			for _, rd := range []*Reader{r, br} {
				for range 200 {
					off := rng.Uint64N(2 * size)
					p := make([]byte, 1+rng.IntN(8192))
					if err := readLog(rd, p, off); err != nil {
						t.Fatalf("read %d at %d: %v", len(p), off, err)
					}
					want := make([]byte, len(p))
					copy(want, log[off:min(off+uint64(len(p)), 2*size)]) // segment 2 reads as zeros
					if !bytes.Equal(p, want) {
						t.Fatalf("read %d at %d: wrong bytes", len(p), off)
					}
				}
				if err := readLog(rd, make([]byte, 8), 2*size+8); !errors.Is(err, ErrNotFound) {
					t.Fatalf("a read in a missing segment: %v, want ErrNotFound", err)
				}
			}
			w := make(readWait, 1)
			r.WriteAsync(make([]byte, 8), 0, w)
			if err := <-w; !errors.Is(err, ErrReadOnly) {
				t.Fatalf("a write: %v, want ErrReadOnly", err)
			}
			// Bytes below from go up as zeros (a log's released start).
			if err := segs.Upload(ctx, dev, 1, size+8192); err != nil {
				t.Fatal(err)
			}
			// A new Reader: r may keep the first upload's file open, whose
			// bytes below from are the log's (the package invariant: no
			// reader reads below the begin it was given).
			p := make([]byte, 8192+16)
			fresh := segs.Reader(1)
			err = readLog(fresh, p, size)
			fresh.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p[:8192], make([]byte, 8192)) || !bytes.Equal(p[8192:], log[size+8192:size+8192+16]) {
				t.Fatal("an upload from an offset: wrong bytes")
			}
			if err := segs.Upload(ctx, dev, 1, 100); err == nil {
				t.Fatal("an upload from an unaligned offset was accepted")
			}
			if err := segs.Delete(ctx, 0); err != nil {
				t.Fatal(err)
			}
			// A new Reader finds the segment gone (r may keep its file
			// open: openFiles).
			fresh = segs.Reader(1)
			if err := readLog(fresh, make([]byte, 8), 8); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a read of a deleted segment: %v, want ErrNotFound", err)
			}
			fresh.Close()
			r.Close()
			if err := readLog(r, make([]byte, 8), size); !errors.Is(err, ssd.ErrClosed) {
				t.Fatalf("a read after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestNewSegmentsRefuses(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   string
		size uint64
	}{{"ok", 3 << 20}, {"ok", 1 << 19}, {"", 1 << 20}, {"a/b", 1 << 20}, {"..", 1 << 20}} {
		if _, err := NewSegments(d, c.id, c.size); err == nil {
			t.Errorf("NewSegments(%q, %d) succeeded", c.id, c.size)
		}
	}
}

// inline is an ssd.Callback that records whether it ran and how.
type inline struct {
	ran bool
	n   int
	err error
}

func (c *inline) IODone(n int, err error) { c.ran, c.n, c.err = true, n, err }

// TestBlockReaderAnswersKeptBlocksAtOnce: a BlockReader's read of bytes in
// blocks it keeps completes before ReadAsync returns, with the right
// bytes, and Kept returns them in place; one across into a block not kept
// reads it, and one after Close fails.
func TestBlockReaderAnswersKeptBlocksAtOnce(t *testing.T) {
	ctx := context.Background()
	const size = 2 * BlockSize // two blocks a segment
	s, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := make([]byte, size) // segment 0, put as the object it is (Upload: TestSegmentsUploadAndRead)
	for i := range log {
		log[i] = byte(i * 7)
	}
	segs, err := NewSegments(s, "0123abcd", size)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, segs.Name(0), bytes.NewReader(log), size); err != nil {
		t.Fatal(err)
	}
	br := segs.BlockReader(2, 4)
	defer br.Close()
	if err := readLog(br, make([]byte, 16), 100); err != nil { // keeps block 0
		t.Fatal(err)
	}
	p := make([]byte, 300)
	var c inline
	br.ReadAsync(p, 5000, &c)
	if !c.ran || c.err != nil || c.n != len(p) || !bytes.Equal(p, log[5000:5300]) {
		t.Fatalf("a read in a kept block: ran at once %v, %d bytes, %v, right bytes %v", c.ran, c.n, c.err, bytes.Equal(p, log[5000:5300]))
	}
	if b := br.Kept(5000); !bytes.Equal(b, log[5000:BlockSize]) {
		t.Fatalf("Kept in a kept block: %d bytes, right %v; want the rest of the block", len(b), bytes.Equal(b, log[5000:BlockSize]))
	}
	if b := br.Kept(BlockSize + 5); b != nil {
		t.Fatalf("Kept in a block not read: %d bytes", len(b))
	}
	if r := segs.Reader(1); r.Kept(5000) != nil {
		t.Fatal("a plain Reader's Kept returned bytes")
	}
	across := BlockSize - 100 // into block 1, not kept yet
	if err := readLog(br, p, uint64(across)); err != nil || !bytes.Equal(p, log[across:across+300]) {
		t.Fatalf("a read across into a block not kept: %v, right bytes %v", err, bytes.Equal(p, log[across:across+300]))
	}
	br.Close()
	if br.Kept(5000) != nil {
		t.Fatal("Kept after Close returned bytes")
	}
	c = inline{}
	br.ReadAsync(p, 5000, &c)
	if !c.ran || !errors.Is(c.err, ssd.ErrClosed) {
		t.Fatalf("a read of a kept block after Close: ran %v, %v; want ErrClosed", c.ran, c.err)
	}
}

// segmentFDs counts this process's descriptors open on files under dir.
func segmentFDs(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd") // fleetkv runs on Linux only
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(p, dir+"/") {
			n++
		}
	}
	return n
}

// TestReaderKeepsSegmentFilesOpen: a Reader of a directory store keeps
// the files of the segments it read open, at most its cap of them between
// reads, reads right through concurrent reads that make it let files go,
// and closes them all at Close.
func TestReaderKeepsSegmentFilesOpen(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	const size, segments = MinSegmentSize, 3
	segs, err := NewSegments(d, "0123abcd", size)
	if err != nil {
		t.Fatal(err)
	}
	log := make([]byte, segments*size)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range log {
		log[i] = byte(rng.Uint32())
	}
	for n := range uint64(segments) {
		if err := d.Put(ctx, segs.Name(n), bytes.NewReader(log[n*size:(n+1)*size]), size); err != nil {
			t.Fatal(err)
		}
	}
	r := segs.Reader(8)
	if r.files == nil {
		t.Fatal("a Reader of a directory store keeps no files")
	}
	r.files.max = 2 // fewer than the segments: reads make it let files go
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(7, uint64(w)))
			for range 300 {
				off := rng.Uint64N(segments*size - 4096)
				p := make([]byte, 1+rng.IntN(4096))
				if err := readLog(r, p, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(p, log[off:off+uint64(len(p))]) {
					errs <- fmt.Errorf("read %d at %d: wrong bytes", len(p), off)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := segmentFDs(t, root); n < 1 || n > 2 {
		t.Fatalf("%d segment files open between reads; want 1 or 2 (kept, at most the cap)", n)
	}
	r.Close()
	if n := segmentFDs(t, root); n != 0 {
		t.Fatalf("%d segment files open after Close", n)
	}
}
