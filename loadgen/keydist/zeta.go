package keydist

import (
	"math"
	"sync"
)

// zetaKey identifies one memoised zeta(n, θ).
type zetaKey struct {
	n     uint64
	theta float64
}

// zetaEntry computes its value at most once, outside the cache's map lock,
// so building a large generator does not block lookups for other keys.
type zetaEntry struct {
	once sync.Once
	val  float64
}

// zetaCache memoises zeta(n, θ) per process. It is the package's only
// package-level mutable state and is safe because each entry is a pure
// function of its key: it changes how long construction takes, never a draw.
var zetaCache = struct {
	mu sync.Mutex
	m  map[zetaKey]*zetaEntry
}{m: make(map[zetaKey]*zetaEntry)}

// cachedZeta returns zeta(n, θ), computing it (O(n)) only on the first call
// for a given (n, θ) in this process; concurrent callers for the same key
// wait for that single computation.
func cachedZeta(n uint64, theta float64) float64 {
	k := zetaKey{n: n, theta: theta}
	zetaCache.mu.Lock()
	e, ok := zetaCache.m[k]
	if !ok {
		e = new(zetaEntry)
		zetaCache.m[k] = e
	}
	zetaCache.mu.Unlock()
	e.once.Do(func() { e.val = zeta(n, theta) })
	return e.val
}

// zeta returns the generalised harmonic number sum_{i=1..n} 1/i^θ, summed in
// increasing i exactly like YCSB's ZipfianGenerator.zetastatic.
func zeta(n uint64, theta float64) float64 {
	sum := 0.0
	for i := uint64(1); i <= n; i++ {
		sum += 1 / math.Pow(float64(i), theta)
	}
	return sum
}
