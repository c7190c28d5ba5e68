// Package manual hands out large blocks of memory that live outside the Go
// heap: the HybridLog's page frames and the hash index's bucket arrays.
//
// The garbage collector never scans or moves this memory, it is aligned to the
// operating system's page size (so it is cache-line aligned and usable for
// O_DIRECT I/O), and it is asked to be backed by transparent huge pages, which
// cuts TLB misses on random access to multi-gigabyte structures.
//
// The package must never hand out memory that holds Go pointers: the collector
// cannot see them here. Memory is released only by an explicit Free, and the
// caller must guarantee (for fleetkv, through epoch protection) that no
// goroutine still reads a block it frees.
//
// The race detector does not track accesses to memory outside the Go heap, so
// code that reads and writes these blocks is checked by the invariants build
// and by tests, not by -race.
package manual

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Alloc maps n bytes of zeroed anonymous memory and asks the kernel to back it
// with huge pages where it can. n is rounded up to the system page size.
func Alloc(n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("manual: alloc of %d bytes", n)
	}
	ps := unix.Getpagesize()
	size := (n + ps - 1) / ps * ps
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("manual: mmap %d bytes: %w", size, err)
	}
	// A refused hint is not an error: the memory works with small pages too.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b[:n:size], nil
}

// Free unmaps a block returned by Alloc. The block must not be used afterwards.
func Free(b []byte) error {
	if cap(b) == 0 {
		return nil
	}
	if err := unix.Munmap(b[:cap(b)]); err != nil {
		return fmt.Errorf("manual: munmap: %w", err)
	}
	return nil
}
