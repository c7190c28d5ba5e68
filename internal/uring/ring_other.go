//go:build !linux

package uring

import (
	"fmt"
	"runtime"
)

// Ring is an io_uring instance. On this platform there is none: Open always
// fails with ErrUnsupported.
type Ring struct{}

// Open reports ErrUnsupported: io_uring exists only on Linux.
func Open(entries uint32) (*Ring, error) {
	return nil, fmt.Errorf("%w: %s has no io_uring", ErrUnsupported, runtime.GOOS)
}

// Read completes with ErrClosed; a Ring cannot be opened on this platform.
func (r *Ring) Read(fd int, p []byte, off int64, c Completion) { c.IODone(0, ErrClosed) }

// Write completes with ErrClosed; a Ring cannot be opened on this platform.
func (r *Ring) Write(fd int, p []byte, off int64, c Completion) { c.IODone(0, ErrClosed) }

// Threads returns nil: there are none.
func (r *Ring) Threads() []int { return nil }

// InFlight returns 0.
func (r *Ring) InFlight() int { return 0 }

// Close returns ErrClosed.
func (r *Ring) Close() error { return ErrClosed }
