// Package prefetch asks the CPU to bring a cache line in ahead of its use.
// A prefetch is a hint: it never faults (any address may be passed, even
// one no longer mapped), never blocks, and changes no memory. Batched
// executors use it to overlap the cache misses of the next operations with
// the work of the current one.
package prefetch

import "unsafe"

// Line prefetches the cache line holding p into every cache level.
func Line(p unsafe.Pointer) { line(uintptr(p)) }
