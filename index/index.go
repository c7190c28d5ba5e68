package index

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/internal/prefetch"
)

// MaxBits bounds the table size (2^MaxBits buckets of 64 bytes).
const MaxBits = 40

// ErrGrowing is returned by Grow while another growth runs.
var ErrGrowing = errors.New("index: growth already in progress")

// Chain lets the index follow hash chains through the log while it splits
// buckets. The store implements it.
type Chain interface {
	// Step returns, for the record at addr, the hash of its key and the
	// address of the previous record in its chain. inMemory is false when
	// the record is not in memory (so its key cannot be read synchronously),
	// in which case hash and prev are meaningless. The caller holds epoch
	// protection.
	Step(addr uint64) (hash, prev uint64, inMemory bool)
}

// Index is the hash index. Its methods are safe from any goroutine. Find and
// FindOrCreate must be called by their Guard's owner while it is protected,
// before it takes any view of a log record in its current operation: they
// may refresh the Guard while a growth starts. Grow takes an unprotected
// Guard that nobody else uses.
type Index struct {
	state   atomic.Pointer[phaseState]
	entries atomic.Int64  // entries created by inserts (not copies made by splits)
	resets  atomic.Uint64 // Resets so far: counts made before one are dropped
	epochs  *epoch.Manager
	chain   Chain
	growMu  sync.Mutex // one Grow at a time
}

// phaseState is one immutable step of the index's life; a phase change
// publishes a new one, so an operation reads a consistent set with one load.
type phaseState struct {
	phase int
	cur   *table   // the table operations use (prepare: the old one)
	old   *table   // inProgress: the table being split
	run   *growRun // inProgress: the split bookkeeping
}

// growRun tracks the split of one doubling.
type growRun struct {
	chunks    []atomic.Uint32 // per chunk of old buckets: chunkTodo, chunkBusy, chunkDone
	chunkSize uint64          // old buckets per chunk
	remaining atomic.Int64    // chunks not yet done
}

// New returns an index with 2^bits buckets.
func New(bits uint, epochs *epoch.Manager, chain Chain) (*Index, error) {
	if bits < 1 || bits > MaxBits {
		return nil, fmt.Errorf("index: %d bucket bits outside 1..%d", bits, MaxBits)
	}
	t, err := newTable(bits)
	if err != nil {
		return nil, err
	}
	ix := &Index{epochs: epochs, chain: chain}
	ix.state.Store(&phaseState{phase: phaseRest, cur: t})
	return ix, nil
}

// Close frees the tables. No goroutine may use the index afterwards, and no
// growth may be running.
func (ix *Index) Close() {
	if ps := ix.state.Swap(nil); ps != nil {
		ps.cur.free()
	}
}

// Bits returns log2 of the number of buckets operations use now.
func (ix *Index) Bits() uint { return ix.state.Load().cur.bits }

// Find returns the slot of h's tag, skipping tentative entries; ok is false
// when the chain has no entry for the tag.
//
// The table is read here when the index is at rest, the common case, and
// by current otherwise: a call fewer per read. (FindOrCreate does the same;
// a helper for the four lines would not inline, at cost 82.)
func (ix *Index) Find(g *epoch.Guard, h uint64) (s Slot, e Entry, ok bool) {
	ps := ix.state.Load()
	t := ps.cur
	if ps.phase != phaseRest {
		t = ix.current(g, h)
	}
	return findIn(t, h, tagBitsOf(h))
}

// FindOrCreate returns the slot of h's tag, creating an entry with address 0
// when there is none (created reports it). It is latch-free: a new entry is
// claimed tentatively, the chain is checked for another entry of the same
// tag, and only then is the entry published; when two inserts of one tag
// race, both back off.
func (ix *Index) FindOrCreate(g *epoch.Guard, h uint64) (s Slot, e Entry, created bool) {
	ps := ix.state.Load()
	t := ps.cur
	if ps.phase != phaseRest { // as in Find: no call at rest
		t = ix.current(g, h)
	}
	tag := tagBitsOf(h)
	for spins := 0; ; spins++ {
		if s, e, ok := findIn(t, h, tag); ok {
			return s, e, false
		}
		free := t.freeSlot(h)
		claim := uint64(usedBit | tentativeBit | tag)
		if !free.CompareAndSwap(0, claim) {
			continue
		}
		if t.hasOther(h, tag, free) {
			free.Store(0)
			if spins > 16 {
				runtime.Gosched()
			}
			continue
		}
		e := makeEntry(tag, 0)
		free.Store(uint64(e))
		return Slot{free}, e, true
	}
}

// CountEntries adds n entries created by FindOrCreate to the index's load
// count. Workers batch their counts (one atomic add per batch rather than per
// insert) so that inserts on many cores do not contend on one cache line.
// gen is Resets() as it was when the batch began: a batch begun before a
// Reset counted entries of the dropped table and is ignored.
func (ix *Index) CountEntries(n int64, gen uint64) {
	if gen == ix.resets.Load() {
		ix.entries.Add(n)
	}
}

// Resets returns how many times Reset emptied the index.
func (ix *Index) Resets() uint64 { return ix.resets.Load() }

// LoadFactor returns the counted entries per bucket: the growth signal.
// Entries that a split copied into both halves (their records were not in
// memory) are not counted twice, so growth does improve it.
func (ix *Index) LoadFactor() float64 {
	return float64(ix.entries.Load()) / float64(len(ix.state.Load().cur.buckets))
}

func findIn(t *table, h, tag uint64) (Slot, Entry, bool) {
	for b := t.bucketFor(h); b != nil; b = t.next(b) {
		if i, v := b.match(usedBit | tag); i >= 0 {
			return Slot{&b[i]}, Entry(v), true
		}
	}
	return Slot{}, 0, false
}

// match returns the first entry of b whose used, tentative and tag bits
// are want, with its value, or -1. It is unrolled: each entry costs a
// load, a mask and a compare, where a loop recomputed its bound and the
// wanted bits per entry, and every read and write probes a bucket.
func (b *bucket) match(want uint64) (int, uint64) {
	const m = usedBit | tentativeBit | tagMask
	if v := b[0].Load(); v&m == want {
		return 0, v
	}
	if v := b[1].Load(); v&m == want {
		return 1, v
	}
	if v := b[2].Load(); v&m == want {
		return 2, v
	}
	if v := b[3].Load(); v&m == want {
		return 3, v
	}
	if v := b[4].Load(); v&m == want {
		return 4, v
	}
	if v := b[5].Load(); v&m == want {
		return 5, v
	}
	if v := b[6].Load(); v&m == want {
		return 6, v
	}
	return -1, 0
}

// match's cases are b[0] to b[entriesPerBucket-1].
var _ = [1]struct{}{}[entriesPerBucket-7]

// freeSlot returns an empty entry of h's chain, adding an overflow bucket
// when the chain is full.
func (t *table) freeSlot(h uint64) *atomic.Uint64 { return t.freeSlotIn(t.bucketFor(h)) }

// freeSlotIn returns an empty entry of the chain starting at main bucket
// first, adding an overflow bucket when the chain is full.
func (t *table) freeSlotIn(first *bucket) *atomic.Uint64 {
	for {
		b := first
		for {
			for i := 0; i < entriesPerBucket; i++ {
				if b[i].Load() == 0 {
					return &b[i]
				}
			}
			n := t.next(b)
			if n == nil {
				break
			}
			b = n
		}
		t.addOverflow(b)
	}
}

// addOverflow links a new overflow bucket after last, unless another insert
// did so first.
func (t *table) addOverflow(last *bucket) {
	if last[entriesPerBucket].Load() != 0 {
		return
	}
	i := t.over.alloc()
	last[entriesPerBucket].CompareAndSwap(0, i)
}

// hasOther reports whether h's chain holds an entry of tag, tentative or not,
// other than mine.
func (t *table) hasOther(h, tag uint64, mine *atomic.Uint64) bool {
	for b := t.bucketFor(h); b != nil; b = t.next(b) {
		for i := 0; i < entriesPerBucket; i++ {
			if &b[i] == mine {
				continue
			}
			if v := b[i].Load(); v&usedBit != 0 && v&tagMask == tag {
				return true
			}
		}
	}
	return false
}

// Stats describes the index's size and fill.
type Stats struct {
	Bits            uint
	Buckets         uint64
	OverflowBuckets uint64
	Entries         int64 // as counted through CountEntries
	Growing         bool
}

// Stats returns the current table's shape.
func (ix *Index) Stats() Stats {
	ps := ix.state.Load()
	return Stats{
		Bits: ps.cur.bits, Buckets: uint64(len(ps.cur.buckets)),
		OverflowBuckets: ps.cur.over.allocated(), Entries: ix.entries.Load(),
		Growing: ps.phase != phaseRest,
	}
}

// Prefetch asks the CPU to bring h's main bucket into cache. It is a hint
// for batched executors: it reads only the current table pointer, changes
// nothing and never blocks, so it needs no epoch protection beyond what the
// caller holds.
func (ix *Index) Prefetch(h uint64) {
	prefetch.Line(unsafe.Pointer(ix.state.Load().cur.bucketFor(h)))
}

// Touch loads the first word of h's main bucket and drops it: a one-op
// caller that has just hashed a key starts the miss on the bucket there,
// while the previous operation's miss may still be outstanding, instead of
// a hundred instructions later in Find (BENCHMARKS.md, issue 18). It is a
// load rather than Prefetch because Go has no prefetch outside the runtime:
// Prefetch is an assembly call, and this one instruction in line. The
// caller must be epoch-protected (the table is read).
func (ix *Index) Touch(h uint64) {
	ix.state.Load().cur.bucketFor(h)[0].Load()
}

// Peek returns the address in h's entry when h's main bucket holds one for
// h's tag, without following overflow buckets or taking part in growth. It
// is a hint for prefetching the record an operation will read: the entry may
// change before the operation runs, which then finds the right one itself.
// The caller must be epoch-protected (a store session between operations
// is), so that the table it reads is not freed by a finished growth.
func (ix *Index) Peek(h uint64) (addr uint64, ok bool) {
	if i, v := ix.state.Load().cur.bucketFor(h).match(usedBit | tagBitsOf(h)); i >= 0 {
		return Entry(v).Address(), true
	}
	return 0, false
}

// Reset replaces the table with an empty one of the same size: every entry
// is gone at once, and the load count starts again from 0. An operation
// that loaded the old table before the swap finishes on it (it stays
// allocated until every worker has moved past the epoch), so the caller
// stops every writer between two operations first when the reset must be
// atomic with respect to them. It waits for a growth or an export that
// runs (the store keeps growth from starting first).
func (ix *Index) Reset() error {
	ix.growMu.Lock()
	defer ix.growMu.Unlock()
	old := ix.state.Load().cur
	t, err := newTable(old.bits)
	if err != nil {
		return err
	}
	ix.resets.Add(1)
	ix.state.Store(&phaseState{phase: phaseRest, cur: t})
	ix.entries.Store(0)
	ix.epochs.Bump(old.free)
	return nil
}
