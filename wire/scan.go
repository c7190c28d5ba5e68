package wire

import "encoding/binary"

// OpScan's value is cursor u64 | count u32 | the MATCH pattern (Redis's
// glob rules; empty: every key). Its OK result is the next cursor u64 (0:
// the scan is done), then each key as length u32 | bytes. The cursor is
// the server's index position to resume at (0 to start): a key present
// for a whole scan is returned once, whatever the index's growth.
const scanHeader = 12

// AppendScan appends OpScan's value.
func AppendScan(dst []byte, cursor uint64, count uint32, match []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, cursor)
	dst = binary.LittleEndian.AppendUint32(dst, count)
	return append(dst, match...)
}

// ParseScan splits OpScan's value; ok is false when it is too short or
// asks for no key.
func ParseScan(v []byte) (cursor uint64, count uint32, match []byte, ok bool) {
	if len(v) < scanHeader {
		return 0, 0, nil, false
	}
	cursor, count = binary.LittleEndian.Uint64(v), binary.LittleEndian.Uint32(v[8:])
	return cursor, count, v[scanHeader:], count > 0
}

// AppendScanResult appends OpScan's result payload.
func AppendScanResult(dst []byte, next uint64, keys [][]byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, next)
	for _, k := range keys {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(k)))
		dst = append(dst, k...)
	}
	return dst
}

// ScanResultSize returns the bytes AppendScanResult appends for keys.
func ScanResultSize(keys [][]byte) int {
	n := 8
	for _, k := range keys {
		n += 4 + len(k)
	}
	return n
}

// ParseScanResult splits OpScan's result payload; the keys point into p.
// ok is false when it does not hold together.
func ParseScanResult(p []byte) (next uint64, keys [][]byte, ok bool) {
	if len(p) < 8 {
		return 0, nil, false
	}
	next, p = binary.LittleEndian.Uint64(p), p[8:]
	for len(p) > 0 {
		if len(p) < 4 || uint64(len(p)-4) < uint64(binary.LittleEndian.Uint32(p)) {
			return 0, nil, false
		}
		n := binary.LittleEndian.Uint32(p)
		keys = append(keys, p[4:4+n:4+n])
		p = p[4+n:]
	}
	return next, keys, true
}
