package tier

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/fleetkv/fleetkv/ssd"
)

// Reader reads another server's log through its segments in the tier. It
// is an ssd.Device that only reads, so a store can follow a hash chain into
// that log with the same code that follows one into its own device.
//
// A read runs on a goroutine of its own (at most depth at once; the rest
// wait for a turn on theirs, never on the caller's) and completes there,
// except a BlockReader's read of blocks it keeps: that one completes
// before ReadAsync returns (a resolver's sweep reads most records so: a
// goroutine and its hand-offs per record cost more than the copy; Kept
// hands out a kept block's bytes without even the copy). A Reader of a
// directory store keeps its segments' files open (files.go).
// A read that starts in a missing segment fails with ErrNotFound; bytes
// past the end of a present segment that fall in a missing one read as
// zeros, as a device returns for bytes never written (a store's first read
// of a record reaches past it speculatively).
type Reader struct {
	segs  *Segments
	cache *blockCache // nil: every read is its own ranged read
	files *openFiles  // the segments' files kept open (a Dir's); nil for other stores
	sem   chan struct{}
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	mu    sync.Mutex  // orders a read's wg.Add before Close's Wait
	shut  atomic.Bool // Close ran (set under mu): reads fail with ssd.ErrClosed
}

// ErrReadOnly is returned for a write to a Reader.
var ErrReadOnly = errors.New("tier: a log read through the tier is read-only")

// Reader returns a Reader of the segments with at most depth reads at
// once (at least 1).
func (g *Segments) Reader(depth int) *Reader {
	ctx, stop := context.WithCancel(context.Background())
	r := &Reader{segs: g, sem: make(chan struct{}, max(depth, 1)), ctx: ctx, stop: stop}
	if fs, ok := g.store.(fileStore); ok {
		r.files = newOpenFiles(maxOpen, func(seg uint64) (*os.File, error) { return fs.open(g.Name(seg)) })
	}
	return r
}

// BlockReader is Reader that reads whole blocks (BlockSize bytes, aligned
// in their segment) and keeps the last blocks of them: for a reader that
// sweeps the log (a resolver walking chains in address order), where one
// request per block beats one per record.
func (g *Segments) BlockReader(depth, blocks int) *Reader {
	r := g.Reader(depth)
	r.cache = newBlockCache(max(blocks, 1))
	return r
}

// Alignment implements ssd.Device: the tier has no alignment rule.
func (r *Reader) Alignment() int { return 1 }

// WriteAsync implements ssd.Device: it always fails.
func (r *Reader) WriteAsync(p []byte, off uint64, cb ssd.Callback) { cb.IODone(0, ErrReadOnly) }

// ReadAsync implements ssd.Device.
func (r *Reader) ReadAsync(p []byte, off uint64, cb ssd.Callback) {
	if r.cache != nil && !r.shut.Load() && r.kept(p, off) {
		cb.IODone(len(p), nil)
		return
	}
	r.mu.Lock()
	if r.shut.Load() {
		r.mu.Unlock()
		cb.IODone(0, ssd.ErrClosed)
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		r.sem <- struct{}{}
		err := r.read(p, off)
		<-r.sem
		if err != nil {
			cb.IODone(0, err)
			return
		}
		cb.IODone(len(p), nil)
	}()
}

// read fills p from the log at off, one segment's part at a time.
func (r *Reader) read(p []byte, off uint64) error {
	size := r.segs.size
	for done := 0; done < len(p); {
		pos := off + uint64(done)
		n, in := pos/size, pos%size
		part := p[done:min(len(p), done+int(size-in))]
		err := r.readPart(n, in, part)
		switch {
		case errors.Is(err, ErrNotFound) && done > 0:
			clear(part)
		case err != nil:
			return fmt.Errorf("log %s at %d: %w", r.segs.logID, pos, err)
		}
		done += len(part)
	}
	return nil
}

// kept fills p from the log at off when every block it needs is kept and
// read; false otherwise (p may then be partly filled).
func (r *Reader) kept(p []byte, off uint64) bool {
	for done := 0; done < len(p); {
		b := r.Kept(off + uint64(done))
		if b == nil {
			return false
		}
		done += copy(p[done:], b) // a block never crosses its segment's end
	}
	return true
}

// Kept returns the log's bytes from off to the end of the block that
// holds off, when a BlockReader keeps that block and has read it; nil
// otherwise. The bytes are the kept block's own, not a copy: they never
// change (the package invariant) and stay readable after the block leaves
// the cache (a block is never reused).
func (r *Reader) Kept(off uint64) []byte {
	if r.cache == nil || r.shut.Load() {
		return nil
	}
	in := off % r.segs.size
	b, ok := r.cache.peek(blockKey{off / r.segs.size, in / BlockSize})
	if !ok {
		return nil
	}
	return b[in%BlockSize:]
}

// readPart fills part from segment n at in, through the block cache when
// there is one.
func (r *Reader) readPart(n, in uint64, part []byte) error {
	if r.cache == nil {
		return r.readAt(n, part, in)
	}
	for done := 0; done < len(part); {
		pos := in + uint64(done)
		b, err := r.cache.get(blockKey{n, pos / BlockSize}, func() ([]byte, error) {
			// A new block each fetch, never reused: Kept hands its bytes
			// out, to be read after the block has left the cache.
			blk := make([]byte, min(BlockSize, r.segs.size-pos/BlockSize*BlockSize))
			return blk, r.readAt(n, blk, pos/BlockSize*BlockSize)
		})
		if err != nil {
			return err
		}
		done += copy(part[done:], b[pos%BlockSize:])
	}
	return nil
}

// readAt fills p from segment n at in: through a kept file of a
// directory store, or the store's ranged read.
func (r *Reader) readAt(n uint64, p []byte, in uint64) error {
	if r.files == nil {
		return r.segs.store.ReadAt(r.ctx, r.segs.Name(n), p, int64(in))
	}
	f, err := r.files.acquire(n)
	if err != nil {
		return err
	}
	defer r.files.release(f)
	return readFileAt(f.f, r.segs.Name(n), p, int64(in))
}

// Sync implements ssd.Device: nothing is written.
func (r *Reader) Sync() error { return nil }

// Release implements ssd.Device: the tier's segments are deleted by
// whoever knows no index reaches them, not by a reader.
func (r *Reader) Release(uint64) error { return nil }

// Close implements ssd.Device: reads in progress end (failing) and later
// ones fail with ssd.ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	r.shut.Store(true)
	r.mu.Unlock()
	r.stop()
	r.wg.Wait()
	if r.files != nil {
		r.files.close()
	}
	return nil
}

// BlockSize is the unit a BlockReader reads and keeps.
const BlockSize = 1 << 20

type blockKey struct{ seg, block uint64 }

// blockCache keeps the blocks read last (the least recently used goes
// first); a block being read is read once, its other readers wait for it.
// Segments never change once uploaded (the package invariant), so a kept
// block never goes stale.
type blockCache struct {
	mu      sync.Mutex
	max     int
	tick    uint64
	entries map[blockKey]*blockEntry
}

type blockEntry struct {
	done chan struct{} // closed when b and err are set
	b    []byte
	err  error
	used uint64
}

func newBlockCache(blocks int) *blockCache {
	return &blockCache{max: blocks, entries: map[blockKey]*blockEntry{}}
}

// get returns block k, reading it with fetch when it is not kept.
func (c *blockCache) get(k blockKey, fetch func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	c.tick++
	e := c.entries[k]
	if e != nil {
		e.used = c.tick
		c.mu.Unlock()
		<-e.done
		return e.b, e.err
	}
	e = &blockEntry{done: make(chan struct{}), used: c.tick}
	c.entries[k] = e
	c.evict()
	c.mu.Unlock()
	e.b, e.err = fetch()
	close(e.done)
	if e.err != nil {
		c.mu.Lock()
		if c.entries[k] == e {
			delete(c.entries, k) // not kept: the next reader tries again
		}
		c.mu.Unlock()
	}
	return e.b, e.err
}

// peek returns block k when it is kept and was read without error.
func (c *blockCache) peek(k blockKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		return nil, false
	}
	select {
	case <-e.done:
	default:
		return nil, false // being read: the caller's read waits on a goroutine
	}
	if e.err != nil {
		return nil, false
	}
	c.tick++
	e.used = c.tick
	return e.b, true
}

// evict drops the least recently used blocks above the cap.
func (c *blockCache) evict() {
	for len(c.entries) > c.max {
		delete(c.entries, leastUsed(c.entries, func(e *blockEntry) uint64 { return e.used }))
	}
}

// leastUsed returns the key of m's entry of the lowest used tick (a
// linear scan: the caches hold tens of entries).
func leastUsed[K comparable, V any](m map[K]V, used func(V) uint64) K {
	var oldest K
	min := ^uint64(0)
	for k, v := range m {
		if u := used(v); u < min {
			oldest, min = k, u
		}
	}
	return oldest
}
