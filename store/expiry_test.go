package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/keyhash"
)

// testClock is a Config.Now that tests move by hand.
type testClock struct{ ms atomic.Int64 }

func (c *testClock) Now() int64 { return c.ms.Load() }

// newTestClock returns a clock standing at clockT.
func newTestClock() *testClock {
	c := &testClock{}
	c.ms.Store(clockT)
	return c
}

// clockT is the time expiry tests start at (Unix milliseconds).
const clockT = 1_000_000

// expiryStore is updateStore with a clock the test moves.
func expiryStore(t *testing.T) (*Store, *Session, *testClock) {
	c := newTestClock()
	st := openTest(t, Config{IndexBits: 6, Now: c.Now, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, MutableFraction: 0.5}})
	return st, newSession(t, st), c
}

// readExpiring reads key with its expiry, completing a pending read.
func readExpiring(t *testing.T, s *Session, key []byte) (at int64, v []byte, st Status) {
	t.Helper()
	b, st, err := s.ReadExpiring(key, keyhash.Hash(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st == Pending {
		b, st = awaitLast(t, s, fmt.Sprintf("ReadExpiring(%q)", key))
	}
	if st != OK {
		return 0, nil, st
	}
	at, v, ok := SplitExpiring(b)
	if !ok {
		t.Fatalf("ReadExpiring(%q) returned %x: no expiry in front", key, b)
	}
	return at, v, st
}

// keyState is what a key holds before an operation, for the expiry tests.
type keyState struct {
	name    string
	at      int64 // its expiry
	expired bool  // the clock passed it once the record was placed
}

func (k keyState) live() bool { return !k.expired }

// outcome is what an operation should do to a key in a state.
type outcome struct {
	status  Status
	ret     []byte // the returned value, with its expiry in front (nil: none)
	at      int64  // the key's expiry afterwards
	v       []byte // its value afterwards (nil: absent)
	counted bool   // the key count counts it afterwards
}

func exp(at int64, v string) []byte { return AppendExpiring(nil, at, []byte(v)) }

func existed(k keyState) Status {
	if k.live() {
		return OK
	}
	return NotFound
}

// TestExpiry runs each operation on a key without an expiry, with one, and
// with one the clock has passed, its newest record in each region (in
// place, copy of a read-only record, device read), and checks its status,
// what it returns, the key's value and expiry afterwards and the key
// count.
func TestExpiry(t *testing.T) {
	const later = clockT + 5000
	states := []keyState{{"persistent", 0, false}, {"expiring", clockT + 1000, false}, {"expired", clockT + 1000, true}}
	old := "old-value"
	// unchanged is the outcome of an operation that leaves the key alone.
	unchanged := func(k keyState, ret []byte) outcome {
		if !k.live() {
			return outcome{NotFound, nil, 0, nil, true}
		}
		return outcome{OK, ret, k.at, []byte(old), true}
	}
	oldRet := func(k keyState) []byte {
		if !k.live() {
			return nil
		}
		return exp(k.at, old)
	}
	type opCase struct {
		name string
		u    Update
		want func(k keyState) outcome
	}
	cases := []opCase{
		{"append", Update{Want: WantNew, WithExpiry: true, Merge: Append{}, Input: []byte("+")}, func(k keyState) outcome {
			if !k.live() {
				return outcome{NotFound, exp(0, "+"), 0, []byte("+"), true}
			}
			return outcome{OK, exp(k.at, old+"+"), k.at, []byte(old + "+"), true}
		}},
		{"set", Update{Want: WantOld, WithExpiry: true, Merge: Replace{}, Input: []byte("new"), Expire: Expiry{Mode: ClearExpiry}}, func(k keyState) outcome {
			return outcome{existed(k), oldRet(k), 0, []byte("new"), true}
		}},
		{"set-keepttl", Update{Want: WantNew, WithExpiry: true, Merge: Replace{}, Input: []byte("new")}, func(k keyState) outcome {
			at := k.at
			if !k.live() {
				at = 0
			}
			return outcome{existed(k), exp(at, "new"), at, []byte("new"), true}
		}},
		{"set-px", Update{Merge: Replace{}, Input: []byte("new"), Expire: Expiry{Mode: SetExpiry, At: later}}, func(k keyState) outcome {
			return outcome{existed(k), nil, later, []byte("new"), true}
		}},
		{"expire", Update{If: IfPresent, Want: WantOld, WithExpiry: true, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: later}}, func(k keyState) outcome {
			if !k.live() {
				return unchanged(k, nil)
			}
			return outcome{OK, oldRet(k), later, []byte(old), true}
		}},
		{"expire-nx", Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: later, Only: IfNoExpiry}}, func(k keyState) outcome {
			if k.live() && k.at == 0 {
				return outcome{OK, nil, later, []byte(old), true}
			}
			return unchanged(k, nil)
		}},
		{"expire-gt", Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: later, Only: IfLater}}, func(k keyState) outcome {
			if k.live() && k.at != 0 {
				return outcome{OK, nil, later, []byte(old), true}
			}
			return unchanged(k, nil)
		}},
		{"expire-lt", Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: later, Only: IfEarlier}}, func(k keyState) outcome {
			if k.live() && k.at == 0 {
				return outcome{OK, nil, later, []byte(old), true}
			}
			return unchanged(k, nil)
		}},
		{"expire-past", Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: clockT - 1}}, func(k keyState) outcome {
			if !k.live() {
				return unchanged(k, nil)
			}
			return outcome{OK, nil, 0, nil, false}
		}},
		{"persist", Update{If: IfPresent, Want: WantOld, WithExpiry: true, Merge: Keep{}, Expire: Expiry{Mode: ClearExpiry}}, func(k keyState) outcome {
			if !k.live() {
				return unchanged(k, nil)
			}
			return outcome{OK, oldRet(k), 0, []byte(old), true}
		}},
		{"remove", Update{If: Remove}, func(k keyState) outcome { return outcome{existed(k), nil, 0, nil, false} }},
		{"reap", Update{If: ReapExpired}, func(k keyState) outcome {
			if !k.live() {
				return outcome{NotFound, nil, 0, nil, false}
			}
			return unchanged(k, nil)
		}},
	}
	for _, c := range cases {
		for _, k0 := range states {
			for _, r := range []region{inMutable, inReadOnly, onDevice} {
				t.Run(fmt.Sprintf("%s/%s/%v", c.name, k0.name, r), func(t *testing.T) {
					st, s, clock := expiryStore(t)
					key := []byte("the-key")
					before := placeState(t, st, s, clock, key, old, k0, r)
					want := c.want(k0)
					u := c.u
					if u.Expire.Mode == SetExpiry && u.Expire.At == clockT-1 {
						u.Expire.At = clock.Now() - 1
					}
					v, stt := syncUpdate(t, s, key, u)
					if stt != want.status || !bytes.Equal(v, want.ret) {
						t.Errorf("returned %v %x, want %v %x", stt, v, want.status, want.ret)
					}
					checkKey(t, st, s, key, want, before)
				})
			}
		}
	}
}

// placeState writes key with value and k0's expiry, moves its record to
// region r, moves the clock past the expiry when k0 has expired, and
// returns the key count then.
func placeState(t *testing.T, st *Store, s *Session, clock *testClock, key []byte, value string, k0 keyState, r region) int64 {
	t.Helper()
	addr := st.Log().Tail()
	mustStatus(t, OK)(s.UpsertExpiring(key, keyhash.Hash(key), []byte(value), k0.at))
	push(t, st, s, addr, r)
	if k0.expired {
		clock.ms.Store(k0.at + 1)
	}
	s.CompletePending(true)
	s.Suspend()
	n, err := st.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkpointAndRecover takes a checkpoint of st (no session protected),
// closes it and returns the store recovered from that checkpoint with cfg,
// closed when t ends.
func checkpointAndRecover(t *testing.T, st *Store, cfg Config) *Store {
	t.Helper()
	c, err := st.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st2, _, err := Recover(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	return st2
}

// checkKey checks key's value, expiry and count against want; before is
// the key count when the key was counted.
func checkKey(t *testing.T, st *Store, s *Session, key []byte, want outcome, before int64) {
	t.Helper()
	at, v, gst := readExpiring(t, s, key)
	if (gst == OK) != (want.v != nil) || at != want.at || !bytes.Equal(v, want.v) {
		t.Errorf("afterwards %v %d %q, want %d %q", gst, at, v, want.at, want.v)
	}
	if plain, pst := syncRead(t, s, key); (pst == OK) != (want.v != nil) || !bytes.Equal(plain, want.v) {
		t.Errorf("a plain read afterwards: %v %q", pst, plain)
	}
	s.CompletePending(true)
	s.Suspend()
	n, err := st.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantN := before
	if !want.counted {
		wantN--
	}
	if n != wantN {
		t.Errorf("%d keys, want %d", n, wantN)
	}
}

// TestExpiryOfPlainOperations: Upsert clears the expiry, UpsertExpiring
// sets it (a past one reads as absent at once), Delete reports an expired
// key absent and uncounts it; in every region.
func TestExpiryOfPlainOperations(t *testing.T) {
	type opCase struct {
		name string
		run  func(s *Session, key []byte, now int64) (Status, error)
		want func(k keyState) outcome
	}
	cases := []opCase{
		{"upsert", func(s *Session, key []byte, _ int64) (Status, error) { return s.Upsert(key, []byte("new")) },
			func(keyState) outcome { return outcome{OK, nil, 0, []byte("new"), true} }},
		{"upsert-expiring", func(s *Session, key []byte, now int64) (Status, error) {
			return s.UpsertExpiring(key, keyhash.Hash(key), []byte("new"), now+7000)
		}, func(keyState) outcome { return outcome{OK, nil, -1, []byte("new"), true} }},
		{"upsert-past", func(s *Session, key []byte, now int64) (Status, error) {
			return s.UpsertExpiring(key, keyhash.Hash(key), []byte("new"), now-1)
		}, func(keyState) outcome { return outcome{OK, nil, 0, nil, true} }}, // written, expired: counted until reaped
		{"delete", func(s *Session, key []byte, _ int64) (Status, error) { return s.Delete(key) },
			func(k keyState) outcome { return outcome{existed(k), nil, 0, nil, false} }},
	}
	states := []keyState{{"persistent", 0, false}, {"expiring", clockT + 1000, false}, {"expired", clockT + 1000, true}}
	for _, c := range cases {
		for _, k0 := range states {
			for _, r := range []region{inMutable, inReadOnly, onDevice} {
				t.Run(fmt.Sprintf("%s/%s/%v", c.name, k0.name, r), func(t *testing.T) {
					st, s, clock := expiryStore(t)
					key := []byte("the-key")
					before := placeState(t, st, s, clock, key, "old", k0, r)
					stt, err := c.run(s, key, clock.Now())
					if stt == Pending {
						_, stt = awaitLast(t, s, c.name)
					}
					want := c.want(k0)
					if want.at == -1 {
						want.at = clock.Now() + 7000
					}
					// A blind delete of a key on the device cannot know.
					if err != nil || (stt != want.status && !(c.name == "delete" && r == onDevice)) {
						t.Errorf("%v %v, want %v", stt, err, want.status)
					}
					checkKey(t, st, s, key, want, before)
				})
			}
		}
	}
}

// TestExpiredRecordsLeaveWithCompaction: compaction copies a live value
// with its expiry and replaces an expired newest record by a tombstone,
// which uncounts its key; both survive recovery as they were.
func TestExpiredRecordsLeaveWithCompaction(t *testing.T) {
	dev := openDevice(t, "mem")
	clock := newTestClock()
	cfg := compactConfig(dev)
	cfg.Now = clock.Now
	st := openTest(t, cfg)
	s := newSession(t, st)
	const n = 200
	for i := range n {
		k := fmt.Appendf(nil, "k%03d", i)
		at := int64(0)
		switch i % 3 {
		case 1:
			at = clockT + 1000 // expires
		case 2:
			at = clockT + 1_000_000 // stays
		}
		mustStatus(t, OK)(s.UpsertExpiring(k, keyhash.Hash(k), fmt.Appendf(nil, "v%d", i), at))
	}
	addr := st.Log().Tail()
	push(t, st, s, addr-1, onDevice)
	s.CompletePending(true)
	s.Suspend()
	clock.ms.Store(clockT + 2000)
	before, err := st.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := st.Compact(context.Background(), st.Log().Head())
	if err != nil {
		t.Fatal(err)
	}
	if cs.Until < addr || cs.Expired != (n+1)/3 {
		t.Fatalf("compaction: %+v, want [.., %d) and %d expired", cs, addr, (n+1)/3)
	}
	if after, err := st.Keys(context.Background()); err != nil || after != before-int64(cs.Expired) {
		t.Fatalf("%d keys after compaction (%v), want %d", after, err, before-int64(cs.Expired))
	}
	check := func(s *Session, when string) {
		for i := range n {
			k := fmt.Appendf(nil, "k%03d", i)
			at, v, stt := readExpiring(t, s, k)
			want := fmt.Sprintf("v%d", i)
			switch i % 3 {
			case 0:
				if stt != OK || at != 0 || string(v) != want {
					t.Fatalf("%s: %s = %v %d %q", when, k, stt, at, v)
				}
			case 1:
				if stt != NotFound {
					t.Fatalf("%s: expired %s = %v %d %q", when, k, stt, at, v)
				}
			case 2:
				if stt != OK || at != clockT+1_000_000 || string(v) != want {
					t.Fatalf("%s: %s = %v %d %q", when, k, stt, at, v)
				}
			}
		}
	}
	check(s, "after compaction")
	s.CompletePending(true)
	s.Close()
	st2 := checkpointAndRecover(t, st, cfg)
	s2 := newSession(t, st2)
	check(s2, "after recovery")
	s2.Suspend()
	if k, err := st2.Keys(context.Background()); err != nil || k != before-int64(cs.Expired) {
		t.Fatalf("%d keys after recovery (%v)", k, err)
	}
}

// TestReapExpiredDeletesExpiredKeysInMemory: a pass of ReapExpired from
// position 0 until Next comes back to 0 deletes every expired key whose
// newest record is in memory, uncounting it, and leaves the others.
func TestReapExpiredDeletesExpiredKeysInMemory(t *testing.T) {
	clock := newTestClock()
	st := openTest(t, Config{IndexBits: 4, Now: clock.Now, Log: hlog.Config{PageBits: 16, MemoryBytes: 64 << 16}})
	s := newSession(t, st)
	const n = 3000
	for i := range n {
		k := fmt.Appendf(nil, "k%04d", i)
		at := int64(0)
		if i%3 != 0 {
			at = clockT + 1000*int64(i%3) // i%3 == 1 expires, 2 stays
		}
		mustStatus(t, OK)(s.UpsertExpiring(k, keyhash.Hash(k), []byte("v"), at))
	}
	s.Suspend()
	clock.ms.Store(clockT + 1500)
	// Expired keys count until they are reaped, by a recount too.
	if c, err := st.CountKeys(context.Background(), 0, ^uint64(0)); err != nil || c != n {
		t.Fatalf("CountKeys = %d (%v) before the pass, want %d", c, err, n)
	}
	var total ReapStats
	steps := 0
	for from := uint64(0); ; steps++ {
		rs, err := st.ReapExpired(context.Background(), from, 256)
		if err != nil {
			t.Fatal(err)
		}
		total.Keys, total.Expiring, total.Expired = total.Keys+rs.Keys, total.Expiring+rs.Expiring, total.Expired+rs.Expired
		total.TTLMillis += rs.TTLMillis
		if from = rs.Next; from == 0 {
			break
		}
	}
	if steps < 5 || total.Keys != n || total.Expiring != 2*n/3 || total.Expired != n/3 || total.TTLMillis != 500*n/3 {
		t.Fatalf("%d steps met %+v, want %d keys, %d expiring, %d expired", steps, total, n, 2*n/3, n/3)
	}
	if k, err := st.Keys(context.Background()); err != nil || k != n-n/3 {
		t.Fatalf("%d keys (%v), want %d", k, err, n-n/3)
	}
	for i := range n {
		k := fmt.Appendf(nil, "k%04d", i)
		if _, stt := syncRead(t, s, k); (stt == OK) != (i%3 != 1) {
			t.Fatalf("%s: %v after the pass", k, stt)
		}
	}
	s.Suspend()
	// A step of an empty index covers at most maxReapBuckets buckets.
	empty := openTest(t, Config{IndexBits: 16})
	if rs, err := empty.ReapExpired(context.Background(), 0, 20000); err != nil || rs.Next != maxReapBuckets<<(64-16) {
		t.Fatalf("a step over an empty index: %+v %v", rs, err)
	}
	// A second pass meets the deleted keys' tombstones only.
	rs, err := st.ReapExpired(context.Background(), 0, 1<<20)
	if err != nil || rs.Next != 0 || rs.Keys != n-n/3 || rs.Expired != 0 {
		t.Fatalf("second pass: %+v %v", rs, err)
	}
}

// expiryWriter writes its own keys with every kind of expiry and keeps
// which of them are live (written, not deleted nor expired).
type expiryWriter struct {
	id   int
	live map[string]bool
}

func (w *expiryWriter) run(s *Session, rng *rand.Rand, n int) error {
	far, past := int64(clockT+1_000_000), int64(clockT-1)
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("x%d-%d", w.id, rng.IntN(200))
		key := []byte(k)
		h := keyhash.Hash(key)
		v := make([]byte, 1+rng.IntN(100))
		var err error
		switch rng.IntN(9) {
		case 0:
			_, err = s.Upsert(key, v)
			w.live[k] = true
		case 1:
			_, err = s.UpsertExpiring(key, h, v, far)
			w.live[k] = true
		case 2:
			_, err = s.UpsertExpiring(key, h, v, past) // written, expired: counted until reaped
			w.live[k] = false
		case 3:
			_, err = s.Delete(key)
			w.live[k] = false
		case 4:
			_, err = s.RMW(key, []byte("+"), Append{}) // keeps an expiry; an expired value starts anew
			w.live[k] = true
		case 5:
			_, _, err = s.Update(key, Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: past}}, nil)
			w.live[k] = false
		case 6:
			_, _, err = s.Update(key, Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: far}}, nil)
		case 7:
			_, _, err = s.Update(key, Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: ClearExpiry}}, nil)
		default:
			_, _, err = s.Update(key, Update{If: ReapExpired}, nil)
		}
		if err != nil {
			return err
		}
		s.CompletePending(true)
	}
	return nil
}

// TestKeysAreExactWithExpiry: four sessions write their own keys with and
// without expiries (some already past), delete them by EXPIRE, persist
// and reap them, while compactions and active expiry passes run beside
// them, most records on the device. Then the live keys a scan finds are
// the models' live keys, and Keys counts them plus the expired keys not
// reaped yet (as Redis's DBSIZE does); the same after a checkpoint and a
// recovery, and after a full reaping pass.
func TestKeysAreExactWithExpiry(t *testing.T) {
	dev := openDevice(t, "mem")
	clock := newTestClock()
	cfg := compactConfig(dev)
	cfg.Now = clock.Now
	st := openTest(t, cfg)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	var stop atomic.Bool
	var bg sync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		for !stop.Load() {
			if _, err := st.Compact(context.Background(), st.Log().Head()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer bg.Done()
		for from := uint64(0); !stop.Load(); {
			rs, err := st.ReapExpired(context.Background(), from, 64)
			if err != nil {
				t.Error(err)
				return
			}
			from = rs.Next
		}
	}()
	ws := make([]*expiryWriter, 4)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = &expiryWriter{id: i, live: map[string]bool{}}
		s := newSession(t, st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Suspend()
			if err := ws[i].run(s, rand.New(rand.NewPCG(seed, uint64(i))), 3000); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	bg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var want int64
	for _, w := range ws {
		for _, l := range w.live {
			if l {
				want++
			}
		}
	}
	check := func(st *Store, what string, final bool) {
		t.Helper()
		var live, expired int64
		if err := st.Scan(context.Background(), 0, ^uint64(0), func(_, _ []byte, at int64, l bool, _ uint64) error {
			switch {
			case l:
				live++
			case at != 0:
				expired++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		n, err := st.Keys(context.Background())
		if err != nil || live != want || n != live+expired || (final && expired != 0) {
			t.Fatalf("%s: %d live keys, %d expired and not reaped, Keys = %d (%v); the models hold %d live", what, live, expired, n, err, want)
		}
		t.Logf("%s: %d live, %d expired and not reaped", what, live, expired)
	}
	check(st, "after the writes", false)
	st2 := checkpointAndRecover(t, st, cfg)
	check(st2, "recovered", false)
	if _, err := st2.Compact(context.Background(), st2.Log().Head()); err != nil {
		t.Fatal(err)
	}
	for from := uint64(0); ; {
		rs, err := st2.ReapExpired(context.Background(), from, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if from = rs.Next; from == 0 {
			break
		}
	}
	check(st2, "compacted and reaped", true)
}

// TestMayExpire: a store notes writes of values with an expiry (new
// records, in place, merges keeping one) and nothing else; a recovered
// store may hold some.
func TestMayExpire(t *testing.T) {
	cfg := compactConfig(openDevice(t, "mem"))
	st := openTest(t, cfg)
	s := newSession(t, st)
	key := []byte("k")
	mustStatus(t, OK)(s.Upsert(key, []byte("v")))
	mustStatus(t, OK)(s.RMW(key, []byte("+"), Append{}))
	if st.MayExpire() {
		t.Fatal("MayExpire after writes without expiries")
	}
	for i, w := range []func(){
		func() { mustStatus(t, OK)(s.UpsertExpiring(key, keyhash.Hash(key), []byte("longer value"), 1<<50)) }, // appended
		func() { mustStatus(t, OK)(s.UpsertExpiring(key, keyhash.Hash(key), []byte("v"), 1<<50)) },            // in place
		func() {
			syncUpdate(t, s, key, Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: 1 << 51}})
		},
		func() { mustStatus(t, OK)(s.RMW(key, []byte("+"), Append{})) }, // keeps the expiry
	} {
		st.ClearMayExpire()
		w()
		if !st.MayExpire() {
			t.Fatalf("write %d of a value with an expiry went unnoted", i)
		}
	}
	s.Close()
	st.ClearMayExpire()
	if st2 := checkpointAndRecover(t, st, cfg); !st2.MayExpire() {
		t.Fatal("a recovered store says no value may expire")
	}
}
