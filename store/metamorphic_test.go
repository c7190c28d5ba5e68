package store

// The metamorphic test runs seeded random operation sequences against the
// store under a randomized configuration and against a map oracle. A failure
// prints the seed; `go test ./store -run Metamorphic -seed N` replays it. The
// single-session part replays exactly; the concurrent parts replay the same
// configuration and operation streams under a new interleaving.

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "metamorphic: run only this seed")
	seedsFlag = flag.Int("seeds", 16, "metamorphic: how many random seeds to run")
	opsFlag   = flag.Int("ops", 6000, "metamorphic: operations per worker")
)

// mmConfig is one randomized store configuration.
type mmConfig struct {
	cfg      Config
	maxValue int
	keys     int
	device   string // see devices
}

// devices the metamorphic test runs the log on: memory, segment files
// through each I/O engine (O_DIRECT), and the crashable device completing
// I/O asynchronously in random order.
var devices = []string{"mem", "file-pread", "file-uring", "crash-async"}

func randomConfig(rng *rand.Rand) mmConfig {
	pageBits := uint(12 + rng.IntN(5))
	frames := uint64(4 + rng.IntN(13))
	fractions := []float64{0.1, 0.3, 0.5, 0.75, 0.9, 1}
	return mmConfig{
		cfg: Config{
			IndexBits:       uint(1 + rng.IntN(4)),
			CopyReadsToTail: rng.IntN(2) == 0,
			MaxIndexBits:    12,
			RefreshEvery:    1 + rng.IntN(128),
			Log: hlog.Config{
				PageBits:        pageBits,
				MemoryBytes:     frames << pageBits,
				MutableFraction: fractions[rng.IntN(len(fractions))],
			},
		},
		maxValue: 1 + rng.IntN(1<<pageBits/8),
		keys:     50 + rng.IntN(2000),
		device:   devices[rng.IntN(len(devices))],
	}
}

// open opens a store with mc's configuration on a new device of mc's kind.
func (mc mmConfig) open(t *testing.T, cfg Config) *Store {
	t.Helper()
	cfg.Log.Device = openDevice(t, mc.device)
	return openTest(t, cfg)
}

func (m mmConfig) String() string {
	return fmt.Sprintf("page 2^%d, %d frames, mutable %.2f, index 2^%d, refresh %d, values <= %d B, %d keys, device %s, read-copy %v",
		m.cfg.Log.PageBits, m.cfg.Log.MemoryBytes>>m.cfg.Log.PageBits, m.cfg.Log.MutableFraction,
		m.cfg.IndexBits, m.cfg.RefreshEvery, m.maxValue, m.keys, m.device, m.cfg.CopyReadsToTail)
}

func seeds() []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	base := uint64(time.Now().UnixNano())
	out := make([]uint64, *seedsFlag)
	for i := range out {
		out[i] = base + uint64(i)*0x9e3779b97f4a7c15
	}
	return out
}

func TestMetamorphic(t *testing.T) {
	for _, seed := range seeds() {
		rng := rand.New(rand.NewPCG(seed, 0))
		mc := randomConfig(rng)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d: %v", seed, mc)
			t.Run("single", func(t *testing.T) { runSingle(t, seed, mc, failer(t, seed, mc)) })
			t.Run("disjoint", func(t *testing.T) { runDisjoint(t, seed, mc, failer(t, seed, mc)) })
			t.Run("shared", func(t *testing.T) { runShared(t, seed, mc, failer(t, seed, mc)) })
		})
	}
}

// failer returns the failure report of one subtest. It may be called from any
// of the test's goroutines: it records the failure with the seed and ends the
// calling goroutine.
func failer(t *testing.T, seed uint64, mc mmConfig) func(string, ...any) {
	return func(format string, args ...any) {
		t.Errorf("seed %d (%v): %s", seed, mc, fmt.Sprintf(format, args...))
		runtime.Goexit()
	}
}

// worker drives one session against its own oracle.
type worker struct {
	t       testing.TB
	s       *Session
	st      *Store
	rng     *rand.Rand
	mc      mmConfig
	prefix  string
	oracle  map[string][]byte
	waiting map[uint64]expectation // serial -> what the pending op must yield
	pending map[string]bool        // keys with a pending operation
	fail    func(string, ...any)
	buf     []byte
}

type expectation struct {
	key    string
	kind   OpKind
	update bool // an Update: found and value are its status and returned value
	found  bool
	value  []byte
}

func newWorker(t testing.TB, st *Store, seed uint64, id int, mc mmConfig, fail func(string, ...any)) *worker {
	s, err := st.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{
		t: t, s: s, st: st, rng: rand.New(rand.NewPCG(seed, uint64(id)+1)), mc: mc,
		prefix: fmt.Sprintf("w%d/", id), oracle: map[string][]byte{},
		waiting: map[uint64]expectation{}, pending: map[string]bool{},
	}
	w.fail = func(format string, args ...any) {
		s.Suspend() // a failed worker must not hold back the others' epochs
		fail(format, args...)
	}
	s.SetCompletion(w.completed)
	return w
}

func (w *worker) completed(c Completion) {
	exp, ok := w.waiting[c.Serial]
	if !ok {
		w.fail("completion for unknown serial %d", c.Serial)
	}
	delete(w.waiting, c.Serial)
	delete(w.pending, exp.key)
	if c.Err != nil || c.Kind != exp.kind {
		w.fail("pending %v on %q completed as %v with %v", exp.kind, exp.key, c.Kind, c.Err)
	}
	if exp.kind != OpRead && !exp.update {
		return
	}
	if (c.Status == OK) != exp.found || (exp.found && !bytes.Equal(c.Value, exp.value)) {
		w.fail("pending read of %q gave %v %q, oracle says found=%v %q", exp.key, c.Status, c.Value, exp.found, exp.value)
	}
}

// key picks a key of one of three kinds: plain values, int64 counters and
// append logs.
func (w *worker) key() string {
	n := w.rng.IntN(w.mc.keys)
	kind := "v"
	switch n % 5 {
	case 0:
		kind = "c"
	case 1:
		kind = "a"
	}
	// Vary key length so records of one chain differ in size.
	return fmt.Sprintf("%s%s%d%s", w.prefix, kind, n, bytes.Repeat([]byte{'.'}, n%23))
}

func (w *worker) value(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(w.rng.Uint32())
	}
	return v
}

// step runs one random operation and checks what can be checked at once.
func (w *worker) step() {
	k := w.key()
	if w.pending[k] {
		w.s.CompletePending(true)
	}
	kb := []byte(k)
	switch r := w.rng.IntN(100); {
	case r < 40:
		w.read(k, kb)
	case r < 60:
		w.write(k, kb)
	case r < 75:
		w.rmw(k, kb)
	case r < 87:
		w.update(k, kb)
	default:
		st, err := w.s.Delete(kb)
		_, had := w.oracle[k]
		if err != nil || (st == NotFound && had) {
			w.fail("Delete(%q) = %v, %v; oracle had it: %v", k, st, err, had)
		}
		delete(w.oracle, k)
	}
}

func (w *worker) read(k string, kb []byte) {
	v, st, err := w.s.Read(kb, w.buf[:0])
	if err != nil {
		w.fail("Read(%q): %v", k, err)
	}
	want, had := w.oracle[k]
	switch st {
	case Pending:
		w.expect(k, OpRead, had, append([]byte(nil), want...))
	case OK:
		if !had || !bytes.Equal(v, want) {
			w.fail("Read(%q) = %q, oracle found=%v %q", k, v, had, want)
		}
		w.buf = v
	case NotFound:
		if had {
			w.fail("Read(%q) not found, oracle has %q", k, want)
		}
	}
}

func (w *worker) write(k string, kb []byte) {
	var v []byte
	if k[len(w.prefix)] == 'c' {
		v = i64(w.rng.Int64N(1000))
	} else {
		v = w.value(w.rng.IntN(w.mc.maxValue + 1))
	}
	if _, err := w.s.Upsert(kb, v); err != nil {
		w.fail("Upsert(%q, %d bytes): %v", k, len(v), err)
	}
	w.oracle[k] = v
}

func (w *worker) rmw(k string, kb []byte) {
	old, had := w.oracle[k]
	var st Status
	var err error
	switch k[len(w.prefix)] {
	case 'c':
		d := w.rng.Int64N(100) - 50
		st, err = w.s.RMW(kb, i64(d), Int64Add{})
		var cur int64
		if had {
			cur = int64(binary.LittleEndian.Uint64(old))
		}
		w.oracle[k] = i64(cur + d)
	case 'a':
		in := w.value(1 + w.rng.IntN(16))
		if len(old)+len(in) > w.mc.maxValue {
			w.write(k, kb) // keep append logs within a page
			return
		}
		st, err = w.s.RMW(kb, in, Append{})
		w.oracle[k] = append(append([]byte(nil), old...), in...)
	default:
		w.write(k, kb)
		return
	}
	if err != nil {
		w.fail("RMW(%q): %v", k, err)
	}
	if st == Pending {
		w.expect(k, OpRMW, false, nil)
	}
}

func (w *worker) expect(k string, kind OpKind, found bool, value []byte) {
	w.waiting[w.s.Serial()] = expectation{key: k, kind: kind, found: found, value: value}
	w.pending[k] = true
}

// update runs a random conditional operation on k, with the merge its kind
// of key takes, and checks (now or at its completion) what it reports.
func (w *worker) update(k string, kb []byte) {
	old, had := w.oracle[k]
	u := Update{If: Cond(w.rng.IntN(4)), Want: Want(w.rng.IntN(3))}
	var merged []byte
	switch k[len(w.prefix)] {
	case 'c':
		d := w.rng.Int64N(100) - 50
		u.Merge, u.Input = Int64Add{}, i64(d)
		var cur int64
		if had {
			cur = int64(binary.LittleEndian.Uint64(old))
		}
		merged = i64(cur + d)
	case 'a':
		in := w.value(1 + w.rng.IntN(16))
		if len(old)+len(in) > w.mc.maxValue {
			w.write(k, kb)
			return
		}
		u.Merge, u.Input = Append{}, in
		merged = append(append([]byte(nil), old...), in...)
	default:
		u.Merge, u.Input = Replace{}, w.value(w.rng.IntN(w.mc.maxValue+1))
		merged = u.Input
	}
	after, live := old, had
	switch u.If.action(prior{counted: had, live: had}, false) {
	case actRemove:
		after, live = nil, false
	case actMerge:
		after, live = merged, true
	}
	var ret []byte
	switch {
	case u.Want == WantOld && had:
		ret = old
	case u.Want == WantNew && live:
		ret = after
	}
	v, st, err := w.s.Update(kb, u, w.buf[:0])
	switch {
	case err != nil:
		w.fail("Update(%q, %+v): %v", k, u, err)
	case st == Pending:
		w.waiting[w.s.Serial()] = expectation{key: k, kind: OpRMW, update: true, found: had, value: append([]byte(nil), ret...)}
		w.pending[k] = true
	case (st == OK) != had || !bytes.Equal(v, ret):
		w.fail("Update(%q, if %d want %d) = %v %q; oracle had=%v %q, expected %q", k, u.If, u.Want, st, v, had, old, ret)
	}
	if st != Pending {
		w.buf = v
	}
	if live {
		w.oracle[k] = after
	} else {
		delete(w.oracle, k)
	}
}

// verifyAll reads back every key the worker ever touched.
func (w *worker) verifyAll(keys map[string]bool) {
	w.s.CompletePending(true)
	for k := range keys {
		v, st := syncRead(w.t, w.s, []byte(k))
		want, had := w.oracle[k]
		if (st == OK) != had || !bytes.Equal(v, want) {
			w.fail("final read of %q = %v %q, oracle found=%v %q (a deleted key came back: %v)",
				k, st, v, had, want, !had && st == OK)
		}
	}
}

func (w *worker) run(ops int, touched map[string]bool) {
	for i := 0; i < ops; i++ {
		w.step()
		if i%97 == 0 {
			w.s.CompletePending(false)
		}
	}
	w.s.CompletePending(true)
	if len(w.waiting) != 0 {
		w.fail("%d operations never completed", len(w.waiting))
	}
	for k := range w.oracle {
		touched[k] = true
	}
}

// runSingle is fully deterministic: one session, with index growth and
// compactions driven from the same goroutine at seeded points, and
// checkpoints and recoveries:
// now and then a checkpoint, and now and then a crash (a power loss that
// tears unsynced writes, on the crashable device) and a recovery of the
// last checkpoint, after which the oracle is what it was at that checkpoint.
func runSingle(t *testing.T, seed uint64, mc mmConfig, fail func(string, ...any)) {
	cfg := mc.cfg
	cfg.NoAutoGrow = true
	cfg.Log.Device = openDevice(t, mc.device)
	st := openTest(t, cfg)
	w := newWorker(t, st, seed, 0, mc, fail)
	touched := map[string]bool{}
	var ck *Checkpoint
	var ckOracle map[string][]byte
	var ckIndex *bytes.Buffer
	checkpoints, recoveries, compactions := 0, 0, 0
	for i := 0; i < *opsFlag; i++ {
		k := w.key()
		touched[k] = true
		w.step()
		switch {
		case w.rng.IntN(2000) == 0 && st.index.Bits() < mc.cfg.MaxIndexBits:
			w.s.CompletePending(true)
			w.s.Suspend()
			if err := st.GrowIndex(); err != nil {
				fail("GrowIndex: %v", err)
			}
		case w.rng.IntN(1500) == 0:
			w.s.CompletePending(true)
			w.s.Suspend()
			var snap *bytes.Buffer
			if w.rng.IntN(2) == 0 { // with an index snapshot: recovery replays only the log after it
				snap = new(bytes.Buffer)
			}
			c, err := st.CheckpointWithIndex(context.Background(), writerOrNil(snap))
			if err != nil {
				fail("Checkpoint: %v", err)
			}
			ck, ckOracle, ckIndex = &c, maps.Clone(w.oracle), snap
			checkpoints++
			// The space below the checkpoint's begin is never read again:
			// a crash recovers this checkpoint or a later one.
			if err := st.Release(c.Begin); err != nil {
				fail("Release(%d): %v", c.Begin, err)
			}
		case ck != nil && w.rng.IntN(3000) == 0:
			st = w.crashAndRecover(cfg, *ck, ckIndex, ckOracle)
			recoveries++
		case w.rng.IntN(1000) == 0:
			w.s.CompletePending(true)
			w.s.Suspend()
			cs, err := st.Compact(context.Background(), st.Log().Head())
			if err != nil {
				fail("Compact: %v", err)
			}
			if cs.Until > cs.Begin {
				compactions++
			}
		}
	}
	w.s.CompletePending(true)
	for k := range w.oracle {
		touched[k] = true
	}
	w.verifyAll(touched)
	t.Logf("single: %d checkpoints, %d recoveries, %d compactions, %+v", checkpoints, recoveries, compactions, st.Stats())
	w.s.Close()
}

// writerOrNil returns b as an io.Writer, or a nil one.
func writerOrNil(b *bytes.Buffer) io.Writer {
	if b == nil {
		return nil
	}
	return b
}

// crashAndRecover closes the worker's store, loses or tears what the
// device had not synced (on the crashable device), recovers checkpoint c
// and points the worker at the recovered store, with the oracle it had
// when c was taken.
func (w *worker) crashAndRecover(cfg Config, c Checkpoint, snap *bytes.Buffer, oracle map[string][]byte) *Store {
	w.s.CompletePending(true)
	w.s.Close()
	w.st.Close()
	if cd, ok := cfg.Log.Device.(*ssd.CrashDevice); ok {
		cd.PowerLoss(ssd.TearUnsynced, w.rng)
	}
	var open func() (io.ReadCloser, error)
	if snap != nil {
		open = snapshotOpener(snap.Bytes())
	}
	st, rs, err := RecoverWithIndex(cfg, c, open)
	if err != nil {
		w.fail("Recover(%+v): %v", c, err)
	}
	if rs.Cut || rs.End != c.End || rs.IndexError != "" || (snap != nil && rs.From != max(c.Begin, c.IndexStart)) {
		w.fail("recovery of %+v cut the log: %+v", c, rs)
	}
	w.t.Cleanup(func() { st.Close() })
	s, err := st.NewSession()
	if err != nil {
		w.fail("NewSession: %v", err)
	}
	s.SetCompletion(w.completed)
	w.st, w.s, w.oracle = st, s, maps.Clone(oracle)
	return st
}

// runDisjoint runs workers on disjoint key sets, each against its own oracle,
// with automatic and explicit index growth.
func runDisjoint(t *testing.T, seed uint64, mc mmConfig, fail func(string, ...any)) {
	st := mc.open(t, mc.cfg)
	const workers = 4
	ws := make([]*worker, workers)
	touched := make([]map[string]bool, workers)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = newWorker(t, st, seed, i+10, mc, fail)
		touched[i] = map[string]bool{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ws[i].run(*opsFlag, touched[i])
			ws[i].s.Suspend()
		}(i)
	}
	stop := compactDuring(st, fail)
	growDuring(t, st, &wg, fail)
	t.Logf("disjoint: %d compactions, %+v", stop(), st.Stats())
	if t.Failed() {
		return // a failed worker may have left operations half delivered
	}
	for i, w := range ws {
		w.verifyAll(touched[i])
		w.s.Close()
	}
}

// growDuring doubles the index a few times while the workers run. Growth
// is kept rare, as in production: entries whose records are on the device
// cannot be sorted and go to both halves, so growing an index whose data has
// left memory does not thin its buckets.
func growDuring(t *testing.T, st *Store, wg *sync.WaitGroup, fail func(string, ...any)) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for grows := 0; ; grows++ {
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if grows >= 3 || st.index.Bits() >= st.cfg.MaxIndexBits {
			continue
		}
		if err := st.GrowIndex(); err != nil && err.Error() != "index: growth already in progress" {
			fail("GrowIndex: %v", err)
		}
	}
}

// compactDuring compacts everything on the device and releases its space,
// back to back, while the workers run (racing their upserts, deletes and
// RMWs of the same keys). stop ends it and returns how many compactions
// moved the log's begin.
func compactDuring(st *Store, fail func(string, ...any)) (stop func() int) {
	quit, done := make(chan struct{}), make(chan struct{})
	n := 0
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(2 * time.Millisecond):
			}
			cs, err := st.Compact(context.Background(), st.Log().Head())
			if err == nil {
				err = st.Release(cs.Until)
			}
			if err != nil {
				fail("Compact: %v", err)
			}
			if cs.Until > cs.Begin {
				n++
			}
		}
	}()
	return func() int {
		close(quit)
		<-done
		return n
	}
}

// runShared has every worker hammer one small set of keys: counters that all
// of them add to, append logs that all of them append tokens to, and values
// that carry their own checksum. Reads must never see a torn value, every
// counter must end at the sum of all additions and every token appended must
// be in its log exactly once.
func runShared(t *testing.T, seed uint64, mc mmConfig, fail func(string, ...any)) {
	st := mc.open(t, mc.cfg)
	const workers, counters, blobs, logs = 4, 64, 32, 16
	sums := make([][counters]int64, workers)
	appended := make([][logs]int, workers)
	// A log must fit in a page next to its key: cap the tokens per worker.
	maxTokens := int(st.log.PageSize()-128) / (8 * workers * logs)
	var torn atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		s, err := st.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer s.Close()
			rng := rand.New(rand.NewPCG(seed, uint64(100+i)))
			var buf []byte
			s.SetCompletion(func(c Completion) {
				if c.Err != nil {
					torn.Add(1)
				} else if c.Kind == OpRead && c.Status == OK && !validBlob(c.Value) {
					torn.Add(1)
				}
			})
			for n := 0; n < *opsFlag; n++ {
				switch r := rng.IntN(10); {
				case r < 1:
					l := rng.IntN(logs)
					if appended[i][l] == maxTokens {
						break
					}
					tok := makeToken(i, l, appended[i][l])
					stt, err := s.RMW(fmt.Appendf(nil, "log%d", l), tok, Append{})
					if err != nil {
						torn.Add(1)
					}
					if stt == Pending {
						// A session orders a pending operation after later
						// ones; the tokens must stay in order, so wait.
						s.CompletePending(true)
					}
					appended[i][l]++
				case r < 4:
					c := rng.IntN(counters)
					d := rng.Int64N(1000)
					if _, err := s.RMW(fmt.Appendf(nil, "counter%d", c), i64(d), Int64Add{}); err != nil {
						torn.Add(1)
					}
					sums[i][c] += d
				case r < 7:
					k := fmt.Appendf(nil, "blob%d", rng.IntN(blobs))
					if _, err := s.Upsert(k, makeBlob(rng, mc.maxValue)); err != nil {
						torn.Add(1)
					}
				case r < 8:
					s.Delete(fmt.Appendf(nil, "blob%d", rng.IntN(blobs)))
					// Noise pushes the shared keys out of memory, so that
					// their RMWs go to the device while others update them.
					s.Upsert(fmt.Appendf(nil, "noise%d-%d", i, n), make([]byte, mc.maxValue))
				default:
					k := fmt.Appendf(nil, "blob%d", rng.IntN(blobs))
					v, stt, err := s.Read(k, buf[:0])
					if err != nil || (stt == OK && !validBlob(v)) {
						torn.Add(1)
					}
					buf = v
				}
				if n%50 == 0 {
					s.CompletePending(false)
				}
			}
			s.CompletePending(true)
			s.Suspend()
		}(i)
	}
	stop := compactDuring(st, fail)
	growDuring(t, st, &wg, fail)
	t.Logf("shared: %d compactions, %+v", stop(), st.Stats())
	if n := torn.Load(); n != 0 {
		fail("%d torn values or failed operations on shared keys", n)
	}
	s := newSession(t, st)
	for c := 0; c < counters; c++ {
		var want int64
		for i := range sums {
			want += sums[i][c]
		}
		v, stt := syncRead(t, s, fmt.Appendf(nil, "counter%d", c))
		if want == 0 && stt == NotFound {
			continue
		}
		if stt != OK || !bytes.Equal(v, i64(want)) {
			fail("counter%d = %v (%v), want %d: an addition was lost", c, v, stt, want)
		}
	}
	for l := 0; l < logs; l++ {
		v, _ := syncRead(t, s, fmt.Appendf(nil, "log%d", l))
		checkTokens(v, l, appended, fail)
	}
}

// makeToken returns worker w's seq-th token for log l: 4 to 8 bytes, so
// that some appends fit in place and others need a copy to the tail.
func makeToken(w, l, seq int) []byte {
	tok := []byte{byte(w), byte(l), byte(seq), byte(seq >> 8)}
	return append(tok, bytes.Repeat([]byte{0xee}, seq%5)...)
}

// checkTokens verifies that an append log holds each worker's tokens exactly
// once and in the order that worker appended them.
func checkTokens(v []byte, l int, appended [][16]int, fail func(string, ...any)) {
	next := make([]int, len(appended))
	for i := 0; i < len(v); {
		if i+4 > len(v) || int(v[i]) >= len(appended) {
			fail("log%d: torn token at %d of %d bytes", l, i, len(v))
		}
		w := int(v[i])
		tok := makeToken(w, l, next[w])
		if !bytes.HasPrefix(v[i:], tok) {
			fail("log%d: token %v at %d, want worker %d's token %d: lost or out of order", l, v[i:min(i+8, len(v))], i, w, next[w])
		}
		next[w]++
		i += len(tok)
	}
	for w := range appended {
		if next[w] != appended[w][l] {
			fail("log%d holds %d tokens of worker %d, it appended %d: an append was lost", l, next[w], w, appended[w][l])
		}
	}
}

// makeBlob returns a value whose first 8 bytes hold a checksum of the rest.
func makeBlob(rng *rand.Rand, maxValue int) []byte {
	n := 8 + rng.IntN(max(1, maxValue-8))
	b := make([]byte, n)
	fill := byte(rng.Uint32())
	for i := 8; i < n; i++ {
		b[i] = fill + byte(i)
	}
	binary.LittleEndian.PutUint64(b, blobSum(b[8:]))
	return b
}

func validBlob(b []byte) bool {
	return len(b) >= 8 && binary.LittleEndian.Uint64(b) == blobSum(b[8:])
}

func blobSum(b []byte) uint64 {
	h := uint64(len(b)) * 0x9e3779b97f4a7c15
	for _, c := range b {
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	return h
}
