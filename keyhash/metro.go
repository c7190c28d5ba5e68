package keyhash

import (
	"encoding/binary"
	"math/bits"
)

// MetroHash64's constants (J. Andrew Rogers' metrohash64_1, which go-metro
// implements).
const (
	mk0 = 0xD6D018F5
	mk1 = 0xA2AA033B
	mk2 = 0x62992FC1
	mk3 = 0x30BC5B29
)

// shortKey is the longest key Hash runs go-metro's steps for itself (in
// one pass with the CRC); longer ones go to go-metro, whose assembly runs
// 32 bytes a step. A key under 32 bytes never reaches that loop: it takes
// each of the steps below at most once, in this order. TestHashIsSlotAndMetro
// checks every length against go-metro.
const shortKey = 31

// metroStart is the state before the first byte.
func metroStart() uint64 {
	seed := uint64(Seed) // a variable: the product wraps, as constants cannot
	return (seed + mk2) * mk0
}

// metro16 takes 16 bytes, as the two little-endian words w0 and w1.
func metro16(h, w0, w1 uint64) uint64 {
	v0 := bits.RotateLeft64(h+w0*mk2, -29) * mk3
	v1 := bits.RotateLeft64(h+w1*mk2, -29) * mk3
	v0 ^= bits.RotateLeft64(v0*mk0, -21) + v1
	v1 ^= bits.RotateLeft64(v1*mk3, -21) + v0
	return h + v1
}

// metro8 takes 8 bytes, the little-endian word w.
func metro8(h, w uint64) uint64 {
	h += w * mk3
	return h ^ bits.RotateLeft64(h, -55)*mk1
}

// metroTail takes the last 0 to 7 bytes.
func metroTail(h uint64, b []byte) uint64 {
	if len(b) >= 4 {
		h += uint64(binary.LittleEndian.Uint32(b)) * mk3
		h ^= bits.RotateLeft64(h, -26) * mk1
		b = b[4:]
	}
	if len(b) >= 2 {
		h += uint64(binary.LittleEndian.Uint16(b)) * mk3
		h ^= bits.RotateLeft64(h, -48) * mk1
		b = b[2:]
	}
	if len(b) >= 1 {
		h += uint64(b[0]) * mk3
		h ^= bits.RotateLeft64(h, -37) * mk1
	}
	return h
}

// metroEnd mixes the state into the hash.
func metroEnd(h uint64) uint64 {
	h ^= bits.RotateLeft64(h, -28)
	h *= mk0
	return h ^ bits.RotateLeft64(h, -29)
}
