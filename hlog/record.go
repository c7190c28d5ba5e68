package hlog

import "encoding/binary"

// A record is laid out as three 8-byte words, then the key, then the value,
// padded to a multiple of 8 bytes:
//
//	word 0  header     previous address (48) | version (8) | flags (8)
//	word 1  sizes      key length (32) | value capacity (32)       immutable
//	word 2  value len  value length (32) | sequence (32)           changes in place
//	        key        key length bytes
//	        value      value capacity bytes, of which value length are used
//
// Invariant: word 1 is written before the record is published and never again.
// Invariant: word 2 and the value bytes change only while the header's locked
// flag is held, and every such change increments the sequence; the writer
// stores word 2 before it clears the lock. So a reader that sees the same
// unlocked header, then the same word 2, after copying the value as before it
// has a value no writer touched (a seqlock; the order of the checks matters).
// Invariant: a sealed record is never locked again: a writer that copies a
// mutable record to the tail holds its lock until the copy is published, then
// seals it, so no in-place update can land on the old copy afterwards.
// Invariant: once a record is below safeReadOnly no worker changes it in place;
// its sequence half of word 2 is then dead, which is where the durability work
// will keep a checksum of the record.
//
// A filler is a single header word with the filler flag whose low 48 bits give
// the number of bytes to skip: the unused end of a page, or an abandoned
// allocation.

// PrefixSize is the size of a record's fixed words.
const PrefixSize = 24

// MaxKeyLen is the largest key the record format holds.
const MaxKeyLen = 1<<32 - 1

// Header flags and fields.
const (
	AddressMask  = 1<<48 - 1
	versionShift = 48
	versionMask  = 0xff << versionShift

	FlagTombstone Header = 1 << 56 // the record deletes its key
	FlagInvalid   Header = 1 << 57 // never published (its index CAS failed); skip it
	FlagFinal     Header = 1 << 58 // key and value are completely written
	FlagFiller    Header = 1 << 59 // not a record: skip Prev() bytes
	FlagLocked    Header = 1 << 60 // an in-place writer holds the record
	FlagSealed    Header = 1 << 61 // superseded by a copy at the tail: never update in place again
	// FlagDoubt marks a blind write that did not know whether its key was
	// live before it (the store's key count resolves it; see store's
	// keycount.go). It changes nothing about the record's content.
	FlagDoubt Header = 1 << 62
	// FlagExpires marks a record whose value area starts with an expiry
	// (see SplitValue). Records without it pay nothing for expiry.
	FlagExpires Header = 1 << 63
)

// ExpirySize is the size of the expiry a record with FlagExpires keeps at
// the start of its value area.
const ExpirySize = 8

// A record with FlagExpires keeps an expiry, an absolute time in Unix
// milliseconds (0: none), in the first ExpirySize bytes of its value area;
// its value length and capacity count them. So the log's walkers, the
// checksum and every raw copy of a record need not know about it, and
// only readers of a record's value split it off.
//
// Invariant: the expiry is written with the value (under the same lock,
// covered by the same sequence), and FlagExpires changes only while the
// record is locked, so a seqlocked copy of the value area and the header
// returned with it agree.

// SplitValue splits a record's value area raw, whose header is h, into the
// value and its expiry (0 for none).
func SplitValue(h Header, raw []byte) (value []byte, expireAt int64) {
	if h&FlagExpires == 0 || len(raw) < ExpirySize {
		return raw, 0
	}
	return raw[ExpirySize:], int64(binary.LittleEndian.Uint64(raw))
}

// PutExpiry writes expireAt at the start of a value area (len >= ExpirySize).
func PutExpiry(raw []byte, expireAt int64) {
	binary.LittleEndian.PutUint64(raw, uint64(expireAt))
}

// Expires reports whether the record's value area starts with an expiry.
func (h Header) Expires() bool { return h&FlagExpires != 0 }

// Header is a record's first word.
type Header uint64

// MakeHeader builds the header of a complete record.
func MakeHeader(prev uint64, version uint8, tombstone bool) Header {
	h := Header(prev&AddressMask) | Header(version)<<versionShift | FlagFinal
	if tombstone {
		h |= FlagTombstone
	}
	return h
}

func fillerHeader(n uint64) Header { return FlagFiller | Header(n&AddressMask) }

// Prev returns the address of the previous record in the hash chain (or a
// filler's length).
func (h Header) Prev() uint64 { return uint64(h) & AddressMask }

// Version returns the checkpoint version the record was written in.
func (h Header) Version() uint8 { return uint8(h >> versionShift) }

// Tombstone reports whether the record deletes its key.
func (h Header) Tombstone() bool { return h&FlagTombstone != 0 }

// Invalid reports whether the record was abandoned before publication.
func (h Header) Invalid() bool { return h&FlagInvalid != 0 }

// Final reports whether the record was completely written.
func (h Header) Final() bool { return h&FlagFinal != 0 }

// Filler reports whether the word is a filler rather than a record header.
func (h Header) Filler() bool { return h&FlagFiller != 0 }

// Locked reports whether an in-place writer holds the record.
func (h Header) Locked() bool { return h&FlagLocked != 0 }

// Sealed reports whether a newer copy of the record replaced it.
func (h Header) Sealed() bool { return h&FlagSealed != 0 }

// RecordSize returns the bytes a record with these lengths occupies in the log.
func RecordSize(keyLen, valueCap int) uint64 {
	return align8(uint64(PrefixSize) + uint64(keyLen) + uint64(valueCap))
}

func align8(n uint64) uint64 { return (n + 7) &^ 7 }

func packSizes(keyLen, valueCap int) uint64 { return uint64(uint32(keyLen)) | uint64(valueCap)<<32 }

func packValueLen(n int, seq uint32) uint64 { return uint64(uint32(n)) | uint64(seq)<<32 }

// DecodePrefix reads a record's fixed words from bytes copied off the device
// (or any other private copy). ok is false when b is too short for the prefix.
func DecodePrefix(b []byte) (h Header, keyLen, valueCap, valueLen int, ok bool) {
	if len(b) < PrefixSize {
		return 0, 0, 0, 0, false
	}
	h = Header(binary.LittleEndian.Uint64(b))
	sizes := binary.LittleEndian.Uint64(b[8:])
	vl := binary.LittleEndian.Uint64(b[16:])
	return h, int(uint32(sizes)), int(sizes >> 32), int(uint32(vl)), true
}
