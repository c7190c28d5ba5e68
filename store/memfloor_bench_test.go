package store

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/fleetkv/fleetkv/internal/manual"
)

// BenchmarkDependentLoad measures the machine, not fleetkv: one chain of
// dependent loads at random 64-byte lines of 1 GiB of memory from
// internal/manual (huge pages, as the log's frames and the index's buckets
// are), one line per operation. A read one operation at a time over a data
// set far larger than the caches waits for about two such loads (the
// index bucket, then the record), so BenchmarkYCSB's one-at-a-time rows
// are to be read beside it, run in the same process:
//
//	go test -run '^$' -bench 'DependentLoad|YCSB$/^C$/^zipf$/^10M$/^w1$/^(fleetkv|map)$' ./store/
func BenchmarkDependentLoad(b *testing.B) {
	const lines = 1 << 24
	mem, err := manual.Alloc(lines * 64)
	if err != nil {
		b.Fatal(err)
	}
	defer manual.Free(mem)
	words := unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), len(mem)/8)
	// One cycle through every line in a random order: each line's first
	// word holds the index of the next line's first word.
	order := rand.New(rand.NewPCG(1, 2)).Perm(lines)
	for i, l := range order {
		words[l*8] = uint64(order[(i+1)%lines] * 8)
	}
	b.ResetTimer()
	at := uint64(0)
	for range b.N {
		at = words[at]
	}
	b.StopTimer()
	if at == 1 { // never: keeps the chain from being optimised away
		b.Log(at)
	}
}
