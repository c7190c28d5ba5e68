package keydist

// YCSB ScrambledZipfianGenerator constants: the hidden Zipfian runs over
// ycsbItemCount+1 items (YCSB constructs it as ZipfianGenerator(0,
// ITEM_COUNT), an inclusive range) with θ = 0.99 and YCSB's precomputed
// zeta(10^10, 0.99), so it is never summed here.
const (
	ycsbItemCount = 10_000_000_000
	ycsbZetan     = 26.46902820178302
	ycsbTheta     = 0.99
)

// FNV-1 64-bit parameters as used by YCSB's Utils.fnvhash64.
const (
	fnvOffset64 = 0xCBF29CE484222325
	fnvPrime64  = 1099511628211
)

// ScrambledZipfian is YCSB's ScrambledZipfianGenerator (the "zipfian"
// request distribution): it draws from a θ = 0.99 Zipfian over 10^10 items
// and hashes the draw into [0, n), so the popularity skew is kept but the hot
// keys are scattered across the key space instead of clustered at 0. Because
// the hidden item space is far larger than typical n, it is less skewed than
// a Zipfian over n items directly.
type ScrambledZipfian struct {
	zipf *Zipfian
	n    uint64
}

// NewScrambledZipfian returns a ScrambledZipfian over [0, n). Construction is
// O(1): it uses YCSB's precomputed zeta. It panics if n == 0; use New to get
// an error instead.
func NewScrambledZipfian(n uint64) Generator {
	mustItems(n)
	return &ScrambledZipfian{
		zipf: newZipfian(ycsbItemCount+1, ycsbTheta, ycsbZetan),
		n:    n,
	}
}

// Next returns ycsbFNVHash64(zipf draw) % n, exactly YCSB's nextValue with
// min = 0.
func (g *ScrambledZipfian) Next(r *Rand) uint64 {
	return ycsbFNVHash64(g.zipf.Next(r)) % g.n
}

// ycsbFNVHash64 is YCSB's Utils.fnvhash64: FNV-1a over the 8 bytes of the
// value taken from the least significant octet up, followed by Java's
// Math.abs on the signed result. Java's Math.abs(Long.MIN_VALUE) stays
// negative and would make YCSB return a negative key; here that single hash
// value maps to 2^63 instead, keeping the result non-negative. Inputs are
// Zipfian draws (< 2^63), so Java's arithmetic >> and Go's logical >> agree.
func ycsbFNVHash64(val uint64) uint64 {
	h := uint64(fnvOffset64)
	for range 8 {
		h ^= val & 0xff
		h *= fnvPrime64
		val >>= 8
	}
	if int64(h) < 0 {
		h = -h
	}
	return h
}
