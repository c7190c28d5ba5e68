//go:build linux

package uring

// Invariant: the SQ tail and the SQEs are written only by a goroutine holding
// Ring.mu (submitters, and Close for its stop NOP). The kernel owns the SQ
// head and reads only SQEs in [head, tail).
//
// Invariant: an SQE at position pos is overwritten only after the kernel's SQ
// head has passed pos. Each unconsumed SQE belongs to a held or armed slot,
// and there are exactly SQ-entries slots, so tail-head never exceeds the SQ
// size (pushLocked waits out the moment the kernel has not yet published
// the head of a batch it is still submitting).
//
// Invariant: the CQ head is written only by the reaper goroutine. The kernel
// owns the CQ tail. The reaper publishes head+1 (store) before it acts on a
// CQE, having copied the CQE out.
//
// Invariant: at most len(slots) I/Os are armed, and the CQ has at least
// len(slots) entries (the kernel gives 2x the SQ size), so the CQ cannot
// overflow.
//
// Invariant (slot lifetime): a slot index is in exactly one place: the free
// channel; one goroutine that received it and has not yet armed it; the
// kernel (armed: slot.armed is true and an SQE with user_data == index is
// published); or the reaper, between consuming the slot's CQE and handing
// the index back (to the free channel or to the oldest backlog request). slot.c and
// slot.p are written only by the goroutine holding the slot, before the
// atomic store of slot.armed, and read and cleared only by the reaper after
// it loads slot.armed == true. The reaper releases the slot before it calls
// IODone, so a completion may issue new I/O.
//
// Invariant: the ring fd and its mappings outlive every use. Close sets
// closed under mu (after which no SQE is published), collects every slot
// (no I/O held or armed, so every SQE was consumed), waits for goroutines
// still between publishing an SQE and kicking the submitter (flushing),
// stops the submitter goroutine, stops the reaper with a NOP, and only then
// unmaps and closes.
//
// Memory ordering: Go's sync/atomic operations are sequentially consistent,
// which is at least the acquire (CQ tail, SQ head loads) and release (SQ tail,
// CQ head stores) ordering the io_uring protocol asks of user space. SQE
// contents are plain stores made before the SQ tail store; CQE contents are
// plain loads made after the CQ tail load.

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// iowqWorkers caps the ring's kernel worker threads.
const iowqWorkers = 4

// stopUserData marks the NOP with which Close stops the reaper. Slot
// indices are below maxEntries, so it never collides with one.
const stopUserData = math.MaxUint64

// slot is the Go-side state of one I/O the kernel may be working on.
type slot struct {
	c     Completion
	p     []byte // keeps the buffer reachable while the kernel uses it
	armed atomic.Bool
}

// request is one Read or Write on its way to a slot.
type request struct {
	op  uint8
	fd  int32
	p   []byte
	off int64
	c   Completion
}

// Ring is an io_uring instance for positional file I/O. All methods are safe
// for concurrent use.
type Ring struct {
	fd int

	// Mapped regions. cqRing is sqRing itself when the kernel maps both
	// rings at once (IORING_FEAT_SINGLE_MMAP).
	sqRing, cqRing, sqeMem []byte
	singleMmap             bool

	sqHead, sqTail *uint32 // kernel owns the head; submitters under mu own the tail
	sqMask         uint32
	sqes           []sqe
	cqHead, cqTail *uint32 // reaper owns the head; kernel owns the tail
	cqMask         uint32
	cqes           []cqe

	mu       sync.Mutex     // serialises filling SQEs and bumping the SQ tail
	closed   atomic.Bool    // set once, under mu
	closing  chan struct{}  // closed with closed, wakes goroutines waiting for a slot
	flushing sync.WaitGroup // goroutines between publishing an SQE and kicking the submitter

	slots    []slot
	free     chan uint32 // indices of free slots; capacity len(slots)
	inflight atomic.Int64

	// The submitter goroutine is the only one that enters the kernel to
	// submit (Close aside): entering can block while the device's queue is
	// full, and the goroutines that publish SQEs are event loops that must
	// never block. It sleeps on the futex word kick (kicker.go), not on a
	// channel: waking a goroutine locked to its thread through the Go
	// scheduler costs a hand-off of a P between threads, two or three
	// thread wake-ups, where a futex wakes the one thread.
	kick    kicker
	subStop atomic.Bool
	subDone chan struct{}
	subTid  atomic.Int32 // thread the submitter is locked to; 0 when gone

	// backlog holds requests that found every slot taken, oldest first at
	// backlogHead; the reaper submits them as it frees slots.
	bmu         sync.Mutex
	backlog     []request
	backlogHead int

	// Reaper state: only the reaper goroutine touches stopped.
	reaperTid atomic.Int32 // thread the reaper is locked to; 0 when gone
	stopped   bool
	done      chan struct{} // closed when the reaper has exited
	closeDone chan struct{} // closed when Close has released everything
}

// Open sets up a ring with entries submission entries (a power of two, at
// most 32768) and starts its reaper goroutine. If io_uring_setup fails, or
// the kernel lacks IORING_OP_READ or IORING_OP_WRITE, the error wraps
// ErrUnsupported.
func Open(entries uint32) (*Ring, error) {
	if entries == 0 || entries > maxEntries || entries&(entries-1) != 0 {
		return nil, fmt.Errorf("uring: %d entries: want a power of two in [1, %d]", entries, maxEntries)
	}
	var p params
	fd, errno := sysSetup(entries, &p)
	if errno != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %w", ErrUnsupported, errno)
	}
	r := &Ring{fd: fd}
	if err := r.init(&p); err != nil {
		r.unmap()
		unix.Close(fd)
		return nil, err
	}
	ready := make(chan struct{})
	go r.reap(ready)
	<-ready
	ready = make(chan struct{})
	go r.submitLoop(ready)
	<-ready
	return r, nil
}

// init checks the opcodes, maps the rings and builds the slot table.
func (r *Ring) init(p *params) error {
	if err := checkOps(r.fd); err != nil {
		return err
	}
	// A read the device cannot take now (its queue is full) is handed to a
	// kernel worker thread, one per such read unless capped; hundreds of them
	// on the loops' cores starve the loops. With a cap they queue instead.
	// Older kernels lack the call and keep their default.
	_ = sysIOWQMax(r.fd, iowqWorkers, iowqWorkers)
	if p.cqEntries < p.sqEntries {
		return fmt.Errorf("uring: kernel gave %d CQ entries for %d SQ entries", p.cqEntries, p.sqEntries)
	}
	if err := r.mapRings(p); err != nil {
		return err
	}
	r.closing = make(chan struct{})
	r.subDone = make(chan struct{})
	r.done = make(chan struct{})
	r.closeDone = make(chan struct{})
	r.slots = make([]slot, p.sqEntries)
	r.free = make(chan uint32, p.sqEntries)
	for i := range p.sqEntries {
		r.free <- i
	}
	return nil
}

// checkOps asks the kernel which opcodes it implements.
func checkOps(fd int) error {
	var pr probe
	if errno := sysProbe(fd, &pr); errno != 0 {
		return fmt.Errorf("%w: IORING_REGISTER_PROBE: %w", ErrUnsupported, errno)
	}
	for _, op := range [...]uint8{opNop, opRead, opWrite} {
		if !pr.supports(op) {
			return fmt.Errorf("%w: kernel lacks io_uring opcode %d", ErrUnsupported, op)
		}
	}
	return nil
}

// mapRings maps the SQ ring, the CQ ring and the SQE array and points the
// Ring's views into them.
func (r *Ring) mapRings(p *params) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*16
	var err error
	r.singleMmap = p.features&featSingleMmap != 0
	if r.singleMmap {
		r.sqRing, err = mapRegion(r.fd, offSQRing, max(sqSize, cqSize))
		r.cqRing = r.sqRing
	} else {
		r.sqRing, err = mapRegion(r.fd, offSQRing, sqSize)
		if err == nil {
			r.cqRing, err = mapRegion(r.fd, offCQRing, cqSize)
		}
	}
	if err == nil {
		r.sqeMem, err = mapRegion(r.fd, offSQEs, int(p.sqEntries)*64)
	}
	if err != nil {
		return err
	}
	r.sqHead = u32At(r.sqRing, p.sqOff.head)
	r.sqTail = u32At(r.sqRing, p.sqOff.tail)
	r.sqMask = *u32At(r.sqRing, p.sqOff.ringMask)
	r.sqes = sliceAt[sqe](r.sqeMem, 0, p.sqEntries)
	r.cqHead = u32At(r.cqRing, p.cqOff.head)
	r.cqTail = u32At(r.cqRing, p.cqOff.tail)
	r.cqMask = *u32At(r.cqRing, p.cqOff.ringMask)
	r.cqes = sliceAt[cqe](r.cqRing, p.cqOff.cqes, p.cqEntries)
	// SQE i always sits at SQ ring index i, so the indirection array is
	// the identity, written once before any tail store publishes it.
	array := sliceAt[uint32](r.sqRing, p.sqOff.array, p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	return nil
}

// mapRegion maps size bytes of the ring fd at the given region offset.
func mapRegion(fd int, off int64, size int) ([]byte, error) {
	mem, err := unix.Mmap(fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("uring: mmap ring region %#x: %w", off, err)
	}
	return mem, nil
}

// unmap releases whatever mapRings mapped.
func (r *Ring) unmap() error {
	regions := [][]byte{r.sqeMem, r.sqRing, r.cqRing}
	if r.singleMmap {
		regions = regions[:2]
	}
	var errs []error
	for _, mem := range regions {
		if mem != nil {
			errs = append(errs, unix.Munmap(mem))
		}
	}
	r.sqeMem, r.cqRing, r.sqRing = nil, nil, nil
	return errors.Join(errs...)
}

// Read queues a read of len(p) bytes at off from fd into p and submits it.
// It never blocks on the device: while every slot is taken the request
// waits in the backlog, which the reaper submits from as slots free up (the
// callers bound how much they queue). p must stay untouched until c.IODone
// runs.
func (r *Ring) Read(fd int, p []byte, off int64, c Completion) {
	r.start(request{op: opRead, fd: int32(fd), p: p, off: off, c: c})
}

// Write queues a write of p to fd at off and submits it, like Read.
func (r *Ring) Write(fd int, p []byte, off int64, c Completion) {
	r.start(request{op: opWrite, fd: int32(fd), p: p, off: off, c: c})
}

// InFlight returns how many I/Os were submitted and not yet completed.
func (r *Ring) InFlight() int { return int(r.inflight.Load()) }

// start finds a slot for req and submits it, queues it in the backlog when
// every slot is taken, or fails it at once.
func (r *Ring) start(req request) {
	if req.off < 0 || uint64(len(req.p)) > math.MaxUint32 {
		req.c.IODone(0, unix.EINVAL)
		return
	}
	select {
	case idx := <-r.free:
		r.submitOrFail(idx, req)
		return
	default:
	}
	// Look again under bmu: release, which frees slots under it too, then
	// either sees req in the backlog or has put a slot in free.
	r.bmu.Lock()
	select {
	case idx := <-r.free:
		r.bmu.Unlock()
		r.submitOrFail(idx, req)
		return
	default:
	}
	if r.closed.Load() {
		r.bmu.Unlock()
		req.c.IODone(0, ErrClosed)
		return
	}
	r.backlog = append(r.backlog, req)
	r.bmu.Unlock()
}

// submitOrFail submits req in the held slot idx, or frees the slot and
// fails req if the ring is closed.
func (r *Ring) submitOrFail(idx uint32, req request) {
	if !r.submit(idx, req) {
		r.free <- idx
		req.c.IODone(0, ErrClosed)
	}
}

// submit arms the held slot idx with req, publishes its SQE and makes sure
// the kernel consumes it. It reports false, with the slot still held by the
// caller, if the ring is closed.
func (r *Ring) submit(idx uint32, req request) bool {
	e := sqe{
		opcode:   req.op,
		fd:       req.fd,
		off:      uint64(req.off),
		addr:     bufAddr(req.p),
		len:      uint32(len(req.p)),
		userData: uint64(idx),
	}
	s := &r.slots[idx]
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return false
	}
	s.c, s.p = req.c, req.p
	s.armed.Store(true)
	r.inflight.Add(1)
	r.flushing.Add(1)
	r.pushLocked(e)
	r.mu.Unlock()
	r.kickSubmitter()
	r.flushing.Done()
	return true
}

// Threads returns the IDs of the threads the ring's submitter and reaper
// are locked to, those still running. The kernel's work for the I/O the
// ring submits and completes runs on them, so a caller may place them
// (sched_setaffinity) away from threads that must not wait for a CPU.
func (r *Ring) Threads() []int {
	var tids []int
	for _, t := range [...]int32{r.subTid.Load(), r.reaperTid.Load()} {
		if t != 0 {
			tids = append(tids, int(t))
		}
	}
	return tids
}

// kickSubmitter wakes the submitter goroutine; it never blocks.
func (r *Ring) kickSubmitter() { r.kick.wake() }

// submitLoop is the submitter goroutine: on each kick it enters the kernel
// until every published SQE is consumed. It is locked to its thread, so the
// kernel's completion work for the I/O it submits runs here and not on the
// event loops' threads.
func (r *Ring) submitLoop(ready chan<- struct{}) {
	// Never unlocked: a caller may have narrowed the thread's CPUs
	// (Threads), and the thread must end with the goroutine rather than
	// carry that mask to others.
	runtime.LockOSThread()
	defer close(r.subDone)
	r.subTid.Store(int32(unix.Gettid()))
	defer r.subTid.Store(0)
	close(ready)
	for {
		r.kick.sleep()
		if r.subStop.Load() {
			return
		}
		r.flush(atomic.LoadUint32(r.sqTail) - 1)
	}
}

// pushLocked copies e into the next SQE and publishes it by storing the new
// SQ tail. It returns the SQE's position. r.mu must be held.
//
// Every unconsumed SQE belongs to an armed slot, so the SQ has room, except
// for a moment: the kernel publishes its SQ head when an io_uring_enter call
// has submitted its whole batch, and I/O from early in the batch may complete
// (and its slot be reused) before that. Then the SQ looks full until that
// call returns, and pushLocked waits for it (the submitter goroutine is in
// it, on its own thread).
func (r *Ring) pushLocked(e sqe) uint32 {
	tail := atomic.LoadUint32(r.sqTail)
	for spins := 0; tail-atomic.LoadUint32(r.sqHead) >= uint32(len(r.sqes)); spins++ {
		if spins > 1<<20 {
			panic("uring: submission queue stays full (slot accounting broken)")
		}
		r.kickSubmitter()
		r.mu.Unlock()
		runtime.Gosched()
		r.mu.Lock()
		tail = atomic.LoadUint32(r.sqTail)
	}
	r.sqes[tail&r.sqMask] = e
	atomic.StoreUint32(r.sqTail, tail+1)
	return tail
}

// flush enters the kernel until it has consumed the SQE at pos. Every
// io_uring_enter submits all published SQEs, so a concurrent submitter may
// already have done it; then no system call is made.
func (r *Ring) flush(pos uint32) {
	for {
		head := atomic.LoadUint32(r.sqHead)
		if int32(head-pos) > 0 {
			return
		}
		pending := atomic.LoadUint32(r.sqTail) - head
		_, errno := sysEnter(r.fd, pending, 0, 0)
		switch errno {
		case 0, unix.EINTR:
		case unix.EAGAIN, unix.EBUSY, unix.ENOMEM:
			runtime.Gosched()
		default:
			panic(fmt.Sprintf("uring: io_uring_enter submit: %v", errno))
		}
	}
}

// onReaper reports whether the caller runs on the reaper goroutine, which
// is locked to its thread for that purpose. Only the slow path asks.
func (r *Ring) onReaper() bool {
	tid := r.reaperTid.Load()
	return tid != 0 && int32(unix.Gettid()) == tid
}

// unpark removes and returns the oldest request of the backlog. bmu must be
// held.
func (r *Ring) unpark() (request, bool) {
	if r.backlogHead == len(r.backlog) {
		return request{}, false
	}
	req := r.backlog[r.backlogHead]
	r.backlog[r.backlogHead] = request{}
	r.backlogHead++
	if r.backlogHead == len(r.backlog) {
		r.backlog, r.backlogHead = r.backlog[:0], 0
	}
	return req, true
}

// reap is the reaper goroutine: it waits for completions and dispatches them
// until it consumes the stop NOP.
func (r *Ring) reap(ready chan<- struct{}) {
	runtime.LockOSThread() // never unlocked, as submitLoop's
	r.reaperTid.Store(int32(unix.Gettid()))
	close(ready)
	for {
		r.drain()
		if r.stopped {
			break
		}
		r.wait()
	}
	r.bmu.Lock()
	var left []request
	for req, ok := r.unpark(); ok; req, ok = r.unpark() {
		left = append(left, req)
	}
	r.bmu.Unlock()
	for _, req := range left {
		req.c.IODone(0, ErrClosed)
	}
	r.reaperTid.Store(0)
	close(r.done)
}

// wait blocks until the CQ holds at least one CQE.
func (r *Ring) wait() {
	_, errno := sysEnter(r.fd, 0, 1, enterGetEvents)
	switch errno {
	case 0, unix.EINTR, unix.EAGAIN, unix.EBUSY:
	default:
		panic(fmt.Sprintf("uring: io_uring_enter wait: %v", errno))
	}
}

// drain consumes every CQE the kernel has posted.
func (r *Ring) drain() {
	head := atomic.LoadUint32(r.cqHead)
	for {
		tail := atomic.LoadUint32(r.cqTail)
		if head == tail {
			return
		}
		for ; head != tail; head++ {
			e := &r.cqes[head&r.cqMask]
			userData, res := e.userData, e.res
			atomic.StoreUint32(r.cqHead, head+1)
			r.dispatch(userData, res)
		}
	}
}

// dispatch completes the I/O of one CQE: it disarms and releases the slot,
// then calls IODone.
func (r *Ring) dispatch(userData uint64, res int32) {
	if userData == stopUserData {
		r.stopped = true
		return
	}
	if userData >= uint64(len(r.slots)) || !r.slots[userData].armed.Load() {
		panic(fmt.Sprintf("uring: completion for unknown slot %d", userData))
	}
	s := &r.slots[userData]
	c := s.c
	s.c, s.p = nil, nil
	s.armed.Store(false)
	r.inflight.Add(-1)
	r.release(uint32(userData))
	if res < 0 {
		c.IODone(0, unix.Errno(-res))
		return
	}
	c.IODone(int(res), nil)
}

// release hands a slot the reaper just disarmed to the oldest request of the
// backlog, or back to the free channel. Reaper only.
func (r *Ring) release(idx uint32) {
	for {
		r.bmu.Lock()
		req, ok := r.unpark()
		if !ok {
			r.free <- idx // never blocks: free has room for every slot
			r.bmu.Unlock()
			return
		}
		r.bmu.Unlock()
		if r.submit(idx, req) {
			return
		}
		req.c.IODone(0, ErrClosed)
	}
}

// Close waits for in-flight I/O to complete (their IODone calls have
// returned), stops the reaper, unmaps the rings and closes the ring fd. I/O
// issued after Close begins, or still waiting for a slot, completes with
// ErrClosed. A second Close waits for the first and returns ErrClosed. Close
// must not be called from a Completion.
func (r *Ring) Close() error {
	if r.onReaper() {
		return errors.New("uring: Close called from a completion")
	}
	r.mu.Lock()
	first := !r.closed.Load()
	if first {
		r.closed.Store(true)
		close(r.closing)
	}
	r.mu.Unlock()
	if !first {
		<-r.closeDone
		return ErrClosed
	}
	for range len(r.slots) {
		<-r.free // each slot comes back when its I/O has completed
	}
	r.flushing.Wait()
	r.subStop.Store(true) // every slot is back: every SQE was consumed
	r.kick.wake()
	<-r.subDone
	r.stopReaper()
	<-r.done
	err := errors.Join(r.unmap(), unix.Close(r.fd))
	close(r.closeDone)
	return err
}

// stopReaper submits the NOP that tells the reaper to exit. Every slot is
// held by Close, so no other CQE is pending.
func (r *Ring) stopReaper() {
	r.mu.Lock()
	pos := r.pushLocked(sqe{opcode: opNop, fd: -1, userData: stopUserData})
	r.mu.Unlock()
	r.flush(pos)
}
