package index

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/keyhash"
)

// fakeLog is a log of (hash, prev) records addressed 1..n, standing in for
// the HybridLog. Addresses below evicted are "on the device".
type fakeLog struct {
	recs    []fakeRec
	next    atomic.Uint64
	evicted atomic.Uint64
}

type fakeRec struct {
	hash, prev atomic.Uint64
}

func newFakeLog(n int) *fakeLog { return &fakeLog{recs: make([]fakeRec, 4*n+64)} } // room for CAS losers

func (l *fakeLog) append(hash, prev uint64) uint64 {
	a := l.next.Add(1)
	l.recs[a].hash.Store(hash)
	l.recs[a].prev.Store(prev)
	return a
}

func (l *fakeLog) Step(addr uint64) (uint64, uint64, bool) {
	if addr < l.evicted.Load() {
		return 0, 0, false
	}
	return l.recs[addr].hash.Load(), l.recs[addr].prev.Load(), true
}

func newTestIndex(t *testing.T, bits uint, chain Chain, workers int) (*Index, *epoch.Manager) {
	t.Helper()
	em := epoch.New(workers + 2)
	ix, err := New(bits, em, chain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ix.Close)
	return ix, em
}

func hashOf(k uint64) uint64 { return keyhash.Hash(binary.LittleEndian.AppendUint64(nil, k)) }

func TestBucketsFromHighBits(t *testing.T) {
	if BucketOf(^uint64(0), 3) != 7 || BucketOf(1<<61, 3) != 1 || BucketOf(1<<60, 3) != 0 {
		t.Fatal("bucket must come from the high bits")
	}
}

func TestFindOrCreateFindAndCAS(t *testing.T) {
	l := newFakeLog(64)
	ix, em := newTestIndex(t, 4, l, 1)
	g, _ := em.Acquire()
	g.Protect()
	defer g.Release()
	h := hashOf(1)
	if _, _, ok := ix.Find(g, h); ok {
		t.Fatal("found an entry in an empty index")
	}
	s, e, created := ix.FindOrCreate(g, h)
	if !created || !e.Used() || e.Address() != 0 || e.Tag() != h&(1<<tagBits-1) {
		t.Fatalf("new entry %#x", uint64(e))
	}
	if !s.CompareAndSwap(e, 42) {
		t.Fatal("CAS on a fresh entry failed")
	}
	if s.CompareAndSwap(e, 43) {
		t.Fatal("CAS with a stale entry succeeded")
	}
	s2, e2, ok := ix.Find(g, h)
	if !ok || s2 != s || e2.Address() != 42 {
		t.Fatalf("Find after CAS: ok=%v addr=%d", ok, e2.Address())
	}
	if _, e3, c := ix.FindOrCreate(g, h); c || e3 != e2 {
		t.Fatal("FindOrCreate created a second entry for the same tag")
	}
	// Same bucket and tag from another key: same entry (keys live in the log).
	other := h ^ 1<<20
	if _, e4, _ := ix.FindOrCreate(g, other); e4 != e2 {
		t.Fatal("a hash that differs only outside bucket and tag got another entry")
	}
}

func TestOverflowBucketsHoldManyTags(t *testing.T) {
	l := newFakeLog(4096)
	ix, em := newTestIndex(t, 1, l, 1)
	g, _ := em.Acquire()
	g.Protect()
	defer g.Release()
	want := map[uint64]uint64{}
	for tag := uint64(0); tag < 200; tag++ {
		h := tag | 1<<63 // all in bucket 1 of 2
		s, e, _ := ix.FindOrCreate(g, h)
		if !s.CompareAndSwap(e, tag+1) {
			t.Fatal("CAS failed")
		}
		want[h] = tag + 1
	}
	for h, a := range want {
		if _, e, ok := ix.Find(g, h); !ok || e.Address() != a {
			t.Fatalf("tag %d: ok=%v addr=%d", h&0x3fff, ok, e.Address())
		}
	}
	if st := ix.Stats(); st.OverflowBuckets < 200/entriesPerBucket {
		t.Fatalf("only %d overflow buckets for 200 entries in one bucket", st.OverflowBuckets)
	}
	if _, _, ok := ix.Find(g, 5); ok {
		t.Fatal("bucket 0 is empty")
	}
}

// TestConcurrentInsertsNeverDuplicateATag races many goroutines creating the
// same few tags in one tiny table.
func TestConcurrentInsertsNeverDuplicateATag(t *testing.T) {
	const workers, rounds = 8, 2000
	l := newFakeLog(workers * rounds)
	ix, em := newTestIndex(t, 1, l, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		g, _ := em.Acquire()
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			defer g.Release()
			g.Protect()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < rounds; i++ {
				upsertAt(ix, g, l, uint64(rng.IntN(40))|uint64(rng.IntN(2))<<63)
				g.Refresh()
			}
		}(w)
	}
	wg.Wait()
	checkTable(t, ix.state.Load().cur)
}

// checkTable verifies that no chain holds two entries of one tag and that no
// entry is left tentative.
func checkTable(t *testing.T, tb *table) {
	t.Helper()
	for i := range tb.buckets {
		seen := map[uint64]bool{}
		for b := &tb.buckets[i]; b != nil; b = tb.next(b) {
			for j := 0; j < entriesPerBucket; j++ {
				e := Entry(b[j].Load())
				if !e.Used() {
					continue
				}
				if e.tentative() {
					t.Fatalf("bucket %d: tentative entry left", i)
				}
				if seen[e.Tag()] {
					t.Fatalf("bucket %d: tag %d twice", i, e.Tag())
				}
				seen[e.Tag()] = true
			}
		}
	}
}

// TestGrowUnderLoadLosesNoKey loads keys, then doubles a tiny table several
// times while workers keep updating half of them. Afterwards the first record
// of each key's hash on its chain must be the key's newest record, both for
// keys last written before the growths and for keys written during them.
func TestGrowUnderLoadLosesNoKey(t *testing.T) {
	for _, evict := range []bool{false, true} {
		t.Run(fmt.Sprintf("evicted=%v", evict), func(t *testing.T) {
			const workers, keys, minOps, maxOps, grows = 4, 4000, 3000, 100_000, 6
			l := newFakeLog(keys + workers*maxOps)
			ix, em := newTestIndex(t, 1, l, workers+1)
			latest := make([]uint64, keys)
			loader, _ := em.Acquire()
			loader.Protect()
			for k := range latest {
				latest[k] = upsertAt(ix, loader, l, hashOf(uint64(k)))
			}
			loader.Release()
			var wg sync.WaitGroup
			var stop atomic.Bool
			var ops atomic.Int64
			for w := 0; w < workers; w++ {
				g, _ := em.Acquire()
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					defer g.Release()
					g.Protect()
					for i := 0; i < maxOps && (i < minOps || !stop.Load()); i++ {
						k := (i*2*workers + w) % keys // even multiples: half the keys
						latest[k] = upsertAt(ix, g, l, hashOf(uint64(k)))
						ops.Add(1)
						if i%32 == 0 {
							g.Refresh()
						}
						if evict && i == minOps/2 && w == 0 {
							l.evicted.Store(uint64(keys / 2))
						}
					}
				}(w)
			}
			for ops.Load() < minOps {
				runtime.Gosched() // let the workers get going before growing
			}
			grower, _ := em.Acquire()
			overlapped := 0
			for i := 0; i < grows; i++ {
				before := ops.Load()
				if err := ix.Grow(grower); err != nil {
					t.Fatal(err)
				}
				if ops.Load() > before {
					overlapped++
				}
			}
			stop.Store(true)
			wg.Wait()
			if overlapped == 0 {
				t.Fatal("no growth overlapped with operations")
			}
			if got := ix.Bits(); got != 1+grows {
				t.Fatalf("index has %d bits after %d growths", got, grows)
			}
			checkTable(t, ix.state.Load().cur)
			g, _ := em.Acquire()
			g.Protect()
			defer g.Release()
			for k := range latest {
				h := hashOf(uint64(k))
				_, e, ok := ix.Find(g, h)
				if !ok {
					t.Fatalf("key %d: no entry after growth", k)
				}
				if got := l.newest(e.Address(), h); got != latest[k] {
					t.Fatalf("key %d: chain leads to record %d, newest is %d", k, got, latest[k])
				}
			}
		})
	}
}

// upsertAt is upsert that returns the new record's address.
func upsertAt(ix *Index, g *epoch.Guard, l *fakeLog, h uint64) uint64 {
	for {
		s, e, _ := ix.FindOrCreate(g, h)
		a := l.append(h, e.Address())
		if s.CompareAndSwap(e, a) {
			return a
		}
	}
}

// newest returns the first record of hash h on the chain from addr, reading
// through records on the "device" as the store does (it compares their keys
// once it has read them).
func (l *fakeLog) newest(addr, h uint64) uint64 {
	for ; addr != 0; addr = l.recs[addr].prev.Load() {
		if l.recs[addr].hash.Load() == h {
			return addr
		}
	}
	return 0
}

func TestGrowRejectsAConcurrentGrow(t *testing.T) {
	l := newFakeLog(1)
	ix, em := newTestIndex(t, 2, l, 1)
	ix.growMu.Lock()
	g, _ := em.Acquire()
	if err := ix.Grow(g); err != ErrGrowing {
		t.Fatalf("got %v, want ErrGrowing", err)
	}
	ix.growMu.Unlock()
	if err := ix.Grow(g); err != nil || ix.Bits() != 3 {
		t.Fatalf("Grow: %v, bits %d", err, ix.Bits())
	}
}

func BenchmarkFindHit(b *testing.B) {
	l := newFakeLog(1 << 16)
	em := epoch.New(1)
	ix, _ := New(14, em, l)
	defer ix.Close()
	g, _ := em.Acquire()
	g.Protect()
	hs := make([]uint64, 1<<16)
	for i := range hs {
		hs[i] = hashOf(uint64(i))
		upsertAt(ix, g, l, hs[i])
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, ok := ix.Find(g, hs[i&(1<<16-1)]); !ok {
			b.Fatal("miss")
		}
	}
}

// TestSlotGroupsAreBucketRuns: every hash of a slot group lies in one run of
// buckets, and the keys of one slot spread over the group's buckets (a
// {tag} with many keys does not pile into a few chains).
func TestSlotGroupsAreBucketRuns(t *testing.T) {
	const bits = 20
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100 {
		slot := uint16(rng.IntN(keyhash.Slots))
		group := uint64(slot) >> (slotBits - groupBits)
		first, last := group<<(bits-groupBits), (group+1)<<(bits-groupBits)-1
		seen := map[uint64]bool{}
		for range 2000 {
			h := keyhash.FirstHash(slot) | rng.Uint64()&(keyhash.LastHash(0))
			b := BucketOf(h, bits)
			if b < first || b > last {
				t.Fatalf("slot %d: hash %#x in bucket %d, outside its group's run %d..%d", slot, h, b, first, last)
			}
			seen[b] = true
		}
		if len(seen) < 1800 {
			t.Fatalf("2000 keys of slot %d fill only %d buckets", slot, len(seen))
		}
	}
}

// TestResetEmptiesTheIndex: after Reset no entry is found, the load count
// is 0 and a count batched before the reset is dropped, while one begun
// after it counts; the table keeps its size.
func TestResetEmptiesTheIndex(t *testing.T) {
	ix, em := newTestIndex(t, 6, newFakeLog(0), 1)
	g, err := em.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	g.Protect()
	for k := uint64(0); k < 500; k++ {
		s, _, created := ix.FindOrCreate(g, hashOf(k))
		if !created {
			t.Fatalf("key %d: entry already there", k)
		}
		s.CompareAndSwap(makeEntry(tagBitsOf(hashOf(k)), 0), k+1)
	}
	gen := ix.Resets()
	ix.CountEntries(400, gen)
	g.Unprotect()
	if err := ix.Reset(); err != nil {
		t.Fatal(err)
	}
	ix.CountEntries(100, gen) // batched before the reset
	g.Protect()
	defer g.Unprotect()
	for k := uint64(0); k < 500; k++ {
		if _, _, ok := ix.Find(g, hashOf(k)); ok {
			t.Fatalf("key %d found after Reset", k)
		}
	}
	if st := ix.Stats(); st.Entries != 0 || st.Bits != 6 || st.OverflowBuckets != 0 {
		t.Fatalf("after Reset: %+v", st)
	}
	ix.CountEntries(3, ix.Resets())
	if n := ix.Stats().Entries; n != 3 {
		t.Fatalf("%d entries counted after Reset, want 3", n)
	}
}
