package store

import (
	"encoding/binary"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
)

// TestZeroAllocationsPerOperation checks every operation in steady state,
// with page turns, flushes and evictions happening during the measured runs
// (small pages) and reads that go to the device.
func TestZeroAllocationsPerOperation(t *testing.T) {
	// Deletes of keys on the device are doubts of the key count; the
	// background rounds that resolve them allocate on their own goroutines
	// (AllocsPerRun counts every goroutine's), so none runs here.
	st := openTest(t, Config{IndexBits: 16, NoAutoGrow: true, MaxDoubts: 1 << 30, Log: hlog.Config{PageBits: 14, MemoryBytes: 8 << 14}})
	s := newSession(t, st)
	completed := 0
	s.SetCompletion(func(Completion) { completed++ })
	const n = 4096
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = binary.LittleEndian.AppendUint64(nil, uint64(i)*0x9e3779b97f4a7c15)
		mustStatus(t, OK)(s.Upsert(keys[i], keys[i]))
	}
	val := make([]byte, 8)
	big := make([]byte, 40)
	buf := make([]byte, 0, 64)
	delta := i64(1)
	i := 0
	next := func() []byte { i++; return keys[i%n] }
	cases := []struct {
		name string
		op   func()
	}{
		{"Read", func() { s.Read(next(), buf[:0]); s.CompletePending(true) }},
		{"Upsert", func() { s.Upsert(next(), val) }},
		{"UpsertGrow", func() { s.Upsert(next(), big); s.Upsert(keys[i%n], val) }},
		{"RMW", func() { s.RMW(next(), delta, Int64Add{}); s.CompletePending(true) }},
		{"Append", func() { s.RMW(next(), delta, Append{}); s.CompletePending(true) }},
		{"Delete", func() { s.Delete(next()); s.Upsert(keys[i%n], val) }},
	}
	for _, c := range cases {
		for w := 0; w < 2*n; w++ { // warm up: free lists and buffers reach size
			c.op()
		}
		before := st.Log().Head()
		if a := testing.AllocsPerRun(4*n, c.op); a != 0 {
			t.Errorf("%s: %v allocations per operation", c.name, a)
		}
		t.Logf("%s: head moved %d bytes during the runs", c.name, st.Log().Head()-before)
	}
	if completed == 0 {
		t.Error("no operation went pending: the device path was not measured")
	}
}
