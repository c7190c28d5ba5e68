package server

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/session"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// BenchmarkBatchPath is the loop's CPU per operation on the native batch
// path without the network (validate, decode, execute with the prefetch
// pipeline, encode results): YCSB-B (95 % reads, 5 % upserts), YCSB-C and
// the engine's F (every operation an ADD of 1, which answers the new value)
// over 1 M uniformly chosen keys of 8 bytes, in memory, in batches of 1500
// operations (about the 32 KiB the load generator sends); and C1KiB, YCSB-C
// over 256 Ki keys with values of 1 KiB. Its like-for-like engine figure is
// store's BenchmarkYCSBBatched/<mix>/uniform/1M/w1.
func BenchmarkBatchPath(b *testing.B) {
	for _, mix := range []struct {
		name          string
		reads, writes int // of 100: READ, UPSERT; ADD for the rest
		keys, value   int // value: its bytes (0: the key's 8)
	}{{"B", 95, 5, 1 << 20, 0}, {"C", 100, 0, 1 << 20, 0}, {"F", 0, 0, 1 << 20, 0}, {"C1KiB", 100, 0, 1 << 18, 1 << 10}} {
		b.Run(mix.name, func(b *testing.B) {
			const batchOps = 1500
			keys := mix.keys
			l := handLoopWith(b, store.Config{IndexBits: 18, Log: hlog.Config{PageBits: 22, MemoryBytes: 1 << 30}})
			cs := &conn{l: l, sess: session.New(false)}
			var k, one [8]byte
			one[0] = 1
			value := make([]byte, mix.value)
			for i := range uint64(keys) {
				binary.LittleEndian.PutUint64(k[:], i)
				v := k[:]
				if mix.value > 0 {
					copy(value, k[:])
					v = value
				}
				if _, err := l.ss.Upsert(k[:], v); err != nil {
					b.Fatal(err)
				}
			}
			l.ss.Suspend()
			rng := rand.New(rand.NewPCG(1, 2))
			batches := make([][]byte, 64)
			for j := range batches {
				in, start := wire.BeginBatch(nil)
				for range batchOps {
					binary.LittleEndian.PutUint64(k[:], rng.Uint64N(uint64(keys)))
					switch p := rng.IntN(100); {
					case p < mix.reads:
						in = wire.AppendOp(in, wire.OpRead, k[:], nil)
					case p < mix.reads+mix.writes:
						in = wire.AppendOp(in, wire.OpUpsert, k[:], k[:])
					default:
						in = wire.AppendOp(in, wire.OpAdd, k[:], one[:])
					}
				}
				wire.FinishRequest(in, start, wire.RequestHeader{Count: batchOps, View: 1})
				batches[j] = in
			}
			serial := uint64(1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				in := batches[i%len(batches)]
				makeBatchSerial(in, serial)
				serial += batchOps
				if used, action := l.runBatches(cs, in); used != len(in) || action != 0 {
					b.Fatalf("batch not run: used %d of %d", used, len(in))
				}
				cs.sess.TakeOutput(1)
			}
			b.StopTimer()
			l.ss.Suspend()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchOps), "ns/operation")
		})
	}
}
