package ssd

import (
	"sync"
)

// memBlockBits sets the size of the blocks a MemDevice allocates lazily.
const memBlockBits = 20

// MemDevice keeps written bytes in memory. Every I/O completes synchronously,
// before the call returns. It stands in for the SSD wherever a test or an
// in-memory configuration needs a Device.
type MemDevice struct {
	mu struct {
		sync.Mutex
		blocks   map[uint64][]byte
		released uint64 // reads below fail with ErrReleased
		closed   bool
	}
}

// NewMemDevice returns an empty in-memory device.
func NewMemDevice() *MemDevice {
	d := &MemDevice{}
	d.mu.blocks = make(map[uint64][]byte)
	return d
}

// Alignment implements Device: a MemDevice has no alignment rule.
func (d *MemDevice) Alignment() int { return 1 }

// WriteAsync implements Device.
func (d *MemDevice) WriteAsync(p []byte, off uint64, cb Callback) {
	n, err := d.transfer(p, off, true)
	cb.IODone(n, err)
}

// ReadAsync implements Device.
func (d *MemDevice) ReadAsync(p []byte, off uint64, cb Callback) {
	n, err := d.transfer(p, off, false)
	cb.IODone(n, err)
}

func (d *MemDevice) transfer(p []byte, off uint64, write bool) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.mu.closed:
		return 0, ErrClosed
	case !write && off < d.mu.released:
		return 0, ErrReleased
	}
	done := 0
	for done < len(p) {
		pos := off + uint64(done)
		blk, in := pos>>memBlockBits, pos&(1<<memBlockBits-1)
		n := min(len(p)-done, 1<<memBlockBits-int(in))
		b := d.mu.blocks[blk]
		switch {
		case write && b == nil:
			b = make([]byte, 1<<memBlockBits)
			d.mu.blocks[blk] = b
			fallthrough
		case write:
			copy(b[in:], p[done:done+n])
		case b == nil:
			clear(p[done : done+n])
		default:
			copy(p[done:done+n], b[in:])
		}
		done += n
	}
	return done, nil
}

// Sync implements Device: memory has nothing to sync (it does not survive
// the process either; CrashDevice models power loss).
func (d *MemDevice) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return ErrClosed
	}
	return nil
}

// Release implements Device: it frees the blocks wholly below off.
func (d *MemDevice) Release(off uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return ErrClosed
	}
	if off <= d.mu.released {
		return nil
	}
	d.mu.released = off
	for blk := range d.mu.blocks {
		if (blk+1)<<memBlockBits <= off {
			delete(d.mu.blocks, blk)
		}
	}
	return nil
}

// Close implements Device.
func (d *MemDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.closed = true
	d.mu.blocks = nil
	return nil
}
