package keyhash

import "encoding/binary"

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, not
// reflected), the CRC Redis Cluster takes slots from. It runs eight bytes
// at a time with eight tables (slicing-by-8): tables[k][v] is the CRC of
// byte v followed by k zero bytes, so by linearity the CRC of eight bytes
// after a running value is the XOR of one lookup per byte, the running
// value folded into the first two.
func crc16(b []byte) uint16 {
	crc, _ := crc16Brace(b)
	return crc
}

// crc16Brace is crc16 that also reports whether b holds a '{', found eight
// bytes at a time beside the CRC (a key without one has no hash tag).
func crc16Brace(b []byte) (crc uint16, brace bool) {
	const ones, highs, braces = 0x0101010101010101, 0x8080808080808080, '{' * 0x0101010101010101
	var seen uint64
	for len(b) >= 8 {
		w := binary.BigEndian.Uint64(b)
		v := w ^ braces
		seen |= (v - ones) &^ v & highs // non-zero iff some byte of w is '{'
		x := w ^ uint64(crc)<<48
		crc = tables[7][byte(x>>56)] ^ tables[6][byte(x>>48)] ^
			tables[5][byte(x>>40)] ^ tables[4][byte(x>>32)] ^
			tables[3][byte(x>>24)] ^ tables[2][byte(x>>16)] ^
			tables[1][byte(x>>8)] ^ tables[0][byte(x)]
		b = b[8:]
	}
	for _, c := range b {
		crc = crc<<8 ^ tables[0][byte(crc>>8)^c]
		brace = brace || c == '{'
	}
	return crc, brace || seen != 0
}

const poly = 0x1021

var tables = makeTables()

func makeTables() *[8][256]uint16 {
	t := new([8][256]uint16)
	for v := range 256 {
		crc := uint16(v) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ poly
			} else {
				crc <<= 1
			}
		}
		t[0][v] = crc
	}
	for k := 1; k < 8; k++ {
		for v := range 256 {
			prev := t[k-1][v]
			t[k][v] = prev<<8 ^ t[0][byte(prev>>8)]
		}
	}
	return t
}
