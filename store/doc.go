// Package store is the FASTER key-value store: Read, Upsert, RMW, Delete and
// the conditional Update (update.go) on byte-slice keys and values, executed by sessions over the shared hash index
// (package index) and HybridLog (package hlog).
//
// Each worker owns one Session, which carries its epoch slot and a serial
// number that increases with every operation. An operation runs to completion
// on the calling goroutine when its record is in memory; otherwise it returns
// Pending and completes later, through the session's completion callback, when
// the worker calls CompletePending. Updates follow the HybridLog's regions:
//
//	mutable   [readOnly, tail)          update in place when the value fits
//	fuzzy     [safeReadOnly, readOnly)  RMW goes pending and retries; blind
//	                                    upserts and deletes append
//	read-only [head, safeReadOnly)      copy to the tail (read-copy-update)
//	device    [begin, head)             reads go pending; blind writes append
//
// An operation that returns a non-nil error did nothing; its Status is then
// meaningless. Errors are the package's sentinels (ErrNotInt64, ...), wrapped.
//
// The package owns operation semantics and pending-operation bookkeeping. It
// must never allocate per operation in steady state, never block a worker on
// a lock held across operations, and never return a value that a concurrent
// in-place update has torn.
package store
