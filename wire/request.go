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
	o.Key = b[pos:end:end]
	o.Value = b[end : end+int(vl) : end+int(vl)]
	r.body = b[end+int(vl):]
	r.left--
	return o, true, nil
}

// ValidateRequest decodes a whole request body without acting on it, so a
// server can reject a malformed batch before executing any of it.
func ValidateRequest(h RequestHeader, body []byte, lim Limits) error {
	var r OpReader
	r.Reset(h, body, lim)
	for {
		_, ok, err := r.Next()
		if err != nil || !ok {
			return err
		}
	}
}
