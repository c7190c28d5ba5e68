package ssd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
)

// crashBlockBits sets the size of the blocks a crash image allocates lazily.
// Smaller than MemDevice's: a block is copied when first written after a
// Sync, so the size bounds that copy.
const crashBlockBits = 16

// crashMinSector is the smallest unit a power loss tears writes into.
const crashMinSector = 512

// ErrPowerLost is reported for I/O that was queued on a CrashDevice, and had
// not completed, when PowerLoss ran.
var ErrPowerLost = errors.New("ssd: power lost")

// LossMode says what a CrashDevice's PowerLoss does to the writes that were
// not yet durable.
type LossMode int

const (
	// LoseUnsynced drops every write since the last Sync: the device comes
	// back holding exactly the durable image.
	LoseUnsynced LossMode = iota
	// TearUnsynced keeps, loses or tears each write since the last Sync
	// independently: it survives whole, survives as a random prefix of its
	// sector pieces, or is lost. The surviving pieces of all writes land in
	// random order, so a later write may survive where an earlier one was
	// lost, and of two writes to one sector either may win.
	TearUnsynced
	// KeepUnsynced models a crash of the process rather than of the power:
	// every completed write survives, still not durable (a later PowerLoss
	// may lose it), as the kernel's page cache would keep it.
	KeepUnsynced
)

// String names the mode, for test names and messages.
func (m LossMode) String() string {
	switch m {
	case LoseUnsynced:
		return "LoseUnsynced"
	case TearUnsynced:
		return "TearUnsynced"
	case KeepUnsynced:
		return "KeepUnsynced"
	}
	return fmt.Sprintf("LossMode(%d)", int(m))
}

// CrashStats counts what a CrashDevice did since it was made. PowerLoss
// does not reset it.
type CrashStats struct {
	Reads, Writes           uint64 // I/Os that completed without error
	BytesRead, BytesWritten uint64 // bytes moved by those I/Os
	Failed                  uint64 // I/Os completed with an error
	Syncs                   uint64 // Sync calls that succeeded
	PowerLosses             uint64 // PowerLoss calls
	Unsynced                int    // completed writes not yet durable, now
	UnsyncedBytes           uint64 // their bytes, now
}

// CrashDevice is an in-memory Device that models power loss. It keeps the
// durable image (what the last Sync made durable) and, in order, the writes
// completed since. Reads see the latest data; bytes never written read as
// zeros. PowerLoss drops or tears the writes that are not durable, as the
// volatile write cache of a disk would, and reopens the device.
//
// By default every I/O completes synchronously, before WriteAsync or
// ReadAsync returns, like MemDevice. SetAsync(true) queues I/O and completes
// it on a device goroutine in random order; Pause holds queued I/O until
// Resume, so a test can crash the device with I/O in flight. A write takes
// effect (and its buffer is read) when it completes, not when it is issued.
//
// Sync makes durable every write that has completed when it is called,
// which includes every write whose callback has run. I/O that is queued when
// PowerLoss runs completes with ErrPowerLost, on the caller of PowerLoss,
// before PowerLoss returns; I/O queued when Close runs completes with
// ErrClosed on a device goroutine. Either way every callback runs exactly
// once, never while the device's lock is held.
//
// The offsets and lengths of I/O must be multiples of the alignment given to
// NewCrashDevice (buffer addresses are not checked). Memory is allocated in
// blocks as they are first written, so a sparse address space costs only
// what is written, plus a copy of the blocks written since the last Sync and
// of the writes themselves until they are durable.
type CrashDevice struct {
	align  int // offsets and lengths are multiples of it
	sector int // the unit TearUnsynced tears writes into: max(align, 512)
	mu     struct {
		sync.Mutex
		// Invariant: current holds durable with every write of unsynced
		// applied in order; queued I/O has touched neither image.
		durable  crashImage
		current  crashImage
		unsynced []crashWrite // completed writes since the last Sync, oldest first
		// Invariant: every op in queue has not completed; its callback runs
		// exactly once, on the worker or in PowerLoss, after it leaves queue.
		queue []crashOp
		// Invariant: running is true from the start of the (only) worker
		// goroutine until it finds nothing to do, under the lock.
		running bool
		async   bool // queue I/O and complete it on the worker
		paused  bool // queue I/O and let the worker complete none of it
		closed  bool
		// released is where Release cut the log; reads below fail. It
		// survives PowerLoss, as a deleted file stays deleted.
		released uint64
		rng      *rand.Rand // completion order; tears when PowerLoss gets none
		stats    CrashStats
	}
}

// crashWrite is a completed write that is not yet durable.
type crashWrite struct {
	off  uint64
	data []byte // a copy, taken when the write completed
}

// crashOp is an I/O waiting in the queue.
type crashOp struct {
	p     []byte
	off   uint64
	write bool
	cb    Callback
}

// NewCrashDevice returns an empty CrashDevice whose I/O must be aligned to
// alignment bytes (1: no rule). It panics if alignment is below 1.
func NewCrashDevice(alignment int) *CrashDevice {
	if alignment < 1 {
		panic(fmt.Sprintf("ssd: alignment %d below 1", alignment))
	}
	d := &CrashDevice{align: alignment, sector: max(alignment, crashMinSector)}
	d.mu.durable = newCrashImage()
	d.mu.current = d.mu.durable.share()
	d.mu.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	return d
}

// Alignment implements Device.
func (d *CrashDevice) Alignment() int { return d.align }

// SectorSize is the unit TearUnsynced tears writes into: the larger of the
// alignment and 512 bytes. Pieces are cut at multiples of it.
func (d *CrashDevice) SectorSize() int { return d.sector }

// WriteAsync implements Device.
func (d *CrashDevice) WriteAsync(p []byte, off uint64, cb Callback) {
	d.submit(crashOp{p: p, off: off, write: true, cb: cb})
}

// ReadAsync implements Device.
func (d *CrashDevice) ReadAsync(p []byte, off uint64, cb Callback) {
	d.submit(crashOp{p: p, off: off, cb: cb})
}

// submit completes op now, or queues it when the device is asynchronous or
// paused. Misaligned I/O and I/O on a closed device fail at once.
func (d *CrashDevice) submit(op crashOp) {
	d.mu.Lock()
	var err error
	switch {
	case op.off%uint64(d.align) != 0 || len(op.p)%d.align != 0:
		err = ErrMisaligned
	case d.mu.closed:
		err = ErrClosed
	case d.mu.async || d.mu.paused:
		d.mu.queue = append(d.mu.queue, op)
		start := d.claimWorkerLocked()
		d.mu.Unlock()
		if start {
			go d.work()
		}
		return
	}
	n := 0
	if err == nil {
		n, err = d.executeLocked(op)
	} else {
		d.mu.stats.Failed++
	}
	d.mu.Unlock()
	op.cb.IODone(n, err)
}

// executeLocked performs op on the current image.
func (d *CrashDevice) executeLocked(op crashOp) (int, error) {
	st := &d.mu.stats
	switch {
	case d.mu.closed:
		st.Failed++
		return 0, ErrClosed
	case !op.write && op.off < d.mu.released:
		st.Failed++
		return 0, ErrReleased
	case op.write:
		d.mu.current.write(op.p, op.off)
		if len(op.p) > 0 {
			d.mu.unsynced = append(d.mu.unsynced, crashWrite{op.off, append([]byte(nil), op.p...)})
		}
		st.Writes++
		st.BytesWritten += uint64(len(op.p))
		st.Unsynced = len(d.mu.unsynced)
		st.UnsyncedBytes += uint64(len(op.p))
	default:
		d.mu.current.read(op.p, op.off)
		st.Reads++
		st.BytesRead += uint64(len(op.p))
	}
	return len(op.p), nil
}

// claimWorkerLocked reports whether the caller must start the worker: there
// is work it may do and none is running.
func (d *CrashDevice) claimWorkerLocked() bool {
	if d.mu.running || !d.workableLocked() {
		return false
	}
	d.mu.running = true
	return true
}

// workableLocked reports whether the worker may complete a queued op now.
// A closed device fails its queue even while paused.
func (d *CrashDevice) workableLocked() bool {
	return len(d.mu.queue) > 0 && (!d.mu.paused || d.mu.closed)
}

// work completes queued I/O in random order until there is none it may
// complete.
func (d *CrashDevice) work() {
	runtime.Gosched() // let submitters queue more, for a more shuffled order
	for {
		d.mu.Lock()
		if !d.workableLocked() {
			d.mu.running = false
			d.mu.Unlock()
			return
		}
		q := d.mu.queue
		i := d.mu.rng.IntN(len(q))
		op := q[i]
		q[i] = q[len(q)-1]
		q[len(q)-1] = crashOp{}
		d.mu.queue = q[:len(q)-1]
		n, err := d.executeLocked(op)
		d.mu.Unlock()
		op.cb.IODone(n, err)
	}
}

// SetAsync switches between completing I/O before the call returns (false,
// the default) and completing it later on a device goroutine, in random
// order (true). I/O already queued stays queued.
func (d *CrashDevice) SetAsync(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.async = on
}

// Pause holds I/O: from now on every I/O is queued, even on a synchronous
// device, and none completes until Resume, PowerLoss or Close.
func (d *CrashDevice) Pause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.paused = true
}

// Resume ends Pause: queued I/O completes on a device goroutine, in random
// order, and new I/O completes as SetAsync says.
func (d *CrashDevice) Resume() {
	d.mu.Lock()
	d.mu.paused = false
	start := d.claimWorkerLocked()
	d.mu.Unlock()
	if start {
		go d.work()
	}
}

// Pending returns the number of queued I/Os, not yet completed.
func (d *CrashDevice) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.mu.queue)
}

// Sync implements Device: every write completed so far becomes durable.
// Queued writes do not: their callbacks have not run.
func (d *CrashDevice) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return ErrClosed
	}
	d.mu.durable = d.mu.current.share()
	d.mu.unsynced = nil
	d.mu.stats.Syncs++
	d.mu.stats.Unsynced, d.mu.stats.UnsyncedBytes = 0, 0
	return nil
}

// PowerLoss simulates a crash: the writes that are not durable are dropped,
// torn or kept as mode says, and the device comes back as if freshly opened
// on what survived: open even if it was closed, not paused, still as
// asynchronous as SetAsync made it. The survivors of TearUnsynced become
// durable. I/O still queued completes with ErrPowerLost on the caller's
// goroutine before PowerLoss returns. rng drives TearUnsynced; nil uses the
// device's own source. PowerLoss panics on an unknown mode.
func (d *CrashDevice) PowerLoss(mode LossMode, rng *rand.Rand) {
	d.mu.Lock()
	switch mode {
	case LoseUnsynced:
		d.mu.current = d.mu.durable.share()
		d.mu.unsynced = nil
	case TearUnsynced:
		if rng == nil {
			rng = d.mu.rng
		}
		d.tearLocked(rng)
	case KeepUnsynced:
	default:
		d.mu.Unlock()
		panic(fmt.Sprintf("ssd: unknown %v", mode))
	}
	lost := d.mu.queue
	d.mu.queue = nil
	d.mu.closed, d.mu.paused = false, false
	st := &d.mu.stats
	st.PowerLosses++
	st.Failed += uint64(len(lost))
	st.Unsynced = len(d.mu.unsynced)
	st.UnsyncedBytes = 0
	for _, w := range d.mu.unsynced {
		st.UnsyncedBytes += uint64(len(w.data))
	}
	d.mu.Unlock()
	for _, op := range lost {
		op.cb.IODone(0, ErrPowerLost)
	}
}

// tearLocked applies to the durable image what TearUnsynced keeps of the
// unsynced writes, and makes the result the current image.
func (d *CrashDevice) tearLocked(rng *rand.Rand) {
	tear(&d.mu.durable, d.mu.unsynced, d.sector, rng)
	d.mu.current = d.mu.durable.share()
	d.mu.unsynced = nil
}

// tear writes into img what TearUnsynced keeps of unsynced: of each
// write, none, all or a prefix of its sectors, in a random order.
func tear(img *crashImage, unsynced []crashWrite, sector int, rng *rand.Rand) {
	var kept []crashWrite
	for _, w := range unsynced {
		pieces := splitAtSectors(w, sector)
		kept = append(kept, pieces[:survivingPieces(len(pieces), rng)]...)
	}
	rng.Shuffle(len(kept), func(i, j int) { kept[i], kept[j] = kept[j], kept[i] })
	for _, w := range kept {
		img.write(w.data, w.off)
	}
}

// Fork returns a new device holding what a power loss now would leave, as
// PowerLoss with mode and rng would (nil: the device's own source), and
// leaves this one as it is: a crash image of a device that goes on being
// used. The new device is open and as asynchronous as this one.
func (d *CrashDevice) Fork(mode LossMode, rng *rand.Rand) *CrashDevice {
	nd := NewCrashDevice(d.align)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch mode {
	case LoseUnsynced:
		nd.mu.durable = d.mu.durable.share()
	case TearUnsynced:
		if rng == nil {
			rng = d.mu.rng
		}
		nd.mu.durable = d.mu.durable.share()
		tear(&nd.mu.durable, d.mu.unsynced, d.sector, rng)
	case KeepUnsynced:
		nd.mu.durable = d.mu.current.share()
	default:
		panic(fmt.Sprintf("ssd: unknown %v", mode))
	}
	nd.mu.current = nd.mu.durable.share()
	nd.mu.released = d.mu.released
	nd.mu.async = d.mu.async
	return nd
}

// survivingPieces picks how many of a write's n pieces survive: none, all,
// or any prefix, a third of the time each.
func survivingPieces(n int, rng *rand.Rand) int {
	switch rng.IntN(3) {
	case 0:
		return 0
	case 1:
		return n
	}
	return rng.IntN(n + 1)
}

// splitAtSectors cuts w at multiples of sector, in address order.
func splitAtSectors(w crashWrite, sector int) []crashWrite {
	var pieces []crashWrite
	off, data := w.off, w.data
	for len(data) > 0 {
		n := min(len(data), sector-int(off%uint64(sector)))
		pieces = append(pieces, crashWrite{off, data[:n]})
		off, data = off+uint64(n), data[n:]
	}
	return pieces
}

// Release implements Device: blocks wholly below off leave both images.
func (d *CrashDevice) Release(off uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return ErrClosed
	}
	if off <= d.mu.released {
		return nil
	}
	d.mu.released = off
	d.mu.durable.drop(off)
	d.mu.current.drop(off)
	return nil
}

// Close implements Device. Queued I/O completes with ErrClosed. The images
// stay: PowerLoss reopens the device.
func (d *CrashDevice) Close() error {
	d.mu.Lock()
	d.mu.closed = true
	start := d.claimWorkerLocked()
	d.mu.Unlock()
	if start {
		go d.work()
	}
	return nil
}

// Stats returns the device's counters.
func (d *CrashDevice) Stats() CrashStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.stats
}

// crashImage is a sparse byte image in blocks of 1<<crashBlockBits bytes,
// allocated when first written. Images share blocks copy-on-write.
//
// Invariant: a block is in owned only if no other image refers to it, so it
// may be written in place; any other block is copied before it is written.
type crashImage struct {
	blocks map[uint64][]byte
	owned  map[uint64]struct{}
}

// newCrashImage returns an image of zeros.
func newCrashImage() crashImage {
	return crashImage{blocks: make(map[uint64][]byte), owned: make(map[uint64]struct{})}
}

// share returns an image with the same bytes; both now own no block.
func (m *crashImage) share() crashImage {
	s := crashImage{blocks: make(map[uint64][]byte, len(m.blocks)), owned: make(map[uint64]struct{})}
	for k, b := range m.blocks {
		s.blocks[k] = b
	}
	clear(m.owned)
	return s
}

// write copies p into the image at off.
func (m *crashImage) write(p []byte, off uint64) {
	eachCrashBlock(off, len(p), func(blk uint64, in, lo, hi int) {
		b := m.blocks[blk]
		if _, mine := m.owned[blk]; !mine {
			nb := make([]byte, 1<<crashBlockBits)
			copy(nb, b) // b may be nil: a block never written
			b = nb
			m.blocks[blk] = b
			m.owned[blk] = struct{}{}
		}
		copy(b[in:], p[lo:hi])
	})
}

// drop forgets the blocks wholly below off.
func (m *crashImage) drop(off uint64) {
	for blk := range m.blocks {
		if (blk+1)<<crashBlockBits <= off {
			delete(m.blocks, blk)
			delete(m.owned, blk)
		}
	}
}

// read fills p from the image at off; unwritten bytes read as zeros.
func (m *crashImage) read(p []byte, off uint64) {
	eachCrashBlock(off, len(p), func(blk uint64, in, lo, hi int) {
		if b := m.blocks[blk]; b != nil {
			copy(p[lo:hi], b[in:])
		} else {
			clear(p[lo:hi])
		}
	})
}

// eachCrashBlock calls fn for each block that [off, off+n) touches: blk is the
// block, in the offset in it, and [lo, hi) the part of the n bytes there.
func eachCrashBlock(off uint64, n int, fn func(blk uint64, in, lo, hi int)) {
	const size = 1 << crashBlockBits
	for done := 0; done < n; {
		pos := off + uint64(done)
		in := int(pos & (size - 1))
		step := min(n-done, size-in)
		fn(pos>>crashBlockBits, in, done, done+step)
		done += step
	}
}
