package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/keyhash"
)

// syncUpdate runs u on key, completing it when it goes pending, and returns
// its status and value.
func syncUpdate(t testing.TB, s *Session, key []byte, u Update) ([]byte, Status) {
	t.Helper()
	v, st, err := s.Update(key, u, nil)
	if err != nil {
		t.Fatalf("Update(%q, %+v): %v", key, u, err)
	}
	if st != Pending {
		return append([]byte(nil), v...), st
	}
	return awaitLast(t, s, fmt.Sprintf("Update(%q)", key))
}

// region places a key's newest record: where an Update finds it decides
// which path runs (in place, copy of a read-only record, device read).
type region int

const (
	inMutable region = iota
	inReadOnly
	onDevice
)

func (r region) String() string { return [...]string{"mutable", "read-only", "device"}[r] }

// updateStore is a small store whose log evicts quickly.
func updateStore(t *testing.T) (*Store, *Session) {
	st := openTest(t, Config{IndexBits: 6, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, MutableFraction: 0.5}})
	return st, newSession(t, st)
}

// push writes filler records until the record at addr is in region r.
func push(t *testing.T, st *Store, s *Session, addr uint64, r region) {
	t.Helper()
	for i := 0; ; i++ {
		l := st.Log()
		switch {
		case r == inMutable && addr >= l.MutableFrom(),
			r == inReadOnly && addr < l.SafeReadOnly() && addr >= l.Head(),
			r == onDevice && addr < l.Head():
			return
		case r == inReadOnly && addr < l.Head():
			t.Fatalf("record at %d left memory before it was read-only", addr)
		case i > 100000:
			t.Fatalf("record at %d never reached %v", addr, r)
		}
		mustStatus(t, OK)(s.Upsert(fmt.Appendf(nil, "filler%d", i), make([]byte, 64)))
		s.CompletePending(true)
	}
}

// place sets key to value (nil: deleted, as a tombstone) and moves its record
// to region r.
func place(t *testing.T, st *Store, s *Session, key, value []byte, r region) {
	t.Helper()
	addr := st.Log().Tail()
	if value == nil {
		mustStatus(t, OK)(s.Upsert(key, []byte("doomed")))
		addr = st.Log().Tail()
		if _, err := s.Delete(key); err != nil {
			t.Fatal(err)
		}
		if st.Log().Tail() == addr { // deleted in place: make a tombstone record
			addr = st.Log().Tail()
			mustStatus(t, OK)(s.Upsert(key, []byte("x")))
			push(t, st, s, addr, inReadOnly)
			addr = st.Log().Tail()
			mustStatus(t, OK)(s.Delete(key))
		}
	} else {
		mustStatus(t, OK)(s.Upsert(key, value))
	}
	push(t, st, s, addr, r)
}

// TestUpdate runs every condition on a key that is live, deleted and never
// written, with its newest record in each region, and checks the status, the
// returned value and the key's value afterwards.
func TestUpdate(t *testing.T) {
	type state struct {
		name  string
		value []byte // nil: absent
		tomb  bool   // absent through a tombstone rather than never written
	}
	states := []state{{"live", []byte("old-value"), false}, {"deleted", nil, true}, {"absent", nil, false}}
	type tc struct {
		name   string
		u      Update
		status func(live bool) Status
		ret    func(old []byte) []byte                // the value returned, from the old value (nil: absent)
		after  func(old []byte) (v []byte, live bool) // the key's value afterwards
	}
	existed := func(live bool) Status {
		if live {
			return OK
		}
		return NotFound
	}
	set := []byte("new")
	none := func([]byte) []byte { return nil }
	cases := []tc{
		{"remove", Update{If: Remove}, existed, none,
			func([]byte) ([]byte, bool) { return nil, false }},
		{"remove-get", Update{If: Remove, Want: WantOld}, existed, func(o []byte) []byte { return o },
			func([]byte) ([]byte, bool) { return nil, false }},
		{"set-nx", Update{If: IfAbsent, Merge: Replace{}, Input: set}, existed, none,
			func(o []byte) ([]byte, bool) {
				if o != nil {
					return o, true
				}
				return set, true
			}},
		{"set-xx-get", Update{If: IfPresent, Want: WantOld, Merge: Replace{}, Input: set}, existed, func(o []byte) []byte { return o },
			func(o []byte) ([]byte, bool) {
				if o == nil {
					return nil, false
				}
				return set, true
			}},
		{"set-get-new", Update{If: Always, Want: WantNew, Merge: Replace{}, Input: set}, existed, func([]byte) []byte { return set },
			func([]byte) ([]byte, bool) { return set, true }},
		{"append-new", Update{Want: WantNew, Merge: Append{}, Input: []byte("+")}, existed,
			func(o []byte) []byte { return append(append([]byte(nil), o...), '+') },
			func(o []byte) ([]byte, bool) { return append(append([]byte(nil), o...), '+'), true }},
	}
	for _, c := range cases {
		for _, s0 := range states {
			for _, r := range []region{inMutable, inReadOnly, onDevice} {
				if s0.value == nil && !s0.tomb && r != inMutable {
					continue // a never-written key has no record to place
				}
				t.Run(fmt.Sprintf("%s/%s/%v", c.name, s0.name, r), func(t *testing.T) {
					st, s := updateStore(t)
					k := []byte("the-key")
					if s0.value != nil || s0.tomb {
						place(t, st, s, k, s0.value, r)
					}
					v, stt := syncUpdate(t, s, k, c.u)
					live := s0.value != nil
					if want := c.status(live); stt != want {
						t.Errorf("status %v, want %v", stt, want)
					}
					if want := c.ret(s0.value); !bytes.Equal(v, want) {
						t.Errorf("returned %q, want %q", v, want)
					}
					wantV, wantLive := c.after(s0.value)
					got, gst := syncRead(t, s, k)
					if (gst == OK) != wantLive || !bytes.Equal(got, wantV) {
						t.Errorf("afterwards %v %q, want live=%v %q", gst, got, wantLive, wantV)
					}
				})
			}
		}
	}
}

// TestUpdateReturnsItsOwnIncrement: the value an Always/WantNew add returns
// is the one it produced, in place, copied and after a device read.
func TestUpdateReturnsItsOwnIncrement(t *testing.T) {
	for _, r := range []region{inMutable, inReadOnly, onDevice} {
		t.Run(r.String(), func(t *testing.T) {
			st, s := updateStore(t)
			k := []byte("counter")
			place(t, st, s, k, i64(41), r)
			v, stt := syncUpdate(t, s, k, Update{Want: WantNew, Merge: Int64Add{}, Input: i64(1)})
			if stt != OK || !bytes.Equal(v, i64(42)) {
				t.Fatalf("got %v %v, want OK 42", stt, v)
			}
		})
	}
}

// TestUpdateWithoutMerger is refused, except for Remove.
func TestUpdateWithoutMerger(t *testing.T) {
	_, s := updateStore(t)
	if _, _, err := s.Update([]byte("k"), Update{If: IfAbsent}, nil); err == nil {
		t.Fatal("an IfAbsent Update without a merger was accepted")
	}
	if _, st, err := s.Update([]byte("k"), Update{If: Remove}, nil); err != nil || st != NotFound {
		t.Fatalf("Remove of an absent key: %v %v", st, err)
	}
}

// TestUpdateOrderedBehindPendingUpdate: a session's Update on a key whose
// earlier Update waits for the device takes effect after it.
func TestUpdateOrderedBehindPendingUpdate(t *testing.T) {
	st, s := updateStore(t)
	k := []byte("k")
	place(t, st, s, k, []byte("v0"), onDevice)
	var got []Completion
	s.SetCompletion(func(c Completion) {
		c.Value = append([]byte(nil), c.Value...)
		got = append(got, c)
	})
	_, st1, err := s.Update(k, Update{If: Remove, Want: WantOld}, nil)
	if err != nil || st1 != Pending {
		t.Fatalf("first Update: %v %v, want Pending", st1, err)
	}
	_, st2, err := s.Update(k, Update{If: IfAbsent, Merge: Replace{}, Input: []byte("v1")}, nil)
	if err != nil || st2 != NotFound {
		t.Fatalf("second Update: %v %v; want NotFound (the key was removed first)", st2, err)
	}
	if len(got) != 1 || got[0].Status != OK || string(got[0].Value) != "v0" {
		t.Fatalf("completions %+v", got)
	}
	if v, _ := syncRead(t, s, k); string(v) != "v1" {
		t.Fatalf("value %q, want v1", v)
	}
}

// TestRemoveOnceUnderConcurrency: sessions racing to remove the same keys,
// in memory and on the device, report each key removed exactly once; racing
// to create them again, exactly one creation of each wins and its value is
// the key's.
func TestRemoveOnceUnderConcurrency(t *testing.T) {
	st := openTest(t, Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12}})
	const keys, workers = 1000, 4
	s0 := newSession(t, st)
	for i := range keys {
		mustStatus(t, OK)(s0.Upsert(fmt.Appendf(nil, "key%d", i), make([]byte, 40)))
	}
	s0.CompletePending(true)
	s0.Suspend()
	if st.Log().Head() == hlog.FirstAddress {
		t.Fatal("no record left memory")
	}
	removed := make([][keys]int, workers)
	created := make([][keys]bool, workers)
	var wg, removing sync.WaitGroup
	removing.Add(workers)
	for w := range workers {
		s := newSession(t, st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Suspend()
			race(s, uint64(w), keys, Update{If: Remove}, func(i int, c Completion) {
				if c.Err == nil && c.Status == OK {
					removed[w][i]++
				}
			})
			s.Suspend() // the others may need this session's epoch to move on
			removing.Done()
			removing.Wait()
			race(s, uint64(w), keys, Update{If: IfAbsent, Merge: Replace{}, Input: fmt.Appendf(nil, "w%d", w)}, func(i int, c Completion) {
				created[w][i] = c.Err == nil && c.Status == NotFound
			})
		}()
	}
	wg.Wait()
	for i := range keys {
		n, winner := 0, -1
		for w := range workers {
			n += removed[w][i]
			if created[w][i] {
				if winner >= 0 {
					t.Fatalf("key%d created by workers %d and %d", i, winner, w)
				}
				winner = w
			}
		}
		if n != 1 {
			t.Fatalf("key%d reported removed %d times", i, n)
		}
		if winner < 0 {
			t.Fatalf("key%d: no creation won", i)
		}
		if v, _ := syncRead(t, s0, fmt.Appendf(nil, "key%d", i)); string(v) != fmt.Sprint("w", winner) {
			t.Fatalf("key%d = %q, winner w%d", i, v, winner)
		}
	}
}

// race runs u on every key in a seeded order, handing each outcome to done.
func race(s *Session, seed uint64, keys int, u Update, done func(int, Completion)) {
	order := rand.New(rand.NewPCG(seed, 7)).Perm(keys)
	serials := map[uint64]int{}
	s.SetCompletion(func(c Completion) { done(serials[c.Serial], c) })
	for _, i := range order {
		_, st, err := s.Update(fmt.Appendf(nil, "key%d", i), u, nil)
		if st == Pending && err == nil {
			serials[s.Serial()] = i
			continue
		}
		done(i, Completion{Status: st, Err: err})
	}
	s.CompletePending(true)
}

// TestUpdateOfAbsentKeyCreatesNoEntry: an Update that cannot create the key
// (Remove, IfPresent) of a key the index has no entry for leaves the index
// as it was; DEL or SET XX of absent keys must not grow it (DBSIZE counts
// its entries).
func TestUpdateOfAbsentKeyCreatesNoEntry(t *testing.T) {
	st, s := updateStore(t)
	for _, u := range []Update{{If: Remove}, {If: Remove, Want: WantOld}, {If: IfPresent, Merge: Replace{}, Input: []byte("v")}} {
		for i := range 100 {
			if _, stt := syncUpdate(t, s, fmt.Appendf(nil, "absent-%d", i), u); stt != NotFound {
				t.Fatalf("%+v of an absent key: %v", u, stt)
			}
		}
	}
	s.Suspend()
	s.st.index.CountEntries(s.newEntries, s.entriesGen)
	s.newEntries = 0
	if n := st.Stats().Index.Entries; n != 0 {
		t.Fatalf("%d index entries after Updates of absent keys, want 0", n)
	}
	if _, stt := syncUpdate(t, s, []byte("absent-0"), Update{If: IfAbsent, Merge: Replace{}, Input: []byte("v")}); stt != NotFound {
		t.Fatalf("IfAbsent of an absent key: %v", stt)
	}
	if v, _ := syncRead(t, s, []byte("absent-0")); string(v) != "v" {
		t.Fatalf("IfAbsent wrote %q", v)
	}
}

// TestUpdateIfNoneSince: a record sent to a migration's target is inserted
// (IfNoneSince), or the key is deleted (DeleteIfNoneSince: the source has
// no record of it), unless the key has a record, live or deleted, at or
// above Since. Since is put at the key's record (it wins), just after it
// (the sent record or the deletion wins, also when the key's record must be
// read from the device to learn where it is) and at the tail.
func TestUpdateIfNoneSince(t *testing.T) {
	for _, c := range []Cond{IfNoneSince, DeleteIfNoneSince} {
		t.Run(map[Cond]string{IfNoneSince: "insert", DeleteIfNoneSince: "delete"}[c], func(t *testing.T) {
			testUpdateSince(t, c)
		})
	}
}

// testUpdateSince is TestUpdateIfNoneSince for Updates under c.
func testUpdateSince(t *testing.T, c Cond) {
	sent := []byte("sent-value")
	u := func(since uint64) Update {
		if c == DeleteIfNoneSince {
			return Update{If: c, Since: since}
		}
		return Update{If: c, Since: since, Merge: Replace{}, Input: sent}
	}
	wins := sent // what the key holds when the Update writes (nil: deleted)
	if c == DeleteIfNoneSince {
		wins = nil
	}
	type at int
	const (
		sinceAt    at = iota // Since at the record's address
		sinceAfter           // Since one past it
		sinceTail            // Since at the tail
	)
	for _, value := range [][]byte{[]byte("old-value"), nil} {
		for _, r := range []region{inMutable, inReadOnly, onDevice} {
			for _, where := range []at{sinceAt, sinceAfter, sinceTail} {
				name := fmt.Sprintf("%s/%v/%d", map[bool]string{true: "live", false: "deleted"}[value != nil], r, where)
				t.Run(name, func(t *testing.T) {
					st, s := updateStore(t)
					k := []byte("the-key")
					mustStatus(t, OK)(s.Upsert(k, []byte("old-value")))
					addr, ok := st.index.Peek(keyhash.Hash(k))
					if !ok || !bytes.Equal(st.Log().Record(addr).Key(), k) {
						t.Fatal("the key's record is not its chain's head")
					}
					if value == nil {
						mustStatus(t, OK)(s.Delete(k)) // in place: the record becomes a tombstone
					}
					push(t, st, s, addr, r)
					since := map[at]uint64{sinceAt: addr, sinceAfter: addr + 1, sinceTail: st.Log().Tail()}[where]
					syncUpdate(t, s, k, u(since))
					got, gst := syncRead(t, s, k)
					want := value
					if where != sinceAt {
						want = wins
					}
					if (gst == OK) != (want != nil) || !bytes.Equal(got, want) {
						t.Errorf("afterwards %v %q, want live=%v %q", gst, got, want != nil, want)
					}
					if held, err := s.MayHoldSince(k, keyhash.Hash(k), since); err != nil || !held {
						t.Errorf("MayHoldSince: %v %v, want a record at or above Since", held, err)
					}
				})
			}
		}
	}
	t.Run("device/below-a-newer-record-of-another-key", func(t *testing.T) {
		// The chain's head is another key's record above Since: the key's
		// own record is read from the device and found below Since.
		st := openTest(t, Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, MutableFraction: 0.5}})
		s := newSession(t, st)
		k := []byte("the-key")
		bits := st.index.Bits()
		other := collider(t, k, bits)
		mustStatus(t, OK)(s.Upsert(k, []byte("old-value")))
		since := st.Log().Tail()
		mustStatus(t, OK)(s.Upsert(other, []byte("other")))
		push(t, st, s, since, onDevice)
		if st.index.Bits() != bits {
			t.Fatalf("the index grew to %d bits: the keys no longer share a chain", st.index.Bits())
		}
		syncUpdate(t, s, k, u(since))
		if got, gst := syncRead(t, s, k); (gst == OK) != (wins != nil) || !bytes.Equal(got, wins) {
			t.Errorf("afterwards %v %q, want %q", gst, got, wins)
		}
		if got, gst := syncRead(t, s, other); gst != OK || string(got) != "other" {
			t.Errorf("the other key: %v %q", gst, got)
		}
	})
	t.Run("never-written", func(t *testing.T) {
		st, s := updateStore(t)
		since := st.Log().Tail()
		syncUpdate(t, s, []byte("k"), u(since))
		if got, gst := syncRead(t, s, []byte("k")); (gst == OK) != (wins != nil) || !bytes.Equal(got, wins) {
			t.Errorf("afterwards %v %q, want %q", gst, got, wins)
		}
		if held, err := s.MayHoldSince([]byte("k"), keyhash.Hash([]byte("k")), since); err != nil || !held {
			t.Errorf("MayHoldSince: %v %v, want the Update's record", held, err)
		}
	})
}

// TestHeld: an RMW or Update that must find a record of its key at or
// above an address (Update.Held, RMWHeld) runs where the key's newest
// record is there, in memory or on the device, and otherwise writes
// nothing and fails with ErrNotHeld: a newest record below it, in every
// region, or none (without leaving an index entry behind). MayHoldSince
// agrees where memory decides.
func TestHeld(t *testing.T) {
	ops := map[string]struct {
		run  func(s *Session, k []byte, held uint64) (Status, error)
		want string // the value after it ran on "new"
	}{
		"rmw": {func(s *Session, k []byte, held uint64) (Status, error) {
			return s.RMWHeld(k, keyhash.Hash(k), []byte("+"), Append{}, held)
		}, "new+"},
		"update": {func(s *Session, k []byte, held uint64) (Status, error) {
			_, st, err := s.Update(k, Update{If: IfPresent, Merge: Replace{}, Input: []byte("sent"), Held: held}, nil)
			return st, err
		}, "sent"},
	}
	for name, op := range ops {
		for _, r := range []region{inMutable, inReadOnly, onDevice} {
			for _, above := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/above=%v", name, r, above), func(t *testing.T) {
					st, s := updateStore(t)
					k := []byte("the-key")
					before := st.Log().Tail()
					v := "old"
					if above {
						v = "new"
					}
					mustStatus(t, OK)(s.Upsert(k, []byte(v)))
					since := st.Log().Tail()
					if above {
						since = before
					}
					push(t, st, s, before, r)
					if held, err := s.MayHoldSince(k, keyhash.Hash(k), since); err != nil || held != above && r != onDevice {
						t.Errorf("MayHoldSince: %v, %v", held, err)
					}
					stt, err := op.run(s, k, since)
					if err == nil && stt == Pending {
						_, _, err = awaitOutcome(t, s, name)
					}
					want := v
					switch {
					case above && err != nil:
						t.Fatalf("on a record at or above Held: %v", err)
					case above:
						want = op.want
					case !errors.Is(err, ErrNotHeld):
						t.Fatalf("on a record below Held: %v, want ErrNotHeld", err)
					}
					if got, gst := syncRead(t, s, k); gst != OK || string(got) != want {
						t.Errorf("afterwards %v %q, want %q", gst, got, want)
					}
				})
			}
		}
		t.Run(name+"/device/below-a-newer-record-of-another-key", func(t *testing.T) {
			// The chain leaves memory at another key's record above Held:
			// the key's own, below it, is read from the device first.
			st := openTest(t, Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, MutableFraction: 0.5}})
			s := newSession(t, st)
			k := []byte("the-key")
			other := collider(t, k, st.index.Bits())
			mustStatus(t, OK)(s.Upsert(k, []byte("old")))
			since := st.Log().Tail()
			mustStatus(t, OK)(s.Upsert(other, []byte("other")))
			push(t, st, s, since, onDevice)
			stt, err := op.run(s, k, since)
			if err != nil || stt != Pending {
				t.Fatalf("decided without reading the device: %v, %v", stt, err)
			}
			if _, _, err := awaitOutcome(t, s, name); !errors.Is(err, ErrNotHeld) {
				t.Fatalf("on a record below Held on the device: %v, want ErrNotHeld", err)
			}
			if got, gst := syncRead(t, s, k); gst != OK || string(got) != "old" {
				t.Errorf("afterwards %v %q", gst, got)
			}
		})
		t.Run(name+"/absent", func(t *testing.T) {
			st, s := updateStore(t)
			k := []byte("absent")
			if _, err := op.run(s, k, st.Log().Tail()); !errors.Is(err, ErrNotHeld) {
				t.Fatalf("on an absent key: %v, want ErrNotHeld", err)
			}
			if _, ok := st.index.Peek(keyhash.Hash(k)); ok {
				t.Error("a refused operation left an index entry")
			}
			if held, err := s.MayHoldSince(k, keyhash.Hash(k), st.Log().Tail()); err != nil || held {
				t.Errorf("MayHoldSince of an absent key: %v, %v", held, err)
			}
		})
	}
}

// collider returns a key whose hash has k's bucket (at bits) and tag: its
// records share k's chain.
func collider(t *testing.T, k []byte, bits uint) []byte {
	t.Helper()
	h := keyhash.Hash(k)
	for i := range 1 << 26 {
		c := fmt.Appendf(nil, "collider-%d", i)
		if hc := keyhash.Hash(c); index.BucketOf(hc, bits) == index.BucketOf(h, bits) && hc&(1<<14-1) == h&(1<<14-1) {
			return c
		}
	}
	t.Fatal("no key shares the chain")
	return nil
}

// TestIfNoneSinceNeverWritesBelowSince: an insert that wins over a record
// below since appends at the tail; a client write after it updates that
// copy in place, and a repeated insert (a message sent twice) keeps the
// client's value.
func TestIfNoneSinceNeverWritesBelowSince(t *testing.T) {
	st, s := updateStore(t)
	k := []byte("moved")
	if _, err := s.Upsert(k, []byte("old")); err != nil {
		t.Fatal(err)
	}
	u := Update{If: IfNoneSince, Since: st.Log().Tail(), Merge: Replace{}, Input: []byte("migrated")}
	syncUpdate(t, s, k, u)
	if _, err := s.Upsert(k, []byte("client")); err != nil {
		t.Fatal(err)
	}
	syncUpdate(t, s, k, u)
	if v, status := syncRead(t, s, k); status != OK || string(v) != "client" {
		t.Fatalf("after a repeated insert: %q %v, want the client's write", v, status)
	}
}

// TestRMWInPlaceCases: an add, as a plain RMW and as an Update, on the
// records where rmwNewest must leave the decision to the general path (the
// key's record behind another key's in the chain, a tombstone, an expiring
// value) and where it merges itself (a live value, a value that is not an
// int64), all in the mutable region. Each case checks the answer, the
// key's value and expiry afterwards, and that the other key in its chain
// kept its value.
func TestRMWInPlaceCases(t *testing.T) {
	const soon = 5000 // ms ahead of the clock
	cases := []struct {
		name  string
		place func(t *testing.T, st *Store, s *Session, k []byte, now int64) (other []byte) // other holds 7
		err   error
		value []byte // the key's value afterwards (nil: none)
		ahead int64  // and its expiry, ahead of the clock (0: none)
	}{
		{"live", func(t *testing.T, _ *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, i64(41)))
			return nil
		}, nil, i64(42), 0},
		{"not-int64", func(t *testing.T, _ *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, []byte("abc")))
			return nil
		}, ErrNotInt64, []byte("abc"), 0},
		{"behind-collider", func(t *testing.T, st *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, i64(41)))
			c := collider(t, k, st.index.Bits())
			mustStatus(t, OK)(s.Upsert(c, i64(7)))
			return c
		}, nil, i64(42), 0},
		{"deleted", func(t *testing.T, _ *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, i64(41)))
			mustStatus(t, OK)(s.Delete(k))
			return nil
		}, nil, i64(1), 0},
		{"expiring", func(t *testing.T, _ *Store, s *Session, k []byte, now int64) []byte {
			mustStatus(t, OK)(s.UpsertExpiring(k, keyhash.Hash(k), i64(41), now+soon))
			return nil
		}, nil, i64(42), soon},
	}
	adds := []struct {
		name string
		run  func(s *Session, k []byte) ([]byte, Status, error)
		news bool // returns the new value, and the status of the old one
	}{
		{"rmw", func(s *Session, k []byte) ([]byte, Status, error) {
			st, err := s.RMW(k, i64(1), Int64Add{})
			return nil, st, err
		}, false},
		{"update", func(s *Session, k []byte) ([]byte, Status, error) {
			return s.Update(k, Update{Want: WantNew, Merge: Int64Add{}, Input: i64(1)}, nil)
		}, true},
		{"rmw-new", func(s *Session, k []byte) ([]byte, Status, error) {
			return s.RMWNewHashed(k, keyhash.Hash(k), i64(1), Int64Add{}, nil)
		}, true},
	}
	for _, c := range cases {
		for _, add := range adds {
			t.Run(c.name+"/"+add.name, func(t *testing.T) {
				st, s, clock := expiryStore(t)
				k := []byte("counter")
				other := c.place(t, st, s, k, clock.Now())
				got, stt, err := add.run(s, k)
				if !errors.Is(err, c.err) || stt == Pending {
					t.Fatalf("add: %v %v, want error %v", stt, err, c.err)
				}
				wantSt := OK
				if c.name == "deleted" {
					wantSt = NotFound // the key had no live value
				}
				if add.news && err == nil && (stt != wantSt || !bytes.Equal(got, c.value)) {
					t.Errorf("add returned %v %q, want %v %q", stt, got, wantSt, c.value)
				}
				at, v, gst := readExpiring(t, s, k)
				wantAt := int64(0)
				if c.ahead != 0 {
					wantAt = clock.Now() + c.ahead
				}
				if (gst == OK) != (c.value != nil) || !bytes.Equal(v, c.value) || at != wantAt {
					t.Errorf("afterwards %v %q expiring at %d, want %q at %d", gst, v, at, c.value, wantAt)
				}
				if other != nil {
					if v, gst := syncRead(t, s, other); gst != OK || !bytes.Equal(v, i64(7)) {
						t.Errorf("the other key of the chain holds %v %q, want 7", gst, v)
					}
				}
			})
		}
	}
}

// TestUpsertInPlaceCases: an upsert without an expiry on the records where
// upsertNewest must leave the decision to the general path (the key's
// record behind another key's in the chain, a value longer than the
// record's room, a record below the mutable region) and where it writes in
// place itself (a live value, a shorter one, a tombstone, an expiring
// value). Each case checks the value and expiry afterwards, whether the
// log grew (an append) or not (in place), the key count, and that the
// other key in its chain kept its value.
func TestUpsertInPlaceCases(t *testing.T) {
	const soon = 5000 // ms ahead of the clock
	long := bytes.Repeat([]byte("L"), 100)
	cases := []struct {
		name    string
		place   func(t *testing.T, st *Store, s *Session, k []byte, now int64) (other []byte) // other holds 7
		value   []byte                                                                        // the upsert's value
		appends bool                                                                          // the upsert must append
	}{
		{"live", func(t *testing.T, _ *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, i64(41)))
			return nil
		}, i64(42), false},
		{"shorter", func(t *testing.T, _ *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, []byte("abcdefgh")))
			return nil
		}, []byte("xy"), false},
		{"longer", func(t *testing.T, _ *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, []byte("ab")))
			return nil
		}, long, true},
		{"behind-collider", func(t *testing.T, st *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, i64(41)))
			c := collider(t, k, st.index.Bits())
			mustStatus(t, OK)(s.Upsert(c, i64(7)))
			return c
		}, i64(42), false},
		{"deleted", func(t *testing.T, _ *Store, s *Session, k []byte, _ int64) []byte {
			mustStatus(t, OK)(s.Upsert(k, i64(41)))
			mustStatus(t, OK)(s.Delete(k))
			return nil
		}, i64(42), false},
		{"expiring", func(t *testing.T, _ *Store, s *Session, k []byte, now int64) []byte {
			mustStatus(t, OK)(s.UpsertExpiring(k, keyhash.Hash(k), i64(41), now+soon))
			return nil
		}, i64(42), false},
		{"read-only", func(t *testing.T, st *Store, s *Session, k []byte, _ int64) []byte {
			at := st.Log().Tail() // where the key's record goes
			mustStatus(t, OK)(s.Upsert(k, i64(41)))
			for i := 0; st.Log().MutableFrom() <= at; i++ {
				mustStatus(t, OK)(s.Upsert(fmt.Appendf(nil, "push-%d", i), long))
			}
			return nil
		}, i64(42), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, s, clock := expiryStore(t)
			k := []byte("key")
			other := c.place(t, st, s, k, clock.Now())
			s.Suspend() // the key count waits for every session's epoch
			want, err := st.Keys(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, gst := syncRead(t, s, k); gst != OK {
				want++ // the upsert makes the key live
			}
			tail := st.Log().Tail()
			mustStatus(t, OK)(s.Upsert(k, c.value))
			if grew := st.Log().Tail() != tail; grew != c.appends {
				t.Errorf("the log grew: %v, want %v", grew, c.appends)
			}
			if at, v, gst := readExpiring(t, s, k); gst != OK || !bytes.Equal(v, c.value) || at != 0 {
				t.Errorf("afterwards %v %q expiring at %d, want %q without an expiry", gst, v, at, c.value)
			}
			s.Suspend()
			if n, err := st.Keys(context.Background()); err != nil || n != want {
				t.Errorf("key count %d (%v), want %d", n, err, want)
			}
			if other != nil {
				if v, gst := syncRead(t, s, other); gst != OK || !bytes.Equal(v, i64(7)) {
					t.Errorf("the other key of the chain holds %v %q, want 7", gst, v)
				}
			}
		})
	}
}
