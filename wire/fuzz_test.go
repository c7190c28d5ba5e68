package wire

import (
	"bytes"
	"math/rand/v2"
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

// FuzzNextMatchesReference: OpReader.Next, with its shape table and its
// in-line lengths, decodes any body exactly as the plain decoder below
// (hasValue, Control and uvarint for every length) does: the same
// operations and the same error (the operation returned with an error
// means nothing). ValidateRequest, with its own in-line common case, gives
// the reference's first error, and on a body it accepts ValidOps decodes
// the reference's operations.
func FuzzNextMatchesReference(f *testing.F) {
	f.Add(uint32(2), false, encodeRequest(RequestHeader{}, []testOp{
		{op: OpUpsert, key: bytes.Repeat([]byte("k"), 200), value: []byte("v")}, {op: OpRead, key: []byte("k")},
	})[HeaderSize:])
	f.Add(uint32(1), true, []byte{byte(OpPing), 0, 0x80, 0x01})
	f.Add(uint32(2), false, encodeRequest(RequestHeader{}, []testOp{
		{op: OpUpsert, key: []byte("k"), value: bytes.Repeat([]byte("v"), 300)}, {op: OpDelete, key: bytes.Repeat([]byte("k"), 130)},
	})[HeaderSize:])
	f.Fuzz(matchReference)
}

// TestDecodersMatchReference runs FuzzNextMatchesReference's check on
// seeded random bodies: well-formed batches of short and long operations
// with one byte changed, or cut short, in most of them.
func TestDecodersMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		ops := make([]testOp, rng.IntN(6))
		for i := range ops {
			ops[i] = testOp{op: allOps[rng.IntN(len(allOps))], key: make([]byte, randLen(rng)), value: make([]byte, randLen(rng))}
		}
		body := encodeRequest(RequestHeader{}, ops)[HeaderSize:]
		switch rng.IntN(4) {
		case 0, 1:
			if len(body) > 0 {
				body[rng.IntN(len(body))] = byte(rng.Uint32())
			}
		case 2:
			body = body[:rng.IntN(len(body)+1)]
		}
		count := uint32(len(ops)) + uint32(rng.IntN(3)) - 1
		matchReference(t, count|uint32(rng.IntN(2))<<6, rng.IntN(8) == 0, body)
	}
}

// randLen is a key or value length: mostly short, sometimes 128 or more.
func randLen(rng *rand.Rand) int {
	if rng.IntN(8) == 0 {
		return 120 + rng.IntN(200)
	}
	return rng.IntN(12)
}

// matchReference is FuzzNextMatchesReference's check of one body.
func matchReference(t *testing.T, count uint32, control bool, body []byte) {
	lim := Limits{MaxBatch: 1 << 16, MaxKey: 300, MaxValue: 1 << 12}
	if count&64 != 0 { // limits under 128, met by one-byte lengths
		lim.MaxKey, lim.MaxValue = 5, 9
	}
	h := RequestHeader{Count: count % 64, Length: uint32(len(body))}
	if control {
		h.Flags = FlagControl
	}
	var r OpReader
	r.Reset(h, body, lim)
	ref := referenceReader{body: body, left: h.Count, control: control, lim: lim}
	var want []Operation
	for i := 0; ; i++ {
		o, ok, err := r.Next()
		wo, wok, werr := ref.next()
		if !ok {
			o, wo = Operation{}, Operation{}
		}
		if err != werr || ok != wok || o.Op != wo.Op || !bytes.Equal(o.Key, wo.Key) || !bytes.Equal(o.Value, wo.Value) {
			t.Fatalf("op %d: Next gives %v %v %v, the reference %v %v %v", i, o, ok, err, wo, wok, werr)
		}
		if !ok {
			if verr := ValidateRequest(h, body, lim); verr != werr {
				t.Fatalf("ValidateRequest gives %v, the reference %v", verr, werr)
			}
			if werr == nil {
				checkValidOps(t, body, want)
			}
			return
		}
		want = append(want, wo)
	}
}

// checkValidOps: ValidOps decodes the operations of a body that
// ValidateRequest accepted as want, and ends where the body does.
func checkValidOps(t *testing.T, body []byte, want []Operation) {
	var v ValidOps
	v.Reset(body)
	for i, w := range want {
		var o Operation
		v.NextInto(&o)
		if o.Op != w.Op || !bytes.Equal(o.Key, w.Key) || !bytes.Equal(o.Value, w.Value) {
			t.Fatalf("op %d: ValidOps gives %v, the reference %v", i, o, w)
		}
	}
	if !v.Done() {
		t.Fatalf("ValidOps ends at %d of a body of %d bytes", v.pos, len(body))
	}
}

// referenceReader is OpReader.Next written plainly, as it was before its
// shape table and in-line lengths.
type referenceReader struct {
	body    []byte
	left    uint32
	control bool
	lim     Limits
}

func (r *referenceReader) next() (o Operation, ok bool, err error) {
	if r.left == 0 {
		if len(r.body) != 0 {
			return o, false, errTrailing
		}
		return o, false, nil
	}
	b := r.body
	if len(b) < 2 {
		return o, false, errTruncated
	}
	o.Op = Op(b[0])
	has, known := o.Op.hasValue()
	switch {
	case !known:
		return o, false, errUnknownOp
	case r.control && !o.Op.Control():
		return o, false, errControl
	}
	kl, n, err := uvarint(b[1:])
	if err != nil {
		return o, false, err
	}
	if kl > uint64(r.lim.MaxKey) {
		return o, false, errKeySize
	}
	pos := 1 + n
	var vl uint64
	if has {
		if vl, n, err = uvarint(b[pos:]); err != nil {
			return o, false, err
		}
		if vl > uint64(r.lim.MaxValue) {
			return o, false, errValueSize
		}
		pos += n
	}
	if uint64(len(b)-pos) < kl+vl {
		return o, false, errTruncated
	}
	end := pos + int(kl)
	o.Key, o.Value = b[pos:end], b[end:end+int(vl)]
	r.body = b[end+int(vl):]
	r.left--
	return o, true, nil
}
