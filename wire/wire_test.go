package wire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

type testOp struct {
	op         Op
	key, value []byte
}

var allOps = []Op{OpRead, OpUpsert, OpDelete, OpAdd, OpAppend, OpMigrate, OpOpen, OpPing, OpGetView, OpCheckpoint, OpClusterMap, OpMigrator}

func randomOps(rng *rand.Rand, n int, control bool) []testOp {
	ops := make([]testOp, n)
	for i := range ops {
		op := allOps[rng.IntN(len(allOps))]
		if control {
			op = allOps[6+rng.IntN(len(allOps)-6)] // the control operations
		}
		ops[i] = testOp{op: op, key: randBytes(rng, rng.IntN(300))}
		if has, _ := op.hasValue(); has {
			ops[i].value = randBytes(rng, rng.IntN(3000))
		}
	}
	return ops
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func encodeRequest(h RequestHeader, ops []testOp) []byte {
	b, start := BeginBatch(nil)
	for _, o := range ops {
		b = AppendOp(b, o.op, o.key, o.value)
	}
	h.Count = uint32(len(ops))
	FinishRequest(b, start, h)
	return b
}

func TestRequestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		control := i%5 == 0
		ops := randomOps(rng, rng.IntN(40), control)
		in := RequestHeader{View: rng.Uint64(), Serial: rng.Uint64()}
		if control {
			in.Flags = FlagControl
		}
		b := encodeRequest(in, ops)
		h, err := ParseRequestHeader(b, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if h.View != in.View || h.Serial != in.Serial || h.Count != uint32(len(ops)) ||
			int(h.Length) != len(b)-HeaderSize || h.Control() != control {
			t.Fatalf("header %+v from %+v", h, in)
		}
		if err := ValidateRequest(h, b[HeaderSize:], DefaultLimits); err != nil {
			t.Fatal(err)
		}
		var r OpReader
		r.Reset(h, b[HeaderSize:], DefaultLimits)
		for j, want := range ops {
			o, ok, err := r.Next()
			if err != nil || !ok || o.Op != want.op || !bytes.Equal(o.Key, want.key) || !bytes.Equal(o.Value, want.value) {
				t.Fatalf("batch %d op %d: %v %v %+v", i, j, ok, err, o)
			}
		}
		if _, ok, err := r.Next(); ok || err != nil {
			t.Fatalf("after the last op: %v %v", ok, err)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	type entry struct {
		completion bool
		serial     uint64
		st         Status
		payload    []byte
		code       Code
	}
	for i := 0; i < 500; i++ {
		var es []entry
		b, start := BeginBatch(nil)
		for n := rng.IntN(50); n > 0; n-- {
			e := entry{completion: rng.IntN(4) == 0, serial: rng.Uint64(), st: Status(rng.IntN(4))}
			switch e.st {
			case StatusOK:
				e.payload = randBytes(rng, rng.IntN(500))
			case StatusError:
				e.code = Code(1 + rng.IntN(10))
			}
			if e.completion {
				if e.st == StatusPending {
					e.st = StatusNotFound
				}
				b = AppendCompletion(b, e.serial, e.st, e.payload, e.code)
			} else {
				b = AppendResult(b, e.st, e.payload, e.code)
			}
			es = append(es, e)
		}
		FinishResponse(b, start, ResponseHeader{Count: uint32(len(es)), View: 9, Serial: 77})
		h, err := ParseResponseHeader(b, DefaultLimits)
		if err != nil || h.Count != uint32(len(es)) || h.View != 9 || h.Serial != 77 {
			t.Fatalf("%+v %v", h, err)
		}
		var r ResultReader
		r.Reset(h, b[HeaderSize:], DefaultLimits)
		for j, e := range es {
			res, ok, err := r.Next()
			if err != nil || !ok || res.Completion != e.completion || res.Status != e.st ||
				!bytes.Equal(res.Value, e.payload) || res.Code != e.code || (e.completion && res.Serial != e.serial) {
				t.Fatalf("batch %d entry %d: %+v vs %+v (%v %v)", i, j, res, e, ok, err)
			}
		}
		if _, ok, err := r.Next(); ok || err != nil {
			t.Fatalf("after the last entry: %v %v", ok, err)
		}
	}
}

func TestRequestRejections(t *testing.T) {
	lim := Limits{MaxBatch: 4096, MaxKey: 16, MaxValue: 100}
	good := encodeRequest(RequestHeader{}, []testOp{{op: OpUpsert, key: []byte("k"), value: []byte("v")}})
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:HeaderSize-1], ErrMalformed},
		{"version", mutate(func(b []byte) []byte { b[0] = 0xF2; return b }), ErrBadVersion},
		{"flags", mutate(func(b []byte) []byte { b[1] = 4; return b }), ErrMalformed},
		{"reserved", mutate(func(b []byte) []byte { b[13] = 1; return b }), ErrMalformed},
		{"batch size", mutate(func(b []byte) []byte { b[9] = 0x10; return b }), ErrTooLarge},
		{"count", mutate(func(b []byte) []byte { b[4] = 200; return b }), ErrMalformed},
		{"unknown op", mutate(func(b []byte) []byte { b[HeaderSize] = 9; return b }), ErrUnknownOp},
		{"key size", encodeRequest(RequestHeader{}, []testOp{{op: OpRead, key: make([]byte, 17)}}), ErrTooLarge},
		{"value size", encodeRequest(RequestHeader{}, []testOp{{op: OpUpsert, key: []byte("k"), value: make([]byte, 101)}}), ErrTooLarge},
		{"truncated", mutate(func(b []byte) []byte { b[8]--; return b[:len(b)-1] }), ErrMalformed},
		{"trailing", mutate(func(b []byte) []byte { b[8]++; return append(b, 0) }), ErrMalformed},
		{"non-minimal varint", mutate(func(b []byte) []byte {
			b = append(b[:HeaderSize+1], 0x81, 0x00, 0x01, 'k', 'v')
			b[8] = 6
			return b
		}), ErrMalformed},
		{"data op in control batch", mutate(func(b []byte) []byte { b[1] = FlagControl; return b }), ErrMalformed},
	}
	for _, c := range cases {
		h, err := ParseRequestHeader(c.b, lim)
		if err == nil {
			err = ValidateRequest(h, c.b[HeaderSize:], lim)
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestDecodeAndEncodeDoNotAllocate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ops := randomOps(rng, 64, false)
	b := encodeRequest(RequestHeader{View: 1, Serial: 1}, ops)
	out := make([]byte, 0, len(b))
	var r OpReader
	allocs := testing.AllocsPerRun(100, func() {
		h, _ := ParseRequestHeader(b, DefaultLimits)
		r.Reset(h, b[HeaderSize:], DefaultLimits)
		out, start := BeginBatch(out[:0])
		for {
			o, ok, err := r.Next()
			if err != nil || !ok {
				break
			}
			out = AppendOp(out, o.Op, o.Key, o.Value)
		}
		FinishRequest(out, start, h)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
	bad := append([]byte(nil), b...)
	bad[0] = 0
	if a := testing.AllocsPerRun(100, func() { ParseRequestHeader(bad, DefaultLimits) }); a != 0 {
		t.Fatalf("rejecting a header allocates %v times", a)
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	ops := make([]testOp, 1500)
	for i := range ops {
		ops[i] = testOp{op: OpUpsert, key: []byte("12345678"), value: []byte("abcdefgh")}
	}
	batch := encodeRequest(RequestHeader{}, ops)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	var r OpReader
	for i := 0; i < b.N; i++ {
		h, _ := ParseRequestHeader(batch, DefaultLimits)
		r.Reset(h, batch[HeaderSize:], DefaultLimits)
		for {
			if _, ok, _ := r.Next(); !ok {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-decoded")
}

// TestMaxOpIsTheLargestKnownCode: tables indexed by a known code (the
// server's per-batch counts) have MaxOp+1 entries.
func TestMaxOpIsTheLargestKnownCode(t *testing.T) {
	if _, ok := MaxOp.hasValue(); !ok {
		t.Fatalf("MaxOp %d is not a known code", MaxOp)
	}
	for c := int(MaxOp) + 1; c < 256; c++ {
		if _, ok := Op(c).hasValue(); ok {
			t.Errorf("code %d is known and above MaxOp %d", c, MaxOp)
		}
	}
}
