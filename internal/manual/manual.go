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
	"unsafe"

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

// Populate faults in b's pages writable without changing what they hold
// (madvise MADV_POPULATE_WRITE, Linux 5.14 and later), so that the first
// write to each page later does not stop its writer for the fault: on a
// huge page that fault zeroes 2 MiB, and a server just added to a cluster
// spent 30 % of its samples in such faults while a migration's first records
// arrived (BENCHMARKS.md, "Memory faulted in before the loop writes it"). It
// may run while other goroutines read and write b. It reports whether the
// kernel did it; where it cannot, nothing changes and the pages fault on
// first use as before.
//
// It goes populateChunk bytes at a time, so that the kernel does not hold
// the process's memory map, which the Go runtime needs to grow its heap,
// for the whole block: populating a new server's 128 MiB in one call each
// delayed its registration past 0.24 s (5-10 ms without populating), in
// 2 MiB calls by 33-94 ms.
func Populate(b []byte) bool {
	for off := 0; off < len(b); off += populateChunk {
		if unix.Madvise(b[off:min(off+populateChunk, len(b))], unix.MADV_POPULATE_WRITE) != nil {
			return false
		}
	}
	return true
}

// populateChunk is one huge page.
const populateChunk = 2 << 20

// CanPopulate reports whether Populate works on this kernel (it populates
// a fresh page): for tests and diagnostics.
func CanPopulate() bool {
	b, err := Alloc(1)
	if err != nil {
		return false
	}
	defer Free(b)
	return Populate(b)
}

// Resident counts the pages of b (the system's page size) that are in
// memory now (mincore): what Populate did, for tests and diagnostics.
func Resident(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	ps := unix.Getpagesize()
	vec := make([]byte, (len(b)+ps-1)/ps)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if errno != 0 {
		return 0, fmt.Errorf("manual: mincore: %w", errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n, nil
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
