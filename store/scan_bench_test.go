package store

import (
	"context"
	"encoding/binary"
	"testing"
	"time"
)

// BenchmarkScanDevice measures a scan of records that are on the device,
// as a migration's move reads them without a shared tier: 128 Ki keys of
// 256 B, each written three times, in a log with 4 MiB of memory over
// segment files (O_DIRECT; io_uring where the kernel has it), so nearly
// every chain is walked through the device, record by record. One
// iteration scans the whole hash space; ns/record and records/s are per
// key visited.
func BenchmarkScanDevice(b *testing.B) {
	benchmarkScan(b, openOnFiles(b, Config{IndexBits: 17}), 128<<10, 256, 3, 1)
}

// BenchmarkScanMemory measures a scan of records in memory, as a
// migration's move and the source's drop of the moved slots read them: 1 Mi
// keys of 8 B, each written once, in an index of 2^20 buckets, scanned in
// 64 ranges (a migration scans a group of 256 slots at a time). Each record
// is a miss to memory, at a place the index's order does not predict.
func BenchmarkScanMemory(b *testing.B) {
	benchmarkScan(b, openTest(b, Config{IndexBits: 20}), 1<<20, 8, 1, 64)
}

// benchmarkScan writes keys keys of valueLen bytes rounds times into st,
// then scans the whole hash space once per iteration, in steps equal
// ranges.
func benchmarkScan(b *testing.B, st *Store, keys, valueLen, rounds, steps int) {
	b.StopTimer()
	s, err := st.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	key, value := make([]byte, 8), make([]byte, valueLen)
	for round := range rounds {
		value[0] = byte(round)
		for i := range keys {
			binary.LittleEndian.PutUint64(key, uint64(i))
			if _, err := s.Upsert(key, value); err != nil {
				b.Fatal(err)
			}
		}
	}
	s.Close()
	ctx := context.Background()
	var seen int
	var took time.Duration
	for i := 0; i < b.N; i++ {
		n := 0
		t0 := time.Now()
		b.StartTimer()
		var err error
		for step := range uint64(steps) {
			span := ^uint64(0)/uint64(steps) + 1 // steps is a power of two
			if err = st.Scan(ctx, step*span, step*span+span-1, func(key, value []byte, _ int64, live bool, _ uint64) error {
				n++
				return nil
			}); err != nil {
				break
			}
		}
		b.StopTimer()
		took += time.Since(t0)
		if err != nil || n != keys {
			b.Fatalf("scan met %d keys (%v), want %d", n, err, keys)
		}
		seen += n
	}
	b.ReportMetric(float64(took.Nanoseconds())/float64(seen), "ns/record")
	b.ReportMetric(float64(seen)/took.Seconds(), "records/s")
	b.ReportMetric(0, "ns/op")
}
