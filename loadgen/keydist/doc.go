// Package keydist owns the key-number generators used by the YCSB-style
// workloads: the engine benchmarks and the load generator ask it "which key
// next?" and get back a key number in [0, n). It provides a uniform chooser,
// a Zipfian chooser (Gray et al., SIGMOD 1994, exactly as YCSB's
// ZipfianGenerator) and a scrambled Zipfian chooser (YCSB's
// ScrambledZipfianGenerator, the "zipf" request distribution). YCSB's
// "latest" distribution is deliberately not provided.
//
// Randomness always comes from a caller-owned, explicitly seeded *Rand, one
// per goroutine, so every run is reproducible from its seeds. Generators are
// immutable once built and may be shared between goroutines, each passing its
// own *Rand.
//
// The package must never:
//   - allocate on a draw (Next is on the benchmark hot path; tests enforce
//     zero allocations per call);
//   - use global or unseeded randomness (math/rand's top-level functions,
//     crypto/rand, time-based seeds) or any package-level mutable state other
//     than the memoisation cache of zeta constants, which only stores pure
//     functions of (n, θ) and so cannot change any draw.
package keydist
