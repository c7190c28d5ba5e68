package ssd

import "errors"

// Callback receives the outcome of one asynchronous I/O. IODone is called
// exactly once per request: possibly before ReadAsync or WriteAsync returns,
// on the calling goroutine, or later on a goroutine of the device. It must not
// block.
type Callback interface {
	IODone(n int, err error)
}

// Device is a byte-addressed store for log pages. Offsets are logical log
// addresses. Buffers passed to an asynchronous call must stay untouched until
// the callback has run. All methods are safe from any goroutine.
type Device interface {
	// Alignment is the granularity that offsets, lengths and buffer addresses
	// of every I/O must respect (1 for devices without such a rule).
	Alignment() int
	// WriteAsync writes p at off.
	WriteAsync(p []byte, off uint64, cb Callback)
	// ReadAsync reads len(p) bytes at off into p. Reading bytes that were
	// never written returns zeros.
	ReadAsync(p []byte, off uint64, cb Callback)
	// Sync makes every write whose callback ran before the call durable:
	// after a power loss, such bytes read back as written. It blocks, so it
	// belongs off the request path.
	Sync() error
	// Release gives back the space of everything below off, which the log
	// no longer needs (compaction moved its begin past it and a checkpoint
	// recorded that). A device may keep bytes below off (a file device
	// frees whole segments only), but reads below off fail with
	// ErrReleased from then on. Releasing less than before does nothing.
	Release(off uint64) error
	// Close releases the device. I/O issued after Close fails with ErrClosed.
	Close() error
}

// ErrClosed is reported for I/O on a closed device.
var ErrClosed = errors.New("ssd: device closed")

// ErrReleased is reported for a read below the point the device released.
var ErrReleased = errors.New("ssd: read below the released start of the log")

// ErrMisaligned is reported for I/O that breaks the device's alignment rule.
var ErrMisaligned = errors.New("ssd: misaligned I/O")
