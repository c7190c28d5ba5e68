// Package invariants switches expensive self-checks on and off at build time,
// as pebble's internal/invariants does. Build or test with `-tags invariants`
// (make test does) to compile in marker-order checks, record sanity checks and
// "sometimes take the slow path" switches; benchmarks are built without them.
//
// The package holds only the switch and helpers that panic on a broken
// invariant. It must never change behaviour that a user can observe.
package invariants

import "fmt"

// Check panics with a formatted message when cond is false and self-checks
// are compiled in. Call it as `if invariants.Enabled { invariants.Check(...) }`
// on hot paths so that the arguments are not even evaluated otherwise.
func Check(cond bool, format string, args ...any) {
	if Enabled && !cond {
		panic(fmt.Sprintf("fleetkv invariant violated: "+format, args...))
	}
}
