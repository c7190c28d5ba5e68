package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fleetkv/fleetkv/ssd"
)

// TestFlushDropsEveryKey flushes a store whose keys are in memory and on
// the device: every key reads as absent at once, writes after the flush
// stay, a compaction skips the flushed records, and a recovery from the
// next checkpoint (after a power loss) holds only what was written after
// the flush, also when it loads an index snapshot taken before it.
func TestFlushDropsEveryKey(t *testing.T) {
	for _, kind := range []string{"mem", "crash-async"} {
		t.Run(kind, func(t *testing.T) {
			dev := openDevice(t, kind)
			cfg := compactConfig(dev)
			st := openTest(t, cfg)
			s := newSession(t, st)
			rng := rand.New(rand.NewPCG(3, 4))
			before := model{}
			churn(t, s, before, rng, "k", 300, 6000)
			s.CompletePending(true)
			s.Suspend()
			var snap bytes.Buffer
			old, err := st.CheckpointWithIndex(context.Background(), &snap)
			if err != nil {
				t.Fatal(err)
			}
			if st.Log().Head() <= old.Begin {
				t.Fatal("nothing reached the device")
			}
			tail := st.Log().Tail()
			if err := st.Flush(context.Background(), noPause); err != nil {
				t.Fatal(err)
			}
			if st.FlushedAt() != tail || st.Begin() != tail || st.Stats().Index.Entries != 0 {
				t.Fatalf("flushed at %d (begin %d, %d entries), tail was %d", st.FlushedAt(), st.Begin(), st.Stats().Index.Entries, tail)
			}
			after := model{}
			for k := range before {
				after[k] = nil
			}
			check(t, s, after, "after the flush")
			churn(t, s, after, rng, "k", 100, 400)
			churn(t, s, after, rng, "n", 100, 400)
			s.CompletePending(true)
			check(t, s, after, "writes after the flush")
			s.Suspend()
			cs, err := st.Compact(context.Background(), st.Log().Head())
			if err != nil {
				t.Fatal(err)
			}
			if cs.Begin < tail {
				t.Fatalf("compaction scanned from %d, below the flush at %d", cs.Begin, tail)
			}
			c, err := st.Checkpoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if c.Begin < tail {
				t.Fatalf("checkpoint begins at %d, below the flush at %d", c.Begin, tail)
			}
			s.Close()
			st.Close()
			if cd, ok := dev.(*ssd.CrashDevice); ok {
				cd.PowerLoss(ssd.TearUnsynced, rng)
			}
			st2, rs, err := Recover(cfg, c)
			if err != nil || rs.Cut || rs.From < tail {
				t.Fatalf("recover: %v %+v", err, rs)
			}
			check(t, newSession(t, st2), after, "after recovery")
			st2.Close()
			// An older index snapshot (its entries point at flushed records)
			// may not bring any of them back either.
			c.IndexStart = old.IndexStart
			st3, rs, err := RecoverWithIndex(cfg, c, func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(snap.Bytes())), nil
			})
			if err != nil || rs.IndexError != "" {
				t.Fatalf("recover with the old snapshot: %v %+v", err, rs)
			}
			defer st3.Close()
			check(t, newSession(t, st3), after, "after recovery with the old snapshot")
		})
	}
}

// TestFlushIsAtomicForWriters flushes while four sessions write keys of
// their own in sequence (upserts and appends, some pending on the
// device): each session's writes issued before it stopped for the flush
// are gone, and every one after is there.
func TestFlushIsAtomicForWriters(t *testing.T) {
	st := openTest(t, compactConfig(openDevice(t, "mem")))
	const writers, ops = 4, 3000
	pz := newPauser(writers)
	cut := make([]int, writers) // ops issued when the session stopped for the flush
	for i := range cut {
		cut[i] = -1
	}
	var wg sync.WaitGroup
	flushed := make(chan error, 1)
	var done atomic.Bool // the flush returned: writers may stop
	wrote := make([]int, writers)
	for w := 0; w < writers; w++ {
		s := newSession(t, st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pz.exit()
			defer s.Suspend()
			j := 0
			defer func() { wrote[w] = j }()
			for ; j < ops || !done.Load(); j++ {
				pz.at(s, func() {
					if cut[w] < 0 {
						cut[w] = j
					}
				})
				if j == ops/3 && w == 0 {
					go func() {
						err := st.Flush(context.Background(), pz.pause)
						done.Store(true)
						flushed <- err
					}()
				}
				key := []byte(fmt.Sprintf("w%d-%d", w, j))
				var err error
				if j%3 == 0 {
					_, err = s.RMW(key, []byte("+a"), Append{})
				} else {
					_, err = s.Upsert(key, []byte("v"))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
			s.CompletePending(true)
		}()
	}
	wg.Wait()
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	s := newSession(t, st)
	for w, c := range cut {
		if c < 0 {
			t.Fatalf("writer %d never stopped for the flush", w)
		}
		for j := 0; j < wrote[w]; j++ {
			_, status, err := completeRead(t, s, []byte(fmt.Sprintf("w%d-%d", w, j)))
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]Status{true: OK, false: NotFound}[j >= c]; status != want {
				t.Fatalf("writer %d stopped for the flush after %d writes; its write %d reads %v", w, c, j, status)
			}
		}
	}
}
