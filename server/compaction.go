package server

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetkv/fleetkv/admit"
	"github.com/fleetkv/fleetkv/store"
)

// compaction runs the server's log compactions on a goroutine of its own,
// never on a loop (a compaction waits for every loop's epoch), paced by
// admission control (pace): every
// CompactInterval it estimates the dead share of the log on the device
// and, at CompactThreshold or above, compacts the oldest CompactChunk
// bytes; and on demand (POST /compact). The device space below the new
// begin is released once a checkpoint has recorded that begin
// (durability.take), or at once without checkpoints.
type compaction struct {
	s       *Server
	mu      sync.Mutex // one pass at a time; guards rng
	rng     *rand.Rand
	garbage atomic.Uint64 // math.Float64bits of the last estimate
	last    atomic.Pointer[store.CompactStats]
	totals  struct {
		runs, records, copied, scanned, copiedBytes, nanos atomic.Uint64
	}
	stop   context.CancelFunc
	ctx    context.Context
	done   chan struct{} // closed when the periodic goroutine ends (at once if none started)
	closed atomic.Bool
}

// garbageSample is how much of the log a garbage estimate reads: the
// first 64 KiB of 16 random pages on the device.
const (
	garbagePages  = 16
	garbageSample = 64 << 10
)

func newCompaction(s *Server) *compaction {
	c := &compaction{s: s, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)), done: closedChan()}
	c.ctx, c.stop = context.WithCancel(context.Background())
	return c
}

// start runs the periodic check.
func (c *compaction) start(every time.Duration, threshold float64, chunk uint64) {
	if threshold <= 0 {
		return
	}
	c.done = periodically(c.ctx, every, func() {
		if err := c.check(threshold, chunk); err != nil && c.ctx.Err() == nil {
			c.s.log.Error("compaction failed", "err", err)
		}
	})
}

// periodically runs fn every d on a goroutine of its own until ctx ends,
// and returns a channel closed once that goroutine has returned (at once
// when d <= 0: none is started).
func periodically(ctx context.Context, d time.Duration, fn func()) chan struct{} {
	if d <= 0 {
		return closedChan()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return done
}

// check estimates the garbage and compacts when it is high.
func (c *compaction) check(threshold float64, chunk uint64) error {
	c.mu.Lock()
	g, err := c.s.st.Garbage(c.ctx, garbagePages, garbageSample, c.rng)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.garbage.Store(math.Float64bits(g))
	if g < threshold {
		return nil
	}
	_, err = c.run(c.ctx, c.s.st.Log().Begin()+chunk)
	return err
}

// run compacts the log up to until (at most the head, and below every
// migration's Since: acceptedFloor) and counts it.
func (c *compaction) run(ctx context.Context, until uint64) (store.CompactStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	until = min(until, c.s.acceptedFloor())
	t0 := time.Now()
	pace, end := c.pace()
	cs, err := c.s.st.CompactPaced(ctx, until, pace)
	end()
	if err != nil {
		return cs, err
	}
	if cs.Until == cs.Begin {
		return cs, nil
	}
	took := time.Since(t0)
	c.totals.runs.Add(1)
	c.totals.records.Add(uint64(cs.Records))
	c.totals.copied.Add(uint64(cs.Copied))
	c.totals.scanned.Add(cs.ScannedBytes)
	c.totals.copiedBytes.Add(cs.CopiedBytes)
	c.totals.nanos.Add(uint64(took))
	c.last.Store(&cs)
	c.s.log.Info("compacted", "from", cs.Begin, "to", cs.Until, "records", cs.Records, "copied", cs.Copied,
		"scanned_bytes", cs.ScannedBytes, "copied_bytes", cs.CopiedBytes, "took", took)
	if c.s.dur == nil { // nothing to recover: the space is free now
		err = c.s.st.Release(cs.Until)
	}
	return cs, err
}

// acceptedFloor returns the lowest Since of the migrations whose records
// the routing accepts (cluster.Accepting; no limit without one).
// Compaction drops tombstones, and one written at or above a migration's
// Since must stay while its records may still arrive: a client's deletion
// there, or the one written for a key its source does not hold, hides any
// record the migration sends for the key later (store.IfNoneSince). A
// migration accepted after this is read has its Since at the tail then,
// above anything a compaction that began before may reach (the head).
func (s *Server) acceptedFloor() uint64 {
	floor := uint64(math.MaxUint64)
	for _, a := range s.Routing().Accept {
		if a.Since != 0 {
			floor = min(floor, a.Since)
		}
	}
	return floor
}

// compactSlice is how long a compaction works before it rests by the
// admission control's share (admit.Duty).
const compactSlice = 20 * time.Millisecond

// pace returns what a compaction calls after each batch, and what it
// calls when it ends: with admission control on, a rest in proportion to
// the background share, and the compaction counts as background work
// until it ends (no quiet level is learnt meanwhile); off, no rest.
func (c *compaction) pace() (pace func(context.Context), end func()) {
	b := c.s.Background()
	if b == nil {
		return nil, func() {}
	}
	duty := &admit.Duty{Budget: b, Slice: compactSlice}
	duty.Begin()
	return duty.Wait, b.Begin()
}

// closedChan returns a closed channel: a done channel of a goroutine that
// was never started.
func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// close stops the periodic check and waits for a pass that runs.
func (c *compaction) close() {
	if c.closed.Swap(true) {
		return
	}
	c.stop()
	<-c.done
	c.mu.Lock() // an on-demand pass ends (its context is the request's)
	c.mu.Unlock()
}

// Compact compacts the log up to until (0: everything on the device) now.
func (s *Server) Compact(ctx context.Context, until uint64) (store.CompactStats, error) {
	if until == 0 {
		until = s.st.Log().Head()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.comp.ctx, cancel)() // shutdown cancels it too
	return s.comp.run(ctx, until)
}

// CompactionStats say what compaction did since the server started.
type CompactionStats struct {
	Runs         uint64  `json:"runs"`
	Records      uint64  `json:"records_scanned"`
	Copied       uint64  `json:"records_copied"`
	ScannedBytes uint64  `json:"scanned_bytes"`
	CopiedBytes  uint64  `json:"copied_bytes"`
	TotalNanos   uint64  `json:"total_nanos"`
	Garbage      float64 `json:"garbage_estimate"` // dead share of the log on the device, last estimated
	// Last is the newest compaction that moved the log's begin.
	Last *store.CompactStats `json:"last,omitempty"`
}

func (c *compaction) stats() CompactionStats {
	return CompactionStats{
		Runs: c.totals.runs.Load(), Records: c.totals.records.Load(), Copied: c.totals.copied.Load(),
		ScannedBytes: c.totals.scanned.Load(), CopiedBytes: c.totals.copiedBytes.Load(),
		TotalNanos: c.totals.nanos.Load(), Garbage: math.Float64frombits(c.garbage.Load()), Last: c.last.Load(),
	}
}
