package admit

import (
	"context"
	"testing"
	"time"
)

// TestDutyRests: a Duty rests (1-s)/s times as long as the work since its
// last rest, s its Share times the smaller of its Budget's and its Peer's,
// never longer than maxRest; a share of 1, and a nil Duty, never rest.
func TestDutyRests(t *testing.T) {
	ctx := context.Background()
	rest := func(d *Duty, work time.Duration) time.Duration {
		d.Begin()
		time.Sleep(work)
		start := time.Now()
		d.Wait(ctx)
		return time.Since(start)
	}
	if got := rest(&Duty{Share: 0.5, Budget: NewBudget(0.5)}, 60*time.Millisecond); got < 150*time.Millisecond || got > 800*time.Millisecond {
		t.Errorf("a quarter of the time after 60 ms of work: rested %v, want about 180 ms", got)
	}
	if got := rest(&Duty{Budget: NewBudget(0.01)}, 50*time.Millisecond); got < maxRest || got > maxRest+500*time.Millisecond {
		t.Errorf("a hundredth of the time after 50 ms of work: rested %v, want maxRest (%v)", got, maxRest)
	}
	if got := rest(&Duty{Share: 1}, 20*time.Millisecond); got > 10*time.Millisecond {
		t.Errorf("a share of 1 rested %v", got)
	}
	peer := func() float64 { return 0.25 }
	if got := rest(&Duty{Budget: NewBudget(1), Peer: peer}, 40*time.Millisecond); got < 100*time.Millisecond || got > 600*time.Millisecond {
		t.Errorf("a peer allowing a quarter after 40 ms of work: rested %v, want about 120 ms", got)
	}
	if got := rest(&Duty{Budget: NewBudget(0.5), Peer: func() float64 { return 0 }}, 40*time.Millisecond); got < 30*time.Millisecond || got > 400*time.Millisecond {
		t.Errorf("an unknown peer share and a budget of a half after 40 ms of work: rested %v, want about 40 ms", got)
	}
	var none *Duty
	if got := rest(none, 0); got > 10*time.Millisecond {
		t.Errorf("a nil Duty rested %v", got)
	}
}
