// Package server runs fleetkv's event loops: gnet/v2 loops, one per core by
// default, each locked to its OS thread and pinned to a core, each owning its
// connections end to end. A loop reads whole batches from a connection's
// input buffer without copying, executes every operation against the shared
// store through the loop's own store session (its epoch slot), and writes
// all responses of one read with one write. Nothing on that path hands work
// to another goroutine, takes a lock or allocates in steady state.
//
// The package also serves the admin HTTP endpoints (pprof, health, stats)
// and shuts down gracefully. It must never let one connection's bad input
// affect another connection or the process.
package server
