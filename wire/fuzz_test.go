package wire

import (
	"bytes"
	"testing"
)

// FuzzRequest: any bytes either fail to decode or decode to operations that
// encode back to exactly the same batch; decoding never panics and never
// reads past the input.
func FuzzRequest(f *testing.F) {
	f.Add(encodeRequest(RequestHeader{View: 3, Serial: 9}, []testOp{
		{op: OpUpsert, key: []byte("k"), value: []byte("v")}, {op: OpRead, key: []byte("k")},
	}))
	f.Add(encodeRequest(RequestHeader{Flags: FlagControl}, []testOp{{op: OpOpen, value: []byte("token")}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := Limits{MaxBatch: 1 << 16, MaxKey: 1 << 10, MaxValue: 1 << 12}
		h, err := ParseRequestHeader(b, lim)
		if err != nil || len(b) < HeaderSize+int(h.Length) {
			return
		}
		body := b[HeaderSize : HeaderSize+int(h.Length)]
		if ValidateRequest(h, body, lim) != nil {
			return
		}
		out, start := BeginBatch(nil)
		var r OpReader
		r.Reset(h, body, lim)
		for {
			o, ok, err := r.Next()
			if err != nil {
				t.Fatalf("Next failed after ValidateRequest passed: %v", err)
			}
			if !ok {
				break
			}
			out = AppendOp(out, o.Op, o.Key, o.Value)
		}
		FinishRequest(out, start, h)
		if !bytes.Equal(out, b[:HeaderSize+int(h.Length)]) {
			t.Fatalf("round trip differs:\n in %x\nout %x", b[:HeaderSize+int(h.Length)], out)
		}
	})
}

// FuzzResponse: response decoding never panics, and a decoded batch
// re-encodes to the same bytes.
func FuzzResponse(f *testing.F) {
	b, start := BeginBatch(nil)
	b = AppendResult(b, StatusOK, []byte("value"), 0)
	b = AppendResult(b, StatusError, nil, CodeNotInt64)
	b = AppendCompletion(b, 42, StatusNotFound, nil, 0)
	FinishResponse(b, start, ResponseHeader{Count: 3, View: 1, Serial: 5})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := Limits{MaxBatch: 1 << 16, MaxKey: 1 << 10, MaxValue: 1 << 12}
		h, err := ParseResponseHeader(b, lim)
		if err != nil || len(b) < HeaderSize+int(h.Length) {
			return
		}
		var r ResultReader
		r.Reset(h, b[HeaderSize:HeaderSize+int(h.Length)], lim)
		out, start := BeginBatch(nil)
		for {
			res, ok, err := r.Next()
			if err != nil {
				return
			}
			if !ok {
				break
			}
			if res.Completion {
				out = AppendCompletion(out, res.Serial, res.Status, res.Value, res.Code)
			} else {
				out = AppendResult(out, res.Status, res.Value, res.Code)
			}
		}
		FinishResponse(out, start, h)
		if !bytes.Equal(out, b[:HeaderSize+int(h.Length)]) {
			t.Fatalf("round trip differs:\n in %x\nout %x", b[:HeaderSize+int(h.Length)], out)
		}
	})
}
