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
	"time"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// The prefix property, in process: several sessions write their own keys
// (their RMWs stay pending across later operations and checkpoints) while
// checkpoints (half of them with an index snapshot; in the rounds that pause
// the sessions, half of them log snapshots) and compactions run at
// random moments, some compactions concurrently with the checkpoints; then
// a power loss tears what was not synced and the last checkpoint is
// recovered. In the rounds whose checkpoints pause the sessions, each
// session's recovered keys must be exactly the state after the operations
// it had issued when it stopped (its CPR point); in the others, the state
// after a prefix of its operations with no holes, at least as long as what
// it had completed when the checkpoint began and at most what it had
// issued when it ended. Deleted keys never come back. After each recovery
// the sessions go on from what came back.

// prefixOp is one operation of a prefix session: a set of key k to value
// number v (appended to by an RMW when app), or a delete (v < 0).
type prefixOp struct {
	k, v int
	app  bool
}

type prefixSession struct {
	id   int
	base [][]byte   // the state the round started from, by key (nil: absent)
	ops  []prefixOp // issued this round
	done atomic.Int64
	cpr  atomic.Int64 // operations issued when the last pause stopped it
}

const prefixKeys = 150

func (p *prefixSession) key(k int) []byte { return fmt.Appendf(nil, "p%d-%d", p.id, k) }

// value is value number v: it names its session and number, and its size
// varies, so that some sets update in place and others append.
func (p *prefixSession) value(v int) []byte {
	return append(fmt.Appendf(nil, "%d.%d.", p.id, v), bytes.Repeat([]byte{'x'}, v%97)...)
}

// apply returns state after op.
func (p *prefixSession) apply(state [][]byte, o prefixOp) {
	switch {
	case o.v < 0:
		state[o.k] = nil
	case o.app:
		state[o.k] = append(append([]byte(nil), state[o.k]...), p.value(o.v)...)
	default:
		state[o.k] = p.value(o.v)
	}
}

// run issues operations until stop. With waitRMW each RMW completes before
// the next operation: a checkpoint that does not pause the sessions may
// hold operations issued after one pending across it, and not it.
func (p *prefixSession) run(t *testing.T, s *Session, rng *rand.Rand, stop <-chan struct{}, pz *pauser, waitRMW bool) {
	defer pz.exit()
	defer s.Suspend()
	defer s.CompletePending(true)
	s.SetCompletion(func(c Completion) {
		if c.Err != nil {
			t.Errorf("session %d: pending %v: %v", p.id, c.Kind, c.Err)
		}
	})
	state := make([][]byte, prefixKeys)
	copy(state, p.base)
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		pz.at(s, func() { p.cpr.Store(p.done.Load()) })
		o := prefixOp{k: rng.IntN(prefixKeys), v: n}
		var err error
		switch r := rng.IntN(10); {
		case r < 2:
			o.v = -1
			_, err = s.Delete(p.key(o.k))
		case r < 3 && len(state[o.k]) < 400:
			o.app = true
			_, err = s.RMW(p.key(o.k), p.value(o.v), Append{})
			if waitRMW {
				s.CompletePending(true)
			}
		default:
			_, err = s.Upsert(p.key(o.k), p.value(o.v))
		}
		if err != nil {
			t.Errorf("session %d: %v", p.id, err)
			return
		}
		p.apply(state, o)
		p.ops = append(p.ops, o)
		p.done.Add(1)
		s.CompletePending(false)
	}
}

// pauser is the prefix test's Pause: the sessions check it between their
// operations and stop there, with no write pending, while it is wanted.
type pauser struct {
	want    atomic.Bool
	mu      sync.Mutex
	cond    sync.Cond
	live    int // sessions running
	stopped int // sessions stopped at the pause
	gen     int // pauses ended
}

func newPauser(live int) *pauser {
	pz := &pauser{live: live}
	pz.cond.L = &pz.mu
	return pz
}

// pause implements Pause. It returns a while after the sessions go on, so
// that they run operations before the checkpoint's fold-over (which an
// exact checkpoint must leave out).
func (pz *pauser) pause(_ context.Context, atStop func()) error {
	pz.mu.Lock()
	pz.want.Store(true)
	for pz.stopped < pz.live {
		pz.cond.Wait()
	}
	atStop()
	pz.want.Store(false)
	pz.stopped = 0
	pz.gen++
	pz.cond.Broadcast()
	pz.mu.Unlock()
	time.Sleep(time.Millisecond)
	return nil
}

// at stops the session while a pause is wanted: it completes its pending
// writes, calls mark, and waits, suspended, for the pause to end.
func (pz *pauser) at(s *Session, mark func()) {
	if !pz.want.Load() {
		return
	}
	s.CompleteWrites()
	mark()
	s.Suspend()
	pz.mu.Lock()
	defer pz.mu.Unlock()
	pz.stopped++
	pz.cond.Broadcast()
	for g := pz.gen; pz.gen == g; {
		pz.cond.Wait()
	}
}

// exit says a session stopped running.
func (pz *pauser) exit() {
	pz.mu.Lock()
	pz.live--
	pz.cond.Broadcast()
	pz.mu.Unlock()
}

// match returns the n in [lo, hi] such that the ops up to n from base give
// got, or -1.
func (p *prefixSession) match(got [][]byte, lo, hi int) int {
	state := make([][]byte, prefixKeys)
	copy(state, p.base)
	for n := 0; n <= min(hi, len(p.ops)); n++ {
		if n >= lo && sameState(state, got) {
			return n
		}
		if n < len(p.ops) {
			p.apply(state, p.ops[n])
		}
	}
	return -1
}

func sameState(a, b [][]byte) bool {
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestRecoveredSessionsArePrefixes(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dev := ssd.NewCrashDevice(512)
	dev.SetAsync(true)
	cfg := Config{IndexBits: 4, Log: hlog.Config{PageBits: 12, MemoryBytes: 6 << 12, MutableFraction: 0.5, Device: dev}}
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sessions := make([]*prefixSession, 4)
	for i := range sessions {
		sessions[i] = &prefixSession{id: i, base: make([][]byte, prefixKeys)}
	}
	for round := range 4 {
		st = prefixRound(t, round, st, cfg, dev, sessions, rng)
	}
	st.Close()
}

// prefixRound runs the sessions with checkpoints and compactions, tears the
// device, recovers and checks; it returns the recovered store.
func prefixRound(t *testing.T, round int, st *Store, cfg Config, dev *ssd.CrashDevice, sessions []*prefixSession, rng *rand.Rand) *Store {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pz := newPauser(len(sessions))
	exact := round%2 == 0
	for _, p := range sessions {
		s, err := st.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		p.ops, p.done, p.cpr = nil, atomic.Int64{}, atomic.Int64{}
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			defer s.Close()
			p.run(t, s, rand.New(rand.NewPCG(seed, uint64(p.id))), stop, pz, !exact)
		}(rng.Uint64())
	}
	var compactions sync.WaitGroup
	if rng.IntN(2) == 0 {
		compactions.Add(1)
		crng := rand.New(rand.NewPCG(rng.Uint64(), 2))
		go func() {
			defer compactions.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(1+crng.IntN(3)) * time.Millisecond):
				}
				if _, err := st.Compact(context.Background(), st.Log().Head()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var ck Checkpoint
	var snap, logSnap *bytes.Buffer
	lo, hi := make([]int, len(sessions)), make([]int, len(sessions))
	for i := range 3 + rng.IntN(4) {
		time.Sleep(time.Duration(1+rng.IntN(15)) * time.Millisecond)
		if rng.IntN(3) == 0 {
			if _, err := st.Compact(context.Background(), st.Log().Head()); err != nil {
				t.Fatal(err)
			}
		}
		for j, p := range sessions {
			lo[j] = int(p.done.Load())
		}
		o := CheckpointOptions{}
		if i%2 == 0 {
			snap = new(bytes.Buffer)
			o.Index = snap
		}
		logSnap = nil
		if exact {
			o.Pause = pz.pause
			if rng.IntN(2) == 0 {
				logSnap = new(bytes.Buffer)
				o.Snapshot = logSnap
			}
		}
		c, err := st.CheckpointWith(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if o.Index == nil {
			snap = nil
		}
		for j, p := range sessions {
			hi[j] = int(p.done.Load()) + 1 // the op running when it ended may be in
			if exact {
				lo[j], hi[j] = int(p.cpr.Load()), int(p.cpr.Load())
			}
		}
		ck = c
	}
	time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
	close(stop)
	wg.Wait()
	compactions.Wait()
	if t.Failed() {
		t.FailNow()
	}
	st.Close()
	dev.PowerLoss(ssd.TearUnsynced, rng)
	var open func() (io.ReadCloser, error)
	if snap != nil {
		open = snapshotOpener(snap.Bytes())
	}
	if logSnap != nil {
		t.Logf("round %d: the checkpoint recovered is a log snapshot of [%d, %d)", round, ck.SnapshotStart, ck.End)
		if err := RestoreSnapshot(dev, ck, snapshotOpener(logSnap.Bytes())); err != nil {
			t.Fatalf("round %d: restoring the log snapshot of %+v: %v", round, ck, err)
		}
	}
	st, rs, err := RecoverWithIndex(cfg, ck, open)
	if err != nil || rs.Cut || rs.IndexError != "" {
		t.Fatalf("round %d: recover %+v: %+v %v", round, ck, rs, err)
	}
	s, err := st.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for j, p := range sessions {
		got := make([][]byte, prefixKeys)
		for k := range prefixKeys {
			v, status, err := completeRead(t, s, p.key(k))
			if err != nil {
				t.Fatalf("round %d: %s: %v", round, p.key(k), err)
			}
			if status == OK {
				got[k] = v
			}
		}
		n := p.match(got, lo[j], hi[j])
		if n < 0 {
			t.Fatalf("round %d: session %d: the recovered keys are the state after no prefix of its %d ops in [%d, %d] (a lost write, a hole, or a deleted key back)",
				round, p.id, len(p.ops), lo[j], hi[j])
		}
		t.Logf("round %d: session %d recovered %d of %d ops (checkpoint window [%d, %d], exact %v)", round, p.id, n, len(p.ops), lo[j], hi[j], exact)
		p.base = got
	}
	return st
}
