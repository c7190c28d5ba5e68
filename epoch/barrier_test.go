package epoch

import (
	"context"
	"testing"
	"time"
)

// TestBarrierWaitsForProtectedWorkers: a barrier returns only after a
// worker protected before it refreshes; its context ends the wait.
func TestBarrierWaitsForProtectedWorkers(t *testing.T) {
	m := New(4)
	g, err := m.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	g.Protect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := m.Barrier(ctx); err == nil {
		t.Fatal("barrier passed a worker that never refreshed")
	}
	done := make(chan error, 1)
	go func() { done <- m.Barrier(context.Background()) }()
	select {
	case <-done:
		t.Fatal("barrier passed before the worker refreshed")
	case <-time.After(10 * time.Millisecond):
	}
	g.Refresh()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
