package index

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/internal/invariants"
)

// Growth doubles the table while operations continue, in FASTER's phases:
//
//	rest        one table; every operation uses it.
//	prepare     the new table exists but nobody uses it; an operation that
//	            starts now waits (refreshing its epoch) until every worker has
//	            finished the operations it began on the old table.
//	inProgress  every operation uses the new table; before touching a bucket
//	            it makes sure the chunk of old buckets that feeds it has been
//	            split (splitting it itself if nobody has claimed it). The
//	            grower splits the rest in the background.
//	rest        the old table is freed once every worker has moved on.
//
// Invariant: in inProgress nobody writes the old table, and a new bucket is
// read or written only after its chunk is chunkDone.
// Invariant: splitting keeps every record reachable: old bucket i's entry for
// tag t becomes, in new bucket 2i (2i+1), the newest record of the chain whose
// hash has the new bit 0 (1); a record whose key is not in memory cannot be
// sorted and goes to both new buckets (key comparisons skip the extra links).
const (
	phaseRest = iota
	phasePrepare
	phaseInProgress
)

const (
	chunkTodo = iota
	chunkBusy
	chunkDone
)

// splitChunkBuckets is how many old buckets one operation may have to split
// before it proceeds: it bounds the stall growth adds to an operation.
const splitChunkBuckets = 256

// current returns the table an operation on h must use, waiting out the
// prepare phase and splitting h's chunk during inProgress.
func (ix *Index) current(g *epoch.Guard, h uint64) *table {
	for spins := 0; ; spins++ {
		ps := ix.state.Load()
		switch ps.phase {
		case phaseRest:
			return ps.cur
		case phaseInProgress:
			ix.ensureSplit(ps, BucketOf(h, ps.old.bits)/ps.run.chunkSize)
			return ps.cur
		}
		g.Refresh()
		if spins > 16 {
			runtime.Gosched()
		}
	}
}

// ensureSplit returns once chunk c is split, splitting it if nobody has.
func (ix *Index) ensureSplit(ps *phaseState, c uint64) {
	st := &ps.run.chunks[c]
	for spins := 0; ; spins++ {
		switch st.Load() {
		case chunkDone:
			return
		case chunkTodo:
			if st.CompareAndSwap(chunkTodo, chunkBusy) {
				ix.splitChunk(ps, c)
				st.Store(chunkDone)
				ps.run.remaining.Add(-1)
				return
			}
		}
		if spins > 16 {
			runtime.Gosched()
		}
	}
}

// splitChunk splits old buckets [c*chunkSize, (c+1)*chunkSize) into the new
// table. The caller owns the chunk and holds epoch protection.
func (ix *Index) splitChunk(ps *phaseState, c uint64) {
	size := ps.run.chunkSize
	for i := c * size; i < (c+1)*size; i++ {
		for b := &ps.old.buckets[i]; b != nil; b = ps.old.next(b) {
			for j := 0; j < entriesPerBucket; j++ {
				if e := Entry(b[j].Load()); e.Used() {
					ix.splitEntry(ps.cur, i, e)
				}
			}
		}
	}
}

// splitEntry places old bucket i's entry e in new buckets 2i and 2i+1. An
// entry that never got an address belongs to an operation that gave up; it
// has no records and is dropped.
func (ix *Index) splitEntry(newT *table, i uint64, e Entry) {
	if invariants.Enabled && e.tentative() {
		invariants.Fail("tentative entry %#x in the old table during growth", uint64(e))
	}
	var heads [2]uint64
	newBit := 64 - newT.bits
	for addr := e.Address(); addr != 0 && (heads[0] == 0 || heads[1] == 0); {
		h, prev, inMemory := ix.chain.Step(addr)
		if !inMemory {
			for k := range heads {
				if heads[k] == 0 {
					heads[k] = addr
				}
			}
			break
		}
		if k := (bucketHash(h) >> newBit) & 1; heads[k] == 0 {
			heads[k] = addr
		}
		addr = prev
	}
	tag := uint64(e) & tagMask
	for k, a := range heads {
		if a != 0 {
			newT.place(2*i+uint64(k), makeEntry(tag, a))
		}
	}
}

// place stores e in the first free entry of new bucket nb's chain. Only the
// owner of nb's chunk writes there during the split.
func (t *table) place(nb uint64, e Entry) {
	b := &t.buckets[nb]
	for {
		for i := 0; i < entriesPerBucket; i++ {
			if b[i].Load() == 0 {
				b[i].Store(uint64(e))
				return
			}
		}
		if n := t.next(b); n != nil {
			b = n
			continue
		}
		t.addOverflow(b)
	}
}

// Grow doubles the table while operations continue and returns once the old
// table is split. g is the caller's own Guard; it must be unprotected on
// entry and is unprotected on return. Only one growth runs at a time.
func (ix *Index) Grow(g *epoch.Guard) error {
	if !ix.growMu.TryLock() {
		return ErrGrowing
	}
	defer ix.growMu.Unlock()
	oldT := ix.state.Load().cur
	if oldT.bits >= MaxBits {
		return fmt.Errorf("index: already at %d bucket bits", MaxBits)
	}
	newT, err := newTable(oldT.bits + 1)
	if err != nil {
		return err
	}
	run := &growRun{chunkSize: min(splitChunkBuckets, uint64(len(oldT.buckets)))}
	run.chunks = make([]atomic.Uint32, uint64(len(oldT.buckets))/run.chunkSize)
	run.remaining.Store(int64(len(run.chunks)))
	inProgress := &phaseState{phase: phaseInProgress, cur: newT, old: oldT, run: run}
	ix.state.Store(&phaseState{phase: phasePrepare, cur: oldT})
	ix.epochs.Bump(func() { ix.state.Store(inProgress) })
	ix.waitFor(inProgress)
	g.Protect()
	for c := range run.chunks {
		ix.ensureSplit(inProgress, uint64(c))
		g.Refresh()
	}
	g.Unprotect()
	for run.remaining.Load() != 0 {
		runtime.Gosched()
	}
	ix.state.Store(&phaseState{phase: phaseRest, cur: newT})
	ix.epochs.Bump(oldT.free)
	return nil
}

// waitFor waits, unprotected, until the deferred action publishes ps.
func (ix *Index) waitFor(ps *phaseState) {
	for spins := 0; ix.state.Load() != ps; spins++ {
		ix.epochs.Drain()
		if spins < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
}
