package index

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fleetkv/fleetkv/internal/manual"
)

// overflowChunk is how many overflow buckets are allocated at a time.
const overflowChunk = 1024

// table is one generation of the index: 2^bits main buckets in manual memory
// and a slab of overflow buckets.
type table struct {
	bits    uint
	shift   uint // 64 - bits, the shift from a bucket hash to its bucket
	mem     []byte
	buckets []bucket
	over    overflowSlab
	// populating is the goroutine that faults the buckets in (newTable);
	// free waits for it.
	populating sync.WaitGroup
}

func newTable(bits uint) (*table, error) {
	n := 1 << bits
	mem, err := manual.Alloc(n * int(unsafe.Sizeof(bucket{})))
	if err != nil {
		return nil, err
	}
	b := unsafe.Slice((*bucket)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	t := &table{bits: bits, shift: 64 - bits, mem: mem, buckets: b}
	// Keys land on buckets uniformly, so every page of the table is
	// written soon: fault them all in now, beside the operations (which
	// may use the table at once), rather than one fault per page inside
	// them.
	t.populating.Go(func() { manual.Populate(mem) })
	return t, nil
}

func (t *table) free() {
	t.populating.Wait()
	manual.Free(t.mem)
}

// bucketFor is BucketOf's bucket. bits is at least 1 (New), so the shift
// is below 64 and the mask tells the compiler so: one SHR, no guard for
// Go's shift-by-64 semantics.
func (t *table) bucketFor(h uint64) *bucket { return &t.buckets[bucketHash(h)>>(t.shift&63)] }

// next returns b's overflow bucket, or nil.
func (t *table) next(b *bucket) *bucket {
	if i := b[entriesPerBucket].Load(); i != 0 {
		return t.over.get(i)
	}
	return nil
}

// overflowSlab hands out zeroed overflow buckets by 1-based index. Buckets
// are never returned: a bucket lost to a race in addOverflow stays unused
// until the table is dropped. The memory is Go memory holding no pointers, so
// the collector does not scan it.
type overflowSlab struct {
	next   atomic.Uint64                            // last index handed out
	chunks atomic.Pointer[[]*[overflowChunk]bucket] // copy-on-grow directory
	mu     sync.Mutex                               // serializes directory growth
}

func (o *overflowSlab) get(i uint64) *bucket {
	i--
	return &(*o.chunks.Load())[i/overflowChunk][i%overflowChunk]
}

func (o *overflowSlab) alloc() uint64 {
	i := o.next.Add(1)
	c := int((i - 1) / overflowChunk)
	if dir := o.chunks.Load(); dir == nil || len(*dir) <= c {
		o.grow(c)
	}
	return i
}

func (o *overflowSlab) grow(c int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var dir []*[overflowChunk]bucket
	if p := o.chunks.Load(); p != nil {
		dir = *p
	}
	if len(dir) > c {
		return
	}
	nd := make([]*[overflowChunk]bucket, c+1)
	copy(nd, dir)
	for i := len(dir); i <= c; i++ {
		nd[i] = new([overflowChunk]bucket)
	}
	o.chunks.Store(&nd)
}

// allocated returns how many overflow buckets were handed out.
func (o *overflowSlab) allocated() uint64 { return o.next.Load() }
