package hlog

import (
	"errors"
	"fmt"
)

// ErrCorrupt reports log memory or device bytes that cannot be a valid
// sequence of records. It always means a bug or damaged storage.
var ErrCorrupt = errors.New("hlog: corrupt log")

// ScanMemory calls fn for every valid record in [from, to), in address order,
// skipping fillers and invalid records, until fn returns false. from must be a
// record boundary (FirstAddress or a page start) and the whole range must be in
// memory and completely written. The caller holds epoch protection throughout,
// and the views it gets are valid only inside fn.
func (l *Log) ScanMemory(from, to uint64, fn func(addr uint64, r Record) bool) error {
	for addr := from; addr < to; {
		r := l.Record(addr)
		h := r.Header()
		size := h.Prev()
		if !h.Filler() {
			if !h.Final() {
				return fmt.Errorf("%w: unfinished record header %#x at %d", ErrCorrupt, uint64(h), addr)
			}
			size = r.Size()
		}
		if size == 0 || addr&l.pageMask+size > l.pageSize {
			return fmt.Errorf("%w: record of %d bytes at %d crosses its page", ErrCorrupt, size, addr)
		}
		if !h.Filler() && !h.Invalid() && !fn(addr, r) {
			return nil
		}
		addr += size
	}
	return nil
}
