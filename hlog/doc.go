// Package hlog is the HybridLog: one 48-bit logical address space of
// variable-length records whose tail lives in memory, in a circular buffer of
// page frames, and whose older part lives on an ssd.Device.
//
// The package owns logical addresses, the page frames, tail allocation, the
// markers that split the log into regions, flushing read-only pages to the
// device, evicting flushed pages from memory, and the record layout.
//
//	begin        head       safeReadOnly   readOnly              tail
//	  |  on device |  read-only, |  fuzzy       |  mutable, in memory |
//	  |            |  in memory  |              |  (update in place)  |
//
// It knows nothing of keys, hashing or the index: the store decides what a
// record means. It must never block a worker: when a page frame is not free
// yet, Allocate says so (ErrRetryLater) and the worker refreshes its epoch and
// retries, which is what lets the deferred flush and eviction actions run.
//
// Page frames live in manual (mmap'd) memory: the garbage collector never scans
// them and the race detector does not see accesses to them.
package hlog
