//go:build linux

package uring

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const blockSize = 4096

// openRing opens a ring or skips the test where io_uring is unavailable.
func openRing(tb testing.TB, entries uint32) *Ring {
	tb.Helper()
	r, err := Open(entries)
	if errors.Is(err, ErrUnsupported) {
		tb.Skipf("io_uring unavailable: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// openFile creates a file in a fresh temporary directory. With direct it
// opens it O_DIRECT, skipping the test if the filesystem refuses that.
func openFile(tb testing.TB, direct bool) (fd int, path string) {
	tb.Helper()
	path = filepath.Join(tb.TempDir(), "data")
	flags := unix.O_RDWR | unix.O_CREAT | unix.O_CLOEXEC
	if direct {
		flags |= unix.O_DIRECT
	}
	fd, err := unix.Open(path, flags, 0o600)
	if direct && errors.Is(err, unix.EINVAL) {
		tb.Skipf("O_DIRECT unsupported on %s: %v", filepath.Dir(path), err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return fd, path
}

// alignedBuf returns size bytes of page-aligned anonymous memory, as
// O_DIRECT wants.
func alignedBuf(tb testing.TB, size int) []byte {
	tb.Helper()
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

// ioResult is a Completion that records its outcome and counts calls.
type ioResult struct {
	n     int
	err   error
	calls atomic.Int32
	wg    *sync.WaitGroup
}

func (o *ioResult) IODone(n int, err error) {
	o.n, o.err = n, err
	o.calls.Add(1)
	if o.wg != nil {
		o.wg.Done()
	}
}

// do runs one I/O through the ring and waits for it.
func do(r *Ring, write bool, fd int, p []byte, off int64) (int, error) {
	var wg sync.WaitGroup
	o := &ioResult{wg: &wg}
	wg.Add(1)
	if write {
		r.Write(fd, p, off, o)
	} else {
		r.Read(fd, p, off, o)
	}
	wg.Wait()
	return o.n, o.err
}

// fillBlock writes block b's deterministic content into p.
func fillBlock(p []byte, b int) {
	rng := rand.New(rand.NewPCG(uint64(b), 42))
	for i := 0; i < len(p); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
}

var modes = []struct {
	name   string
	direct bool
}{{"buffered", false}, {"direct", true}}

func TestABILayout(t *testing.T) {
	checks := []struct {
		name      string
		got, want uintptr
	}{
		{"sqe size", unsafe.Sizeof(sqe{}), 64},
		{"sqe.fd", unsafe.Offsetof(sqe{}.fd), 4},
		{"sqe.off", unsafe.Offsetof(sqe{}.off), 8},
		{"sqe.addr", unsafe.Offsetof(sqe{}.addr), 16},
		{"sqe.len", unsafe.Offsetof(sqe{}.len), 24},
		{"sqe.userData", unsafe.Offsetof(sqe{}.userData), 32},
		{"sqe.addr3", unsafe.Offsetof(sqe{}.addr3), 48},
		{"cqe size", unsafe.Sizeof(cqe{}), 16},
		{"cqe.res", unsafe.Offsetof(cqe{}.res), 8},
		{"params size", unsafe.Sizeof(params{}), 120},
		{"params.features", unsafe.Offsetof(params{}.features), 20},
		{"params.sqOff", unsafe.Offsetof(params{}.sqOff), 40},
		{"params.cqOff", unsafe.Offsetof(params{}.cqOff), 80},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestOpenRejectsBadEntries(t *testing.T) {
	for _, n := range []uint32{0, 3, 100, 1 << 16} {
		r, err := Open(n)
		if err == nil {
			r.Close()
			t.Fatalf("Open(%d) succeeded", n)
		}
		if errors.Is(err, ErrUnsupported) {
			t.Fatalf("Open(%d): %v wraps ErrUnsupported", n, err)
		}
	}
}

// TestConcurrentWriteRead writes blocks at random offsets from several
// goroutines, many more than the ring has entries, and reads them back.
func TestConcurrentWriteRead(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { testConcurrentWriteRead(t, m.direct) })
	}
}

func testConcurrentWriteRead(t *testing.T, direct bool) {
	const (
		entries    = 32
		blocks     = 1024
		goroutines = 8
	)
	r := openRing(t, entries)
	fd, path := openFile(t, direct)
	src, dst := make([]byte, blocks*blockSize), make([]byte, blocks*blockSize)
	if direct {
		src, dst = alignedBuf(t, len(src)), alignedBuf(t, len(dst))
	}
	for b := range blocks {
		fillBlock(src[b*blockSize:(b+1)*blockSize], b)
	}
	order := rand.New(rand.NewPCG(1, 2)).Perm(blocks)

	stopSampling := sampleInFlight(t, r, entries)
	runBlocks(t, r, true, fd, src, order, goroutines)
	order = rand.New(rand.NewPCG(3, 4)).Perm(blocks)
	runBlocks(t, r, false, fd, dst, order, goroutines)
	stopSampling()

	if !bytes.Equal(src, dst) {
		t.Fatal("blocks read through the ring differ from those written")
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, src) {
		t.Fatal("os.ReadFile differs from the blocks written")
	}
	if n := r.InFlight(); n != 0 {
		t.Fatalf("InFlight = %d after every I/O completed", n)
	}
}

// runBlocks issues one I/O per block of buf, split over goroutines, each
// goroutine taking the blocks of order at its stride, without waiting in
// between, then waits for all and checks every outcome.
func runBlocks(t *testing.T, r *Ring, write bool, fd int, buf []byte, order []int, goroutines int) {
	t.Helper()
	var wg, issuers sync.WaitGroup
	results := make([]ioResult, len(order))
	wg.Add(len(order))
	for g := range goroutines {
		issuers.Go(func() {
			for i := g; i < len(order); i += goroutines {
				b := order[i]
				results[b].wg = &wg
				p := buf[b*blockSize : (b+1)*blockSize]
				if write {
					r.Write(fd, p, int64(b)*blockSize, &results[b])
				} else {
					r.Read(fd, p, int64(b)*blockSize, &results[b])
				}
			}
		})
	}
	issuers.Wait()
	wg.Wait()
	for b := range results {
		o := &results[b]
		if o.calls.Load() != 1 || o.err != nil || o.n != blockSize {
			t.Fatalf("block %d: calls %d, n %d, err %v", b, o.calls.Load(), o.n, o.err)
		}
	}
}

// sampleInFlight checks, until the returned function is called, that the
// ring never has more than limit I/Os in flight.
func sampleInFlight(t *testing.T, r *Ring, limit int) (stop func()) {
	done := make(chan struct{})
	var peak atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if n := int64(r.InFlight()); n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(10 * time.Microsecond)
		}
	})
	return func() {
		close(done)
		wg.Wait()
		if p := peak.Load(); p > int64(limit) {
			t.Errorf("InFlight peaked at %d, above %d entries", p, limit)
		}
		t.Logf("InFlight peak %d of %d", peak.Load(), limit)
	}
}

func TestErrors(t *testing.T) {
	r := openRing(t, 8)
	fd, _ := openFile(t, false)
	buf := make([]byte, 2*blockSize)
	fillBlock(buf[:blockSize], 0)
	if n, err := do(r, true, fd, buf[:blockSize], 0); n != blockSize || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}

	closedFd, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(closedFd)
	for _, bad := range []int{-1, closedFd} {
		if n, err := do(r, false, bad, buf, 0); n != 0 || !errors.Is(err, unix.EBADF) {
			t.Errorf("read from fd %d: %d, %v; want EBADF", bad, n, err)
		}
	}

	if n, err := do(r, false, fd, buf, 0); n != blockSize || err != nil {
		t.Errorf("read across EOF: %d, %v; want short read of %d", n, err, blockSize)
	}
	if n, err := do(r, false, fd, buf, 1<<20); n != 0 || err != nil {
		t.Errorf("read past EOF: %d, %v; want 0, nil", n, err)
	}
	if n, err := do(r, false, fd, buf, -1); n != 0 || !errors.Is(err, unix.EINVAL) {
		t.Errorf("read at -1: %d, %v; want EINVAL", n, err)
	}
	if n, err := do(r, false, fd, nil, 0); n != 0 || err != nil {
		t.Errorf("empty read: %d, %v", n, err)
	}

	rdonly, err := unix.Open(filepath.Join(t.TempDir(), "ro"), unix.O_RDONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rdonly)
	if n, err := do(r, true, rdonly, buf, 0); n != 0 || !errors.Is(err, unix.EBADF) {
		t.Errorf("write to read-only fd: %d, %v; want EBADF", n, err)
	}
}

func TestDirectMisaligned(t *testing.T) {
	r := openRing(t, 8)
	fd, _ := openFile(t, true)
	buf := alignedBuf(t, 2*blockSize)
	if n, err := do(r, true, fd, buf[:blockSize], 0); n != blockSize || err != nil {
		t.Fatalf("aligned write: %d, %v", n, err)
	}
	if n, err := do(r, false, fd, buf[1:blockSize+1], 0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("misaligned O_DIRECT read: %d, %v; want EINVAL", n, err)
	}
}

// TestCloseWithInFlight closes the ring while goroutines keep it saturated.
// Every I/O must complete exactly once, and none may succeed after Close
// has returned.
func TestCloseWithInFlight(t *testing.T) {
	const (
		goroutines = 4
		perG       = 500
		size       = 64 << 10
	)
	r := openRing(t, 8)
	fd, _ := openFile(t, false)
	if err := unix.Ftruncate(fd, 16<<20); err != nil {
		t.Fatal(err)
	}
	results := make([]ioResult, goroutines*perG)
	var completed atomic.Int64
	counted := make([]countingResult, len(results))
	var issuers sync.WaitGroup
	for g := range goroutines {
		issuers.Go(func() {
			buf := make([]byte, size)
			for i := g * perG; i < (g+1)*perG; i++ {
				counted[i] = countingResult{ioResult: &results[i], completed: &completed}
				r.Read(fd, buf, int64(i%256)*size, &counted[i])
			}
		})
	}
	for completed.Load() < 100 {
		time.Sleep(100 * time.Microsecond)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	succeededAtClose := countSucceeded(results)
	if n := r.InFlight(); n != 0 {
		t.Errorf("InFlight = %d after Close", n)
	}
	issuers.Wait()

	var closed int
	for i := range results {
		o := &results[i]
		if c := o.calls.Load(); c != 1 {
			t.Fatalf("I/O %d: IODone ran %d times", i, c)
		}
		switch {
		case errors.Is(o.err, ErrClosed):
			closed++
		case o.err != nil:
			t.Fatalf("I/O %d: %v", i, o.err)
		}
	}
	if n := countSucceeded(results); n != succeededAtClose {
		t.Errorf("%d I/Os succeeded after Close returned", n-succeededAtClose)
	}
	t.Logf("%d succeeded, %d ErrClosed", succeededAtClose, closed)

	var after ioResult
	r.Read(fd, make([]byte, 8), 0, &after)
	if after.calls.Load() != 1 || !errors.Is(after.err, ErrClosed) {
		t.Errorf("Read after Close: calls %d, err %v; want ErrClosed at once", after.calls.Load(), after.err)
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v; want ErrClosed", err)
	}
}

// countingResult counts completions into a shared counter as well.
type countingResult struct {
	*ioResult
	completed *atomic.Int64
}

func (c *countingResult) IODone(n int, err error) {
	c.ioResult.IODone(n, err)
	c.completed.Add(1)
}

func countSucceeded(results []ioResult) int {
	n := 0
	for i := range results {
		if results[i].calls.Load() == 1 && results[i].err == nil {
			n++
		}
	}
	return n
}

// chain is a Completion that issues its next read from IODone, on the
// reaper goroutine, until it has done steps reads.
type chain struct {
	r     *Ring
	fd    int
	buf   []byte
	steps int
	err   error
	wg    *sync.WaitGroup
}

func (c *chain) IODone(n int, err error) {
	if err == nil && n != len(c.buf) {
		err = errors.New("short read")
	}
	if err != nil && c.err == nil {
		c.err = err
	}
	c.steps--
	if c.steps == 0 {
		c.wg.Done()
		return
	}
	c.r.Read(c.fd, c.buf, int64(c.steps)*blockSize, c)
}

// TestCompletionIssuesIO saturates a small ring from other goroutines while
// completions issue follow-up reads: the reaper must not deadlock waiting
// for a slot only it can free.
func TestCompletionIssuesIO(t *testing.T) {
	const (
		chains = 16
		steps  = 100
		floods = 4
	)
	r := openRing(t, 4)
	fd, _ := openFile(t, false)
	if err := unix.Ftruncate(fd, 1<<20); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	cs := make([]chain, chains)
	wg.Add(chains)
	for i := range cs {
		cs[i] = chain{r: r, fd: fd, buf: make([]byte, blockSize), steps: steps, wg: &wg}
		r.Read(fd, cs[i].buf, 0, &cs[i])
	}
	for range floods {
		wg.Go(func() {
			buf := make([]byte, blockSize)
			for i := range 200 {
				if _, err := do(r, false, fd, buf, int64(i)*blockSize); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range cs {
		if cs[i].err != nil {
			t.Errorf("chain %d: %v", i, cs[i].err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("reaper backlog capacity after the run: %d", cap(r.backlog))
}

// waiter is a reusable Completion for the allocation test.
type waiter struct {
	n   int
	err error
	ch  chan struct{}
}

func (w *waiter) IODone(n int, err error) {
	w.n, w.err = n, err
	w.ch <- struct{}{}
}

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := openRing(t, 8)
	fd, _ := openFile(t, false)
	buf := make([]byte, blockSize)
	w := &waiter{ch: make(chan struct{}, 1)}
	for _, write := range []bool{true, false} {
		allocs := testing.AllocsPerRun(1000, func() {
			if write {
				r.Write(fd, buf, 0, w)
			} else {
				r.Read(fd, buf, 0, w)
			}
			<-w.ch
			if w.err != nil || w.n != blockSize {
				t.Fatalf("I/O: %d, %v", w.n, w.err)
			}
		})
		if allocs != 0 {
			t.Errorf("write=%v: %v allocations per I/O, want 0", write, allocs)
		}
	}
}

// TestSaturatedRingNeverBlocks: with every slot taken, Read returns at once
// (the request waits in the backlog) and every request still completes once,
// with the right data.
func TestSaturatedRingNeverBlocks(t *testing.T) {
	r := openRing(t, 4)
	fd, _ := openFile(t, true)
	const blocks = 256
	buf := alignedBuf(t, blocks*4096)
	for b := 0; b < blocks; b++ {
		fillBlock(buf[b*4096:(b+1)*4096], b)
	}
	if n, err := unix.Pwrite(fd, buf, 0); n != len(buf) || err != nil {
		t.Fatalf("pwrite: %d %v", n, err)
	}
	clear(buf)
	var wg sync.WaitGroup
	results := make([]ioResult, blocks)
	wg.Add(blocks)
	start := time.Now()
	for b := range results {
		results[b].wg = &wg
		r.Read(fd, buf[b*4096:(b+1)*4096], int64(b)*4096, &results[b])
	}
	queued := time.Since(start)
	wg.Wait()
	want := make([]byte, 4096)
	for b := range results {
		fillBlock(want, b)
		if results[b].calls.Load() != 1 || results[b].n != 4096 || results[b].err != nil ||
			!bytes.Equal(buf[b*4096:(b+1)*4096], want) {
			t.Fatalf("block %d: %d calls, n %d, err %v", b, results[b].calls.Load(), results[b].n, results[b].err)
		}
	}
	t.Logf("queued %d reads on a 4-entry ring in %v, all done in %v", blocks, queued, time.Since(start))
}

// TestThreads: an open ring reports its submitter's and reaper's threads,
// two threads of this process, and none once closed.
func TestThreads(t *testing.T) {
	r := openRing(t, 8)
	tids := r.Threads()
	if len(tids) != 2 || tids[0] == tids[1] {
		t.Fatalf("threads %v, want the submitter's and the reaper's", tids)
	}
	for _, tid := range tids {
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err != nil {
			t.Errorf("thread %d is not this process's: %v", tid, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if tids := r.Threads(); len(tids) != 0 {
		t.Errorf("a closed ring reports threads %v", tids)
	}
}
