package server

import "testing"

// TestLoopPauseLastArrivalReadsTheEnd: the last of the arrivals calls
// atStop, once, and releases the others; after a cancellation no arrival
// calls it, and the release is closed once.
func TestLoopPauseLastArrivalReadsTheEnd(t *testing.T) {
	calls := 0
	p := &loopPause{atStop: func() { calls++ }, release: make(chan struct{})}
	p.left.Store(3)
	if p.arrive() || p.arrive() || calls != 0 {
		t.Fatalf("atStop called %d times before the last arrival", calls)
	}
	if !p.arrive() || calls != 1 {
		t.Fatalf("the last arrival did not call atStop (%d calls)", calls)
	}
	<-p.release

	q := &loopPause{atStop: func() { calls++ }, release: make(chan struct{})}
	q.left.Store(2)
	q.arrive()
	if !q.state.CompareAndSwap(pauseStopping, pauseCanceled) {
		t.Fatal("a pause with an arrival missing could not be cancelled")
	}
	close(q.release)
	if q.arrive() || calls != 1 {
		t.Fatalf("an arrival after the cancellation called atStop (%d calls)", calls)
	}
}
