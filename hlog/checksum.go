package hlog

import (
	"encoding/binary"
	"hash/crc32"
)

// Record checksums. When a page is flushed, every record in it gets a
// CRC-32C of its durable content in the high half of word 2, where the
// in-place sequence counter lived while the record was mutable (dead below
// safeReadOnly, see record.go). A record read back from the device, or
// scanned at recovery, is served or replayed only when its checksum holds,
// so a torn or garbled page is detected instead of being returned as data.
//
// The checksum covers the header word, the sizes word, the value length,
// the key and the used part of the value.
//
// Invariant: a record's checksum is written after its page is below
// safeReadOnly and before the page's device write is issued; nothing writes
// the record afterwards.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum computes a record's checksum from its bytes: the prefix, then
// the key and at least valueLen bytes of value. ok is false when b is too
// short for them.
func Checksum(b []byte) (sum uint32, ok bool) {
	_, kl, _, vl, ok := DecodePrefix(b)
	if !ok || len(b) < PrefixSize+kl+vl {
		return 0, false
	}
	sum = crc32.Update(0, castagnoli, b[:20]) // header, sizes, value length
	return crc32.Update(sum, castagnoli, b[PrefixSize:PrefixSize+kl+vl]), true
}

// StoredChecksum returns the checksum kept in a flushed record's word 2.
func StoredChecksum(b []byte) uint32 { return binary.LittleEndian.Uint32(b[20:24]) }

// VerifyRecord reports whether a record copied off the device (b holds its
// prefix, key and used value) carries the checksum of its content.
func VerifyRecord(b []byte) bool {
	sum, ok := Checksum(b)
	return ok && sum == StoredChecksum(b)
}

// SealCopy writes the checksum of every record into a private copy of the
// page at base (its first len(page) bytes), as a flush would: a log
// snapshot's pages must pass the same checks when recovery reads them. A
// record copied while a worker held it (to seal it: its bytes do not
// change) loses the lock flag in the copy.
func SealCopy(page []byte, base uint64) {
	first := uint64(0)
	if base == 0 {
		first = FirstAddress
	}
	sealPage(page, first, true)
}

// sealPage writes the checksum of every record in page, a frame's bytes
// below safeReadOnly (or, with unlock, a private copy), whose first record
// is at offset first (FirstAddress on page 0, else 0). It stops at a
// malformed size, which ScanMemory and recovery report; the page is
// written as it is.
//
// It returns how many bytes of the page hold something a reader may read:
// up to the header of a filler that runs to the page's end (an allocation
// that did not fit), the whole page
// otherwise. Readers skip a filler by its length (ScanDevice, scanPage),
// so what lies beyond its header is never read.
func sealPage(page []byte, first uint64, unlock bool) (used uint64) {
	for off := first; off+8 <= uint64(len(page)); {
		h := Header(binary.LittleEndian.Uint64(page[off:]))
		if h.Filler() {
			if h.Prev() == 0 {
				return uint64(len(page))
			}
			if off+h.Prev() == uint64(len(page)) {
				return off + 8
			}
			off += h.Prev()
			continue
		}
		if !h.Final() || off+PrefixSize > uint64(len(page)) {
			return uint64(len(page)) // not a record: the unused end of a page is zero
		}
		_, kl, vc, _, _ := DecodePrefix(page[off:])
		size := RecordSize(kl, vc)
		if off+size > uint64(len(page)) {
			return uint64(len(page))
		}
		if unlock && h.Locked() {
			binary.LittleEndian.PutUint64(page[off:], uint64(h&^FlagLocked))
		}
		if sum, ok := Checksum(page[off : off+size]); ok {
			// Atomically, as in-memory readers load word 2 atomically
			// (they retry their seqlock read when it changes).
			w := frameRecord(page, off).word(2)
			w.Store(uint64(uint32(w.Load())) | uint64(sum)<<32)
		}
		off += size
	}
	return uint64(len(page))
}
