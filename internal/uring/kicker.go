//go:build linux

package uring

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kicker wakes one sleeping goroutine, its thread directly, through a
// futex: wake never blocks and makes a system call only when it is the
// first since the sleeper last woke.
//
// Invariant: word is 1 from a wake until the sleeper's next sleep takes it
// back to 0; sleep returns at once while it is 1. A wake is never lost: a
// sleeper that read 0 and is about to wait passes 0 to FUTEX_WAIT, which
// returns at once if a wake stored 1 in between.
type kicker struct{ word atomic.Uint32 }

// futex(2) operations (linux/futex.h): FUTEX_WAIT and FUTEX_WAKE with
// FUTEX_PRIVATE_FLAG, the word being private to this process.
const (
	futexWaitPrivate = 0 | 128
	futexWakePrivate = 1 | 128
)

// wake marks a kick and wakes the sleeper if it may be asleep.
func (k *kicker) wake() {
	if k.word.Swap(1) == 0 {
		// Short and never blocking: no need to tell the scheduler.
		unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&k.word)), futexWakePrivate, 1, 0, 0, 0)
	}
}

// sleep returns once a wake has happened since the previous sleep returned,
// and consumes it. Only one goroutine may sleep on a kicker.
func (k *kicker) sleep() {
	for !k.word.CompareAndSwap(1, 0) {
		// A blocking system call: the scheduler may hand this thread's P
		// to another while it waits. EINTR and EAGAIN (the word changed)
		// just look again.
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&k.word)), futexWaitPrivate, 0, 0, 0, 0)
	}
}
