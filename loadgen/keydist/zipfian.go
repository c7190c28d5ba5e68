package keydist

import (
	"fmt"
	"math"
)

// DefaultTheta is YCSB's ZIPFIAN_CONSTANT, the skew used when callers have no
// reason to pick another.
const DefaultTheta = 0.99

// Zipfian draws keys in [0, n) with P(k) proportional to 1/(k+1)^θ, so key 0
// is the hottest, key 1 the next, and so on. It is YCSB's ZipfianGenerator
// (Gray et al., "Quickly Generating Billion-Record Synthetic Databases",
// SIGMOD 1994): P(0) = 1/zeta(n,θ) and P(1) = 0.5^θ/zeta(n,θ) exactly, the
// tail follows Gray's closed-form approximation. Unlike math/rand.Zipf it
// supports 0 <= θ < 1, the range YCSB uses.
type Zipfian struct {
	items float64 // n, as the multiplier of the tail formula
	max   uint64  // n-1: clamp against float rounding up to n
	zetan float64 // zeta(n, θ)
	half  float64 // 1 + 0.5^θ: uz threshold below which the draw is key 1
	alpha float64 // 1/(1-θ)
	eta   float64 // (1 - (2/n)^(1-θ)) / (1 - zeta(2,θ)/zeta(n,θ))
}

// NewZipfian returns a Zipfian over [0, n) with skew theta (use DefaultTheta
// for YCSB's 0.99). Construction computes zeta(n, θ) in O(n) the first time a
// given (n, θ) is seen in the process and reuses it afterwards. It panics if
// n == 0 or theta is not in [0, 1).
func NewZipfian(n uint64, theta float64) Generator {
	mustItems(n)
	if !(theta >= 0 && theta < 1) {
		panic(fmt.Sprintf("keydist: Zipfian theta %v not in [0, 1)", theta))
	}
	return newZipfian(n, theta, cachedZeta(n, theta))
}

// newZipfian builds a Zipfian from a known zetan, the way YCSB's four-argument
// constructor does; ScrambledZipfian uses it with YCSB's precomputed ZETAN.
func newZipfian(n uint64, theta, zetan float64) *Zipfian {
	items := float64(n)
	zeta2 := zeta(2, theta)
	return &Zipfian{
		items: items,
		max:   n - 1,
		zetan: zetan,
		half:  1 + math.Pow(0.5, theta),
		alpha: 1 / (1 - theta),
		eta:   (1 - math.Pow(2/items, 1-theta)) / (1 - zeta2/zetan),
	}
}

// Next draws a Zipfian-distributed key in [0, n) from one r.Float64(). For
// n <= 2 only the two exact branches are reachable, so eta (undefined there)
// is never used. Unlike YCSB the tail result is clamped to n-1, guarding
// against float rounding of n*x for x just below 1.
func (g *Zipfian) Next(r *Rand) uint64 {
	u := r.Float64()
	uz := u * g.zetan
	if uz < 1 {
		return 0
	}
	if uz < g.half {
		return 1
	}
	// x^alpha as exp(alpha*ln x): half the cost of math.Pow, and over 10^7
	// draws at n = 10^7 it truncated to the same key every time.
	k := uint64(g.items * math.Exp(g.alpha*math.Log(g.eta*u-g.eta+1)))
	return min(k, g.max)
}
