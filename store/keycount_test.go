package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/ssd"
)

// keyWriter runs random writes of every kind on its own keys and keeps
// which of them are live.
type keyWriter struct {
	id   int
	live map[string]bool
}

func (w *keyWriter) run(st *Store, s *Session, rng *rand.Rand, n int) error {
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("w%d-%d", w.id, rng.IntN(300))
		key := []byte(k)
		v := make([]byte, 1+rng.IntN(120))
		var err error
		switch op := rng.IntN(9); op {
		case 0:
			_, err = s.Upsert(key, v)
			w.live[k] = true
		case 1:
			_, err = s.Delete(key)
			w.live[k] = false
		case 2:
			_, err = s.RMW(key, []byte("+"), Append{})
			w.live[k] = true
		case 3:
			_, _, err = s.Update(key, Update{If: IfAbsent, Merge: Replace{}, Input: v}, nil)
			w.live[k] = true
		case 4:
			_, _, err = s.Update(key, Update{If: Remove}, nil)
			w.live[k] = false
		case 5:
			_, _, err = s.Update(key, Update{If: IfPresent, Merge: Replace{}, Input: v}, nil)
		case 6: // no record of the key since the tail: it is inserted over whatever is below
			_, _, err = s.Update(key, Update{If: IfNoneSince, Since: st.Log().Tail(), Merge: Replace{}, Input: v}, nil)
			w.live[k] = true
		case 7: // the same, a deletion; or, since the log's start, kept where the key has any record
			if rng.IntN(2) == 0 {
				_, _, err = s.Update(key, Update{If: DeleteIfNoneSince, Since: st.Log().Tail()}, nil)
				w.live[k] = false
			} else {
				_, _, err = s.Update(key, Update{If: DeleteIfNoneSince, Since: 1}, nil)
			}
		default:
			_, err = s.Upsert(key, append(v, make([]byte, 200)...)) // grows: no room in place
			w.live[k] = true
		}
		if err != nil {
			return err
		}
		s.CompletePending(true)
	}
	return nil
}

func liveCount(ws []*keyWriter) int64 {
	var n int64
	for _, w := range ws {
		for _, l := range w.live {
			if l {
				n++
			}
		}
	}
	return n
}

// TestKeysAreExact: four sessions write their own keys with every kind
// of write (most of their records on the device, compactions running
// beside them); Keys then equals the live keys of their models, also
// after a checkpoint that paused the sessions and a power loss (the count
// recorded, the blind writes it had not resolved resolved by the
// recovery), after a checkpoint without a pause (counted by a scan at the
// first Keys), and after a Flush.
func TestKeysAreExact(t *testing.T) {
	dev := openDevice(t, "crash-async")
	cfg := compactConfig(dev)
	st := openTest(t, cfg)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	ws := make([]*keyWriter, 4)
	var wg sync.WaitGroup
	var stop atomic.Bool
	compactions := make(chan int, 1)
	go func() {
		n := 0
		for !stop.Load() {
			if _, err := st.Compact(context.Background(), st.Log().Head()); err != nil {
				t.Error(err)
				break
			}
			n++
		}
		compactions <- n
	}()
	for i := range ws {
		ws[i] = &keyWriter{id: i, live: map[string]bool{}}
		s := newSession(t, st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Suspend()
			if err := ws[i].run(st, s, rand.New(rand.NewPCG(seed, uint64(i))), 4000); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	t.Logf("%d compactions; %+v", <-compactions, st.Stats())
	if t.Failed() {
		t.FailNow()
	}
	want := liveCount(ws)
	keys := func(st *Store, what string) {
		t.Helper()
		n, err := st.Keys(context.Background())
		if err != nil || n != want {
			t.Fatalf("%s: Keys = %d %v, want %d", what, n, err, want)
		}
	}
	// The checkpoint records the count with its doubts unresolved (they
	// are resolved at recovery). A doubt counted its key as absent below
	// it: one too many where the key was live there, exact where it was
	// not (a blind upsert over a deletion), so the count is over by at
	// most the doubts.
	doubts := st.Stats().Doubts
	c, err := st.CheckpointWith(context.Background(), CheckpointOptions{Pause: noPause})
	if err != nil || !c.KeysCounted || c.Keys < want || c.Keys > want+int64(doubts) {
		t.Fatalf("checkpoint with %d doubts: %+v %v, want %d to %d keys (doubts counted as absent keys)", doubts, c, err, want, want+int64(doubts))
	}
	keys(st, "after the writes")
	if st.Stats().Doubts != 0 {
		t.Fatalf("%d doubts left after Keys", st.Stats().Doubts)
	}
	plain, err := st.Checkpoint(context.Background())
	if err != nil || plain.KeysCounted {
		t.Fatalf("a checkpoint without a pause: %+v %v", plain, err)
	}
	st.Close()
	dev.(*ssd.CrashDevice).PowerLoss(ssd.TearUnsynced, rand.New(rand.NewPCG(seed, 9)))
	for _, ck := range []Checkpoint{c, plain} {
		st2, rs, err := Recover(cfg, ck)
		if err != nil || rs.Cut {
			t.Fatalf("recover: %v %+v", err, rs)
		}
		keys(st2, fmt.Sprintf("recovered (counted %v)", ck.KeysCounted))
		s := newSession(t, st2)
		if _, err := s.Upsert([]byte("one more"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		s.Suspend()
		want++
		keys(st2, "one more key")
		want--
		if err := st2.Flush(context.Background(), noPause); err != nil {
			t.Fatal(err)
		}
		if n, err := st2.Keys(context.Background()); err != nil || n != 0 {
			t.Fatalf("Keys after a Flush = %d %v", n, err)
		}
		s.Close()
		st2.Close()
		break // the flush changed the device: the second checkpoint is gone
	}
}

// TestDoubtsResolveInTheBackground: with MaxDoubts at 100, blind writes
// over keys on the device do not pile up: the store resolves them without
// anyone asking for the count, and the count stays exact.
func TestDoubtsResolveInTheBackground(t *testing.T) {
	cfg := compactConfig(openDevice(t, "mem"))
	cfg.MaxDoubts = 100
	st := openTest(t, cfg)
	s := newSession(t, st)
	const keys = 2000
	for round := 0; round < 3; round++ {
		for i := 0; i < keys; i++ {
			if _, err := s.Upsert([]byte(fmt.Sprintf("k%d", i)), []byte("value")); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Suspend()
	deadline := time.Now().Add(10 * time.Second)
	for st.keys.resolving.Load() || st.Stats().Doubts >= cfg.MaxDoubts {
		if time.Now().After(deadline) {
			t.Fatalf("%d doubts still wait", st.Stats().Doubts)
		}
		time.Sleep(time.Millisecond)
	}
	if st.keys.corr.Load() == 0 {
		t.Fatal("nothing was resolved in the background")
	}
	if n, err := st.Keys(context.Background()); err != nil || n != keys {
		t.Fatalf("Keys = %d %v, want %d", n, err, keys)
	}
}

// TestDoubtsBeingResolvedStillCount: doubts a resolution took off the
// lists count as doubts until it settles them, or lists them again when
// it failed.
func TestDoubtsBeingResolvedStillCount(t *testing.T) {
	var k keyCount
	k.orphans = []uint64{10, 20, 30}
	doubts := func() int { _, d := k.stats(); return d }
	taken := k.takeDoubtsBelow(25)
	if len(taken) != 2 || doubts() != 3 {
		t.Fatalf("took %v, %d doubts; want 2 taken and 3 doubts", taken, doubts())
	}
	k.relist(taken) // the resolution failed
	if taken = k.takeDoubtsBelow(100); len(taken) != 3 || doubts() != 3 {
		t.Fatalf("took %v again, %d doubts; want 3 and 3", taken, doubts())
	}
	k.settle(100, -1, len(taken))
	if n, d := k.stats(); d != 0 || n != -1 {
		t.Fatalf("settled: count %d, %d doubts; want -1 and 0", n, d)
	}
}
