// Package invariants switches expensive self-checks on and off at build time,
// as pebble's internal/invariants does. Build or test with `-tags invariants`
// (make test does) to compile in the log's marker-order checks, the store's
// chain and record checks and the index's growth checks, and to make
// impossible device records panic; benchmarks are built without them.
//
// The package holds only the switch and helpers that panic on a broken
// invariant. It must never change behaviour that a user can observe.
package invariants

import "fmt"

// Fail panics with a formatted message about a broken invariant. Call it as
//
//	if invariants.Enabled && !cond {
//		invariants.Fail("...", args...)
//	}
//
// so that the check compiles away without the tag and the arguments are
// boxed only on the failure path (the checked build stays allocation-free).
func Fail(format string, args ...any) {
	panic(fmt.Sprintf("fleetkv invariant violated: "+format, args...))
}
