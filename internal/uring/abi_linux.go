//go:build linux

package uring

// The kernel ABI: the structures and constants of <linux/io_uring.h> that
// this package needs, the three system calls, and the only unsafe pointer
// arithmetic in the package (views into the memory mapped from the ring fd).
// The layouts are the same on every Linux architecture (fixed-size fields,
// natural alignment); the sizes are checked at compile time below.

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes (enum io_uring_op).
const (
	opNop   = 0
	opRead  = 22 // since 5.6
	opWrite = 23 // since 5.6
)

// mmap offsets of the three regions of a ring.
const (
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

const (
	featSingleMmap  = 1 << 0 // SQ and CQ rings share one mapping
	enterGetEvents  = 1 << 0 // io_uring_enter: wait for min_complete CQEs
	registerProbe   = 8      // io_uring_register opcode IORING_REGISTER_PROBE
	registerIOWQMax = 19     // io_uring_register opcode IORING_REGISTER_IOWQ_MAX_WORKERS (Linux 5.15)
	probeOpSupport  = 1 << 0 // io_uring_probe_op.flags: opcode supported
	maxEntries      = 32768  // IORING_MAX_ENTRIES
	probeOpCapacity = 256
)

// sqe is struct io_uring_sqe (64 bytes), reduced to the fields used here;
// the unions are named after the member this package writes.
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	rwFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe (16 bytes; no IORING_SETUP_CQE32).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// sqRingOffsets is struct io_sqring_offsets: byte offsets into the SQ ring.
type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqRingOffsets is struct io_cqring_offsets: byte offsets into the CQ ring.
type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// params is struct io_uring_params (120 bytes).
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqRingOffsets
	cqOff                                                                  cqRingOffsets
}

// probeOp is struct io_uring_probe_op.
type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16
	resv2 uint32
}

// probe is struct io_uring_probe with room for probeOpCapacity opcodes.
type probe struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
	ops    [probeOpCapacity]probeOp
}

// Compile-time layout checks: each line fails to compile if the size is off.
var (
	_ [unsafe.Sizeof(sqe{}) - 64]struct{}
	_ [64 - unsafe.Sizeof(sqe{})]struct{}
	_ [unsafe.Sizeof(cqe{}) - 16]struct{}
	_ [16 - unsafe.Sizeof(cqe{})]struct{}
	_ [unsafe.Sizeof(params{}) - 120]struct{}
	_ [120 - unsafe.Sizeof(params{})]struct{}
	_ [unsafe.Sizeof(probe{}) - 16 - 8*probeOpCapacity]struct{}
	_ [16 + 8*probeOpCapacity - unsafe.Sizeof(probe{})]struct{}
)

// supports reports whether the probed kernel implements opcode op.
func (p *probe) supports(op uint8) bool {
	return op < p.opsLen && p.ops[op].flags&probeOpSupport != 0
}

// sysSetup is io_uring_setup(2). The kernel fills in p.
func sysSetup(entries uint32, p *params) (int, unix.Errno) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	return int(fd), errno
}

// sysEnter is io_uring_enter(2) without a signal mask. It may block (waiting
// for completions, or a write the kernel performs inline), so it goes through
// Syscall6 and lets the scheduler hand the P to another thread.
func sysEnter(fd int, toSubmit, minComplete, flags uint32) (int, unix.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd),
		uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	return int(n), errno
}

// sysIOWQMax is io_uring_register(2) with IORING_REGISTER_IOWQ_MAX_WORKERS:
// it caps the kernel worker threads that run requests which cannot be issued
// without blocking (bounded: file I/O; unbounded: sockets and the like).
func sysIOWQMax(fd int, bounded, unbounded uint32) unix.Errno {
	counts := [2]uint32{bounded, unbounded}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd),
		registerIOWQMax, uintptr(unsafe.Pointer(&counts)), 2, 0, 0)
	return errno
}

// sysProbe is io_uring_register(2) with IORING_REGISTER_PROBE.
func sysProbe(fd int, p *probe) unix.Errno {
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd),
		registerProbe, uintptr(unsafe.Pointer(p)), probeOpCapacity, 0, 0)
	return errno
}

// Views into mapped ring memory. This is the one place that turns byte
// offsets reported by the kernel into typed pointers. The memory comes from
// mmap, not the Go heap, so the garbage collector neither scans nor moves it,
// and it holds no Go pointers. Every view is bounds-checked against the
// mapping, so a bad offset from the kernel panics instead of corrupting
// memory.

// u32At returns a pointer to the uint32 at byte offset off of mem.
func u32At(mem []byte, off uint32) *uint32 {
	_ = mem[off+3]
	return (*uint32)(unsafe.Pointer(&mem[off]))
}

// sliceAt returns a slice of n values of type T starting at byte offset off
// of mem.
func sliceAt[T any](mem []byte, off, n uint32) []T {
	size := uint64(unsafe.Sizeof(*new(T)))
	if n == 0 || uint64(off)+uint64(n)*size > uint64(len(mem)) {
		panic("uring: ring region out of the mapping")
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&mem[off])), n)
}

// bufAddr is the address the kernel reads or writes for p. The caller keeps
// p reachable (the slot references it) until the I/O completes; Go's heap
// does not move, and p escapes to the heap because the slot stores it.
func bufAddr(p []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(p))))
}
