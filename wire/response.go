package wire

import "encoding/binary"

// ResponseHeader is a response batch's header.
type ResponseHeader struct {
	Status BatchStatus
	Code   Code
	Count  uint32 // result entries in the body
	Length uint32 // body bytes
	View   uint64 // the server's view
	Serial uint64 // see the package documentation
}

// PutResponseHeader writes h into b[:HeaderSize].
func PutResponseHeader(b []byte, h ResponseHeader) {
	_ = b[HeaderSize-1]
	b[0], b[1] = MagicVersion, byte(h.Status)
	binary.LittleEndian.PutUint16(b[2:], uint16(h.Code))
	binary.LittleEndian.PutUint32(b[4:], h.Count)
	binary.LittleEndian.PutUint32(b[8:], h.Length)
	binary.LittleEndian.PutUint32(b[12:], 0)
	binary.LittleEndian.PutUint64(b[16:], h.View)
	binary.LittleEndian.PutUint64(b[24:], h.Serial)
}

// FinishResponse fills in the header of the response batch that starts at
// start, taking its length from what was appended since.
func FinishResponse(dst []byte, start int, h ResponseHeader) {
	h.Length = uint32(len(dst) - start - HeaderSize)
	PutResponseHeader(dst[start:], h)
}

// AppendErrorBatch appends a complete ERROR response whose body is msg.
func AppendErrorBatch(dst []byte, code Code, view, serial uint64, msg string) []byte {
	dst, start := BeginBatch(dst)
	dst = append(dst, msg...)
	FinishResponse(dst, start, ResponseHeader{Status: BatchError, Code: code, View: view, Serial: serial})
	return dst
}

// ParseResponseHeader decodes and checks a response header.
func ParseResponseHeader(b []byte, lim Limits) (ResponseHeader, error) {
	if len(b) < HeaderSize {
		return ResponseHeader{}, errShortHeader
	}
	if b[0] != MagicVersion {
		return ResponseHeader{}, errVersion
	}
	h := ResponseHeader{
		Status: BatchStatus(b[1]),
		Code:   Code(binary.LittleEndian.Uint16(b[2:])),
		Count:  binary.LittleEndian.Uint32(b[4:]),
		Length: binary.LittleEndian.Uint32(b[8:]),
		View:   binary.LittleEndian.Uint64(b[16:]),
		Serial: binary.LittleEndian.Uint64(b[24:]),
	}
	switch {
	case h.Status > BatchCommit:
		return h, errStatus
	case h.Status == BatchCommit && (h.Length != 0 || h.Count != 0):
		return h, errCount
	case binary.LittleEndian.Uint32(b[12:]) != 0:
		return h, errReserved
	case uint64(h.Length) > uint64(lim.MaxBatch):
		return h, errBatchSize
	case uint64(h.Count) > uint64(h.Length): // every entry takes a byte or more
		return h, errCount
	}
	return h, nil
}

// AppendCommit appends a COMMIT batch: the session's operations up to
// serial are durable.
func AppendCommit(dst []byte, view, serial uint64) []byte {
	dst, start := BeginBatch(dst)
	FinishResponse(dst, start, ResponseHeader{Status: BatchCommit, View: view, Serial: serial})
	return dst
}

// AppendResult appends the result of one request operation. payload is sent
// for StatusOK (a READ's value, a control answer; nil for writes), code for
// StatusError; other statuses carry nothing.
func AppendResult(dst []byte, st Status, payload []byte, code Code) []byte {
	return appendPayload(append(dst, byte(st)), st, payload, code)
}

// AppendCompletion appends the outcome of the earlier pending operation with
// the given serial.
func AppendCompletion(dst []byte, serial uint64, st Status, payload []byte, code Code) []byte {
	dst = binary.AppendUvarint(append(dst, CompletionBit|byte(st)), serial)
	return appendPayload(dst, st, payload, code)
}

func appendPayload(dst []byte, st Status, payload []byte, code Code) []byte {
	switch st {
	case StatusOK:
		dst = binary.AppendUvarint(dst, uint64(len(payload)))
		return append(dst, payload...)
	case StatusError:
		return append(dst, byte(code))
	}
	return dst
}

// Result is one decoded response entry. Value aliases the batch.
type Result struct {
	Completion bool   // answers an earlier pending operation
	Serial     uint64 // the completed operation's serial (completions only)
	Status     Status
	Value      []byte
	Code       Code
}

// ResultReader decodes the entries of one response body in order.
type ResultReader struct {
	body []byte
	left uint32
	lim  Limits
}

// Reset prepares r for the body of the batch with header h.
func (r *ResultReader) Reset(h ResponseHeader, body []byte, lim Limits) {
	*r = ResultReader{body: body[:h.Length], left: h.Count, lim: lim}
}

// Next returns the next entry; ok is false after the last one.
func (r *ResultReader) Next() (res Result, ok bool, err error) {
	if r.left == 0 {
		if len(r.body) != 0 {
			return res, false, errTrailing
		}
		return res, false, nil
	}
	b := r.body
	if len(b) < 1 {
		return res, false, errTruncated
	}
	res.Status = Status(b[0] &^ CompletionBit)
	res.Completion = b[0]&CompletionBit != 0
	pos := 1
	if res.Completion {
		s, n := binary.Uvarint(b[pos:])
		if n <= 0 || (n > 1 && b[pos+n-1] == 0) {
			return res, false, errVarint
		}
		res.Serial, pos = s, pos+n
	}
	switch res.Status {
	case StatusOK:
		vl, n, err := uvarint(b[pos:])
		if err != nil {
			return res, false, err
		}
		pos += n
		if vl > uint64(r.lim.MaxValue) {
			return res, false, errValueSize
		}
		if uint64(len(b)-pos) < vl {
			return res, false, errTruncated
		}
		res.Value = b[pos : pos+int(vl) : pos+int(vl)]
		pos += int(vl)
	case StatusError:
		if len(b) <= pos {
			return res, false, errTruncated
		}
		res.Code = Code(b[pos])
		pos++
	case StatusNotFound, StatusPending:
	default:
		return res, false, errStatus
	}
	r.body = b[pos:]
	r.left--
	return res, true, nil
}
