package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/internal/uring"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/ssd"
)

func openTest(t testing.TB, cfg Config) *Store {
	t.Helper()
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newSession(t testing.TB, st *Store) *Session {
	t.Helper()
	s, err := st.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// syncRead reads key, completing a pending read before it returns.
func syncRead(t testing.TB, s *Session, key []byte) ([]byte, Status) {
	t.Helper()
	v, st, err := s.Read(key, nil)
	if err != nil {
		t.Fatalf("Read(%q): %v", key, err)
	}
	if st != Pending {
		return v, st
	}
	return awaitLast(t, s, fmt.Sprintf("Read(%q)", key))
}

// awaitLast completes the session's pending operations until the last one
// issued (what) has its outcome, and returns that outcome's value (copied)
// and status; other completions go to the session's callback.
func awaitLast(t testing.TB, s *Session, what string) ([]byte, Status) {
	t.Helper()
	v, st, err := awaitOutcome(t, s, what)
	if err != nil {
		t.Fatalf("%s completed with %v", what, err)
	}
	return v, st
}

// awaitOutcome is awaitLast that returns the operation's error too.
func awaitOutcome(t testing.TB, s *Session, what string) ([]byte, Status, error) {
	t.Helper()
	serial := s.Serial()
	var got *Completion
	prev := s.onComplete
	s.SetCompletion(func(c Completion) {
		if c.Serial == serial {
			cc := c
			cc.Value = append([]byte(nil), c.Value...)
			got = &cc
		} else if prev != nil {
			prev(c)
		}
	})
	defer s.SetCompletion(prev)
	for got == nil {
		if s.CompletePending(true) == 0 && got == nil {
			t.Fatalf("%s pending but never completed", what)
		}
	}
	return got.Value, got.Status, got.Err
}

func mustStatus(t testing.TB, want Status) func(Status, error) {
	return func(st Status, err error) {
		t.Helper()
		if err != nil || st != want {
			t.Fatalf("got %v, %v; want %v", st, err, want)
		}
	}
}

func i64(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }

func TestBasicOperations(t *testing.T) {
	st := openTest(t, Config{IndexBits: 4, Log: hlog.Config{PageBits: 16, MemoryBytes: 16 << 16}})
	s := newSession(t, st)
	k := []byte("key")
	if _, stt := syncRead(t, s, k); stt != NotFound {
		t.Fatal("empty store found a key")
	}
	mustStatus(t, NotFound)(s.Delete(k))
	mustStatus(t, OK)(s.Upsert(k, []byte("v1")))
	if v, stt := syncRead(t, s, k); stt != OK || string(v) != "v1" {
		t.Fatalf("read %q %v", v, stt)
	}
	mustStatus(t, OK)(s.Upsert(k, []byte("a longer value that cannot fit in place")))
	mustStatus(t, OK)(s.Upsert(k, []byte("short")))
	if v, _ := syncRead(t, s, k); string(v) != "short" {
		t.Fatalf("read %q", v)
	}
	mustStatus(t, OK)(s.Delete(k))
	if _, stt := syncRead(t, s, k); stt != NotFound {
		t.Fatal("deleted key found")
	}
	mustStatus(t, NotFound)(s.Delete(k))
	mustStatus(t, OK)(s.RMW(k, []byte("ab"), Append{}))
	mustStatus(t, OK)(s.RMW(k, []byte("cd"), Append{}))
	if v, _ := syncRead(t, s, k); string(v) != "abcd" {
		t.Fatalf("append gave %q", v)
	}
	if _, err := s.RMW(k, i64(1), Int64Add{}); !errors.Is(err, ErrNotInt64) {
		t.Fatalf("add to a 4-byte value: %v", err)
	}
	c := []byte("counter")
	for i := 0; i < 10; i++ {
		mustStatus(t, OK)(s.RMW(c, i64(5), Int64Add{}))
	}
	mustStatus(t, OK)(s.RMW(c, i64(-8), Int64Add{}))
	if v, _ := syncRead(t, s, c); !bytes.Equal(v, i64(42)) {
		t.Fatalf("counter = %v", v)
	}
}

func TestInvalidArguments(t *testing.T) {
	st := openTest(t, Config{IndexBits: 2, MaxKeyLen: 16, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12}})
	s := newSession(t, st)
	if _, err := s.Upsert(nil, []byte("x")); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("empty key: %v", err)
	}
	if _, _, err := s.Read(make([]byte, 17), nil); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("long key: %v", err)
	}
	if _, err := s.Upsert([]byte("k"), make([]byte, 1<<12)); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("record larger than a page: %v", err)
	}
	if _, err := s.RMW([]byte("k"), make([]byte, 1<<12), Append{}); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("RMW to a record larger than a page: %v", err)
	}
	if _, err := Open(Config{IndexBits: 50}); err == nil {
		t.Fatal("Open with 50 index bits succeeded")
	}
	s.Close()
	if _, err := s.Upsert([]byte("k"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed session: %v", err)
	}
	// begin tests only "protected": a closed session must never be
	// protected again, whatever is called on it.
	s.CompletePending(true)
	s.CompleteWrites()
	s.PrefetchRecord(keyhash.Hash([]byte("k")))
	if _, _, err := s.Read([]byte("k"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("read on a closed session: %v", err)
	}
	if _, err := s.RMW([]byte("k"), i64(1), Int64Add{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("RMW on a closed session: %v", err)
	}
	if _, err := s.Delete([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("delete on a closed session: %v", err)
	}
}

// TestRecordsOnTheDevice fills a tiny memory budget so that most records
// are evicted, then reads and updates them through the pending path.
func TestRecordsOnTheDevice(t *testing.T) {
	st := openTest(t, Config{IndexBits: 3, Log: hlog.Config{PageBits: 12, MemoryBytes: 4 << 12}})
	s := newSession(t, st)
	const n = 2000
	for i := 0; i < n; i++ {
		mustStatus(t, OK)(s.Upsert([]byte(fmt.Sprint("key", i)), i64(int64(i))))
	}
	if head := st.Log().Head(); head < 8<<12 {
		t.Fatalf("head %d: nothing was evicted", head)
	}
	pendingSeen := false
	for i := 0; i < n; i++ {
		k := []byte(fmt.Sprint("key", i))
		if _, stt, _ := s.Read(k, nil); stt == Pending {
			pendingSeen = true
		}
		s.CompletePending(true)
		if v, stt := syncRead(t, s, k); stt != OK || !bytes.Equal(v, i64(int64(i))) {
			t.Fatalf("key %d: %v %v", i, v, stt)
		}
	}
	if !pendingSeen {
		t.Fatal("no read went to the device")
	}
	var completions []Completion
	s.SetCompletion(func(c Completion) { completions = append(completions, c) })
	for i := 0; i < n; i += 7 {
		st, err := s.RMW([]byte(fmt.Sprint("key", i)), i64(1000), Int64Add{})
		if err != nil {
			t.Fatal(err)
		}
		_ = st
	}
	s.CompletePending(true)
	for _, c := range completions {
		if c.Err != nil || c.Status != OK || c.Kind != OpRMW {
			t.Fatalf("pending RMW completed with %+v", c)
		}
	}
	s.SetCompletion(nil)
	for i := 0; i < n; i++ {
		want := int64(i)
		if i%7 == 0 {
			want += 1000
		}
		if v, _ := syncRead(t, s, []byte(fmt.Sprint("key", i))); !bytes.Equal(v, i64(want)) {
			t.Fatalf("key %d = %v, want %d", i, v, want)
		}
	}
}

// TestRMWInFuzzyRegionGoesPending holds one session inside an old epoch so
// that safeReadOnly cannot follow readOnly, puts a counter in the gap, and
// checks that an RMW on it neither updates in place nor copies, but waits.
func TestRMWInFuzzyRegionGoesPending(t *testing.T) {
	st := openTest(t, Config{IndexBits: 4, Log: hlog.Config{PageBits: 12, MemoryBytes: 64 << 12, MutableFraction: 0.01}})
	a, b := newSession(t, st), newSession(t, st)
	k := []byte("counter")
	mustStatus(t, OK)(a.RMW(k, i64(1), Int64Add{}))
	a.Suspend()
	mustStatus(t, NotFound)(b.Delete([]byte("absent"))) // b is now protected and stays put
	kAddr := uint64(hlog.FirstAddress)                  // the counter is the first record
	for i := 0; st.Log().ReadOnly() <= kAddr+64; i++ {
		mustStatus(t, OK)(a.Upsert([]byte(fmt.Sprint("fill", i)), make([]byte, 200)))
	}
	if m := st.Log().Markers(); m.SafeReadOnly > kAddr {
		t.Fatalf("safeReadOnly passed the counter while b never refreshed: %+v", m)
	}
	var done []Completion
	a.SetCompletion(func(c Completion) { done = append(done, c) })
	stt, err := a.RMW(k, i64(41), Int64Add{})
	if err != nil || stt != Pending {
		t.Fatalf("RMW in the fuzzy region: %v, %v; want Pending", stt, err)
	}
	if left := a.CompletePending(false); left != 1 {
		t.Fatalf("RMW completed (%d left) while b still holds the old epoch", left)
	}
	b.Suspend()
	a.CompletePending(true)
	if len(done) != 1 || done[0].Err != nil || done[0].Status != OK {
		t.Fatalf("completions %+v", done)
	}
	if v, _ := syncRead(t, a, k); !bytes.Equal(v, i64(42)) {
		t.Fatalf("counter = %v, want 42", v)
	}
}

// TestCopyFromMutableRecordSealsIt: an RMW that outgrows a mutable record
// copies it to the tail and seals the old copy, so that a writer that found
// the old copy before the copy was published cannot update it in place.
func TestCopyFromMutableRecordSealsIt(t *testing.T) {
	st := openTest(t, Config{IndexBits: 4, Log: hlog.Config{PageBits: 16, MemoryBytes: 16 << 16}})
	s := newSession(t, st)
	k := []byte("log")
	mustStatus(t, OK)(s.Upsert(k, []byte("abc")))
	old := uint64(hlog.FirstAddress)
	if !bytes.Equal(st.Log().Record(old).Key(), k) {
		t.Fatal("the first record is not the key's")
	}
	mustStatus(t, OK)(s.RMW(k, []byte("defg"), Append{}))
	r := st.Log().Record(old)
	if !r.Header().Sealed() {
		t.Fatalf("old copy not sealed: header %#x", uint64(r.Header()))
	}
	if _, ok := r.Lock(); ok {
		t.Fatal("a sealed record could be locked for an in-place update")
	}
	mustStatus(t, OK)(s.Upsert(k, []byte("x"))) // must land on the new copy
	if v, _ := syncRead(t, s, k); string(v) != "x" {
		t.Fatalf("read %q after upsert", v)
	}
	// The new copy reserved room: the next appends happen in place.
	tail := st.Log().Tail()
	mustStatus(t, OK)(s.RMW(k, []byte("yz"), Append{}))
	if st.Log().Tail() != tail {
		t.Fatal("an append that fits the reserved capacity copied the record")
	}
	if v, _ := syncRead(t, s, k); string(v) != "xyz" {
		t.Fatalf("read %q after append", v)
	}
}

// openDevice returns a new device of the given kind for a test's log,
// closed when the test ends (after the store, which t.Cleanup closes
// first: cleanups run last-in first-out).
func openDevice(t *testing.T, kind string) ssd.Device {
	t.Helper()
	var dev ssd.Device
	switch kind {
	case "mem":
		dev = ssd.NewMemDevice()
	case "file-pread", "file-uring":
		cfg := ssd.FileConfig{Dir: t.TempDir(), SegmentSize: 1 << 20,
			IO: strings.TrimPrefix(kind, "file-"), Workers: 4, RingEntries: 64}
		d, err := ssd.OpenFile(cfg)
		if errors.Is(err, uring.ErrUnsupported) {
			t.Logf("io_uring unavailable (%v): the pread engine instead", err)
			cfg.IO = ssd.IOPread
			d, err = ssd.OpenFile(cfg)
		}
		if err != nil {
			t.Fatalf("device %s: %v", kind, err)
		}
		dev = d
	case "crash-async":
		d := ssd.NewCrashDevice(ssd.SectorSize)
		d.SetAsync(true)
		dev = d
	default:
		t.Fatalf("unknown device %q", kind)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}
