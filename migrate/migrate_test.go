package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/admit"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/server/servertest"
	"github.com/fleetkv/fleetkv/wire"
)

// incarnations numbers the servers the tests start.
var incarnations atomic.Uint64

func start(t *testing.T) (*server.Server, *client.Session) {
	cfg := servertest.Config()
	cfg.Incarnation = incarnations.Add(1)
	cfg.Store.Log = hlog.Config{PageBits: 12, MemoryBytes: 16 << 12} // most records on the device
	s := servertest.Start(t, cfg)
	sess, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return s, sess
}

// accept installs, on s, a routing that serves every slot and takes
// migration id's records for ranges from since on.
func accept(t *testing.T, s *server.Server, id cluster.MigrationID, ranges []cluster.Range, since uint64) {
	var slots cluster.SlotSet
	for _, r := range ranges {
		slots.Add(r)
	}
	h := cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &cluster.SlotSet{}, Accept: []cluster.Accepting{{ID: id, Slots: &slots, Since: since}}}
	r := (&cluster.Routing{View: s.View(), Serving: cluster.AllSlots()}).WithHolds(&h)
	if err := s.Install(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, sess *client.Session, f func(cb client.Callback) error) client.Result {
	t.Helper()
	var res client.Result
	if err := f(func(r client.Result) { res = r; res.Value = bytes.Clone(r.Value) }); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	return res
}

func value(t *testing.T, sess *client.Session, key string) (string, bool) {
	t.Helper()
	r := do(t, sess, func(cb client.Callback) error { return sess.Read([]byte(key), cb) })
	if r.Err == nil && r.Status == client.NotFound {
		return "", false
	}
	if r.Err != nil {
		t.Fatalf("read %s: %v", key, r.Err)
	}
	return string(r.Value), true
}

// TestDropSendShipBack moves the records of half the slots from one
// server's store to another's (most of them read from the device): the
// target's garbage of the range is dropped first, a key the target writes
// after the drop keeps its value, deleted keys stay absent, keys outside the
// range stay where they are; shipping back returns the target's records,
// its deletions included; a server that does not take the migration's
// records refuses them.
func TestDropSendShipBack(t *testing.T) {
	ctx := context.Background()
	src, srcSess := start(t)
	dst, dstSess := start(t)
	ranges := []cluster.Range{{First: 0, Last: 8191}}
	in := func(key string) bool { return keyhash.Slot([]byte(key)) <= 8191 }
	const n = 2000
	want := map[string]string{}
	for i := range n {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d-%s", i, bytes.Repeat([]byte("x"), i%50))
		if err := srcSess.Upsert([]byte(k), []byte(v), nil); err != nil {
			t.Fatal(err)
		}
		want[k] = v
		if i%10 == 3 {
			if err := srcSess.Delete([]byte(k), nil); err != nil {
				t.Fatal(err)
			}
			delete(want, k)
		}
		if i%7 == 0 { // garbage of an earlier ownership on the target
			if err := dstSess.Upsert([]byte(k), []byte("stale"), nil); err != nil {
				t.Fatal(err)
			}
		}
		if i%7 == 1 { // the same, expired by the time of the drop: a reap of it
			// later would be a record written since the drop, and win
			at := time.Now().Add(100 * time.Millisecond).UnixMilli()
			if err := dstSess.UpsertExpiring([]byte(k), []byte("stale, expiring"), at, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := srcSess.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := dstSess.Wait(); err != nil {
		t.Fatal(err)
	}
	if src.Store().Log().Head() <= hlog.FirstAddress {
		t.Fatal("nothing of the source reached the device")
	}
	time.Sleep(150 * time.Millisecond) // the target's expiring garbage expires

	since, err := Drop(ctx, dst.Store(), ranges, &admit.Duty{Share: 0.5}) // resting between slot groups, as a drop task does
	if err != nil {
		t.Fatal(err)
	}
	if live, err := dst.Store().CountKeys(ctx, keyhash.FirstHash(0), keyhash.LastHash(8191)); err != nil || live != 0 {
		t.Fatalf("after the drop the target holds %d keys of the range, live or expired (%v)", live, err)
	}
	accept(t, dst, 7, ranges, since)
	var written string // a key of the range the target's client writes after the drop
	for i := 0; written == ""; i++ {
		if k := fmt.Sprintf("k%d", i); in(k) && want[k] != "" {
			written = k
		}
	}
	do(t, dstSess, func(cb client.Callback) error { return dstSess.Upsert([]byte(written), []byte("target-write"), cb) })

	sent, slots := 0, 0
	inc, err := Send(ctx, src.Store(), ranges, 0, dial(t, dst), 7, wire.MigrateMoved, func(k, s int) { sent, slots = sent+k, slots+s })
	if err != nil {
		t.Fatal(err)
	}
	if want := dst.Incarnation(); inc != want {
		t.Fatalf("Send reports incarnation %d took the records, the target is %d", inc, want)
	}
	if sent == 0 {
		t.Fatal("nothing was sent")
	}
	if slots != 8192 {
		t.Fatalf("Send reported %d slots done, want the ranges' 8192", slots)
	}
	for i := range n {
		k := fmt.Sprintf("k%d", i)
		v, ok := value(t, dstSess, k)
		switch {
		case k == written:
			if v != "target-write" {
				t.Fatalf("%s: the target's own write was replaced by %q", k, v)
			}
		case !in(k) && i%7 == 0:
			if v != "stale" {
				t.Fatalf("%s, outside the range: %q %v", k, v, ok)
			}
		case !in(k):
			if ok {
				t.Fatalf("%s, outside the range, was sent: %q", k, v)
			}
		case ok != (want[k] != "") || v != want[k]:
			t.Fatalf("%s on the target: %q %v, want %q", k, v, ok, want[k])
		}
	}

	// The migration is cancelled: the target deletes one key and ships
	// everything back to the source.
	var gone string
	for i := n - 1; gone == ""; i-- {
		if k := fmt.Sprintf("k%d", i); in(k) && want[k] != "" && k != written {
			gone = k
		}
	}
	do(t, dstSess, func(cb client.Callback) error { return dstSess.Delete([]byte(gone), cb) })
	if _, err := Send(ctx, dst.Store(), ranges, since, dial(t, src), 7, wire.MigrateShipped, nil); !errors.Is(err, client.ErrNotOwner) {
		t.Fatalf("shipping back to a source that does not take it: %v", err)
	}
	accept(t, src, 7, ranges, 0)
	if _, err := Send(ctx, dst.Store(), ranges, since, dial(t, src), 7, wire.MigrateShipped, nil); err != nil {
		t.Fatal(err)
	}
	if v, ok := value(t, srcSess, written); v != "target-write" {
		t.Fatalf("%s on the source after the ship-back: %q %v", written, v, ok)
	}
	if v, ok := value(t, srcSess, gone); ok {
		t.Fatalf("%s, deleted on the target, is %q on the source after the ship-back", gone, v)
	}
}

func dial(t *testing.T, s *server.Server) *client.Session {
	sess, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// TestShipBackLeavesTheDrop: a migration cancelled before anything moved
// ships back nothing of what the target's drop deleted (its garbage of an
// earlier ownership): the source's records of those keys stay.
func TestShipBackLeavesTheDrop(t *testing.T) {
	ctx := context.Background()
	src, srcSess := start(t)
	dst, dstSess := start(t)
	ranges := []cluster.Range{{First: 0, Last: 16383}}
	for i := range 200 {
		k := []byte(fmt.Sprintf("k%d", i))
		if err := srcSess.Upsert(k, []byte("source"), nil); err != nil {
			t.Fatal(err)
		}
		if err := dstSess.Upsert(k, []byte("stale"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := srcSess.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := dstSess.Wait(); err != nil {
		t.Fatal(err)
	}
	since, err := Drop(ctx, dst.Store(), ranges, nil)
	if err != nil {
		t.Fatal(err)
	}
	accept(t, src, 7, ranges, 0)
	if _, err := Send(ctx, dst.Store(), ranges, since, dial(t, src), 7, wire.MigrateShipped, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if v, ok := value(t, srcSess, fmt.Sprintf("k%d", i)); v != "source" {
			t.Fatalf("k%d on the source after the ship-back: %q %v", i, v, ok)
		}
	}
}
