package admit

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

const ms = time.Millisecond

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestControllerScript drives a controller through a scripted spell of
// quiet intervals and a migration, checking the share after each.
func TestControllerScript(t *testing.T) {
	c := New(Config{Floor: 0.1, Start: 0.5, Step: 0.05, Tolerance: 1.5, Quiet: 100 * time.Microsecond, MinSamples: 10, Weight: 0.5})
	steps := []struct {
		iv    Interval
		share float64
		level time.Duration
	}{
		{Interval{P999: 2 * ms, Samples: 100}, 0.5, 2 * ms},              // first quiet interval sets the level
		{Interval{P999: 4 * ms, Samples: 100}, 0.5, 3 * ms},              // averaged with weight 0.5
		{Interval{P999: 90 * ms, Samples: 5}, 0.5, 3 * ms},               // too few samples: the level learns nothing
		{Interval{P999: 4 * ms, Samples: 100, Busy: true}, 0.55, 3 * ms}, // 4 <= 1.5*3: raise
		{Interval{P999: 4500 * time.Microsecond, Samples: 100, Busy: true}, 0.6, 3 * ms},
		{Interval{P999: 5 * ms, Samples: 100, Busy: true}, 0.5, 3 * ms}, // over 4.5: back off twice the step
		{Interval{P999: 50 * ms, Samples: 100, Busy: true}, 0.4, 3 * ms},
		{Interval{P999: 50 * ms, Samples: 100, Busy: true}, 0.3, 3 * ms},
		{Interval{P999: 50 * ms, Samples: 100, Busy: true}, 0.2, 3 * ms},
		{Interval{P999: 50 * ms, Samples: 100, Busy: true}, 0.1, 3 * ms},
		{Interval{P999: 50 * ms, Samples: 100, Busy: true}, 0.1, 3 * ms}, // the floor holds
		{Interval{P999: 50 * ms, Samples: 1, Busy: true}, 0.1, 3 * ms},   // one slow wait counts
		{Interval{Busy: true}, 0.15, 3 * ms},                             // nothing waited: raise
		{Interval{P999: 1 * ms, Samples: 100, Busy: true}, 0.2, 3 * ms},
		{Interval{P999: 3 * ms, Samples: 100}, 0.5, 3 * ms}, // quiet again: back to Start, the level learns
	}
	for i, s := range steps {
		got := c.Observe(s.iv)
		if !near(got, s.share) || !near(c.Share(), s.share) {
			t.Fatalf("step %d (%+v): share %v, want %v", i, s.iv, got, s.share)
		}
		if c.Level() != s.level {
			t.Fatalf("step %d: level %v, want %v", i, c.Level(), s.level)
		}
	}
}

// TestControllerQuietFloorAndCeiling: a p99.9 under Quiet is within
// tolerance even before any level was learnt, and the share stops at 1.
func TestControllerQuietFloorAndCeiling(t *testing.T) {
	c := New(Config{Start: 0.9, Step: 0.05, Quiet: ms, MinSamples: 1})
	for range 5 {
		c.Observe(Interval{P999: 900 * time.Microsecond, Samples: 1, Busy: true})
	}
	if c.Share() != 1 {
		t.Fatalf("share %v, want 1", c.Share())
	}
	// No level learnt: anything over Quiet is over tolerance.
	c.Observe(Interval{P999: 2 * ms, Samples: 1, Busy: true})
	if !near(c.Share(), 0.9) {
		t.Fatalf("share %v, want 0.9", c.Share())
	}
}

// TestControllerBounds runs seeded random intervals and checks the rule's
// invariants at every step: the share stays in [Floor, 1], a busy
// interval within tolerance (or with no samples) never lowers it, one
// over tolerance never raises it, a quiet interval resets it to Start, and
// only a quiet interval with enough samples moves the level.
func TestControllerBounds(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, seed))
		cfg := Config{Floor: 0.05 + r.Float64()*0.3, Start: r.Float64(), Step: 0.01 + r.Float64()*0.2,
			Tolerance: 1 + r.Float64()*2, Quiet: time.Duration(r.IntN(1000)) * time.Microsecond, MinSamples: 10, Weight: r.Float64()}
		c := New(cfg)
		cfg = c.cfg
		for i := range 2000 {
			iv := Interval{P999: time.Duration(r.ExpFloat64() * float64(3*ms)), Samples: uint64(r.IntN(40)), Busy: r.IntN(4) != 0}
			before, within, level := c.Share(), iv.Samples == 0 || c.within(iv.P999), c.Level()
			got := c.Observe(iv)
			if got < cfg.Floor-1e-12 || got > 1 {
				t.Fatalf("seed %d step %d: share %v outside [%v, 1]", seed, i, got, cfg.Floor)
			}
			if c.Level() != level && (iv.Busy || iv.Samples < cfg.MinSamples) {
				t.Fatalf("seed %d step %d: %+v moved the level", seed, i, iv)
			}
			switch {
			case !iv.Busy:
				if got != cfg.Start {
					t.Fatalf("seed %d step %d: quiet interval left share %v, want %v", seed, i, got, cfg.Start)
				}
			case within && got < before:
				t.Fatalf("seed %d step %d: within tolerance lowered %v -> %v", seed, i, before, got)
			case !within && got > before:
				t.Fatalf("seed %d step %d: over tolerance raised %v -> %v", seed, i, before, got)
			}
		}
	}
}

func TestBudget(t *testing.T) {
	var nilBudget *Budget
	if nilBudget.Share() != 1 || nilBudget.Active() != 0 || nilBudget.Busy() {
		t.Fatal("a nil budget is a share of 1, nothing running")
	}
	nilBudget.Begin()()

	b := NewBudget(0.3)
	if b.Share() != 0.3 {
		t.Fatalf("share %v", b.Share())
	}
	b.Set(7)
	if b.Share() != 1 {
		t.Fatalf("share %v, want clamped to 1", b.Share())
	}
	b.Set(0)
	if b.Share() != minShare {
		t.Fatalf("share %v, want clamped to %v: a budget never stops its work", b.Share(), minShare)
	}
	if b.Busy() {
		t.Fatal("busy before any work")
	}
	end := b.Begin()
	if b.Active() != 1 || !b.Busy() || !b.Busy() {
		t.Fatal("a running worker makes every interval busy")
	}
	end()
	end() // twice counts once
	if b.Active() != 0 {
		t.Fatalf("active %d after end", b.Active())
	}
	if !b.Busy() {
		t.Fatal("the interval in which the last worker ended is busy")
	}
	if b.Busy() {
		t.Fatal("the interval after it is not")
	}
	// Work that begins and ends between two ticks still marks its interval.
	b.Begin()()
	if !b.Busy() || b.Busy() {
		t.Fatal("a short worker marks exactly its interval busy")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				b.Begin()()
			}
		}()
	}
	wg.Wait()
	if b.Active() != 0 {
		t.Fatalf("active %d after concurrent workers", b.Active())
	}
}
