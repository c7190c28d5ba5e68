package server

import (
	"os"
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

// placeDevice keeps the device's own threads (io_uring's submitter and
// reaper) off the CPUs the loops are pinned to (pinThread: loop i on CPU
// i mod NumCPU), where the process may run on others: the kernel's work
// for each device read then runs beside the loops rather than in their
// turn. On the 2-vCPU VM, a loop whose CPU the ring's submitter shared
// waited up to 5 ms for it, and with the loop alone on its CPU a probe's
// p99 beside a cold load halved (BENCHMARKS.md, issue 16). With a loop on
// every CPU, or loops unpinned, the threads stay where they are. It
// returns the CPUs the threads were moved to; none when they stayed.
func (s *Server) placeDevice() (unix.CPUSet, error) {
	var spare unix.CPUSet
	d, ok := s.st.Log().Device().(interface{ Threads() []int })
	if !ok || s.cfg.NoPin {
		return spare, nil
	}
	// The process's CPUs, read from its main thread: the calling thread's
	// own mask may have been narrowed (a pinned thread's, were one ever
	// returned to the runtime's pool).
	if err := unix.SchedGetaffinity(os.Getpid(), &spare); err != nil {
		return unix.CPUSet{}, err
	}
	for i := range min(s.cfg.Loops, runtime.NumCPU()) {
		spare.Clear(i)
	}
	if spare.Count() == 0 {
		return spare, nil
	}
	for _, tid := range d.Threads() {
		if err := unix.SchedSetaffinity(tid, &spare); err != nil {
			return unix.CPUSet{}, err
		}
	}
	return spare, nil
}
