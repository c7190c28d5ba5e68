package keydist

import (
	"errors"
	"fmt"
)

// Generator chooses key numbers. Implementations are immutable after
// construction, so one Generator may be shared by many goroutines as long as
// each passes its own *Rand.
type Generator interface {
	// Next draws one key number in [0, n), where n is the item count the
	// generator was built with, consuming randomness only from r. It never
	// allocates.
	Next(r *Rand) uint64
}

// Names of the distributions accepted by New.
const (
	// DistUniform selects NewUniform.
	DistUniform = "uniform"
	// DistZipf selects NewScrambledZipfian (θ = 0.99), matching YCSB's
	// requestdistribution=zipfian.
	DistZipf = "zipf"
)

// errZeroItems is returned by New when asked for a generator over no keys.
var errZeroItems = errors.New("keydist: item count n must be > 0")

// New builds the generator named by dist over [0, n): DistUniform or DistZipf
// (scrambled Zipfian with θ = 0.99). It returns an error, rather than
// panicking like the typed constructors, for n == 0 or an unknown name, so it
// is the constructor to use on user-supplied configuration.
func New(dist string, n uint64) (Generator, error) {
	if n == 0 {
		return nil, errZeroItems
	}
	switch dist {
	case DistUniform:
		return NewUniform(n), nil
	case DistZipf:
		return NewScrambledZipfian(n), nil
	default:
		return nil, fmt.Errorf("keydist: unknown distribution %q (want %q or %q)",
			dist, DistUniform, DistZipf)
	}
}

// mustItems panics with a clear message when a typed constructor gets n == 0.
func mustItems(n uint64) {
	if n == 0 {
		panic(errZeroItems)
	}
}
