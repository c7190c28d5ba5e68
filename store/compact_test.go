package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// compactConfig is a small store whose log spills to dev within a few
// thousand writes.
func compactConfig(dev ssd.Device) Config {
	return Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, MutableFraction: 0.5, Device: dev}}
}

// TestCompactKeepsLiveRecordsOnly churns a key set, compacts everything on
// the device, releases the space below the new begin, and checks every
// key (deleted ones stay deleted); then a checkpoint, a power loss and a
// recovery from the compacted begin bring back the same state.
func TestCompactKeepsLiveRecordsOnly(t *testing.T) {
	for _, kind := range []string{"mem", "file-pread", "crash-async"} {
		t.Run(kind, func(t *testing.T) {
			dev := openDevice(t, kind)
			cfg := compactConfig(dev)
			st := openTest(t, cfg)
			s := newSession(t, st)
			m := model{}
			rng := rand.New(rand.NewPCG(1, 2))
			churn(t, s, m, rng, "k", 300, 6000)
			s.Suspend()
			head := st.Log().Head()
			cs, err := st.Compact(context.Background(), head)
			if err != nil {
				t.Fatal(err)
			}
			if st.Log().Begin() != cs.Until || cs.Until <= hlog.FirstAddress || cs.Copied == 0 || cs.Copied >= cs.Records {
				t.Fatalf("compaction up to head %d: %+v, begin now %d", head, cs, st.Log().Begin())
			}
			live := 0
			for _, v := range m {
				if v != nil {
					live++
				}
			}
			if cs.Copied > live {
				t.Fatalf("copied %d records, but only %d keys are live", cs.Copied, live)
			}
			if err := st.Release(cs.Until); err != nil {
				t.Fatal(err)
			}
			check(t, s, m, "after compaction")
			churn(t, s, m, rng, "k", 300, 500)
			s.CompletePending(true)
			s.Suspend()
			c, err := st.Checkpoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if c.Begin != cs.Until {
				t.Fatalf("checkpoint begin %d, compacted to %d", c.Begin, cs.Until)
			}
			s.Close()
			st.Close()
			if cd, ok := dev.(*ssd.CrashDevice); ok {
				cd.PowerLoss(ssd.TearUnsynced, rng)
			}
			st2, rs, err := Recover(cfg, c)
			if err != nil || rs.Cut {
				t.Fatalf("recover: %v %+v", err, rs)
			}
			defer st2.Close()
			check(t, newSession(t, st2), m, "after recovery")
		})
	}
}

// TestCompactRacesWrites runs compactions (and releases) back to back while
// four sessions upsert, delete and append to their own keys; each
// session's keys must end as its oracle says, and no deleted key may come
// back.
func TestCompactRacesWrites(t *testing.T) {
	dev := openDevice(t, "file-pread")
	st := openTest(t, compactConfig(dev))
	const workers = 4
	models := make([]model, workers)
	sessions := make([]*Session, workers)
	var wg sync.WaitGroup
	for w := range workers {
		models[w], sessions[w] = model{}, newSession(t, st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sessions[w].Suspend()
			churn(t, sessions[w], models[w], rand.New(rand.NewPCG(uint64(w), 9)), fmt.Sprint("w", w), 200, 4000)
			sessions[w].CompletePending(true)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var total CompactStats
	passes := 0
	var err error
	for running := true; running && err == nil; {
		select {
		case <-done:
			running = false
		default:
		}
		var cs CompactStats
		if cs, err = st.Compact(context.Background(), st.Log().Head()); err == nil {
			err = st.Release(cs.Until)
		}
		if cs.Until > cs.Begin {
			passes++
		}
		total.Records += cs.Records
		total.Copied += cs.Copied
		total.CopiesLost += cs.CopiesLost
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d compactions: %d records scanned, %d copied, %d copies lost to writes", passes, total.Records, total.Copied, total.CopiesLost)
	if passes == 0 {
		t.Fatal("no compaction had anything to do")
	}
	for w := range workers {
		check(t, sessions[w], models[w], fmt.Sprint("worker ", w))
	}
}

// holdReads is a device that holds back reads of one length (a pending
// read's first read of a given key length) until released.
type holdReads struct {
	ssd.Device
	n    int
	mu   sync.Mutex
	held []func()
	on   bool
}

func (h *holdReads) ReadAsync(p []byte, off uint64, cb ssd.Callback) {
	h.mu.Lock()
	if h.on && len(p) == h.n {
		h.held = append(h.held, func() { h.Device.ReadAsync(p, off, cb) })
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.Device.ReadAsync(p, off, cb)
}

func (h *holdReads) release() {
	h.mu.Lock()
	held := h.held
	h.held, h.on = nil, false
	h.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// TestPendingReadsStartOverAfterCompaction issues device reads, lets a
// compaction move the begin past their records and release the space while
// they are in flight, then lets them complete: each starts over from the
// index and finds its key's copy at the tail.
func TestPendingReadsStartOverAfterCompaction(t *testing.T) {
	const keys = 400
	key := func(i int) []byte { return fmt.Appendf(nil, "key-%04d", i) }
	dev := &holdReads{Device: ssd.NewMemDevice(), n: hlog.PrefixSize + len(key(0)) + firstReadSize}
	st := openTest(t, compactConfig(dev))
	s := newSession(t, st)
	for i := range keys {
		mustStatus(t, OK)(s.Upsert(key(i), fmt.Appendf(nil, "value-%d", i)))
	}
	for i := range 3000 { // push the keys out of memory
		mustStatus(t, OK)(s.Upsert(fmt.Appendf(nil, "filler-%d", i), make([]byte, 100)))
	}
	got := map[uint64]string{}
	want := map[uint64]string{}
	s.SetCompletion(func(c Completion) {
		if c.Err != nil || c.Status != OK {
			t.Errorf("read %d: %v %v", c.Serial, c.Status, c.Err)
		}
		got[c.Serial] = string(c.Value)
	})
	dev.on = true
	for i := range keys {
		if _, status, err := s.Read(key(i), nil); err != nil || status != Pending {
			t.Fatalf("read of %s: %v %v, want it pending", key(i), status, err)
		}
		want[s.Serial()] = fmt.Sprintf("value-%d", i)
	}
	s.Suspend()
	cs, err := st.Compact(context.Background(), st.Log().Head())
	if err != nil || cs.Copied < keys {
		t.Fatalf("compact: %+v, %v", cs, err)
	}
	if err := st.Release(cs.Until); err != nil {
		t.Fatal(err)
	}
	dev.release()
	s.CompletePending(true)
	if len(got) != keys {
		t.Fatalf("%d of %d reads completed", len(got), keys)
	}
	for serial, v := range want {
		if got[serial] != v {
			t.Fatalf("read %d = %q, want %q", serial, got[serial], v)
		}
	}
}

// TestGarbageEstimate checks the dead-share estimate on a log of known
// shape: every key written four times with values of one size, so about
// three quarters of what reached the device is dead.
func TestGarbageEstimate(t *testing.T) {
	st := openTest(t, compactConfig(ssd.NewMemDevice()))
	s := newSession(t, st)
	for round := range 4 {
		for i := range 2000 {
			mustStatus(t, OK)(s.Upsert(fmt.Appendf(nil, "key-%05d", i), fmt.Appendf(nil, "%0100d", round)))
		}
	}
	s.Suspend()
	g, err := st.Garbage(context.Background(), 16, 4<<10, rand.New(rand.NewPCG(3, 4)))
	if err != nil {
		t.Fatal(err)
	}
	if g < 0.6 || g > 0.9 {
		t.Fatalf("garbage estimate %.2f, want about 0.75", g)
	}
	cs, err := st.Compact(context.Background(), st.Log().Head())
	if err != nil {
		t.Fatal(err)
	}
	dead := 1 - float64(cs.Copied)/float64(cs.Records)
	t.Logf("estimate %.2f, compaction found %.2f dead (%+v)", g, dead, cs)
	if dead < 0.6 {
		t.Fatalf("compaction found %.2f dead, want about 0.75", dead)
	}
}

// TestCompactPaced: a paced compaction calls pace after every batch, with
// its session unprotected (a checkpoint, which waits for every session's
// epoch, completes from inside pace), and compacts what Compact would.
func TestCompactPaced(t *testing.T) {
	dev := openDevice(t, "mem")
	cfg := compactConfig(dev)
	st := openTest(t, cfg)
	s := newSession(t, st)
	m := model{}
	rng := rand.New(rand.NewPCG(3, 4))
	churn(t, s, m, rng, "k", 3000, 30000)
	s.CompletePending(true)
	s.Suspend()
	calls, checkpointed := 0, false
	cs, err := st.CompactPaced(context.Background(), st.Log().Head(), func(ctx context.Context) {
		calls++
		if !checkpointed {
			_, err := st.Checkpoint(ctx)
			checkpointed = err == nil
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 2 || !checkpointed || cs.Until != st.Log().Begin() || cs.Copied == 0 {
		t.Fatalf("%d calls of pace, checkpointed %v: %+v", calls, checkpointed, cs)
	}
	check(t, s, m, "after a paced compaction")
}
