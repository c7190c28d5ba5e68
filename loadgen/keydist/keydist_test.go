package keydist

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
)

// namedGen pairs a generator with a label for table-driven tests.
type namedGen struct {
	name string
	g    Generator
}

// gensFor returns every generator kind over [0, n).
func gensFor(n uint64) []namedGen {
	return []namedGen{
		{"uniform", NewUniform(n)},
		{"zipfian0.99", NewZipfian(n, DefaultTheta)},
		{"zipfian0.5", NewZipfian(n, 0.5)},
		{"zipfian0", NewZipfian(n, 0)},
		{"scrambled", NewScrambledZipfian(n)},
	}
}

// histogram draws `draws` keys from g over [0, n) and counts each key.
func histogram(g Generator, n uint64, seed uint64, draws int) []int {
	r := NewRand(seed)
	counts := make([]int, n)
	for range draws {
		counts[g.Next(r)]++
	}
	return counts
}

func TestRandDeterministic(t *testing.T) {
	a, b, c := NewRand(42), NewRand(42), NewRand(43)
	same := true
	for range 1000 {
		x, y, z := a.Uint64(), b.Uint64(), c.Uint64()
		if x != y {
			t.Fatalf("same seed diverged: %x != %x", x, y)
		}
		same = same && x == z
	}
	if same {
		t.Fatal("seeds 42 and 43 produced identical sequences")
	}
	a.Seed(7)
	first := a.Uint64()
	a.Seed(7)
	if got := a.Uint64(); got != first {
		t.Fatalf("Seed(7) did not replay: %x != %x", got, first)
	}
}

func TestRandFloat64Range(t *testing.T) {
	r := NewRand(1)
	sum := 0.0
	const draws = 1_000_000
	for range draws {
		f := r.Float64()
		if f < 0 || f >= 1 {
			t.Fatalf("Float64 = %v, want [0, 1)", f)
		}
		sum += f
	}
	if mean := sum / draws; math.Abs(mean-0.5) > 0.002 {
		t.Fatalf("Float64 mean = %v, want about 0.5", mean)
	}
}

func TestDrawsInRange(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 7, 10, 1000, 65_537} {
		for _, ng := range gensFor(n) {
			r := NewRand(n)
			seen := make(map[uint64]bool)
			for range 100_000 {
				k := ng.g.Next(r)
				if k >= n {
					t.Fatalf("%s n=%d: Next = %d out of range", ng.name, n, k)
				}
				seen[k] = true
			}
			if n <= 3 && uint64(len(seen)) != n {
				t.Errorf("%s n=%d: only %d distinct keys drawn", ng.name, n, len(seen))
			}
		}
	}
}

func TestUniformLargeNInRange(t *testing.T) {
	for _, n := range []uint64{1 << 40, math.MaxUint64 - 1, math.MaxUint64} {
		g, r := NewUniform(n), NewRand(9)
		for range 10_000 {
			if k := g.Next(r); k >= n {
				t.Fatalf("n=%d: Next = %d out of range", n, k)
			}
		}
	}
}

func TestUniformBuckets(t *testing.T) {
	const n, buckets, draws = 1000, 10, 1_000_000
	counts := histogram(NewUniform(n), n, 2024, draws)
	var got [buckets]int
	for k, c := range counts {
		got[k*buckets/n] += c
	}
	want := float64(draws) / buckets
	for i, c := range got {
		if math.Abs(float64(c)-want) > 0.10*want {
			t.Errorf("bucket %d: %d draws, want %v ±10%%", i, c, want)
		}
	}
}

func TestZipfianHead(t *testing.T) {
	const n, draws = 1000, 1_000_000
	theta := DefaultTheta
	counts := histogram(NewZipfian(n, theta), n, 99, draws)
	if hottest := slices.Index(counts, slices.Max(counts)); hottest != 0 {
		t.Fatalf("hottest key = %d, want 0", hottest)
	}
	zn := zeta(n, theta)
	checkFreq(t, "P(0)", counts[0], draws, 1/zn)
	checkFreq(t, "P(1)", counts[1], draws, math.Pow(0.5, theta)/zn)
	if !(counts[0] > counts[1] && counts[1] > counts[2]) {
		t.Fatalf("ranks 0,1,2 not decreasing: %v", counts[:3])
	}
}

// checkFreq fails if count/draws is not within 10% of the theoretical p.
func checkFreq(t *testing.T, what string, count, draws int, p float64) {
	t.Helper()
	if f := float64(count) / float64(draws); math.Abs(f-p) > 0.10*p {
		t.Errorf("%s = %v, want %v ±10%%", what, f, p)
	}
}

func TestZipfianSmallTheta(t *testing.T) {
	const n, draws = 100, 500_000
	counts := histogram(NewZipfian(n, 0.5), n, 5, draws)
	checkFreq(t, "P(0) θ=0.5", counts[0], draws, 1/zeta(n, 0.5))
	if !(counts[0] > counts[1] && counts[1] > counts[2]) {
		t.Fatalf("θ=0.5 ranks 0,1,2 not decreasing: %v", counts[:3])
	}
}

func TestZipfianPanics(t *testing.T) {
	cases := []struct {
		n     uint64
		theta float64
	}{{0, 0.99}, {10, 1}, {10, 1.5}, {10, -0.1}, {10, math.NaN()}}
	for _, c := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewZipfian(%d, %v) did not panic", c.n, c.theta)
				}
			}()
			NewZipfian(c.n, c.theta)
		}()
	}
}

func TestScrambledSkew(t *testing.T) {
	const n, draws = 1_000_000, 2_000_000
	counts := histogram(NewScrambledZipfian(n), n, 31337, draws)
	slices.SortFunc(counts, func(a, b int) int { return b - a })
	if top := float64(counts[0]) / draws; top <= 0.01 {
		t.Errorf("hottest key share = %v, want > 1%%", top)
	}
	hot := 0
	for _, c := range counts[:n/100] {
		hot += c
	}
	// The hottest n/100 keys hold at least the hashed images of the top n/100
	// hidden items, zeta(10^4, 0.99)/ZETAN ≈ 38.6% of draws; uniform keys
	// would give them 1%. (YCSB's scrambled Zipfian is not skewed enough
	// for 50%: its hidden Zipfian spans 10^10 items.)
	if share := float64(hot) / draws; share <= 0.35 {
		t.Errorf("hottest 1%% of keys took %v of draws, want > 35%%", share)
	}
}

func TestScrambledDeterministic(t *testing.T) {
	g1, g2 := NewScrambledZipfian(1000), NewScrambledZipfian(1000)
	a, b, c := NewRand(8), NewRand(8), NewRand(9)
	differs := false
	for range 10_000 {
		x, y, z := g1.Next(a), g2.Next(b), g1.Next(c)
		if x != y {
			t.Fatalf("same seed diverged: %d != %d", x, y)
		}
		differs = differs || x != z
	}
	if !differs {
		t.Fatal("seeds 8 and 9 produced identical key sequences")
	}
}

// refYCSBHash is an independent reference: hash/fnv's FNV-1a over the value's
// 8 little-endian bytes, then Java's Math.abs.
func refYCSBHash(v uint64) uint64 {
	h := fnv.New64a()
	h.Write(binary.LittleEndian.AppendUint64(nil, v))
	s := int64(h.Sum64())
	if s < 0 {
		s = -s
	}
	return uint64(s)
}

func TestYCSBFNVHash64(t *testing.T) {
	r := NewRand(3)
	inputs := []uint64{0, 1, 2, 255, 256, ycsbItemCount, 1<<63 - 1}
	for range 1000 {
		inputs = append(inputs, r.Uint64()>>1)
	}
	for _, v := range inputs {
		got := ycsbFNVHash64(v)
		if want := refYCSBHash(v); got != want {
			t.Fatalf("ycsbFNVHash64(%d) = %#x, want %#x", v, got, want)
		}
		if got > 1<<63 {
			t.Fatalf("ycsbFNVHash64(%d) = %#x, not abs'd", v, got)
		}
	}
}

func TestNextDoesNotAllocate(t *testing.T) {
	for _, ng := range gensFor(1_000_000) {
		r := NewRand(1)
		if a := testing.AllocsPerRun(1000, func() { ng.g.Next(r) }); a != 0 {
			t.Errorf("%s: %v allocs per Next, want 0", ng.name, a)
		}
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		dist string
		want Generator
	}{{"uniform", &Uniform{}}, {"zipf", &ScrambledZipfian{}}} {
		g, err := New(tc.dist, 10)
		if err != nil {
			t.Fatalf("New(%q, 10): %v", tc.dist, err)
		}
		if gt, wt := typeName(g), typeName(tc.want); gt != wt {
			t.Errorf("New(%q) built %s, want %s", tc.dist, gt, wt)
		}
	}
}

// typeName names the concrete type behind a Generator.
func typeName(g Generator) string {
	switch g.(type) {
	case *Uniform:
		return "Uniform"
	case *ScrambledZipfian:
		return "ScrambledZipfian"
	case *Zipfian:
		return "Zipfian"
	}
	return "unknown"
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		dist, wantMsg string
		n             uint64
	}{
		{"uniform", "n must be > 0", 0},
		{"zipf", "n must be > 0", 0},
		{"", `unknown distribution ""`, 10},
		{"zipfian", `unknown distribution "zipfian"`, 10},
		{"Uniform", `unknown distribution "Uniform"`, 10},
		{"latest", `unknown distribution "latest"`, 10},
	} {
		g, err := New(tc.dist, tc.n)
		if err == nil || g != nil {
			t.Errorf("New(%q, %d) = %v, %v; want nil and an error", tc.dist, tc.n, g, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("New(%q, %d) error %q lacks %q", tc.dist, tc.n, err, tc.wantMsg)
		}
	}
}

func TestConstructorsPanicOnZero(t *testing.T) {
	for name, mk := range map[string]func(){
		"NewUniform":          func() { NewUniform(0) },
		"NewScrambledZipfian": func() { NewScrambledZipfian(0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s(0) did not panic", name)
				}
			}()
			mk()
		}()
	}
}

func TestZeta(t *testing.T) {
	if z := zeta(1, 0.99); z != 1 {
		t.Errorf("zeta(1) = %v, want 1", z)
	}
	if z, want := zeta(2, 0.99), 1+math.Pow(2, -0.99); z != want {
		t.Errorf("zeta(2) = %v, want %v", z, want)
	}
	if z, want := zeta(1000, 0), 1000.0; z != want {
		t.Errorf("zeta(1000, 0) = %v, want %v", z, want)
	}
}

func TestZetaCacheConcurrent(t *testing.T) {
	const n, theta = 123_457, 0.77
	want := zeta(n, theta)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got := cachedZeta(n, theta); got != want {
				t.Errorf("cachedZeta = %v, want %v", got, want)
			}
		})
	}
	wg.Wait()
	zetaCache.mu.Lock()
	_, ok := zetaCache.m[zetaKey{n, theta}]
	zetaCache.mu.Unlock()
	if !ok {
		t.Fatal("cachedZeta did not memoise its result")
	}
}

func TestSharedGeneratorConcurrent(t *testing.T) {
	g := NewZipfian(10_000, DefaultTheta)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			r := NewRand(uint64(i))
			for range 10_000 {
				if k := g.Next(r); k >= 10_000 {
					t.Errorf("Next = %d out of range", k)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkNext(b *testing.B) {
	const n = 10_000_000
	for _, ng := range []namedGen{
		{"uniform", NewUniform(n)},
		{"zipfian", NewZipfian(n, DefaultTheta)},
		{"scrambled", NewScrambledZipfian(n)},
	} {
		b.Run(ng.name, func(b *testing.B) {
			r := NewRand(1)
			var sink uint64
			for b.Loop() {
				sink += ng.g.Next(r)
			}
			_ = sink
		})
	}
}

// BenchmarkZeta10M measures the uncached cost NewZipfian pays once per
// (n, θ) per process for a 10 M-item key space.
func BenchmarkZeta10M(b *testing.B) {
	for b.Loop() {
		zeta(10_000_000, DefaultTheta)
	}
}
