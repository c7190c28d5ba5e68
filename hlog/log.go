package hlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/internal/invariants"
	"github.com/fleetkv/fleetkv/internal/manual"
	"github.com/fleetkv/fleetkv/internal/prefetch"
	"github.com/fleetkv/fleetkv/ssd"
)

// Invariant: begin <= head <= safeReadOnly <= readOnly <= tail, and every
// marker only moves forward (checked by checkMarkers under -tags invariants).
// Invariant: safeHead <= head and flushedUntil <= safeReadOnly.
// Invariant: head, safeHead and flushedUntil are page boundaries (but for
// FirstAddress); readOnly and safeReadOnly are too, except after a
// fold-over, which moves them to the tail inside its page (FoldOver). The
// flusher writes whole pages only, below safeReadOnly rounded down to a
// page (handOver, settled); the records of the page it stops inside are
// written by the fold-over that moved it there (writePartial).
// Invariant: fence rises only to a tail a checkpoint read while every
// writer was paused (RaiseFence); workers update in place only at or
// above MutableFrom = max(readOnly, fence), so nothing below a checkpoint's
// end changes in place once a record past it exists. It falls back only
// at the end of a snapshot checkpoint (LowerFence), which has copied the
// records below it or failed.
// Invariant: quiet <= fence, and no worker is updating a record below quiet
// in place: RaiseFence sets it while every writer is paused, and
// LowerFence lowers it an epoch barrier before it lowers the fence, so a
// worker that read it high has finished before any in-place update below
// it starts. RMWs copy records in [safeReadOnly, quiet) at once
// (Quiet).
// Invariant: the frame of page p holds page p from the moment p is opened
// until safeHead passes the end of p; a worker reads an address only after
// seeing it >= head inside the epoch it reads it in.
// Invariant: page(tail-1) <= opened; tail advances only inside opened pages or
// onto the first byte of the next page.

// FirstAddress is the lowest address a record can have; address 0 is invalid.
const FirstAddress = 64

// AddressBits is the width of a logical address.
const AddressBits = 48

// Errors returned by the log.
var (
	// ErrRetryLater means the tail cannot move until deferred epoch actions
	// (flush, eviction) run: the worker must drop every record view, refresh
	// its epoch and retry the whole operation.
	ErrRetryLater = errors.New("hlog: log tail waits for flush or eviction; refresh and retry")
	// ErrTooLarge is returned for a record that cannot fit in one page.
	ErrTooLarge = errors.New("hlog: record larger than a page")
	// ErrAddressSpace is returned when the 48-bit address space is used up.
	ErrAddressSpace = errors.New("hlog: logical address space exhausted")
	// ErrFlush wraps the first device error a flush hit; the log stops
	// accepting new pages after it.
	ErrFlush = errors.New("hlog: flush failed")
)

// Config sets the shape of the log.
type Config struct {
	// PageBits is log2 of the page size: 12 (4 KiB) to 30 (1 GiB). Default 25.
	PageBits uint
	// MemoryBytes is the budget for in-memory page frames, rounded down to
	// whole pages; at least four pages. Default 1 GiB.
	MemoryBytes uint64
	// MutableFraction is the share of the frames kept mutable (updated in
	// place); the rest is read-only and being flushed. Default 0.9. The
	// mutable region is at least two pages and leaves at least one page
	// read-only.
	MutableFraction float64
	// Device receives flushed pages. Default: a new ssd.MemDevice.
	Device ssd.Device
}

// DefaultPageBits is the page size Config.PageBits 0 means (32 MiB).
const DefaultPageBits = 25

const (
	minFrames       = 4
	defaultPageBits = DefaultPageBits
	defaultMemory   = 1 << 30
	defaultMutable  = 0.9
)

func (c *Config) fill() error {
	if c.PageBits == 0 {
		c.PageBits = defaultPageBits
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = defaultMemory
	}
	if c.MutableFraction == 0 {
		c.MutableFraction = defaultMutable
	}
	if c.Device == nil {
		c.Device = ssd.NewMemDevice()
	}
	switch {
	case c.PageBits < 12 || c.PageBits > 30:
		return fmt.Errorf("hlog: page bits %d outside 12..30", c.PageBits)
	case c.MemoryBytes>>c.PageBits < minFrames:
		return fmt.Errorf("hlog: memory %d bytes holds fewer than %d pages of %d bytes", c.MemoryBytes, minFrames, uint64(1)<<c.PageBits)
	case c.MutableFraction <= 0 || c.MutableFraction > 1:
		return fmt.Errorf("hlog: mutable fraction %v outside (0, 1]", c.MutableFraction)
	case (uint64(1)<<c.PageBits)%uint64(c.Device.Alignment()) != 0:
		return fmt.Errorf("hlog: page size not a multiple of the device alignment %d", c.Device.Alignment())
	}
	return nil
}

type paddedUint64 struct {
	atomic.Uint64
	_ [56]byte
}

// Log is a HybridLog. The marker getters are safe from any goroutine.
// Allocate, Record, Abandon and ScanMemory are for epoch-protected workers:
// an address read from the log or the index stays usable only inside the
// epoch it was read in.
type Log struct {
	pageBits     uint
	pageSize     uint64
	pageMask     uint64
	frames       uint64
	memMask      uint64 // frames*pageSize-1 when frames is a power of two, else 0
	mutablePages uint64
	mem          []byte
	dev          ssd.Device
	epochs       *epoch.Manager
	_            cpu.CacheLinePad // the fields above are read by every operation

	tail         paddedUint64
	opened       paddedUint64 // highest page whose frame is ready
	readOnly     paddedUint64
	safeReadOnly paddedUint64
	head         paddedUint64
	safeHead     paddedUint64
	begin        paddedUint64
	flushedUntil paddedUint64
	// fence is where a paused checkpoint ends the log: no record below it
	// is updated in place from then on, although readOnly (which the
	// flush follows) reaches it only at the fold-over that follows, or
	// never (a snapshot lowers it again). MutableFrom is the higher of the
	// two.
	fence paddedUint64
	quiet paddedUint64 // see the invariant at the top

	roActionQueued   atomic.Bool   // an action that publishes safeReadOnly = roTarget is registered
	roTarget         atomic.Uint64 // what the queued readOnly action publishes
	roAction         func()        // l.onReadOnlySafe, made once
	headActionQueued atomic.Bool   // an action that publishes safeHead = headTarget is registered
	headTarget       atomic.Uint64 // what the queued head action publishes
	headAction       func()        // l.onHeadSafe, made once

	flush flushState

	// firstPage is the first page the frames hold in this process (0, or
	// Restart's start page), set before any worker uses the log: until
	// page firstPage+frames the frames are fresh memory, and populateAhead
	// faults each in before its page opens. populating is those goroutines.
	firstPage  uint64
	populating sync.WaitGroup
}

// New creates an empty log whose first record will be at FirstAddress.
func New(cfg Config, epochs *epoch.Manager) (*Log, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	l := &Log{
		pageBits: cfg.PageBits,
		pageSize: 1 << cfg.PageBits,
		pageMask: 1<<cfg.PageBits - 1,
		frames:   cfg.MemoryBytes >> cfg.PageBits,
		dev:      cfg.Device,
		epochs:   epochs,
	}
	// At least two mutable pages keep readOnly at or below the tail while the
	// tail turns a page; at least one read-only page lets flushing overlap
	// with filling the mutable region.
	if l.frames&(l.frames-1) == 0 {
		l.memMask = l.frames<<cfg.PageBits - 1
	}
	l.mutablePages = min(max(uint64(cfg.MutableFraction*float64(l.frames)+0.5), 2), l.frames-1)
	mem, err := manual.Alloc(int(l.frames * l.pageSize))
	if err != nil {
		return nil, err
	}
	l.mem = mem
	l.populate(0) // open from the start
	l.populate(1) // populateAhead does the rest
	for _, m := range []*paddedUint64{&l.tail, &l.readOnly, &l.safeReadOnly, &l.head, &l.safeHead, &l.begin, &l.flushedUntil} {
		m.Store(FirstAddress)
	}
	l.roAction, l.headAction = l.onReadOnlySafe, l.onHeadSafe
	l.flush.init(l)
	return l, nil
}

// Close waits for the page writes already issued (a device may still be
// reading the frames), then frees the frames. No worker may use the log
// afterwards. It does not close the device, which the caller owns. If the
// writes do not finish within closeWait it keeps the frames (a leak, not a
// crash) and says so.
func (l *Log) Close() error {
	deadline := time.Now().Add(closeWait)
	for !l.flush.settled() {
		if time.Now().After(deadline) {
			l.flush.close()
			return fmt.Errorf("hlog: close: page writes still in flight after %v; frames not freed", closeWait)
		}
		time.Sleep(100 * time.Microsecond)
	}
	l.flush.close()
	l.populating.Wait()
	mem := l.mem
	l.mem = nil
	return manual.Free(mem)
}

const closeWait = 10 * time.Second

// PageBits returns log2 of the page size.
func (l *Log) PageBits() uint { return l.pageBits }

// PageSize returns the page size in bytes; no record is larger.
func (l *Log) PageSize() uint64 { return l.pageSize }

// Frames returns the number of in-memory page frames.
func (l *Log) Frames() uint64 { return l.frames }

// MutablePages returns how many of the newest pages are kept mutable.
func (l *Log) MutablePages() uint64 { return l.mutablePages }

// Device returns the device under the log.
func (l *Log) Device() ssd.Device { return l.dev }

// Tail returns the address the next record would get.
func (l *Log) Tail() uint64 { return l.tail.Load() }

// ReadOnly returns the start of the mutable region.
func (l *Log) ReadOnly() uint64 { return l.readOnly.Load() }

// MutableFrom returns the lowest address a worker may update in place now:
// the read-only marker, or a checkpoint's fence above it.
func (l *Log) MutableFrom() uint64 { return max(l.readOnly.Load(), l.fence.Load()) }

// RaiseFence makes every record below at read-only for the workers' next
// operations: at must be the tail, read while no worker was inside an
// operation (a worker that read MutableFrom before could otherwise still
// update below it). A checkpoint that ends at at calls it before the workers
// go on. It returns the marks as they were, for LowerFence.
func (l *Log) RaiseFence(at uint64) Fence {
	was := Fence{fence: l.fence.Load(), quiet: l.quiet.Load()}
	maxStore(&l.fence, at) // fence first: quiet <= fence throughout
	maxStore(&l.quiet, at)
	l.checkFence()
	return was
}

// checkFence checks, under -tags invariants, that quiet <= fence. Only
// RaiseFence and LowerFence (one checkpoint at a time) change them.
func (l *Log) checkFence() {
	if q, f := l.quiet.Load(), l.fence.Load(); invariants.Enabled && q > f {
		invariants.Fail("quiet %d above the fence %d", q, f)
	}
}

// Fence is the fence as RaiseFence found it.
type Fence struct{ fence, quiet uint64 }

// LowerFence puts the fence back where RaiseFence found it (was): the
// records below it may be updated in place again. Only once nothing needs
// them as they were at the fence (a snapshot has copied them), and with no
// fold-over since RaiseFence. The RMWs that copied a record below quiet
// sealed it (store/rmw.go), so a worker that found it before the copy was
// installed does not update it in place now; blind writes that appended
// meanwhile need no seal (an in-place write that lands on the old record
// is ordered before them).
func (l *Log) LowerFence(ctx context.Context, was Fence) error {
	l.quiet.Store(was.quiet)
	if err := l.epochs.Barrier(ctx); err != nil {
		return err // the fence stays up: nothing is updated in place below it
	}
	l.fence.Store(was.fence)
	l.checkFence()
	return nil
}

// Quiet returns the quiet mark: no worker is updating a record below it in
// place. A worker may be updating one in place at or above the higher of
// it and SafeReadOnly (below MutableFrom: the fuzzy region); below that a
// record can be copied as it is.
func (l *Log) Quiet() uint64 { return l.quiet.Load() }

// SafeReadOnly returns the address below which every worker knows the log is
// read-only: the end of the fuzzy region.
func (l *Log) SafeReadOnly() uint64 { return l.safeReadOnly.Load() }

// Head returns the lowest address in memory.
func (l *Log) Head() uint64 { return l.head.Load() }

// Begin returns the lowest address still part of the log.
func (l *Log) Begin() uint64 { return l.begin.Load() }

// FlushedUntil returns the address below which every byte is on the device.
func (l *Log) FlushedUntil() uint64 { return l.flushedUntil.Load() }

// Record returns a view of the record at addr. The caller must hold epoch
// protection and have seen addr >= Head() in the current epoch.
func (l *Log) Record(addr uint64) Record {
	return frameRecord(l.mem, l.frameOffset(addr))
}

// Prefetch asks the CPU to bring the first line of the record at addr into
// cache when addr is in memory. It is a hint: it changes nothing, and an
// address that leaves memory meanwhile only makes the prefetch useless (a
// prefetch never faults).
func (l *Log) Prefetch(addr uint64) {
	if addr >= l.Head() && addr < l.Tail() {
		prefetch.Line(unsafe.Pointer(&l.mem[l.frameOffset(addr)]))
	}
}

// frameOffset maps an address to its byte in frame memory. It is on the path
// from an index entry to its record, so a power-of-two frame count (the
// default) makes it one AND: page p lives in frame p mod frames, and with
// both counts powers of two that is the address's low bits.
func (l *Log) frameOffset(addr uint64) uint64 {
	if l.memMask != 0 {
		return addr & l.memMask
	}
	return (addr>>l.pageBits)%l.frames<<l.pageBits | addr&l.pageMask
}

// frameBytes returns the memory of page p's frame.
func (l *Log) frameBytes(p uint64) []byte {
	off := p % l.frames << l.pageBits
	return l.mem[off : off+l.pageSize]
}

// CopyMemory copies len(dst) bytes at addr, which must lie in one page,
// from the page's frame, and reports whether the page was still in memory
// (head's page or above: head is a page boundary but for the first page,
// whose frame holds it all). The caller holds epoch protection, and nothing
// may change those bytes meanwhile.
func (l *Log) CopyMemory(dst []byte, addr uint64) bool {
	if addr>>l.pageBits < l.head.Load()>>l.pageBits {
		return false
	}
	off := addr & l.pageMask
	copy(dst, l.frameBytes(addr >> l.pageBits)[off:off+uint64(len(dst))])
	return true
}

// Markers is a snapshot of the log's addresses, for stats and tests.
type Markers struct {
	Begin, Head, SafeHead, FlushedUntil, SafeReadOnly, ReadOnly, Tail uint64
}

// Markers reads every marker (not atomically as a set).
func (l *Log) Markers() Markers {
	return Markers{
		Begin: l.begin.Load(), Head: l.head.Load(), SafeHead: l.safeHead.Load(),
		FlushedUntil: l.flushedUntil.Load(), SafeReadOnly: l.safeReadOnly.Load(),
		ReadOnly: l.readOnly.Load(), Tail: l.tail.Load(),
	}
}

// maxStore raises m to v if v is larger and reports whether it did.
func maxStore(m *paddedUint64, v uint64) bool {
	for {
		old := m.Load()
		if v <= old {
			return false
		}
		if m.CompareAndSwap(old, v) {
			return true
		}
	}
}
