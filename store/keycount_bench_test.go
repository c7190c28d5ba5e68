package store

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// openOnFiles opens a store of cfg whose log has 4 MiB of memory (1 MiB
// pages) over segment files in a temporary directory (O_DIRECT), closed
// when b ends.
func openOnFiles(b *testing.B, cfg Config) *Store {
	b.Helper()
	dev, err := ssd.OpenFile(ssd.FileConfig{Dir: b.TempDir(), SegmentSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dev.Close() })
	cfg.Log = hlog.Config{PageBits: 20, MemoryBytes: 4 << 20, Device: dev}
	st, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() }) // before the device: cleanups run last first
	return st
}

// BenchmarkKeyDoubts measures what the exact key count costs a workload
// of cold blind writes: 256 Ki keys of 8 B in a log with 4 MiB of memory
// over segment files (O_DIRECT), every key upserted again (most of them
// blind over a record on the device: a doubt each), then Keys resolves
// them all (ns/doubt). Beside it, in the same run, the cost of reading
// every key back once, one at a time (ns/cold-read), which is what a
// write that read before it wrote would pay instead.
func BenchmarkKeyDoubts(b *testing.B) {
	b.StopTimer() // the loads are not timed
	// No background resolution: Keys resolves them all.
	st := openOnFiles(b, Config{IndexBits: 18, MaxDoubts: 1 << 30})
	s, err := st.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const keys = 256 << 10
	key := make([]byte, 8)
	writeAll := func(v byte) {
		for i := range keys {
			binary.LittleEndian.PutUint64(key, uint64(i))
			if _, err := s.Upsert(key, []byte{v, 0, 0, 0, 0, 0, 0, 0}); err != nil {
				b.Fatal(err)
			}
		}
		s.Suspend()
	}
	readAll := func() {
		for k := range keys {
			binary.LittleEndian.PutUint64(key, uint64(k))
			if _, st, err := s.Read(key, nil); err != nil {
				b.Fatal(err)
			} else if st == Pending {
				s.CompletePending(true)
			}
		}
		s.Suspend()
	}
	writeAll(0)
	ctx := context.Background()
	var doubts int
	var resolve, read time.Duration
	for i := 0; i < b.N; i++ {
		writeAll(byte(i + 1))
		doubts += st.Stats().Doubts
		t0 := time.Now()
		b.StartTimer()
		n, err := st.Keys(ctx)
		b.StopTimer()
		resolve += time.Since(t0)
		if err != nil || n != keys {
			b.Fatalf("Keys = %d %v, want %d", n, err, keys)
		}
		t0 = time.Now()
		b.StartTimer()
		readAll()
		b.StopTimer()
		read += time.Since(t0)
	}
	b.ReportMetric(float64(doubts)/float64(b.N), "doubts/op")
	if doubts > 0 {
		b.ReportMetric(float64(resolve.Nanoseconds())/float64(doubts), "ns/doubt")
	}
	b.ReportMetric(float64(read.Nanoseconds())/float64(b.N*keys), "ns/read")
}
