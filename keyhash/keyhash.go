package keyhash

import (
	"bytes"
	"encoding/binary"

	metro "github.com/dgryski/go-metro"
)

// Slots is the number of ownership slots (Redis Cluster's).
const Slots = 16384

// SlotBits is how many of the hash's high bits hold the slot.
const SlotBits = 14

// SlotShift is where the slot starts in the hash.
const SlotShift = 64 - SlotBits

// lowMask keeps the go-metro bits.
const lowMask = 1<<SlotShift - 1

// Seed is the fixed go-metro seed. Changing it changes every persisted
// index: it would be a new Format.
const Seed = 0x9e3779b97f4a7c15

// Format is the version of the hash layout. Format 0 was go-metro alone
// (before slots); format 1 is the slot-prefixed hash above.
const Format = 1

// Hash returns key's 64-bit hash: its slot in the top SlotBits bits, go-metro
// bits below.
//
// A key of up to shortKey bytes is hashed in one pass, without a call: each
// 8-byte word is loaded once for both the CRC and go-metro's steps. Every
// operation starts here. For an 8-byte key that is about 127 instructions
// where the CRC and a call to go-metro's assembly (its arguments spilled to
// the stack, the goroutine register reloaded after it) took 166; 7.2 ns
// against 9.8 (BenchmarkHash; BENCHMARKS.md, issue 18).
func Hash(key []byte) uint64 {
	if len(key) > shortKey {
		return uint64(Slot(key))<<SlotShift | metro.Hash64(key, Seed)&lowMask
	}
	m, b := metroStart(), key
	var crc uint16
	var braces uint64
	if len(b) >= 16 {
		w0, w1 := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		x := w1 ^ fold(crcFirst4(w0)^crcLast4(w0))
		crc = crcFirst4(x) ^ crcLast4(x)
		braces = braceBits(w0) | braceBits(w1)
		m = metro16(m, w0, w1)
		b = b[16:]
	}
	if len(b) >= 8 {
		w := binary.LittleEndian.Uint64(b)
		x := w ^ fold(crc)
		crc = crcFirst4(x) ^ crcLast4(x)
		braces |= braceBits(w)
		m = metro8(m, w)
		b = b[8:]
	}
	crc, brace := crcTail(crc, b)
	if brace || braces != 0 {
		crc = tagCRC(key, crc)
	}
	return uint64(crc&(Slots-1))<<SlotShift | metroEnd(metroTail(m, b))&lowMask
}

// SlotOf returns the slot of a hash Hash returned.
func SlotOf(h uint64) uint16 { return uint16(h >> SlotShift) }

// Slot returns key's Redis Cluster slot: CRC16 of its hash tag, or of the
// whole key when it has none, mod Slots.
func Slot(key []byte) uint16 {
	crc, brace := crc16Brace(key)
	if brace {
		crc = tagCRC(key, crc)
	}
	return crc & (Slots - 1)
}

// tagCRC returns the CRC of key's hash tag, given crc, that of the whole
// key, which holds a '{'.
func tagCRC(key []byte, crc uint16) uint16 {
	if tag := HashTag(key); len(tag) != len(key) {
		return crc16(tag)
	}
	return crc
}

// HashTag returns the part of key its slot is computed over: the bytes
// between the first '{' and the first '}' after it when there are any,
// else the whole key. The result aliases key.
func HashTag(key []byte) []byte {
	open := bytes.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := bytes.IndexByte(key[open+1:], '}')
	if end <= 0 { // no '}', or "{}": the whole key
		return key
	}
	return key[open+1 : open+1+end]
}

// FirstHash and LastHash bound the hashes of slot s: every key of the slot
// hashes into [FirstHash(s), LastHash(s)].
func FirstHash(s uint16) uint64 { return uint64(s) << SlotShift }

// LastHash is the largest hash of slot s.
func LastHash(s uint16) uint64 { return uint64(s)<<SlotShift | lowMask }
