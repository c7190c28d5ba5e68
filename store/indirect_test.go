package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/tier"
)

// A source store and what it holds when its log is sealed into the tier.
type sourceLog struct {
	st     *Store
	remote RemoteLog
	want   map[string][]byte // nil: deleted
	ats    map[string]int64  // the expiries of the keys written with one
	counts map[string]int64
	end    uint64 // the checkpoint's end: the tier's bytes below it are the log's
}

const indirectKeys = 3000

func ikey(i int) []byte { return fmt.Appendf(nil, "key-%05d", i) }

// sealedSource writes keys to a small store (most records reach its
// device), overwrites some, deletes some, sets counters on others, makes
// it durable and uploads its log to a directory tier, which the returned
// RemoteLog reads.
func sealedSource(t *testing.T) *sourceLog {
	t.Helper()
	ctx := context.Background()
	dev := ssd.NewMemDevice()
	st := openTest(t, Config{IndexBits: 8, Log: hlog.Config{PageBits: 14, MemoryBytes: 4 << 14, Device: dev}})
	s := newSession(t, st)
	src := &sourceLog{st: st, want: map[string][]byte{}, ats: map[string]int64{}, counts: map[string]int64{}}
	for i := range indirectKeys {
		v := fmt.Appendf(nil, "first-%d", i)
		mustStatus(t, OK)(s.Upsert(ikey(i), v))
		src.want[string(ikey(i))] = v
	}
	for i := 0; i < indirectKeys; i += 7 {
		v := fmt.Appendf(nil, "second-%d", i)
		mustStatus(t, OK)(s.Upsert(ikey(i), v))
		src.want[string(ikey(i))] = v
	}
	for i := 5; i < indirectKeys; i += 13 {
		v, at := fmt.Appendf(nil, "expiring-%d", i), st.Now()+3_600_000
		mustStatus(t, OK)(s.UpsertExpiring(ikey(i), keyhash.Hash(ikey(i)), v, at))
		src.want[string(ikey(i))], src.ats[string(ikey(i))] = v, at
	}
	for i := 3; i < indirectKeys; i += 11 {
		if _, err := s.Delete(ikey(i)); err != nil {
			t.Fatal(err)
		}
		s.CompletePending(true)
		src.want[string(ikey(i))] = nil
	}
	for i := range 50 {
		k := fmt.Appendf(nil, "counter-%d", i)
		mustStatus(t, OK)(s.Upsert(k, i64(int64(100*i))))
		src.counts[string(k)] = int64(100 * i)
	}
	s.Suspend()
	c, err := st.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Log().Head() < c.End/2 {
		t.Fatalf("only %d of %d bytes on the device: too little written", st.Log().Head(), c.End)
	}
	dir, err := tier.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	segs, err := tier.NewSegments(dir, "source", tier.MinSegmentSize)
	if err != nil {
		t.Fatal(err)
	}
	for n := uint64(0); n*segs.Size() < c.End; n++ {
		if err := segs.Upload(ctx, dev, n, 0); err != nil {
			t.Fatal(err)
		}
	}
	r := segs.Reader(8)
	t.Cleanup(func() { r.Close() })
	src.remote = RemoteLog{Dev: r, PageSize: st.Log().PageSize(), Begin: st.Begin()}
	src.end = c.End
	return src
}

// indirectTo installs in st a table of every chain of src, with since.
func indirectTo(t *testing.T, st *Store, src *sourceLog, id string, since uint64) *Indirections {
	t.Helper()
	var chains, addrs []uint64
	bits, err := src.st.Chains(0, ^uint64(0), func(chain, addr uint64) error {
		chains, addrs = append(chains, chain), append(addrs, addr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ind := NewIndirections(id, src.remote, since, bits, [][2]uint64{{0, ^uint64(0)}})
	for i := range chains {
		ind.Add(chains[i], addrs[i])
	}
	if err := st.InstallIndirections(ind); err != nil {
		t.Fatal(err)
	}
	return ind
}

func targetStore(t *testing.T) *Store {
	return openTest(t, Config{IndexBits: 6, CopyReadsToTail: true, Log: hlog.Config{PageBits: 14, MemoryBytes: 16 << 14}})
}

// checkAll reads every key of src through s and compares.
func checkAll(t *testing.T, s *Session, src *sourceLog, what string) {
	t.Helper()
	for k, w := range src.want {
		v, st := syncRead(t, s, []byte(k))
		switch {
		case w == nil && st != NotFound:
			t.Fatalf("%s: %s reads %q (%v), want absent", what, k, v, st)
		case w != nil && (st != OK || string(v) != string(w)):
			t.Fatalf("%s: %s reads %q (%v), want %q", what, k, v, st, w)
		}
	}
}

// TestIndirectReads: a store with no records of its own reads every key
// of another store's log through the tier, copies what it read to its
// tail (the second read is in memory) and counts those keys then.
func TestIndirectReads(t *testing.T) {
	src := sealedSource(t)
	st := targetStore(t)
	s := newSession(t, st)
	tbl := indirectTo(t, st, src, "m1", st.Log().Tail())
	checkAll(t, s, src, "first read")
	for k, w := range src.want {
		v, status, err := s.Read([]byte(k), nil)
		if err != nil || (w != nil && (status != OK || string(v) != string(w))) {
			t.Fatalf("second read of %s: %q %v %v, want %q from memory", k, v, status, err, w)
		}
	}
	live := int64(len(src.counts))
	for _, w := range src.want {
		if w != nil {
			live++
		}
	}
	for k := range src.counts {
		syncRead(t, s, []byte(k))
	}
	s.Suspend()
	if n, err := st.Keys(context.Background()); err != nil || n != live {
		t.Fatalf("key count %d (%v) after reading every key, want %d", n, err, live)
	}
	if !st.RemoveIndirections(tbl) || st.RemoveIndirections(tbl) {
		t.Fatal("RemoveIndirections did not remove the table exactly once")
	}
	checkAll(t, s, src, "after the table went (every key was copied)")
}

// TestIndirectWrites: writes of covered keys merge with (RMW), remove
// (Update) and hide (Delete) the remote values, and survive a compaction
// of the store's own log; an older owner's copies below Since lose to the
// remote chain; writes after Since win.
func TestIndirectWrites(t *testing.T) {
	ctx := context.Background()
	src := sealedSource(t)
	st := targetStore(t)
	s := newSession(t, st)
	// An older owner's copies, as a migration's prepare leaves them: stale
	// values, each key's newest a tombstone (migrate.Drop).
	for i := 0; i < indirectKeys; i += 5 {
		mustStatus(t, OK)(s.Upsert(ikey(i), []byte("stale")))
		if _, err := s.Delete(ikey(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.CompletePending(true)
	indirectTo(t, st, src, "m1", st.Log().Tail())
	checkAll(t, s, src, "over an older owner's copies")

	for k, c := range src.counts {
		mustRMW(t, s, []byte(k), 5)
		src.counts[k] = c + 5
	}
	removed := 0
	for i := 1; i < indirectKeys; i += 13 {
		k := ikey(i)
		_, status := syncUpdate(t, s, k, Update{If: Remove})
		want := src.want[string(k)] != nil
		if (status == OK) != want {
			t.Fatalf("Update Remove of %s: %v, want existed=%v", k, status, want)
		}
		src.want[string(k)] = nil
		removed++
	}
	for i := 2; i < indirectKeys; i += 17 {
		if _, err := s.Delete(ikey(i)); err != nil {
			t.Fatal(err)
		}
		s.CompletePending(true)
		src.want[string(ikey(i))] = nil
	}
	for i := 4; i < indirectKeys; i += 19 {
		v := fmt.Appendf(nil, "third-%d", i)
		mustStatus(t, OK)(s.Upsert(ikey(i), v))
		src.want[string(ikey(i))] = v
	}
	checkAll(t, s, src, "after writes")
	checkCounts(t, s, src)

	// Push everything to the device and compact it all: the tombstones
	// that hide remote values must stay.
	for i := range 4000 {
		mustStatus(t, OK)(s.Upsert(fmt.Appendf(nil, "filler-%d", i), make([]byte, 64)))
	}
	s.CompletePending(true)
	s.Suspend()
	cs, err := st.Compact(ctx, st.Log().Head())
	if err != nil {
		t.Fatal(err)
	}
	if cs.Until <= hlog.FirstAddress {
		t.Fatalf("nothing compacted: %+v", cs)
	}
	checkAll(t, s, src, "after a compaction")
	checkCounts(t, s, src)
	if removed == 0 {
		t.Fatal("no key removed")
	}
	// Every key has been read, so every live one has a record here now
	// and is counted; the older owner's copies count nothing.
	live := int64(len(src.counts) + 4000) // the counters and the fillers
	for _, w := range src.want {
		if w != nil {
			live++
		}
	}
	s.Suspend()
	if n, err := st.Keys(ctx); err != nil || n != live {
		t.Fatalf("key count %d (%v), want %d", n, err, live)
	}
}

func mustRMW(t *testing.T, s *Session, key []byte, d int64) {
	t.Helper()
	status, err := s.RMW(key, i64(d), Int64Add{})
	if err != nil || (status != OK && status != Pending) {
		t.Fatalf("RMW(%s): %v %v", key, status, err)
	}
	s.CompletePending(true)
}

func checkCounts(t *testing.T, s *Session, src *sourceLog) {
	t.Helper()
	for k, c := range src.counts {
		v, status := syncRead(t, s, []byte(k))
		if status != OK || len(v) != 8 || int64(binary.LittleEndian.Uint64(v)) != c {
			t.Fatalf("counter %s reads %x (%v), want %d", k, v, status, c)
		}
	}
}

// TestIndirectionsInstall: a table needs a new id, and Flush drops them.
func TestIndirectionsInstall(t *testing.T) {
	src := sealedSource(t)
	st := targetStore(t)
	indirectTo(t, st, src, "m1", st.Log().Tail())
	if err := st.InstallIndirections(NewIndirections("m1", src.remote, 0, 8, nil)); err == nil {
		t.Fatal("a second table with the same id was installed")
	}
	bad := NewIndirections("m2", src.remote, 0, 8, nil)
	bad.Add(1, 0)
	if err := st.InstallIndirections(bad); err == nil {
		t.Fatal("an indirection to address 0 was installed")
	}
	if err := st.Flush(context.Background(), func(ctx context.Context, atStop func()) error { atStop(); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(st.Indirections()) != 0 {
		t.Fatal("Flush left the tables")
	}
	s := newSession(t, st)
	if _, status := syncRead(t, s, ikey(0)); status != NotFound {
		t.Fatalf("a key read %v after Flush", status)
	}
}

// TestScanCutMigrates moves every key of a store to another as a
// migration does with a shared tier: the records above the cut (written
// after the source's log was sealed) are sent and inserted since the
// target prepared, the chains below it become indirections, and the
// target then reads every key as the source has it.
func TestScanCutMigrates(t *testing.T) {
	ctx := context.Background()
	src := sealedSource(t)
	cut := src.end // what the tier holds of the source's log is final up to there
	s := newSession(t, src.st)
	for i := 0; i < indirectKeys; i += 13 { // above the cut: overwritten
		v := fmt.Appendf(nil, "after-%d", i)
		mustStatus(t, OK)(s.Upsert(ikey(i), v))
		src.want[string(ikey(i))] = v
	}
	for i := 1; i < indirectKeys; i += 29 { // above the cut: deleted (no cut in their chains)
		if _, err := s.Delete(ikey(i)); err != nil {
			t.Fatal(err)
		}
		s.CompletePending(true)
		src.want[string(ikey(i))] = nil
	}
	for i := range 100 { // new keys
		k := fmt.Appendf(nil, "new-%d", i)
		mustStatus(t, OK)(s.Upsert(k, k))
		src.want[string(k)] = k
	}
	for k, c := range src.counts {
		src.want[k] = i64(c)
	}
	s.Suspend()

	dst := targetStore(t)
	since := dst.Log().Tail()
	ts := newSession(t, dst)
	var chains, addrs []uint64
	var bits uint
	sent := 0
	err := src.st.ScanCut(ctx, 0, ^uint64(0), cut, func(key, value []byte, at int64, live bool, addr uint64) error {
		if !live {
			return nil // a target that prepared holds nothing older: as Send
		}
		sent++
		syncUpdate(t, ts, key, Update{If: IfNoneSince, Since: since, Merge: Replace{}, Input: value})
		return nil
	}, func(b uint, chain, addr uint64) error {
		if addr >= cut {
			t.Fatalf("a chain cut at %d, at or above the cut %d", addr, cut)
		}
		bits = b
		chains, addrs = append(chains, chain), append(addrs, addr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) == 0 || sent >= len(src.want)/2 {
		t.Fatalf("%d records sent and %d indirections for %d keys: the cut saved nothing", sent, len(chains), len(src.want))
	}
	ind := NewIndirections("m1", src.remote, since, bits, [][2]uint64{{0, ^uint64(0)}})
	for i := range chains {
		ind.Add(chains[i], addrs[i])
	}
	if err := dst.InstallIndirections(ind); err != nil {
		t.Fatal(err)
	}
	checkAll(t, ts, src, "after the move")
	t.Logf("%d keys: %d records sent, %d indirections", len(src.want), sent, len(chains))
}

// TestIndirectionsCoverOnlyTheirRanges: a key outside a table's hash
// ranges keeps this store's records, even those older than Since.
func TestIndirectionsCoverOnlyTheirRanges(t *testing.T) {
	src := sealedSource(t)
	st := targetStore(t)
	s := newSession(t, st)
	const half = uint64(1) << 63
	mine := map[string]bool{}
	for k := range src.want {
		if keyhash.Hash([]byte(k)) >= half { // this store's own keys
			mustStatus(t, OK)(s.Upsert([]byte(k), []byte("mine")))
			mine[k] = true
		}
	}
	ind := NewIndirections("m1", src.remote, st.Log().Tail(), 0, [][2]uint64{{0, half - 1}})
	var bits uint
	var err error
	if bits, err = src.st.Chains(0, half-1, func(chain, addr uint64) error { ind.Add(chain, addr); return nil }); err != nil {
		t.Fatal(err)
	}
	ind.bits = bits
	if err := st.InstallIndirections(ind); err != nil {
		t.Fatal(err)
	}
	for k, w := range src.want {
		v, status := syncRead(t, s, []byte(k))
		switch {
		case mine[k] && string(v) != "mine":
			t.Fatalf("%s, outside the table's range, reads %q", k, v)
		case !mine[k] && w != nil && string(v) != string(w):
			t.Fatalf("%s reads %q (%v), want %q", k, v, status, w)
		case !mine[k] && w == nil && status != NotFound:
			t.Fatalf("%s reads %q, want absent", k, v)
		}
	}
	if len(mine) == 0 || len(mine) == len(src.want) {
		t.Fatalf("%d of %d keys in the upper half", len(mine), len(src.want))
	}
}

// TestIndirectRemoveOfUnreadKey: a conditional delete and an expiry in
// the past of covered keys never read here (their values are only in the
// remote log) delete them, and a delete of a covered key that exists
// nowhere leaves no index entry.
func TestIndirectRemoveOfUnreadKey(t *testing.T) {
	src := sealedSource(t)
	st := targetStore(t)
	s := newSession(t, st)
	indirectTo(t, st, src, "m1", st.Log().Tail())
	removed, expired := 0, 0
	for i := 0; i < indirectKeys; i += 3 {
		k := ikey(i)
		live := src.want[string(k)] != nil
		var status Status
		if i%2 == 0 {
			_, status = syncUpdate(t, s, k, Update{If: Remove})
			removed++
		} else {
			_, status = syncUpdate(t, s, k, Update{If: IfPresent, Merge: Keep{}, Expire: Expiry{Mode: SetExpiry, At: 1}})
			expired++
		}
		if (status == OK) != live {
			t.Fatalf("%s (live %v): %v", k, live, status)
		}
		if v, status := syncRead(t, s, k); status != NotFound {
			t.Fatalf("%s reads %q after its delete", k, v)
		}
	}
	entries := func() int64 { // with the session's batch counted
		s.Suspend()
		s.st.index.CountEntries(s.newEntries, s.entriesGen)
		s.newEntries = 0
		return st.index.Stats().Entries
	}
	before := entries()
	for i := range 200 {
		syncUpdate(t, s, fmt.Appendf(nil, "nowhere-%d", i), Update{If: Remove})
	}
	if after := entries(); after != before {
		t.Fatalf("deletes of keys that exist nowhere made %d index entries", after-before)
	}
	if removed == 0 || expired == 0 {
		t.Fatal("nothing tried")
	}
}

// TestScanCutAcrossRanges: two keys of different slots share a chain; the
// one deleted above the cut keeps the chain from being cut in the scan of
// the other's range too, so a table covering both ranges never brings it
// back.
func TestScanCutAcrossRanges(t *testing.T) {
	ctx := context.Background()
	dev := ssd.NewMemDevice()
	st := openTest(t, Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 4 << 12, Device: dev}})
	s := newSession(t, st)
	k1 := []byte("alpha")
	h1 := keyhash.Hash(k1)
	var k2 []byte
	for i := 0; k2 == nil; i++ {
		c := fmt.Appendf(nil, "collider-%d", i)
		hc := keyhash.Hash(c)
		if index.ChainOf(hc, 8) == index.ChainOf(h1, 8) && keyhash.SlotOf(hc) != keyhash.SlotOf(h1) {
			k2 = c
		}
	}
	mustStatus(t, OK)(s.Upsert(k1, []byte("v1")))
	mustStatus(t, OK)(s.Upsert(k2, []byte("old-v2")))
	push(t, st, s, st.Log().Tail()-1, onDevice)
	s.Suspend()
	c, err := st.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := tier.OpenDir(t.TempDir())
	segs, _ := tier.NewSegments(dir, "src", tier.MinSegmentSize)
	for n := uint64(0); n*segs.Size() < c.End; n++ {
		if err := segs.Upload(ctx, dev, n, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(k2); err != nil { // above the cut
		t.Fatal(err)
	}
	s.CompletePending(true)
	s.Suspend()
	r := segs.Reader(4)
	defer r.Close()
	dst := targetStore(t)
	ranges := [][2]uint64{}
	var chains, addrs []uint64
	var bits uint
	for _, k := range [][]byte{k1, k2} {
		slot := keyhash.SlotOf(keyhash.Hash(k))
		lo, hi := keyhash.FirstHash(slot), keyhash.LastHash(slot)
		ranges = append(ranges, [2]uint64{lo, hi})
		err := st.ScanCut(ctx, lo, hi, c.End, func(key, value []byte, at int64, live bool, addr uint64) error {
			return nil // nothing above the cut is live but what the test checks below
		}, func(b uint, chain, addr uint64) error {
			bits = b
			chains, addrs = append(chains, chain), append(addrs, addr)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if b := st.index.Bits(); index.ChainOf(keyhash.Hash(k2), b) != index.ChainOf(h1, b) {
		t.Fatalf("the index grew to %d bits: the keys no longer share a chain", b)
	}
	t.Logf("%d indirections (other chains of the slots' buckets)", len(chains))
	ind := NewIndirections("m", RemoteLog{Dev: r, PageSize: st.Log().PageSize(), Begin: st.Begin()}, dst.Log().Tail(), bits, ranges)
	for i := range chains {
		ind.Add(chains[i], addrs[i])
	}
	if err := dst.InstallIndirections(ind); err != nil {
		t.Fatal(err)
	}
	ts := newSession(t, dst)
	if v, status := syncRead(t, ts, k2); status != NotFound {
		t.Fatalf("the deleted key reads %q", v)
	}
}

// TestReadAbove: a source whose log the tier holds below its checkpoint's
// end answers each key with its value (in memory) or with where its chain
// goes on below that bound, and the first record of the key from there
// (hlog.FindKey through the tier) is its newest: every key reads back,
// deleted ones as tombstones, and keys never written that share a chain
// with written ones find nothing. A bound of 0 is a plain read.
func TestReadAbove(t *testing.T) {
	src := sealedSource(t)
	s := newSession(t, src.st)
	want := maps.Clone(src.want)
	for _, k := range chainMates(src) {
		want[k] = nil
	}
	belows, absentBelow := 0, 0
	var buf []byte
	for k, w := range want {
		key := []byte(k)
		v, st, below, err := s.ReadAbove(key, keyhash.Hash(key), src.end, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st == Pending {
			t.Fatalf("%s went to the device", k)
		}
		got, live := []byte(nil), st == OK
		if below.Addr != 0 {
			belows++
			if below.Addr >= src.end || below.Begin != src.st.Begin() || st != NotFound {
				t.Fatalf("%s: below %+v (bound %d), %v", k, below, src.end, st)
			}
			var rec []byte
			if rec, buf, err = hlog.FindKey(src.remote.Dev, key, below.Addr, below.Begin, buf); err != nil {
				t.Fatal(err)
			}
			if rec != nil {
				h, kl, _, vl, _ := hlog.DecodePrefix(rec)
				got, _ = hlog.SplitValue(h, rec[hlog.PrefixSize+kl:hlog.PrefixSize+kl+vl])
				live = !h.Tombstone()
			} else if _, written := src.want[k]; written {
				t.Fatalf("%s: no record from %d on", k, below.Addr)
			} else {
				absentBelow++
			}
		} else if live {
			_, got, _ = SplitExpiring(v)
		}
		if live != (w != nil) || string(got) != string(w) {
			t.Fatalf("%s reads %q (live %v), want %q", k, got, live, w)
		}
	}
	if belows < len(src.want)/2 || absentBelow == 0 {
		t.Fatalf("%d of %d keys answered below the bound, %d of them never written", belows, len(want), absentBelow)
	}
	k := ikey(0)
	if _, st, below, err := s.ReadAbove(k, keyhash.Hash(k), 0, nil); err != nil || below.Addr != 0 || st == NotFound {
		t.Fatalf("bound 0: %v, below %+v, %v", st, below, err)
	}
	s.CompletePending(true)
}

// chainMates returns keys never written to src whose hash chains hold
// written keys.
func chainMates(src *sourceLog) []string {
	bits := src.st.index.Bits()
	chains := map[uint64]bool{}
	for k := range src.want {
		chains[index.ChainOf(keyhash.Hash([]byte(k)), bits)] = true
	}
	var out []string
	for i := 0; len(out) < 100 && i < 1<<24; i++ {
		k := fmt.Sprintf("never-%d", i)
		if chains[index.ChainOf(keyhash.Hash([]byte(k)), bits)] {
			out = append(out, k)
		}
	}
	return out
}

// TestReadCovered: a read through the table answers the source's value of
// every key the target holds no record of since the table's Since, and
// copies nothing to the tail even with CopyReadsToTail; of a key the target
// wrote since (a write here, or a record the migration sent), and without
// a table covering the key, it is NotFound at once and reads nothing.
func TestReadCovered(t *testing.T) {
	src := sealedSource(t)
	st := targetStore(t) // CopyReadsToTail
	s := newSession(t, st)
	tbl := indirectTo(t, st, src, "m1", st.Log().Tail())
	var keys []string
	for k := range src.want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	newer := func(k string) []byte { return []byte("newer-" + k) }
	for i, k := range keys {
		if i%2 == 0 {
			mustStatus(t, OK)(s.Upsert([]byte(k), newer(k)))
		}
	}
	tail := st.Log().Tail()
	expiring := 0 // keys read with a nonzero expiry
	for i, k := range keys {
		withAt := i%4 == 3 // every other key read from the source comes with its expiry
		status, err := s.ReadCovered([]byte(k), keyhash.Hash([]byte(k)), withAt)
		if i%2 == 0 {
			if err != nil || status != NotFound || s.PendingCount() != 0 {
				t.Fatalf("ReadCovered(%s) of a key written here: %v %v, want NotFound at once", k, status, err)
			}
			continue
		}
		if err != nil || status != Pending {
			t.Fatalf("ReadCovered(%s): %v %v, want Pending", k, status, err)
		}
		v, status := awaitLast(t, s, "ReadCovered "+k)
		if withAt && status == OK {
			at, value, ok := SplitExpiring(v)
			if !ok || at != src.ats[k] {
				t.Fatalf("ReadCovered(%s, withAt): expiry %d (%v), want the source's %d", k, at, ok, src.ats[k])
			}
			v = value
			if at != 0 {
				expiring++
			}
		}
		if w := src.want[k]; (w == nil) != (status == NotFound) || (w != nil && string(v) != string(w)) {
			t.Fatalf("ReadCovered(%s) = %q (%v), want the source's %q", k, v, status, w)
		}
	}
	if expiring == 0 {
		t.Fatal("no key read with its expiry had one")
	}
	if got := st.Log().Tail(); got != tail {
		t.Fatalf("ReadCovered moved the tail %d -> %d: it copied records", tail, got)
	}
	for i, k := range keys {
		v, status := syncRead(t, s, []byte(k))
		if i%2 == 0 && (status != OK || string(v) != string(newer(k))) {
			t.Fatalf("a plain read of %s after ReadCovered: %q (%v), want the newer write", k, v, status)
		}
	}
	if !st.RemoveIndirections(tbl) {
		t.Fatal("table not installed")
	}
	if status, err := s.ReadCovered([]byte(keys[0]), keyhash.Hash([]byte(keys[0])), false); err != nil || status != NotFound {
		t.Fatalf("ReadCovered without a table: %v %v, want NotFound", status, err)
	}
}

// TestChainDirFinds checks a sealed table's lookups against a map, for
// chains spread over the whole name space, crowded into one slot's few
// buckets, in two runs far apart, one alone, and none: every chain is
// found at its address (a chain added twice at its last one), and chains
// between, before and after them are not.
func TestChainDirFinds(t *testing.T) {
	const bits = 20
	space := uint64(1) << (bits + 14) // index.ChainID's names under 2^bits buckets
	rng := rand.New(rand.NewPCG(11, 12))
	cases := map[string]func() uint64{
		"spread":   func() uint64 { return rng.Uint64N(space) },
		"one slot": func() uint64 { return index.ChainID(77<<(bits-14)+rng.Uint64N(1<<(bits-14)), rng.Uint64N(1<<14)) },
		"two runs": func() uint64 {
			if rng.IntN(2) == 0 {
				return rng.Uint64N(1 << 20)
			}
			return space - 1 - rng.Uint64N(1<<20)
		},
	}
	for name, draw := range cases {
		for _, n := range []int{0, 1, 2, 1000, 100_000} {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				tb := NewIndirections("m", RemoteLog{}, 0, bits, nil)
				want := map[uint64]uint64{}
				for i := range n {
					c, a := draw(), hlog.FirstAddress+uint64(i)
					tb.Add(c, a)
					want[c] = a
				}
				if err := tb.seal(); err != nil {
					t.Fatal(err)
				}
				for c, a := range want {
					if in, ok := tb.dir.find(tb.ind, c); !ok || in.addr != a {
						t.Fatalf("chain %#x: found %v (%v), want address %d", c, ok, in, a)
					}
				}
				for range 20_000 {
					c := draw() ^ uint64(rng.IntN(2)) // near the chains too
					if _, in := want[c]; in {
						continue
					}
					if in, ok := tb.dir.find(tb.ind, c); ok {
						t.Fatalf("chain %#x not in the table found (%v)", c, in)
					}
				}
				for _, c := range []uint64{0, space - 1, space, ^uint64(0)} {
					_, ok := tb.dir.find(tb.ind, c)
					if _, in := want[c]; ok != in {
						t.Fatalf("chain %#x: found %v, in the table %v", c, ok, in)
					}
				}
			})
		}
	}
}

// BenchmarkIndirectionLookup: a covered read's lookup in a table of a
// migration's size (500 K chains over a third of the hashes), half of the
// reads' chains in it.
func BenchmarkIndirectionLookup(b *testing.B) {
	const bits, n = 22, 500_000
	rng := rand.New(rand.NewPCG(13, 14))
	third := ^uint64(0) / 3
	hs := make([]uint64, 1<<16)
	for i := range hs {
		hs[i] = rng.Uint64N(third)
	}
	tb := NewIndirections("m", RemoteLog{}, 0, bits, [][2]uint64{{0, third}})
	for i := range n {
		h := rng.Uint64N(third)
		if i < len(hs)/2 {
			h = hs[i]
		}
		tb.Add(index.ChainOf(h, bits), hlog.FirstAddress+uint64(i))
	}
	if err := tb.seal(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	found := 0
	for i := range b.N {
		if _, ok := tb.lookup(hs[i&(len(hs)-1)]); ok {
			found++
		}
	}
	if b.N >= len(hs) && found < b.N/2 {
		b.Fatalf("%d of %d lookups found their chain", found, b.N)
	}
}
