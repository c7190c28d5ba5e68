package index

import "fmt"

// Export calls fn with every entry that points to a record (used, not
// tentative, address not 0), the main bucket whose chain holds it and the
// table's bits, and returns the table's bits. It holds off growth while it runs and reads
// each entry once, atomically, while operations go on: the export is
// fuzzy, an entry may move (to a newer record of its chain) while it runs,
// and the export has whichever address it read. It needs no epoch
// protection: without growth the table is not freed.
func (ix *Index) Export(fn func(bits uint, bucket uint64, e Entry) error) (uint, error) {
	ix.growMu.Lock()
	defer ix.growMu.Unlock()
	t := ix.state.Load().cur
	for i := range t.buckets {
		for b := &t.buckets[i]; b != nil; b = t.next(b) {
			for j := 0; j < entriesPerBucket; j++ {
				e := Entry(b[j].Load())
				if !e.Used() || e.tentative() || e.Address() == 0 {
					continue
				}
				if err := fn(t.bits, uint64(i), e); err != nil {
					return t.bits, err
				}
			}
		}
	}
	return t.bits, nil
}

// Import adds entry e, exported from bucket of a table of bits bits, to an
// index no goroutine uses yet. A table with more bits gets it in every
// bucket the old one split into (as a growth does with records it cannot
// sort: key comparisons skip the extra links). Imported entries must come
// from one export: at most one per tag and bucket.
func (ix *Index) Import(bits uint, bucket uint64, e Entry) error {
	t := ix.state.Load().cur
	if bits > t.bits || bucket >= 1<<bits || !e.Used() {
		return fmt.Errorf("index: import of entry %#x of bucket %d of a %d-bit table into a %d-bit one", uint64(e), bucket, bits, t.bits)
	}
	shift := t.bits - bits
	for nb := bucket << shift; nb < (bucket+1)<<shift; nb++ {
		t.freeSlotIn(&t.buckets[nb]).Store(uint64(e) &^ tentativeBit)
	}
	ix.entries.Add(1)
	return nil
}

// ExportRange is Export over the buckets that hold hashes in [lo, hi]
// only: one contiguous run of buckets (the high-bit layout), so a slot
// range costs its share of the table. Entries of hashes outside the range
// that share those buckets are passed too: the caller filters by key.
func (ix *Index) ExportRange(lo, hi uint64, fn func(e Entry, bucket uint64, bits uint) error) error {
	return ix.ExportPositions(Position(lo), Position(hi), fn)
}

// ExportPositions is Export over the buckets that hold the hashes whose
// Position lies in [from, to]: the run of buckets from from's to to's at
// the table's size now. fn gets each entry with its bucket and the table's
// bits. A chain may hold older records of keys of another bucket (a growth
// puts a chain it cannot sort into both halves): a key's newest record is
// first in the chain of its own bucket, BucketOf(hash, bits), where the
// caller looks for it.
func (ix *Index) ExportPositions(from, to uint64, fn func(e Entry, bucket uint64, bits uint) error) error {
	ix.growMu.Lock()
	defer ix.growMu.Unlock()
	t := ix.state.Load().cur
	for i := from >> (64 - t.bits); i <= to>>(64-t.bits); i++ {
		for b := &t.buckets[i]; b != nil; b = t.next(b) {
			for j := 0; j < entriesPerBucket; j++ {
				e := Entry(b[j].Load())
				if !e.Used() || e.tentative() || e.Address() == 0 {
					continue
				}
				if err := fn(e, i, t.bits); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
