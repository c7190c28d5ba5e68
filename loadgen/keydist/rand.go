package keydist

// Rand is a small, fast splitmix64 pseudo-random source owned by its caller.
// It is not safe for concurrent use: give each goroutine its own, seeded
// differently. The zero value is a valid generator seeded with 0.
type Rand struct {
	state uint64
}

// NewRand returns a Rand whose sequence is fully determined by seed.
func NewRand(seed uint64) *Rand {
	return &Rand{state: seed}
}

// Seed resets r so that it replays the sequence NewRand(seed) would produce.
func (r *Rand) Seed(seed uint64) {
	r.state = seed
}

// Uint64 returns the next 64 uniformly distributed pseudo-random bits
// (splitmix64: a Weyl sequence passed through a 64-bit finaliser).
func (r *Rand) Uint64() uint64 {
	r.state += 0x9E3779B97F4A7C15
	z := r.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// Float64 returns a uniformly distributed float64 in the half-open interval
// [0, 1), built from the top 53 bits of Uint64 so every value is an exact
// multiple of 2^-53.
func (r *Rand) Float64() float64 {
	return float64(r.Uint64()>>11) * 0x1p-53
}
