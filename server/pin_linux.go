package server

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// pinThread pins the calling OS thread to cpu (modulo the CPUs present). The
// caller must be locked to its thread (gnet locks loop threads) and must
// never unlock it: a pinned thread returned to the runtime's pool would
// carry its mask to other goroutines.
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu % runtime.NumCPU())
	return unix.SchedSetaffinity(0, &set)
}
