//go:build linux

package uring

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	benchFileSize = 64 << 20
	benchBlocks   = benchFileSize / blockSize
)

// benchFile writes a 64 MiB file through O_DIRECT and returns its fd, open
// O_DIRECT, so that reads go to the device rather than the page cache.
func benchFile(b *testing.B) int {
	fd, _ := openFile(b, true)
	chunk := alignedBuf(b, 1<<20)
	for off := 0; off < benchFileSize; off += len(chunk) {
		fillBlock(chunk, off)
		if _, err := unix.Pwrite(fd, chunk, int64(off)); err != nil {
			b.Fatal(err)
		}
	}
	if err := unix.Fdatasync(fd); err != nil {
		b.Fatal(err)
	}
	return fd
}

// nextOffset steps a xorshift generator and returns a random block offset.
func nextOffset(state *uint64) int64 {
	x := *state
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*state = x
	return int64(x%benchBlocks) * blockSize
}

// benchReader keeps one read outstanding: each completion issues the next
// read, from the reaper goroutine, until the shared budget runs out.
type benchReader struct {
	r      *Ring
	fd     int
	buf    []byte
	rng    uint64
	budget *atomic.Int64
	wg     *sync.WaitGroup
	err    error
}

func (br *benchReader) IODone(n int, err error) {
	if err == nil && n != len(br.buf) {
		err = fmt.Errorf("short read: %d", n)
	}
	if err != nil && br.err == nil {
		br.err = err
	}
	br.next()
}

func (br *benchReader) next() {
	if br.budget.Add(-1) < 0 {
		br.wg.Done()
		return
	}
	br.r.Read(br.fd, br.buf, nextOffset(&br.rng), br)
}

// BenchmarkRead4K measures random 4 KiB O_DIRECT reads through the ring at
// a fixed queue depth.
func BenchmarkRead4K(b *testing.B) {
	fd := benchFile(b)
	for _, qd := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("qd=%d", qd), func(b *testing.B) {
			r := openRing(b, 64)
			bufs := alignedBuf(b, qd*blockSize)
			var budget atomic.Int64
			var wg sync.WaitGroup
			readers := make([]benchReader, qd)
			budget.Store(int64(b.N))
			wg.Add(qd)
			b.ResetTimer()
			for i := range readers {
				readers[i] = benchReader{r: r, fd: fd, buf: bufs[i*blockSize : (i+1)*blockSize],
					rng: uint64(i)*0x9e3779b97f4a7c15 + 1, budget: &budget, wg: &wg}
				readers[i].next()
			}
			wg.Wait()
			b.StopTimer()
			for i := range readers {
				if readers[i].err != nil {
					b.Fatal(readers[i].err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "IOPS")
		})
	}
}

// BenchmarkPread4K is the baseline: the same reads with unix.Pread from 32
// goroutines, each blocking a thread.
func BenchmarkPread4K(b *testing.B) {
	fd := benchFile(b)
	const goroutines = 32
	b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
		bufs := alignedBuf(b, goroutines*blockSize)
		var budget atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, goroutines)
		budget.Store(int64(b.N))
		b.ResetTimer()
		for g := range goroutines {
			wg.Go(func() {
				buf := bufs[g*blockSize : (g+1)*blockSize]
				rng := uint64(g)*0x9e3779b97f4a7c15 + 1
				for budget.Add(-1) >= 0 {
					if n, err := unix.Pread(fd, buf, nextOffset(&rng)); err != nil || n != blockSize {
						errs[g] = fmt.Errorf("pread: %d, %v", n, err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "IOPS")
	})
}
