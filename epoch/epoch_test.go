package epoch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func mustAcquire(t *testing.T, m *Manager) *Guard {
	t.Helper()
	g, err := m.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestActionRunsAtOnceWithNobodyProtected(t *testing.T) {
	m := New(4)
	ran := 0
	m.Bump(func() { ran++ })
	if ran != 1 {
		t.Fatalf("action ran %d times, want 1", ran)
	}
	if m.Pending() != 0 {
		t.Fatalf("pending = %d", m.Pending())
	}
}

func TestActionWaitsForEveryProtectedWorker(t *testing.T) {
	m := New(4)
	a, b := mustAcquire(t, m), mustAcquire(t, m)
	a.Protect()
	b.Protect()
	ran := 0
	e, ok := m.TryBump(func() { ran++ })
	if !ok {
		t.Fatal("TryBump on an empty list failed")
	}
	if ran != 0 || m.Safe() >= e {
		t.Fatalf("action ran (%d) or safe %d >= %d before anyone refreshed", ran, m.Safe(), e)
	}
	a.Refresh()
	if ran != 0 {
		t.Fatal("action ran while b was still in the old epoch")
	}
	b.Refresh()
	if ran != 1 {
		t.Fatalf("action ran %d times after both refreshed, want 1", ran)
	}
	a.Refresh()
	b.Unprotect()
	if ran != 1 {
		t.Fatalf("action ran %d times, want exactly 1", ran)
	}
}

func TestUnprotectReleasesTheEpoch(t *testing.T) {
	m := New(2)
	g := mustAcquire(t, m)
	g.Protect()
	ran := false
	m.TryBump(func() { ran = true })
	if ran {
		t.Fatal("ran while protected")
	}
	g.Unprotect()
	if !ran {
		t.Fatal("did not run after Unprotect")
	}
	if g.Protected() {
		t.Fatal("still protected")
	}
}

func TestAcquireExhaustsAndReleaseReuses(t *testing.T) {
	m := New(3)
	gs := []*Guard{mustAcquire(t, m), mustAcquire(t, m), mustAcquire(t, m)}
	if _, err := m.Acquire(); err != ErrNoSlots {
		t.Fatalf("fourth Acquire: %v, want ErrNoSlots", err)
	}
	gs[1].Release()
	if _, err := m.Acquire(); err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
}

func TestTryBumpFailsWhenListFullAndBumpWaits(t *testing.T) {
	m := New(2)
	g := mustAcquire(t, m)
	g.Protect()
	var ran atomic.Int64
	for i := 0; i < drainListSize; i++ {
		if _, ok := m.TryBump(func() { ran.Add(1) }); !ok {
			t.Fatalf("TryBump %d failed before the list was full", i)
		}
	}
	if _, ok := m.TryBump(func() { ran.Add(1) }); ok {
		t.Fatal("TryBump succeeded on a full list")
	}
	done := make(chan struct{})
	go func() {
		m.Bump(func() { ran.Add(1) }) // an unprotected goroutine may wait
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Bump returned while the list was full and the worker never refreshed")
	case <-time.After(20 * time.Millisecond):
	}
	g.Refresh()
	<-done
	g.Unprotect()
	if got := ran.Load(); got != drainListSize+1 {
		t.Fatalf("%d actions ran, want %d (the failed TryBump must not run)", got, drainListSize+1)
	}
}

// TestReclamationUnderConcurrency is the guarantee epochs exist for: an
// object unlinked and then retired through Bump is never retired while a
// worker that loaded it is still inside the epoch it loaded it in.
func TestReclamationUnderConcurrency(t *testing.T) {
	type object struct {
		retired atomic.Bool
	}
	const workers = 4
	m := New(workers + 1)
	var shared atomic.Pointer[object]
	shared.Store(new(object))
	var stop atomic.Bool
	var violations, reads atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		g := mustAcquire(t, m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer g.Release()
			g.Protect()
			for i := 0; !stop.Load(); i++ {
				o := shared.Load()
				for j := 0; j < 16; j++ {
					if o.retired.Load() {
						violations.Add(1)
					}
				}
				reads.Add(1)
				switch i % 64 {
				case 0:
					g.Unprotect()
					g.Protect()
				default:
					g.Refresh()
				}
			}
		}()
	}
	var retired int
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		old := shared.Swap(new(object))
		m.Bump(func() { old.retired.Store(true) })
		retired++
	}
	stop.Store(true)
	wg.Wait()
	m.Drain()
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d reads saw a retired object (%d reads, %d retirements)", v, reads.Load(), retired)
	}
	if m.Pending() != 0 {
		t.Fatalf("%d actions never ran after all workers left", m.Pending())
	}
	if reads.Load() == 0 || retired == 0 {
		t.Fatal("the test did no work")
	}
}

func TestEveryActionRunsExactlyOnceUnderConcurrency(t *testing.T) {
	const workers, bumpsPerWorker = 4, 2000
	m := New(workers)
	counts := make([]atomic.Int32, workers*bumpsPerWorker)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		g := mustAcquire(t, m)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			defer g.Release()
			g.Protect()
			for i := 0; i < bumpsPerWorker; i++ {
				c := &counts[w*bumpsPerWorker+i]
				for {
					if _, ok := m.TryBump(func() { c.Add(1) }); ok {
						break
					}
					g.Refresh()
				}
				g.Refresh()
			}
		}(w)
	}
	wg.Wait()
	m.Drain()
	for i := range counts {
		if n := counts[i].Load(); n != 1 {
			t.Fatalf("action %d ran %d times", i, n)
		}
	}
}

func BenchmarkRefresh(b *testing.B) {
	m := New(2)
	g, _ := m.Acquire()
	g.Protect()
	for i := 0; i < b.N; i++ {
		g.Refresh()
	}
}
