package server

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/checkpoint"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/ssd"
)

// TestCommitPointsAreExact: three native sessions pipeline appends (RMWs,
// most of them waiting for the device: the log's memory is small), sets and
// deletes on their own keys while checkpoints are taken; at a random moment
// the checkpoint directory is copied and the device forked as a power loss
// would leave it, and a second server recovers that. Each session resumed
// there is told its commit point T, and its keys hold exactly the state
// after its first T operations: none of those missing, none after them in.
// With fold-over checkpoints and with log snapshots.
func TestCommitPointsAreExact(t *testing.T) {
	t.Run("fold-over", func(t *testing.T) { testCommitPointsAreExact(t, false) })
	t.Run("snapshot", func(t *testing.T) { testCommitPointsAreExact(t, true) })
}

func testCommitPointsAreExact(t *testing.T, snapshots bool) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	dev := ssd.NewCrashDevice(512)
	dev.SetAsync(true)
	dir, crashed := t.TempDir(), t.TempDir()
	s1 := exactServer(t, dir, dev, snapshots)
	writers := make([]*exactWriter, 3)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range writers {
		w := &exactWriter{id: i, cs: dialSession(t, client.Config{Addr: s1.Addr()}), state: map[string][]byte{}}
		writers[i] = w
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			w.run(t, rand.New(rand.NewPCG(seed, uint64(w.id))), stop)
		}(rng.Uint64())
	}
	var fork *ssd.CrashDevice
	crashAt := 2 + rng.IntN(4)
	for c := 0; c < crashAt+2; c++ {
		time.Sleep(time.Duration(2+rng.IntN(10)) * time.Millisecond)
		if _, err := s1.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		if c == crashAt {
			time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
			copyDir(t, dir, crashed) // before the device: its checkpoints are synced there
			fork = dev.Fork(ssd.TearUnsynced, rng)
		}
	}
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	s2 := exactServer(t, crashed, fork, snapshots)
	defer s2.Shutdown(ctx)
	if got := s2.dur.latest().Store; got.Snapshot != snapshots {
		t.Fatalf("recovered checkpoint %+v: a log snapshot %v, want %v", got, got.Snapshot, snapshots)
	}
	for _, w := range writers {
		cs := dialSession(t, client.Config{Addr: s2.Addr(), Resume: w.cs.ID()})
		T := cs.ResumedAt()
		if T == 0 || T > uint64(len(w.ops)) {
			t.Fatalf("session %d resumed at %d of %d operations", w.id, T, len(w.ops))
		}
		want := w.stateAfter(int(T))
		for k := range exactKeys {
			key := w.key(k)
			if err := cs.Read(key, func(r client.Result) {
				if got, ok := r.Value, r.Status == client.OK; ok != (want[string(key)] != nil) || !bytes.Equal(got, want[string(key)]) {
					t.Errorf("session %d at commit point %d of %d: %s = %q (found %v), want %q", w.id, T, len(w.ops), key, got, ok, want[string(key)])
				}
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := cs.Wait(); err != nil {
			t.Fatal(err)
		}
		t.Logf("session %d: commit point %d of %d operations", w.id, T, len(w.ops))
	}
}

// exactServer starts a server with 2 loops over dev, with a small log
// memory, taking checkpoints (log snapshots with snapshots) only when
// asked.
func exactServer(t *testing.T, dir string, dev *ssd.CrashDevice, snapshots bool) *Server {
	t.Helper()
	ck, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Loops: 2, NoPin: true, Checkpoints: ck, CheckpointInterval: -1,
		SnapshotCheckpoints: snapshots}
	cfg.Store.IndexBits = 8
	cfg.Store.Log = tinyLog(dev)
	s, err := Start(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const exactKeys = 60

// exactWriter is one session of TestCommitPointsAreExact and what it issued.
type exactWriter struct {
	id    int
	cs    *client.Session
	ops   []exactOp
	state map[string][]byte // after every op issued
}

// exactOp sets (or, with app, appends) val to key k, or deletes it (val nil).
type exactOp struct {
	k   int
	val []byte
	app bool
}

func (w *exactWriter) key(k int) []byte { return fmt.Appendf(nil, "x%d-%d", w.id, k) }

// run pipelines operations until stop: batches of 8, waiting for the
// answers every 64.
func (w *exactWriter) run(t *testing.T, rng *rand.Rand, stop <-chan struct{}) {
	check := func(r client.Result) {
		if r.Err != nil {
			t.Errorf("session %d: %v", w.id, r.Err)
		}
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		for i := range 64 {
			o := exactOp{k: rng.IntN(exactKeys), val: fmt.Appendf(nil, "%d.%d,", w.id, len(w.ops))}
			key := w.key(o.k)
			var err error
			switch r := rng.IntN(10); {
			case r < 5 && len(w.state[string(key)]) < 200:
				o.app = true
				err = w.cs.Append(key, o.val, check)
			case r < 8:
				err = w.cs.Upsert(key, o.val, check)
			default:
				o.val = nil
				err = w.cs.Delete(key, check)
			}
			if err != nil {
				t.Errorf("session %d: %v", w.id, err)
				return
			}
			w.ops = append(w.ops, o)
			w.state[string(key)] = w.apply(w.state[string(key)], o)
			if i%8 == 7 {
				if err := w.cs.Flush(); err != nil {
					t.Errorf("session %d: %v", w.id, err)
					return
				}
			}
		}
		if err := w.cs.Wait(); err != nil {
			t.Errorf("session %d: %v", w.id, err)
			return
		}
	}
}

func (w *exactWriter) apply(old []byte, o exactOp) []byte {
	switch {
	case o.val == nil:
		return nil
	case o.app:
		return append(append([]byte(nil), old...), o.val...)
	}
	return o.val
}

// stateAfter returns the session's keys after its first n operations.
func (w *exactWriter) stateAfter(n int) map[string][]byte {
	state := map[string][]byte{}
	for _, o := range w.ops[:n] {
		key := string(w.key(o.k))
		state[key] = w.apply(state[key], o)
	}
	return state
}
