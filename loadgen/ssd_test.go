package loadgen

import (
	"context"
	"errors"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/internal/uring"
	"github.com/fleetkv/fleetkv/server/servertest"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/store"
)

// TestLargerThanMemoryVerified runs the server on segment files with a data
// set four times its in-memory log budget, through each I/O engine: loads
// every key, then YCSB-A and YCSB-F with every read checked against what the
// run wrote. Most reads and read-modify-writes go to the device, complete on
// the loop that issued them and are answered in later batches.
func TestLargerThanMemoryVerified(t *testing.T) {
	for _, engine := range []string{ssd.IOPread, ssd.IOUring} {
		t.Run(engine, func(t *testing.T) {
			dev, err := ssd.OpenFile(ssd.FileConfig{Dir: t.TempDir(), SegmentSize: 1 << 20, IO: engine})
			if engine == ssd.IOUring && errors.Is(err, uring.ErrUnsupported) {
				t.Skipf("io_uring unavailable here: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dev.Close() })
			const memory = 1 << 20 // 16 pages of 64 KiB
			cfg := servertest.Config()
			cfg.MaxPendingIO = 64
			cfg.Store = store.Config{IndexBits: 10, Log: hlog.Config{PageBits: 16, MemoryBytes: memory, Device: dev}}
			s := servertest.Start(t, cfg)

			// 16 K keys of 256-byte values: over 4 MiB of records.
			base := Config{Servers: []string{s.Addr()}, Keys: 16 << 10, ValueSize: 256, Threads: 2, Sessions: 2,
				BatchBytes: 8 << 10, InFlight: 3, Verify: true, Dist: "uniform", Seed: 11}
			load := base
			load.Workload = "load"
			if rep, err := Run(context.Background(), load, nil); err != nil || rep.Errors != 0 || rep.Ops != 16<<10 {
				t.Fatalf("load: %+v %v", rep, err)
			}
			if tail := s.Store().Log().Tail(); tail < 4*memory {
				t.Fatalf("log tail %d: the data set is not 4x the memory budget", tail)
			}
			a := base
			a.Workload, a.Ops = "ycsb-a", 40000
			rep, err := Run(context.Background(), a, nil)
			if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 || rep.Ops < 40000 {
				t.Fatalf("ycsb-a: %+v %v", rep, err)
			}
			f := base
			f.ValueSize, f.Workload = 8, "load"
			if rep, err := Run(context.Background(), f, nil); err != nil || rep.Errors != 0 {
				t.Fatalf("load counters: %+v %v", rep, err)
			}
			f.Workload, f.Ops = "ycsb-f", 20000
			if rep, err := Run(context.Background(), f, nil); err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 {
				t.Fatalf("ycsb-f: %+v %v", rep, err)
			}
			st := s.Stats()
			if st.Pending < 1000 {
				t.Fatalf("only %d operations went to the device", st.Pending)
			}
			if st.HeldBack == 0 {
				t.Fatal("no connection was ever held back at MaxPendingIO 64: back-pressure untested")
			}
			t.Logf("%d operations went to the device; connections held back %d times", st.Pending, st.HeldBack)
		})
	}
}
