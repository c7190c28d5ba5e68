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
	b.StopTimer()
	st := openOnFiles(b, Config{IndexBits: 17})
	s, err := st.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	const keys = 128 << 10
	key, value := make([]byte, 8), make([]byte, 256)
	for round := range 3 {
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
		err := st.Scan(ctx, 0, ^uint64(0), func(key, value []byte, _ int64, live bool, _ uint64) error {
			n++
			return nil
		})
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
