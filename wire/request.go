package wire

import "encoding/binary"

// RequestHeader is a request batch's header.
type RequestHeader struct {
	Flags  uint8
	Count  uint32 // operations in the body
	Length uint32 // body bytes
	View   uint64
	Serial uint64 // serial number of the first operation
}

// Control reports whether the batch holds only control operations.
func (h RequestHeader) Control() bool { return h.Flags&FlagControl != 0 }

// PutRequestHeader writes h into b[:HeaderSize].
func PutRequestHeader(b []byte, h RequestHeader) {
	_ = b[HeaderSize-1]
	b[0], b[1], b[2], b[3] = MagicVersion, h.Flags, 0, 0
	binary.LittleEndian.PutUint32(b[4:], h.Count)
	binary.LittleEndian.PutUint32(b[8:], h.Length)
	binary.LittleEndian.PutUint32(b[12:], 0)
	binary.LittleEndian.PutUint64(b[16:], h.View)
	binary.LittleEndian.PutUint64(b[24:], h.Serial)
}

// BeginBatch reserves a header at the end of dst and returns where it
// starts; append the body, then FinishRequest or FinishResponse.
func BeginBatch(dst []byte) ([]byte, int) {
	return append(dst, make([]byte, HeaderSize)...), len(dst)
}

// FinishRequest fills in the header of the batch that starts at start,
// taking its length from what was appended since.
func FinishRequest(dst []byte, start int, h RequestHeader) {
	h.Length = uint32(len(dst) - start - HeaderSize)
	PutRequestHeader(dst[start:], h)
}

// ParseRequestHeader decodes and checks a request header: magic and
// version, flags, reserved bytes, and a body length and operation count
// within lim. It looks at b[:HeaderSize] only.
func ParseRequestHeader(b []byte, lim Limits) (RequestHeader, error) {
	if len(b) < HeaderSize {
		return RequestHeader{}, errShortHeader
	}
	if b[0] != MagicVersion {
		return RequestHeader{}, errVersion
	}
	h := RequestHeader{
		Flags:  b[1],
		Count:  binary.LittleEndian.Uint32(b[4:]),
		Length: binary.LittleEndian.Uint32(b[8:]),
		View:   binary.LittleEndian.Uint64(b[16:]),
		Serial: binary.LittleEndian.Uint64(b[24:]),
	}
	switch {
	case h.Flags&^(FlagControl|FlagRerouted) != 0:
		return h, errFlags
	case b[2] != 0 || b[3] != 0 || binary.LittleEndian.Uint32(b[12:]) != 0:
		return h, errReserved
	case uint64(h.Length) > uint64(lim.MaxBatch):
		return h, errBatchSize
	case uint64(h.Count)*2 > uint64(h.Length): // every operation takes 2 bytes or more
		return h, errCount
	}
	return h, nil
}

// Operation is one decoded request operation. Key and Value alias the batch.
type Operation struct {
	Op    Op
	Key   []byte
	Value []byte
}

// AppendOp appends one operation to a request body. value is ignored for
// operations that carry none.
func AppendOp(dst []byte, op Op, key, value []byte) []byte {
	dst = append(dst, byte(op))
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	if has, _ := op.hasValue(); has {
		dst = binary.AppendUvarint(dst, uint64(len(value)))
		dst = append(dst, key...)
		return append(dst, value...)
	}
	return append(dst, key...)
}

// OpReader decodes the operations of one request body in order.
type OpReader struct {
	body    []byte
	left    uint32
	control bool
	lim     Limits
}

// Reset prepares r for the body of the batch with header h.
func (r *OpReader) Reset(h RequestHeader, body []byte, lim Limits) {
	*r = OpReader{body: body[:h.Length], left: h.Count, control: h.Control(), lim: lim}
}

// Next returns the next operation; ok is false after the last one. An error
// means the batch is malformed and nothing after it can be trusted.
func (r *OpReader) Next() (o Operation, ok bool, err error) {
	ok, err = r.NextInto(&o)
	return o, ok, err
}

// NextInto is Next decoding into *o, which it changes only when ok: a
// caller that keeps operations in place (the server's window) saves the
// copy of a returned Operation, which does not fit in registers.
func (r *OpReader) NextInto(o *Operation) (ok bool, err error) {
	b := r.body
	pos, kl, vl, err := r.advance()
	if pos == 0 {
		return false, err
	}
	rest := b[pos:]
	o.Op, o.Key, o.Value = Op(b[0]), rest[:kl:kl], rest[kl:kl+vl:kl+vl]
	return true, nil
}

// advance checks the next operation and moves past it: its key starts at
// pos in the body it was read from, its value right after, kl and vl
// long. pos is 0 after the last operation, and with an error.
func (r *OpReader) advance() (pos int, kl, vl uint64, err error) {
	b := r.body
	if r.left == 0 {
		if len(b) != 0 {
			return 0, 0, 0, errTrailing
		}
		return 0, 0, 0, nil
	}
	if pos, kl, vl, err = checkOp(b, r.control, r.lim); err != nil {
		return 0, 0, 0, err
	}
	r.body = b[pos+int(kl+vl):]
	r.left--
	return pos, kl, vl, nil
}

// checkOp checks the operation that starts b: its key starts at pos, its
// value right after, kl and vl long, all within b. It is the one check of
// an operation, for OpReader and ValidateRequest alike.
//
// A server's ValidateRequest runs it only for operations outside its
// in-line common case, and the server then decodes every operation once
// more without checks (ValidOps). OpReader (clients, tests) runs it for
// every operation, so its common case stays short too: the operation's
// shape comes from a table, a length under 128 is read in line, and it
// builds no Operation (BENCHMARKS.md, issue 16).
func checkOp(b []byte, control bool, lim Limits) (pos int, kl, vl uint64, err error) {
	if len(b) < 2 {
		return 0, 0, 0, errTruncated
	}
	shape := opShapes[b[0]]
	switch {
	case shape&shapeKnown == 0:
		return 0, 0, 0, errUnknownOp
	case control && shape&shapeControl == 0:
		return 0, 0, 0, errControl
	}
	kl, pos = uint64(b[1]), 2
	if kl >= 0x80 {
		var n int
		if kl, n, err = uvarint(b[1:]); err != nil {
			return 0, 0, 0, err
		}
		pos = 1 + n
	}
	if kl > uint64(lim.MaxKey) {
		return 0, 0, 0, errKeySize
	}
	if shape&shapeValue != 0 {
		if pos < len(b) && b[pos] < 0x80 {
			vl = uint64(b[pos])
			pos++
		} else {
			var n int
			if vl, n, err = uvarint(b[pos:]); err != nil {
				return 0, 0, 0, err
			}
			pos += n
		}
		if vl > uint64(lim.MaxValue) {
			return 0, 0, 0, errValueSize
		}
	}
	if uint64(len(b)-pos) < kl+vl {
		return 0, 0, 0, errTruncated
	}
	return pos, kl, vl, nil
}

// ValidateRequest decodes a whole request body without acting on it, so a
// server can reject a malformed batch before executing any of it.
//
// Its loop takes the common operation in line: a data batch, a known
// operation code, key and value lengths under 128 within the limits and
// the body. Everything else goes to checkOp, which gives the error. The
// in-line copy of checkOp's common case is measured: 51 instructions per
// operation of BenchmarkBatchPath/F against 87 through checkOp alone
// (TestDecodersMatchReference holds the two to one reference).
func ValidateRequest(h RequestHeader, body []byte, lim Limits) error {
	b, control := body[:h.Length], h.Control()
	maxKey, maxValue := uint64(lim.MaxKey), uint64(lim.MaxValue)
	for left := h.Count; left > 0; left-- {
		if !control && len(b) >= 3 {
			shape, kl, vl, pos := opShapes[b[0]], uint64(b[1]), uint64(0), 2
			if shape&shapeValue != 0 {
				vl, pos = uint64(b[2]), 3
			}
			if shape&shapeKnown != 0 && (kl|vl) < 0x80 && kl <= maxKey && vl <= maxValue && uint64(len(b)-pos) >= kl+vl {
				b = b[pos+int(kl+vl):]
				continue
			}
		}
		pos, kl, vl, err := checkOp(b, control, lim)
		if err != nil {
			return err
		}
		b = b[pos+int(kl+vl):]
	}
	if len(b) != 0 {
		return errTrailing
	}
	return nil
}

// ValidOps decodes the operations of a body that ValidateRequest accepted
// (Reset with exactly that body) without checking them again. On any
// other body it may panic with an index out of range; it never reads
// outside the body.
type ValidOps struct {
	body []byte
	pos  int // where the next operation starts
}

// Reset prepares v for a body ValidateRequest accepted.
func (v *ValidOps) Reset(body []byte) { v.body, v.pos = body, 0 }

// ResetAt prepares v for such a body from pos, where an operation starts
// (a Pos of the same body).
func (v *ValidOps) ResetAt(body []byte, pos int) { v.body, v.pos = body, pos }

// Pos is where the next operation starts in the body.
func (v *ValidOps) Pos() int { return v.pos }

// Done reports whether every operation of the body was decoded.
func (v *ValidOps) Done() bool { return v.pos == len(v.body) }

// NextInto decodes the next operation into *o; the caller calls it no more
// times than the batch has operations. Lengths under 128 are read in line;
// a longer one goes to nextLong.
func (v *ValidOps) NextInto(o *Operation) {
	b := v.body[v.pos:]
	kl, vl, pos := int(b[1]), 0, 2
	if opShapes[b[0]]&shapeValue != 0 {
		vl, pos = int(b[2]), 3
	}
	if kl|vl >= 0x80 {
		v.nextLong(o)
		return
	}
	v.take(o, b, pos, kl, vl)
}

// nextLong is NextInto for an operation with a length of 128 or more.
func (v *ValidOps) nextLong(o *Operation) {
	b := v.body[v.pos:]
	k, n := binary.Uvarint(b[1:])
	kl, pos, vl := int(k), 1+n, 0
	if opShapes[b[0]]&shapeValue != 0 {
		x, n := binary.Uvarint(b[pos:])
		vl, pos = int(x), pos+n
	}
	v.take(o, b, pos, kl, vl)
}

// take sets *o to the operation that starts b, whose key starts at pos,
// and moves past it.
func (v *ValidOps) take(o *Operation, b []byte, pos, kl, vl int) {
	rest := b[pos:]
	o.Op, o.Key, o.Value = Op(b[0]), rest[:kl:kl], rest[kl:kl+vl:kl+vl]
	v.pos += pos + kl + vl
}
