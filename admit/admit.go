// Package admit decides how much of its time background work (a
// migration's move and its clean-up, compaction) may take from the
// foreground, from the latency the foreground sees.
//
// A Controller is a pure state machine: each interval it is told the
// foreground's p99.9 latency over that interval and whether background
// work ran, and it answers the share of time that work may take next. No
// clock, no goroutines: the server measures and ticks it (server/admit.go),
// and tests drive it with scripted intervals.
//
// The rule (issue 14, item 4): while no background work runs, the
// foreground's level is learnt (an average of its p99.9 over intervals
// with enough samples) and the share goes back to Start. While work runs,
// the share rises by Step each interval whose p99.9 is within Tolerance
// times that level (or under Quiet, or that answered nothing: no one
// waited), and falls by twice Step each interval that is not; it never
// falls below Floor, so the work always finishes, and never rises above 1.
//
// A Budget carries the share from the controller's goroutine to the
// workers that honour it, and counts the workers running; a Duty (a
// worker's clock) makes one rest in proportion to the share.
package admit

import (
	"math"
	"sync/atomic"
	"time"
)

// Config sets a Controller's rule. Zero fields take the Default's.
type Config struct {
	// Floor is the least share: the work always finishes.
	Floor float64
	// Start is the share work starts with after a quiet spell.
	Start float64
	// Step is what an interval within tolerance adds to the share; one
	// over it takes twice as much away.
	Step float64
	// Tolerance is how many times the quiet level the p99.9 may reach
	// and still count as within it.
	Tolerance float64
	// Quiet is a p99.9 that always counts as within tolerance, however
	// low the learnt level: a few hundred microseconds more on an idle
	// server is no reason to stall background work.
	Quiet time.Duration
	// MinSamples is how many measurements a quiet interval needs to
	// teach the level anything.
	MinSamples uint64
	// Weight is an interval's weight in the learnt level (an
	// exponentially weighted average).
	Weight float64
}

// Default is the rule the server runs with.
var Default = Config{Floor: 0.1, Start: 0.5, Step: 0.05, Tolerance: 1.5, Quiet: time.Millisecond, MinSamples: 50, Weight: 0.1}

// withDefaults fills c's zero fields from Default.
func (c Config) withDefaults() Config {
	d := Default
	if c.Floor <= 0 {
		c.Floor = d.Floor
	}
	if c.Start <= 0 {
		c.Start = d.Start
	}
	if c.Step <= 0 {
		c.Step = d.Step
	}
	if c.Tolerance <= 0 {
		c.Tolerance = d.Tolerance
	}
	if c.Quiet <= 0 {
		c.Quiet = d.Quiet
	}
	if c.MinSamples == 0 {
		c.MinSamples = d.MinSamples
	}
	if c.Weight <= 0 || c.Weight > 1 {
		c.Weight = d.Weight
	}
	c.Floor = min(c.Floor, 1)
	c.Start = min(max(c.Start, c.Floor), 1)
	return c
}

// Interval is what the foreground saw over one interval.
type Interval struct {
	// P999 is the foreground's p99.9 latency over the interval.
	P999 time.Duration
	// Samples is how many measurements P999 is taken from.
	Samples uint64
	// Busy says background work ran during the interval.
	Busy bool
}

// Controller sets the background share from the foreground's latency.
// Not safe for concurrent use: one goroutine ticks it.
type Controller struct {
	cfg   Config
	level float64 // learnt quiet p99.9, ns; 0 until an interval taught it
	share float64
}

// New returns a controller with rule cfg, its share at cfg.Start.
func New(cfg Config) *Controller {
	cfg = cfg.withDefaults()
	return &Controller{cfg: cfg, share: cfg.Start}
}

// Observe takes one interval and returns the share for the next.
func (c *Controller) Observe(iv Interval) float64 {
	if !iv.Busy {
		if iv.Samples >= c.cfg.MinSamples {
			c.learn(iv.P999)
		}
		c.share = c.cfg.Start
		return c.share
	}
	if iv.Samples == 0 || c.within(iv.P999) {
		c.share = min(c.share+c.cfg.Step, 1)
	} else {
		c.share = max(c.share-2*c.cfg.Step, c.cfg.Floor)
	}
	return c.share
}

// learn folds a quiet interval's p99.9 into the level.
func (c *Controller) learn(p time.Duration) {
	if c.level == 0 {
		c.level = float64(p)
		return
	}
	c.level += c.cfg.Weight * (float64(p) - c.level)
}

// within reports whether p is within tolerance of the quiet level.
func (c *Controller) within(p time.Duration) bool {
	return p <= c.cfg.Quiet || float64(p) <= c.cfg.Tolerance*c.level
}

// Share is the share the last interval set.
func (c *Controller) Share() float64 { return c.share }

// Level is the learnt quiet p99.9 (0 before any quiet interval).
func (c *Controller) Level() time.Duration { return time.Duration(c.level) }

// Budget hands a controller's share to the workers that honour it and
// counts those running. Safe for concurrent use; a nil Budget is a share
// of 1 with nothing counted.
type Budget struct {
	share  atomic.Uint64 // math.Float64bits of the share
	active atomic.Int64
	// busy is set by every Begin and cleared by Busy: an interval is busy
	// when work ran at any time in it, even if it ended before the tick.
	busy atomic.Bool
}

// NewBudget returns a budget whose share is share.
func NewBudget(share float64) *Budget {
	b := &Budget{}
	b.Set(share)
	return b
}

// Share is the share of its time background work may take now.
func (b *Budget) Share() float64 {
	if b == nil {
		return 1
	}
	return math.Float64frombits(b.share.Load())
}

// minShare is the least share a Budget holds: work held to it still
// moves.
const minShare = 0.01

// Set sets the share, clamped to [0.01, 1].
func (b *Budget) Set(share float64) { b.share.Store(math.Float64bits(min(max(share, minShare), 1))) }

// Begin counts a worker as running until the returned function is called.
func (b *Budget) Begin() (end func()) {
	if b == nil {
		return func() {}
	}
	b.active.Add(1)
	b.busy.Store(true)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			b.active.Add(-1)
		}
	}
}

// Active is how many workers run now.
func (b *Budget) Active() int64 {
	if b == nil {
		return 0
	}
	return b.active.Load()
}

// Busy reports whether a worker ran since the last call to Busy, and
// starts the next interval.
func (b *Budget) Busy() bool {
	if b == nil {
		return false
	}
	return b.busy.Swap(b.active.Load() > 0) || b.active.Load() > 0
}
