package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// snapshotOpener serves an index snapshot kept in memory.
func snapshotOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// TestRecoverWithIndexSnapshot: four sessions write while a checkpoint
// with an index snapshot is taken (the snapshot is fuzzy), then a power
// loss. Recovering that checkpoint with the snapshot (replaying only the
// log after its start) must give exactly what recovering it by replaying
// the whole log gives, for every key written; a damaged snapshot is not
// used and recovery still gives the same state.
func TestRecoverWithIndexSnapshot(t *testing.T) {
	dev := ssd.NewCrashDevice(512)
	cfg := Config{IndexBits: 6, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, Device: dev}}
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const workers = 4
	var wg, ready sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		s, err := st.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			churn(t, s, model{}, rng, fmt.Sprint("w", w), 300, 2000)
			s.Suspend()
			ready.Done()
			<-start
			churn(t, s, model{}, rng, fmt.Sprint("w", w), 300, 4000) // while the checkpoint runs
		}()
	}
	var snap bytes.Buffer
	ready.Wait()
	close(start)
	ck, err := st.CheckpointWithIndex(context.Background(), &snap)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ck.IndexStart <= ck.Begin || ck.IndexStart > ck.End {
		t.Fatalf("checkpoint %+v: index snapshot start outside the log", ck)
	}
	st.Close()
	dev.PowerLoss(ssd.TearUnsynced, rand.New(rand.NewPCG(5, 5)))

	state := func(st *Store) map[string]string {
		s := newSession(t, st)
		out := map[string]string{}
		for w := range workers {
			for k := range 300 {
				key := fmt.Sprintf("w%d-%d", w, k)
				v, status, err := completeRead(t, s, []byte(key))
				if err != nil {
					t.Fatalf("%s: %v", key, err)
				}
				if status == OK {
					out[key] = string(v)
				}
			}
		}
		s.Close()
		return out
	}
	full, rsFull, err := Recover(cfg, ck)
	if err != nil {
		t.Fatal(err)
	}
	want := state(full)
	full.Close()
	for _, damaged := range []bool{false, true} {
		b := bytes.Clone(snap.Bytes())
		if damaged {
			b[len(b)/2] ^= 0x40
		}
		st, rs, err := RecoverWithIndex(cfg, ck, snapshotOpener(b))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("damaged %v: %+v (full replay: %d records)", damaged, rs, rsFull.Records)
		switch {
		case !damaged && (rs.IndexEntries == 0 || rs.From != ck.IndexStart || rs.Records >= rsFull.Records):
			t.Fatalf("the snapshot was not used: %+v", rs)
		case damaged && (rs.IndexEntries != 0 || rs.IndexError == "" || rs.From != ck.Begin):
			t.Fatalf("a damaged snapshot was used: %+v", rs)
		}
		got := state(st)
		st.Close()
		if len(got) != len(want) {
			t.Fatalf("damaged %v: %d keys, the full replay has %d", damaged, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("damaged %v: %s = %q, the full replay has %q", damaged, k, got[k], v)
			}
		}
	}
}

// devWriteSync writes p at off and waits.
func devWriteSync(dev ssd.Device, p []byte, off uint64) (int, error) {
	done := make(doneChan, 1)
	dev.WriteAsync(p, off, done)
	return len(p), <-done
}

// TestSnapshotRecoveryCutFallsBack: a checkpoint that reuses an earlier
// one's index snapshot (as the server does between snapshots), over a log
// damaged after the snapshot's start: the snapshot's entries may point
// past the damage, so recovery falls back to the full replay, which cuts
// the log there; nothing was written before it did.
func TestSnapshotRecoveryCutFallsBack(t *testing.T) {
	dev := ssd.NewCrashDevice(512)
	cfg := Config{IndexBits: 6, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, Device: dev}}
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	churn(t, s, model{}, rng, "k", 300, 2000)
	s.Suspend()
	var snap bytes.Buffer
	first, err := st.CheckpointWithIndex(context.Background(), &snap)
	if err != nil {
		t.Fatal(err)
	}
	churn(t, s, model{}, rng, "k", 300, 2000)
	s.Suspend()
	ck, err := st.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ck.IndexStart = first.IndexStart
	s.Close()
	st.Close()
	// Inside a page: before the fix, the snapshot replay covered the rest
	// of that page with a filler and the fallback replayed past the damage.
	cutAt := (first.End+ck.End)/2&^4095 + 2048
	if _, err := devWriteSync(dev, make([]byte, 512), cutAt); err != nil {
		t.Fatal(err)
	}
	dev.Sync()
	st, rs, err := RecoverWithIndex(cfg, ck, snapshotOpener(snap.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if !rs.Cut || rs.End >= cutAt+512 || rs.IndexError == "" || rs.IndexEntries != 0 || rs.From != ck.Begin {
		t.Fatalf("recovery of a log zeroed at %d, after the snapshot's start %d: %+v", cutAt, first.IndexStart, rs)
	}
}
