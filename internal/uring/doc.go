// Package uring is a small io_uring engine for positional reads and writes on
// files, written directly on the io_uring_setup, io_uring_enter and
// io_uring_register system calls (no cgo, no liburing). It is the engine
// under the O_DIRECT file device of package ssd.
//
// A Ring owns one kernel ring: a submission queue (SQ) of SQEs that many
// goroutines fill under a mutex and that one submitter goroutine hands to the
// kernel (submitting can block while the device's queue is full, and the
// callers are event loops), and a completion queue (CQ) that a single reaper
// goroutine drains. Each I/O is tracked by a slot in a Go-side table;
// the kernel only ever sees the slot's index (user_data) and the buffer's
// address, never a Go pointer it would have to keep alive. The slot holds the
// Completion and a reference to the buffer, so the buffer stays reachable
// until the kernel is done with it.
//
// Invariants (they are repeated, with the code that keeps them, in
// ring_linux.go):
//
//   - The SQ tail and the SQE array are written only by submitters holding
//     Ring.mu; the kernel owns the SQ head.
//   - The CQ head is written only by the reaper goroutine; the kernel owns
//     the CQ tail.
//   - A slot is free (in Ring.free), held by a submitter that is filling it,
//     or armed (its SQE is published and the kernel may complete it). Only
//     the reaper disarms an armed slot, after it has consumed the slot's
//     CQE, and it frees the slot (to the oldest request of the backlog, or
//     to Ring.free) before calling IODone.
//   - A request that finds every slot taken waits in the backlog; the check
//     for a free slot and the append happen under Ring.bmu, under which the
//     reaper also decides between the backlog and Ring.free, so no request
//     waits while a slot is free.
//   - At most len(slots) == SQ entries I/Os are armed at once, and the CQ has
//     at least that many entries, so the CQ never overflows and the SQ never
//     fills up beyond what the kernel has consumed.
//
// Read and Write never block on the device: when the ring is saturated the
// request waits in the backlog and the reaper submits it as soon as a slot
// frees up. Callers bound how much they queue (the server bounds its pending
// operations). Completions run on the reaper goroutine and must not block;
// they may issue new I/O.
package uring

import "errors"

// Completion receives one I/O's outcome: n bytes transferred or an error (a
// negative CQE result becomes a syscall.Errno). IODone is called exactly once
// per Read or Write, normally on the ring's reaper goroutine; an I/O rejected
// before it reaches the kernel (ErrClosed, a negative offset) completes on the
// caller's goroutine before Read or Write returns. IODone must not block.
type Completion interface{ IODone(n int, err error) }

// ErrUnsupported wraps the reason io_uring cannot be used here (ENOSYS, EPERM
// from seccomp or the io_uring_disabled sysctl, an old kernel lacking an
// opcode).
var ErrUnsupported = errors.New("uring: io_uring unavailable")

// ErrClosed is reported for I/O issued on a closed Ring, and returned by a
// second Close.
var ErrClosed = errors.New("uring: ring closed")
