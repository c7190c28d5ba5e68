package server

import (
	"context"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/store"
)

// TestDeviceThreadsRunOffTheLoopsCores: with loops pinned and CPUs to
// spare, the io_uring device's submitter and reaper threads may run on
// every CPU but the loops'; with loops unpinned they stay where they were.
// No connection is made, so no loop thread of the test process is pinned.
func TestDeviceThreadsRunOffTheLoopsCores(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: no core to spare for the device")
	}
	for _, pin := range []bool{true, false} {
		dev, err := ssd.OpenFile(ssd.FileConfig{Dir: t.TempDir(), SegmentSize: 1 << 20, IO: ssd.IOUring})
		if err != nil {
			t.Skipf("no io_uring here: %v", err)
		}
		before := affinities(t, dev.Threads())
		s, err := Start(Config{Listen: "127.0.0.1:0", Loops: 1, NoPin: !pin,
			Store: store.Config{IndexBits: 10, Log: tinyLog(dev)}}, quietLog())
		if err != nil {
			dev.Close()
			t.Fatal(err)
		}
		tids := dev.Threads()
		if len(tids) != 2 {
			t.Fatalf("the ring reports threads %v, want its submitter and reaper", tids)
		}
		for i, got := range affinities(t, tids) {
			switch {
			case pin && (got.IsSet(0) || got.Count() == 0):
				t.Errorf("pinned loop on CPU 0: device thread %d may run on %d CPUs, CPU 0 among them: %v", tids[i], got.Count(), got.IsSet(0))
			case !pin && got != before[i]:
				t.Errorf("unpinned loops: device thread %d was moved", tids[i])
			}
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := dev.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func affinities(t *testing.T, tids []int) []unix.CPUSet {
	t.Helper()
	sets := make([]unix.CPUSet, len(tids))
	for i, tid := range tids {
		if err := unix.SchedGetaffinity(tid, &sets[i]); err != nil {
			t.Fatal(err)
		}
	}
	return sets
}
