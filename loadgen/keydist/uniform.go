package keydist

import "math/bits"

// Uniform draws every key in [0, n) with equal probability, without modulo
// bias (Lemire's multiply-and-reject method).
type Uniform struct {
	n      uint64
	thresh uint64 // (2^64 - n) mod n: low products below this are rejected
}

// NewUniform returns a Uniform over [0, n). It panics if n == 0; use New to
// get an error instead.
func NewUniform(n uint64) Generator {
	mustItems(n)
	return &Uniform{n: n, thresh: -n % n}
}

// Next returns a uniformly distributed key in [0, n). It rejects and redraws
// with probability below n/2^64, so it is effectively a single Uint64 call.
func (g *Uniform) Next(r *Rand) uint64 {
	for {
		hi, lo := bits.Mul64(r.Uint64(), g.n)
		if lo >= g.thresh {
			return hi
		}
	}
}
