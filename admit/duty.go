package admit

import (
	"context"
	"sync"
	"time"
)

// Duty holds background work to a share of the time, so that it leaves
// the foreground the CPU and the disk: once the workers have worked for a
// slice or more, the next Wait rests (1-s)/s times as long as they
// worked, holding the others back meanwhile, where s is Share times the
// Budget's share (the server's admission control, which follows the
// foreground's latency). A Share of 0 counts as 1, a nil
// Budget as a share of 1; a share of 1 never rests. A nil Duty never
// rests. A rest lasts at most maxRest. Safe for concurrent use.
type Duty struct {
	Share  float64
	Budget *Budget
	// Peer, when set, is the share that the other server the work loads
	// allows (a migration's target, from its own admission control): the
	// duty takes the smaller of Budget's and Peer's. 0 or less counts as
	// unknown (no limit).
	Peer  func() float64
	Slice time.Duration

	mu    sync.Mutex
	start time.Time // of the work since the last rest
}

// maxRest bounds one rest of a Duty: a migration's peer that hears
// nothing of a task for 10 s cancels it (cluster.Migrator's CancelTicks),
// and a slice that took long (a slow chunk, a seal) would make a rest of
// up to 99 times as long at a share of 0.01.
const maxRest = time.Second

// share is the share of the time the work may take now.
func (d *Duty) share() float64 {
	s := d.Share
	if s <= 0 || s > 1 {
		s = 1
	}
	b := d.Budget.Share()
	if d.Peer != nil {
		if p := d.Peer(); p > 0 && p < b {
			b = p
		}
	}
	return s * b
}

// Begin starts the clock of the work before the first Wait.
func (d *Duty) Begin() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.start = time.Now()
	d.mu.Unlock()
}

// Wait returns at once within a slice; after one it rests first.
func (d *Duty) Wait(ctx context.Context) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.start.IsZero() {
		d.start = time.Now()
	}
	worked := time.Since(d.start)
	s := d.share()
	if worked < d.Slice || s >= 1 || s <= 0 { // s > 0 unless Share or the budget is: no rest then
		return
	}
	t := time.NewTimer(min(time.Duration(float64(worked)*(1-s)/s), maxRest))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	d.start = time.Now()
}
