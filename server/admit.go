package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fleetkv/fleetkv/admit"
)

// admission measures the foreground and tells background work how much
// of its time it may take (package admit). Every loop records, in a
// histogram of its own, how long each native batch and RESP command
// waited from the start of the turn that ran it (traffic of one
// connection) until its answer: the end of that turn, or the completion
// of its device read. Every AdmitInterval a goroutine takes the loops'
// histograms through their task queues, reads the interval's p99.9 and
// ticks the controller, whose share goes to the budget the background
// workers read (Server.Background).
//
// Background work that takes a loop's CPU preempts it mid-turn, and work
// that takes the device delays its reads; both show there. Time a batch
// waits in the socket before its turn starts is not seen.
type admission struct {
	s      *Server
	ctl    *admit.Controller // touched only by run's goroutine
	budget *admit.Budget
	mu     sync.Mutex
	merged *hdrhistogram.Histogram // the loops' waits since the last tick; under mu
	// last is what the last interval saw, for Stats.
	last struct {
		p999    atomic.Int64 // µs
		samples atomic.Uint64
		level   atomic.Int64 // µs
	}
	done chan struct{}
}

// waitMax is the longest turn recorded, in µs; longer ones count
// as this long.
const waitMax = 60_000_000

// newWaitHistogram returns a histogram of the foreground's waits in µs.
func newWaitHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, waitMax, 2) }

func newAdmission(s *Server) *admission {
	a := &admission{s: s, done: closedChan()}
	if s.cfg.AdmitInterval > 0 {
		a.ctl = admit.New(admit.Default)
		a.budget = admit.NewBudget(a.ctl.Share())
		a.merged = newWaitHistogram()
	}
	return a
}

// start runs the controller every AdmitInterval until the server's life
// ends. Without a controller it does nothing.
func (a *admission) start() {
	if a.ctl == nil {
		return
	}
	a.done = periodically(a.s.life, a.s.cfg.AdmitInterval, a.tick)
}

// tick takes the loops' waits since the last tick and sets the share.
func (a *admission) tick() {
	ctx, cancel := context.WithTimeout(a.s.life, a.s.cfg.AdmitInterval)
	// A loop that answers after the timeout merges into the next interval.
	_ = a.s.onEveryLoop(ctx, a.take)
	cancel()
	a.mu.Lock()
	iv := admit.Interval{P999: time.Duration(a.merged.ValueAtQuantile(99.9)) * time.Microsecond,
		Samples: uint64(a.merged.TotalCount()), Busy: a.budget.Busy()}
	a.merged.Reset()
	a.mu.Unlock()
	a.budget.Set(a.ctl.Observe(iv))
	if iv.Busy {
		a.s.log.Debug("admission", "p999", iv.P999, "waits", iv.Samples, "level", a.ctl.Level(), "share", a.budget.Share())
	}
	a.last.p999.Store(iv.P999.Microseconds())
	a.last.samples.Store(iv.Samples)
	a.last.level.Store(a.ctl.Level().Microseconds())
}

// take moves loop l's waits into merged. On l's goroutine.
func (a *admission) take(l *loop) {
	a.mu.Lock()
	a.merged.Merge(l.waits)
	a.mu.Unlock()
	l.waits.Reset()
}

// answered counts the native batches and RESP commands l has run, so a
// turn can tell how many it ran.
func (l *loop) answered() uint64 {
	return l.stats.batches.Load() + l.stats.ops[respOpIndex].Load()
}

// beginTurn returns what endTurn needs of a traffic turn that starts (0
// when admission control is off: nothing is recorded).
func (l *loop) beginTurn() uint64 {
	if l.waits == nil {
		return 0
	}
	return l.answered()
}

// endTurn records the batches and commands of the turn that ends, when l
// had answered before of them, each as long as the turn: a turn writes
// their answers at its end. An operation of them that went to the device
// is recorded again when it completes (its batch's turn counted it once).
func (l *loop) endTurn(before uint64) {
	if l.waits == nil {
		return
	}
	if n := l.answered() - before; n > 0 { // not a turn held back, or of input only
		l.record(l.turnAt, n)
	}
}

// record adds n waits that started at (Server.clock) and end now to l's
// histogram.
func (l *loop) record(at time.Duration, n uint64) {
	us := (l.s.clock() - at).Microseconds()
	_ = l.waits.RecordValues(min(max(us, 1), waitMax), int64(n))
}

// clock is the time since the server started (monotonic).
func (s *Server) clock() time.Duration { return time.Since(s.started) }

// Background returns the budget of background work on this server's
// store: a migration's move and its source's drop rest by its share, and
// every migration task and indirection resolver counts itself as running
// (no level is learnt meanwhile). Nil when admission control is off (a nil
// budget is a share of 1, counting nothing).
func (s *Server) Background() *admit.Budget {
	if s.adm == nil {
		return nil
	}
	return s.adm.budget
}

// AdmissionStats is what admission control saw in its last interval.
type AdmissionStats struct {
	On bool `json:"on"`
	// Share is the share of its time background work may take.
	Share float64 `json:"share"`
	// Workers is the number of background workers running.
	Workers int64 `json:"workers"`
	// P999Us is the p99.9 of the foreground's waits in the last
	// interval, µs, over Samples waits.
	P999Us  int64  `json:"p999_us"`
	Samples uint64 `json:"samples"`
	// LevelUs is the p99.9 learnt while no background work ran, µs.
	LevelUs int64 `json:"level_us"`
}

func (a *admission) stats() AdmissionStats {
	if a == nil || a.ctl == nil {
		return AdmissionStats{Share: 1}
	}
	return AdmissionStats{On: true, Share: a.budget.Share(), Workers: a.budget.Active(),
		P999Us: a.last.p999.Load(), Samples: a.last.samples.Load(), LevelUs: a.last.level.Load()}
}
