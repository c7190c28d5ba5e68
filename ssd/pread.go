package ssd

import (
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// reserveProcs raises GOMAXPROCS to leave n Ps for the device's goroutines on
// top of one per CPU. A goroutine in a blocking system call (pread, or
// io_uring_enter waiting for the device's queue) holds its P until the
// runtime's monitor takes it back, tens of microseconds to milliseconds
// later, and the event loops hold the other Ps for as long as they are
// busy; so with GOMAXPROCS at the CPU count the device goroutines and the
// loops wait for each other. Measured (BENCHMARKS.md): 4 M keys over a
// 256 MiB budget, one loop on one CPU, YCSB-C uniform through the pread
// pool at 12.5 K ops/s at GOMAXPROCS=1 against 68 K at 34; through io_uring,
// an in-memory probe beside a cold load at p99.9 12.9 ms at GOMAXPROCS=1
// against 6.2 ms at 4. Idle Ps cost nothing.
func reserveProcs(n int) {
	if want := runtime.NumCPU() + n; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
}

// preadEngine is the I/O engine for kernels without io_uring: a fixed pool
// of goroutines doing blocking pread/pwrite, taking requests from a queue.
// The pool size is the engine's queue depth. Submitting never blocks: the
// queue grows instead, bounded by the callers (the server bounds its
// pending operations), so a loop never waits for the device.
type preadEngine struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when reqs gains a request or closing is set
	reqs    []preadReq
	head    int
	closing bool
	wg      sync.WaitGroup
	busy    atomic.Int64 // requests submitted and not yet completed
}

type preadReq struct {
	write bool
	fd    int
	p     []byte
	off   int64
	cb    Callback
}

// newPreadEngine starts the workers, each with a P of its own (reserveProcs).
func newPreadEngine(workers int) *preadEngine {
	reserveProcs(workers)
	e := &preadEngine{}
	e.cond.L = &e.mu
	e.wg.Add(workers)
	for range workers {
		go e.work()
	}
	return e
}

func (e *preadEngine) name() string { return IOPread }

func (e *preadEngine) read(fd int, p []byte, off int64, cb Callback) {
	e.push(preadReq{fd: fd, p: p, off: off, cb: cb})
}

func (e *preadEngine) write(fd int, p []byte, off int64, cb Callback) {
	e.push(preadReq{write: true, fd: fd, p: p, off: off, cb: cb})
}

func (e *preadEngine) inFlight() int { return int(e.busy.Load()) }

func (e *preadEngine) push(r preadReq) {
	e.busy.Add(1)
	e.mu.Lock()
	e.reqs = append(e.reqs, r)
	e.mu.Unlock()
	e.cond.Signal()
}

// pop waits for the oldest request; false once closing and drained.
func (e *preadEngine) pop() (preadReq, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.head == len(e.reqs) && !e.closing {
		e.cond.Wait()
	}
	if e.head == len(e.reqs) {
		return preadReq{}, false
	}
	r := e.reqs[e.head]
	e.reqs[e.head] = preadReq{}
	if e.head++; e.head == len(e.reqs) {
		e.reqs, e.head = e.reqs[:0], 0
	}
	return r, true
}

func (e *preadEngine) work() {
	defer e.wg.Done()
	for {
		r, ok := e.pop()
		if !ok {
			return
		}
		n, err := transfer(r)
		e.busy.Add(-1)
		r.cb.IODone(n, err)
	}
}

// transfer runs one request to completion: a short transfer is continued
// (pwrite may stop early; pread stops at end of file, where the rest reads
// as zeros, as the Device contract says).
func transfer(r preadReq) (int, error) {
	done := 0
	for done < len(r.p) {
		var n int
		var err error
		if r.write {
			n, err = unix.Pwrite(r.fd, r.p[done:], r.off+int64(done))
		} else {
			n, err = unix.Pread(r.fd, r.p[done:], r.off+int64(done))
		}
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil:
			return done, err
		case n == 0 && !r.write:
			clear(r.p[done:])
			return len(r.p), nil
		case n == 0:
			return done, unix.EIO
		}
		done += n
	}
	return done, nil
}

// close lets the workers finish the queue and stop. Nothing may be
// submitted afterwards (the device checks closed first).
func (e *preadEngine) close() error {
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	e.cond.Broadcast()
	e.wg.Wait()
	return nil
}
