package keyhash

import (
	"bytes"

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
func Hash(key []byte) uint64 {
	return uint64(Slot(key))<<SlotShift | metro.Hash64(key, Seed)&lowMask
}

// SlotOf returns the slot of a hash Hash returned.
func SlotOf(h uint64) uint16 { return uint16(h >> SlotShift) }

// Slot returns key's Redis Cluster slot: CRC16 of its hash tag, or of the
// whole key when it has none, mod Slots.
func Slot(key []byte) uint16 {
	crc, brace := crc16Brace(key)
	if brace {
		if tag := HashTag(key); len(tag) != len(key) {
			crc = crc16(tag)
		}
	}
	return crc & (Slots - 1)
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
