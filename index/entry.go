package index

import "sync/atomic"

// An entry is one 8-byte word:
//
//	bit 63     used: the entry is taken (so tag 0 with address 0 is not empty)
//	bit 62     tentative: claimed by an insert that has not checked for
//	           duplicates yet; readers skip it
//	bits 48-61 tag: the low 14 bits of the key hash
//	bits 0-47  log address of the newest record of the chain (0: none yet)
//
// Invariant: a bucket chain holds at most one non-tentative entry per tag.
// Invariant: an entry's tag never changes while it is used; only its address
// moves, by CAS, and only forward to a newer record of the same chain.
//
// The last word of every bucket is not an entry but the 1-based index of its
// overflow bucket (0: none).

// Entry is a snapshot of one index entry.
type Entry uint64

const (
	addressMask  = 1<<48 - 1
	tagShift     = 48
	tagBits      = 14
	tagMask      = (1<<tagBits - 1) << tagShift
	tentativeBit = 1 << 62
	usedBit      = 1 << 63

	entriesPerBucket = 7
)

// Address returns the log address the entry points to (0 for none).
func (e Entry) Address() uint64 { return uint64(e) & addressMask }

// Tag returns the entry's tag.
func (e Entry) Tag() uint64 { return (uint64(e) & tagMask) >> tagShift }

// Used reports whether the entry is taken.
func (e Entry) Used() bool { return e&usedBit != 0 }

func (e Entry) tentative() bool { return e&tentativeBit != 0 }

// tagBitsOf returns the tag of hash h in entry position.
func tagBitsOf(h uint64) uint64 { return (h << tagShift) & tagMask }

func makeEntry(tag, addr uint64) Entry { return Entry(usedBit | tag | addr&addressMask) }

// bucket is one cache line: seven entries and the overflow link.
type bucket [entriesPerBucket + 1]atomic.Uint64

// Slot is where one entry lives. It stays valid while the caller holds the
// epoch it found the slot in.
type Slot struct{ p *atomic.Uint64 }

// Load returns the entry in the slot now.
func (s Slot) Load() Entry { return Entry(s.p.Load()) }

// CompareAndSwap moves the slot from old to old's tag with address addr, and
// reports whether the slot still held old.
func (s Slot) CompareAndSwap(old Entry, addr uint64) bool {
	return s.p.CompareAndSwap(uint64(old), uint64(makeEntry(uint64(old)&tagMask, addr)))
}
