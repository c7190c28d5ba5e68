package keyhash

import (
	"encoding/binary"
	"math/bits"
)

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
	var seen uint64
	for len(b) >= 8 {
		w := binary.LittleEndian.Uint64(b)
		x := w ^ fold(crc)
		crc = crcFirst4(x) ^ crcLast4(x)
		seen |= braceBits(w)
		b = b[8:]
	}
	crc, brace = crcTail(crc, b)
	return crc, brace || seen != 0
}

// crcFirst4(x) ^ crcLast4(x) runs the CRC over the eight bytes of x, a
// little-endian load XORed with fold(crc) of the running value: the first
// byte is x's low byte, so the running value folds into the low two. It is
// two halves, the fold left to the caller, because each inlines and one
// function of the whole would not (Go's inlining budget).

// crcFirst4 is the lookups of x's first four bytes (the low half).
func crcFirst4(x uint64) uint16 {
	t := tables
	return t[7][byte(x)] ^ t[6][byte(x>>8)] ^ t[5][byte(x>>16)] ^ t[4][byte(x>>24)]
}

// crcLast4 is the lookups of x's last four bytes (the high half).
func crcLast4(x uint64) uint16 {
	t := tables
	return t[3][byte(x>>32)] ^ t[2][byte(x>>40)] ^ t[1][byte(x>>48)] ^ t[0][x>>56]
}

// fold places a running CRC over the first two bytes of a little-endian word.
func fold(crc uint16) uint64 { return uint64(bits.ReverseBytes16(crc)) }

// crcTail runs the CRC over b byte by byte and reports whether b holds a
// '{'.
func crcTail(crc uint16, b []byte) (uint16, bool) {
	brace := false
	for _, c := range b {
		crc = crc<<8 ^ tables[0][byte(crc>>8)^c]
		brace = brace || c == '{'
	}
	return crc, brace
}

// braceBits is non-zero when some byte of w is '{' (the zero-byte test on
// w XOR "{{{{{{{{").
func braceBits(w uint64) uint64 {
	const ones, highs, braces = 0x0101010101010101, 0x8080808080808080, '{' * 0x0101010101010101
	v := w ^ braces
	return (v - ones) &^ v & highs
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
