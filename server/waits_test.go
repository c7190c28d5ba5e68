package server

import (
	"testing"
	"time"
)

// TestWaitCounts: each wait lands in the first bucket whose bound it does
// not pass (a wait at a bound in that bound's bucket, one past every bound
// in the last), the sum is exact, and the cumulative counts Prometheus gets
// grow to every wait within the last bound.
func TestWaitCounts(t *testing.T) {
	var w waitCounts
	waits := []time.Duration{0, 100 * time.Microsecond, 101 * time.Microsecond, 3 * time.Millisecond, 10 * time.Second, 11 * time.Second}
	var sum time.Duration
	for _, d := range waits {
		w.observe(d)
		sum += d
	}
	var h WaitHistogram
	h.add(&w)
	h.add(&w) // a second loop with the same waits
	want := map[int]uint64{0: 4, 1: 2, 5: 2, 15: 2, 16: 2}
	for i, c := range h.Counts {
		if c != want[i] {
			t.Errorf("bucket %d (bound %v s): %d waits, want %d", i, h.Bounds[min(i, len(h.Bounds)-1)], c, want[i])
		}
	}
	if h.Count() != 12 || h.Sum != 2*sum.Seconds() {
		t.Errorf("count %d, sum %v s; want 12 and %v s", h.Count(), h.Sum, 2*sum.Seconds())
	}
	cum := h.cumulative()
	if len(cum) != len(waitBounds) || cum[0.0001] != 4 || cum[0.00025] != 6 || cum[0.0025] != 6 || cum[0.005] != 8 || cum[10] != 10 {
		t.Errorf("cumulative %v", cum)
	}
}
