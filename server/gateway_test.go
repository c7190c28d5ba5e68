package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/wire"
)

// TestSlotsNotServedAreRefused: under a routing that gives one key's slot
// to another server, that key's operations fail alone, NOT_OWNER on the
// native protocol and MOVED on RESP, and reach no store; the other keys of
// the same batch and pipeline are served.
func TestSlotsNotServedAreRefused(t *testing.T) {
	s := startRESP(t, func(c *Config) { c.ServerID = "me" })
	ctx := context.Background()
	mine, theirs := []byte("served-key"), []byte("moved-key")
	slot := keyhash.Slot(theirs)
	if keyhash.Slot(mine) == slot {
		t.Fatal("pick keys of two slots")
	}
	m, err := cluster.NewMap("test", []cluster.Server{{ID: "me", Native: s.Addr(), RESP: s.RESPAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	m.Servers["other"] = cluster.Server{ID: "other", Native: "127.0.0.1:1", RESP: "127.0.0.1:2"}
	m.Views["other"] = 1
	m, err = m.Assign([]cluster.Range{{First: slot, Last: slot}}, "other", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &cluster.Routing{View: m.Views["me"], Serving: m.Serving("me", nil), Map: m}
	if err := s.Install(ctx, r); err != nil {
		t.Fatal(err)
	}

	sess, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var errMine, errTheirs error
	_ = sess.Upsert(mine, []byte("v"), func(r client.Result) { errMine = r.Err })
	_ = sess.Upsert(theirs, []byte("v"), func(r client.Result) { errTheirs = r.Err })
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	if errMine != nil || !errors.Is(errTheirs, client.ErrNotOwner) {
		t.Fatalf("served key: %v; moved key: %v (want %v)", errMine, errTheirs, client.ErrNotOwner)
	}

	rc := goRedis(t, s, nil)
	if err := rc.Set(ctx, string(mine), "w", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err = rc.Set(ctx, string(theirs), "w", 0).Err()
	if want := "MOVED " + strconv.Itoa(int(slot)) + " 127.0.0.1:2"; err == nil || err.Error() != want {
		t.Fatalf("SET of a moved key: %v, want %q", err, want)
	}
	if err := rc.Get(ctx, string(theirs)).Err(); err == nil || !strings.HasPrefix(err.Error(), "MOVED ") {
		t.Fatalf("GET of a moved key: %v", err)
	}
	// Nothing reached the store for the moved key.
	r2 := &cluster.Routing{View: r.View + 1, Serving: cluster.AllSlots(), Map: m}
	if err := s.Install(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Get(ctx, string(theirs)).Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the moved key was written: GET = %v", err)
	}
	if s.Stats().NotOwner < 3 {
		t.Fatalf("not-owner count %d, want 3", s.Stats().NotOwner)
	}
}

// TestMigrationHoldsAtTheGateway: under a routing with a migration's holds
// (Routing.WithHolds), a held slot is not served (TRYAGAIN: this server
// owns it), and in a slot whose records may not all have arrived (Misses)
// a read that finds its key is answered, in memory or from the device, a
// read that finds nothing is parked (on both fronts), while a read that
// meets a deletion, now or when its device read completes, and every
// operation that decides from the key's value are refused on both fronts
// (no migration accepts the slot here to say whether the deletion is
// garbage); blind writes go through. Without the holds all are served,
// the parked reads too.
func TestMigrationHoldsAtTheGateway(t *testing.T) {
	s := startRESP(t, func(c *Config) {
		c.ServerID = "me"
		c.Store.Log = tinyLog(nil) // 400 fillers push keys to the device
	})
	ctx := context.Background()
	m, err := cluster.NewMap("test", []cluster.Server{{ID: "me", Native: s.Addr(), RESP: s.RESPAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	base := &cluster.Routing{View: 1, Serving: cluster.AllSlots(), Map: m}
	if err := s.Install(ctx, base); err != nil {
		t.Fatal(err)
	}
	rc := goRedis(t, s, nil)
	// {m}gone is deleted and, with {m}cold, pushed to the device.
	res(rc.Set(ctx, "{m}gone", "x", 0).Result()).ok(t)
	res(rc.Del(ctx, "{m}gone").Result()).ok(t)
	res(rc.Set(ctx, "{m}cold", "cold-value", 0).Result()).ok(t)
	p := rc.Pipeline()
	for i := range 400 {
		p.Set(ctx, fmt.Sprintf("filler-%d", i), strings.Repeat("f", 200), 0)
	}
	res(p.Exec(ctx)).ok(t)
	res(rc.Set(ctx, "{m}here", "hot-value", 0).Result()).ok(t)

	var holds cluster.Holds
	holds.Hold, holds.Misses = &cluster.SlotSet{}, &cluster.SlotSet{}
	mSlot, hSlot := keyhash.Slot([]byte("{m}x")), keyhash.Slot([]byte("{h}x"))
	holds.Misses.Add(cluster.Range{First: mSlot, Last: mSlot})
	holds.Hold.Add(cluster.Range{First: hSlot, Last: hSlot})
	if err := s.Install(ctx, base.WithHolds(&holds)); err != nil {
		t.Fatal(err)
	}
	pending := s.Stats().Pending
	tryAgain := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
			t.Errorf("%s: %v, want TRYAGAIN", what, err)
		}
	}
	equal(t, "GET of a key that is here", res(rc.Get(ctx, "{m}here").Result()).ok(t), "hot-value")
	equal(t, "GET of a cold key that is here", res(rc.Get(ctx, "{m}cold").Result()).ok(t), "cold-value")
	parked := make(chan error, 1)
	go func() { parked <- goRedis(t, s, nil).Get(ctx, "{m}absent").Err() }()
	eventually(t, "the GET of an absent key parked", func() bool { return s.Stats().ParkedReads == 1 })
	tryAgain("GET of a key deleted on the device", rc.Get(ctx, "{m}gone").Err())
	ttl := make(chan *redis.DurationCmd, 1)
	go func() { ttl <- goRedis(t, s, nil).TTL(ctx, "{m}absent") }()
	eventually(t, "the TTL of an absent key parked too", func() bool { return s.Stats().ParkedReads == 2 })
	if s.Stats().Pending == pending {
		t.Error("no GET went to the device")
	}
	equal(t, "SET (blind)", res(rc.Set(ctx, "{m}new", "n", 0).Result()).ok(t), "OK")
	tryAgain("DEL", rc.Del(ctx, "{m}here").Err())
	tryAgain("INCR", rc.Incr(ctx, "{m}counter").Err())
	tryAgain("SET NX", rc.SetNX(ctx, "{m}absent", "v", 0).Err())
	tryAgain("GET of a held slot", rc.Get(ctx, "{h}held").Err())
	tryAgain("SET in a held slot", rc.Set(ctx, "{h}held", "v", 0).Err())

	sess, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	results := map[string]error{}
	record := func(name string) func(client.Result) { return func(r client.Result) { results[name] = r.Err } }
	// A native READ of an absent key is parked (TestParkedReads and
	// TestReadsParkAfterTheDevice); one that meets a deletion while no
	// migration accepts the slot is refused (nothing tells whether the
	// deletion is garbage).
	_ = sess.Read([]byte("{m}here"), record("read here"))
	_ = sess.Upsert([]byte("{m}new2"), []byte("v"), record("upsert"))
	_ = sess.Read([]byte("{m}gone"), record("read gone"))
	_ = sess.Delete([]byte("{m}here"), record("delete"))
	_ = sess.Add([]byte("{m}counter"), 1, record("add"))
	_ = sess.Upsert([]byte("{h}held"), []byte("v"), record("upsert held"))
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	_ = sess.Upsert([]byte("{m}new4"), []byte("v"), record("upsert once the refusals were answered"))
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]error{"read here": nil, "upsert": nil, "read gone": client.ErrNotOwner,
		"delete": client.ErrNotOwner, "add": client.ErrNotOwner, "upsert held": client.ErrNotOwner,
		"upsert once the refusals were answered": nil} {
		if got := results[name]; !errors.Is(got, want) && got != want {
			t.Errorf("native %s: %v, want %v", name, got, want)
		}
	}

	if err := s.Install(ctx, base); err != nil {
		t.Fatal(err)
	}
	if err := <-parked; !errors.Is(err, redis.Nil) {
		t.Errorf("GET of an absent key, parked until the holds went: %v", err)
	}
	if c := <-ttl; c.Err() != nil || c.Val() != -2 {
		t.Errorf("TTL of an absent key, parked until the holds went: %v %v, want -2", c.Val(), c.Err())
	}
	if err := rc.Get(ctx, "{m}absent").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET of an absent key without holds: %v", err)
	}
	equal(t, "DEL without holds", res(rc.Del(ctx, "{m}here").Result()).ok(t), int64(1))
	if err := rc.Get(ctx, "{h}held").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("a write to the held slot reached the store: GET = %v", err)
	}
}

// TestMigrateInserts: MIGRATE stores a moved record unless the key has one
// written since the target prepared (one from before, garbage of an earlier
// ownership, is replaced), a shipped-back record or deletion as it comes,
// and is refused for a migration or slot the routing does not accept.
func TestMigrateInserts(t *testing.T) {
	s := startRESP(t, func(c *Config) { c.ServerID = "me" })
	ctx := context.Background()
	m, err := cluster.NewMap("test", []cluster.Server{{ID: "me", Native: s.Addr(), RESP: s.RESPAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	base := &cluster.Routing{View: 1, Serving: cluster.AllSlots(), Map: m}
	rc := goRedis(t, s, nil)
	res(rc.Set(ctx, "{m}old", "stale", 0).Result()).ok(t)
	since := s.Store().Log().Tail()
	res(rc.Set(ctx, "{m}newer", "client", 0).Result()).ok(t)
	mSlot := keyhash.Slot([]byte("{m}x"))
	accept := &cluster.SlotSet{}
	accept.Add(cluster.Range{First: mSlot, Last: mSlot})
	holds := cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &cluster.SlotSet{}, Accept: []cluster.Accepting{{ID: 7, Slots: accept, Since: since}}}
	if err := s.Install(ctx, base.WithHolds(&holds)); err != nil {
		t.Fatal(err)
	}
	sess, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	errs := map[string]error{}
	send := func(name string, id uint64, kind wire.MigrateKind, key, value string) {
		if err := sess.Migrate(id, kind, []byte(key), 0, []byte(value), func(r client.Result) { errs[name] = r.Err }); err != nil {
			t.Fatal(err)
		}
	}
	send("moved over a newer record", 7, wire.MigrateMoved, "{m}newer", "moved")
	send("moved over garbage", 7, wire.MigrateMoved, "{m}old", "moved-old")
	send("moved, new key", 7, wire.MigrateMoved, "{m}fresh", "f")
	send("shipped", 7, wire.MigrateShipped, "{m}shipped", "s")
	send("other migration", 8, wire.MigrateMoved, "{m}other", "x")
	send("other slot", 7, wire.MigrateMoved, "{h}other", "x")
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	send("shipped deletion", 7, wire.MigrateShippedDeleted, "{m}fresh", "")
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]error{"moved over a newer record": nil, "moved over garbage": nil, "moved, new key": nil,
		"shipped": nil, "shipped deletion": nil, "other migration": client.ErrNotOwner, "other slot": client.ErrNotOwner} {
		if got := errs[name]; !errors.Is(got, want) && got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	for key, want := range map[string]string{"{m}newer": "client", "{m}old": "moved-old", "{m}shipped": "s"} {
		equal(t, "GET "+key, res(rc.Get(ctx, key).Result()).ok(t), want)
	}
	for _, key := range []string{"{m}fresh", "{m}other", "{h}other"} {
		if err := rc.Get(ctx, key).Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("GET %s: %v, want nil", key, err)
		}
	}
}

// TestMigratorMessages: a MIGRATOR operation answers the server's
// incarnation, hands its message to the hook (a copy kept past the call is
// the hook's), and is refused with a message where no hook takes it.
func TestMigratorMessages(t *testing.T) {
	var got [][]byte
	var mu sync.Mutex
	s := startTest(t, func(c *Config) {
		c.Incarnation = 42
		c.OnMigrator = func(b []byte) { mu.Lock(); got = append(got, bytes.Clone(b)); mu.Unlock() }
	})
	plain := startTest(t, nil)
	ask := func(s *Server, msg string) client.Result {
		sess, err := client.Dial(client.Config{Addr: s.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		var res client.Result
		if err := sess.Migrator([]byte(msg), func(r client.Result) { res = r; res.Value = bytes.Clone(r.Value) }); err != nil {
			t.Fatal(err)
		}
		if err := sess.Wait(); err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, msg := range []string{"", `{"Kind":1}`} {
		r := ask(s, msg)
		if r.Err != nil || len(r.Value) != 8 || binary.LittleEndian.Uint64(r.Value) != 42 {
			t.Fatalf("MIGRATOR %q: %+v, want incarnation 42", msg, r)
		}
	}
	mu.Lock()
	if len(got) != 1 || string(got[0]) != `{"Kind":1}` {
		t.Errorf("the hook took %q, want the one message", got)
	}
	mu.Unlock()
	if r := ask(plain, `{"Kind":1}`); r.Err == nil {
		t.Error("a server without a migrator took a message")
	}
	if r := ask(plain, ""); r.Err != nil || len(r.Value) != 8 {
		t.Errorf("a server without a migrator does not answer its incarnation: %+v", r)
	}
}

// TestRefusalsFenceTheSlot: once a connection's operation is refused
// NOT_OWNER, its later operations on that slot are refused too, even after
// the server serves the slot again, until a batch says the client
// re-routed (wire.FlagRerouted); other slots are not fenced. A client that
// re-issues what was refused thus never has a later operation on the key
// run before it.
func TestRefusalsFenceTheSlot(t *testing.T) {
	s := startTest(t, func(c *Config) { c.ServerID = "me" })
	ctx := context.Background()
	mine, other := []byte("{m}k"), []byte("{h}k")
	slot := keyhash.Slot(mine)
	without := *cluster.AllSlots()
	without.Remove(cluster.Range{First: slot, Last: slot})
	if err := s.Install(ctx, &cluster.Routing{View: 1, Serving: &without}); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	serial := uint64(1)
	type op struct {
		code       wire.Op
		key, value []byte
	}
	send := func(flags uint8, ops ...op) []wire.Result {
		t.Helper()
		b, start := wire.BeginBatch(nil)
		for _, o := range ops {
			b = wire.AppendOp(b, o.code, o.key, o.value)
		}
		wire.FinishRequest(b, start, wire.RequestHeader{Flags: flags, Count: uint32(len(ops)), View: 1, Serial: serial})
		serial += uint64(len(ops))
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
		h, body := readBatch(t, nc)
		var r wire.ResultReader
		r.Reset(h, body, wire.DefaultLimits)
		var out []wire.Result
		for {
			res, ok, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return out
			}
			res.Value = bytes.Clone(res.Value)
			out = append(out, res)
		}
	}
	refused := func(r wire.Result) bool { return r.Status == wire.StatusError && r.Code == wire.CodeNotOwner }
	if got := send(0, op{wire.OpUpsert, mine, []byte("v1")}); !refused(got[0]) {
		t.Fatalf("an upsert of a slot not served: %+v", got[0])
	}
	if err := s.Install(ctx, &cluster.Routing{View: 1, Serving: cluster.AllSlots()}); err != nil {
		t.Fatal(err)
	}
	got := send(0, op{wire.OpUpsert, mine, []byte("v2")}, op{wire.OpUpsert, other, []byte("x")})
	if !refused(got[0]) || got[1].Status != wire.StatusOK {
		t.Fatalf("after a refusal, the slot served again: %+v (want NOT_OWNER), the other slot: %+v (want OK)", got[0], got[1])
	}
	got = send(wire.FlagRerouted, op{wire.OpUpsert, mine, []byte("v3")}, op{wire.OpRead, mine, nil})
	if got[0].Status != wire.StatusOK || string(got[1].Value) != "v3" {
		t.Fatalf("after the client re-routed: %+v", got)
	}
}

// TestParkedReads: on a migration's target, a native READ of a key it lacks
// in a Misses slot is parked, not refused: a record the migration sends for
// the key answers it (even when a later write of the reader's connection
// keeps the key, and the read answers what was there before that write);
// the slot leaving Misses answers NOT_FOUND; the slot leaving the server
// answers NOT_OWNER.
func TestParkedReads(t *testing.T) {
	s := startTest(t, func(c *Config) { c.ServerID = "me" })
	ctx := context.Background()
	pt := newParkingTarget(t, s)
	mSlot, holds, base, reader, migrator := pt.slot, pt.holds, pt.base, pt.reader, pt.migrator
	answers := pt.answers
	read := pt.read
	read("parked, then sent", "{m}a")
	if err := reader.Upsert([]byte("{m}a"), []byte("written after the read"), nil); err != nil {
		t.Fatal(err)
	}
	read("after the write", "{m}a")
	read("parked, never sent", "{m}b")
	if err := reader.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two reads parked", func() bool { return s.Stats().ParkedReads == 2 })
	if err := migrator.Migrate(7, wire.MigrateMoved, []byte("{m}a"), 0, []byte("from the source"), nil); err != nil {
		t.Fatal(err)
	}
	if err := migrator.Wait(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "one read parked", func() bool { return s.Stats().ParkedReads == 1 })
	if err := s.Install(ctx, base); err != nil { // every record arrived
		t.Fatal(err)
	}
	if err := reader.Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]readAnswer{"parked, then sent": {"from the source", true, nil},
		"after the write": {"written after the read", true, nil}, "parked, never sent": {"", false, nil}} {
		if got := answers[name]; got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	if got := s.Stats(); got.Parks != 2 || got.ParkedReads != 0 {
		t.Errorf("parks %d, parked now %d; want 2 and 0", got.Parks, got.ParkedReads)
	}
	if w := s.Stats().ParkWaits; w.Count() != 2 || w.Sum <= 0 {
		t.Errorf("park waits: %d, %v s in all; want the 2 reads answered", w.Count(), w.Sum)
	}

	// Parked, then the slot leaves the server (a cancelled migration).
	if err := s.Install(ctx, base.WithHolds(&holds)); err != nil {
		t.Fatal(err)
	}
	read("parked, slot gone", "{m}c")
	if err := reader.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a read parked", func() bool { return s.Stats().ParkedReads == 1 })
	without := *cluster.AllSlots()
	without.Remove(cluster.Range{First: mSlot, Last: mSlot})
	if err := s.Install(ctx, &cluster.Routing{View: 1, Serving: &without}); err != nil {
		t.Fatal(err)
	}
	if err := reader.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := answers["parked, slot gone"]; !errors.Is(got.err, client.ErrNotOwner) {
		t.Errorf("a parked read whose slot left: %+v, want NOT_OWNER", got)
	}
}

// TestReadsParkAfterTheDevice: on a migration's target, a native read
// that goes to the device for a key of a Misses slot and finds no live
// record there is parked like one that memory answered (repark), and is
// answered by the key's record when it arrives; one whose key arrived
// while its device read was in flight is refused NOT_OWNER (the client
// re-issues it and finds the key); one that meets an expiry written here
// since the migration began to accept the slot answers NOT_FOUND.
func TestReadsParkAfterTheDevice(t *testing.T) {
	fd := ssd.NewFaultyDevice(ssd.NewMemDevice())
	s := startTest(t, func(c *Config) {
		c.ServerID = "me"
		c.Store.Log = tinyLog(fd) // the fillers push keys to the device
	})
	ctx := context.Background()
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, k := range []string{"{m}a", "{m}b"} { // deleted: no live record, on the device
		if err := c.Set(ctx, []byte(k), []byte("garbage of an earlier ownership")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Delete(ctx, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 400 {
		if err := c.Set(ctx, fmt.Appendf(nil, "filler-%d", i), bytes.Repeat([]byte("f"), 200)); err != nil {
			t.Fatal(err)
		}
	}
	pt := newParkingTarget(t, s)
	reader, migrator := pt.reader, pt.migrator
	answers := pt.answers
	read := func(name, key string) {
		t.Helper()
		pt.read(name, key)
		if err := reader.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	migrate := func(key string) {
		t.Helper()
		if err := migrator.Migrate(7, wire.MigrateMoved, []byte(key), 0, []byte("from the source"), nil); err != nil {
			t.Fatal(err)
		}
		if err := migrator.Wait(); err != nil {
			t.Fatal(err)
		}
	}

	pending := s.Stats().Pending
	read("parked after the device", "{m}a")
	eventually(t, "a read parked after the device", func() bool { return s.Stats().Reparks == 1 })
	if s.Stats().Pending == pending {
		t.Error("the read did not go to the device")
	}
	migrate("{m}a")
	eventually(t, "no read parked", func() bool { return s.Stats().ParkedReads == 0 })

	fd.HoldReads()
	pending = s.Stats().Pending
	read("arrived while on the device", "{m}b")
	eventually(t, "a read on the device", func() bool { return s.Stats().Pending > pending })
	migrate("{m}b")
	fd.ReleaseReads()
	if err := reader.Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := answers["parked after the device"], (readAnswer{"from the source", true, nil}); got != want {
		t.Errorf("parked after the device: %+v, want %+v", got, want)
	}
	if got := answers["arrived while on the device"]; !errors.Is(got.err, client.ErrNotOwner) {
		t.Errorf("arrived while on the device: %+v, want NOT_OWNER", got)
	}
	if got := s.Stats(); got.Parks != 1 || got.Reparks != 1 || got.ParkedReads != 0 {
		t.Errorf("parks %d, after the device %d, parked now %d; want 1, 1 and 0", got.Parks, got.Reparks, got.ParkedReads)
	}

	// An expiry in the past written here since the migration began to
	// accept the slot (a blind write, which Misses allows) is newer than
	// anything the source holds: a read that meets it, on the device or
	// in memory, answers NOT_FOUND at once, and nothing is parked.
	expire := func(key string) {
		t.Helper()
		if err := reader.UpsertExpiring([]byte(key), []byte("expired here"), 1, nil); err != nil {
			t.Fatal(err)
		}
		if err := reader.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	expire("{m}c")
	for i := range 400 {
		if err := c.Set(ctx, fmt.Appendf(nil, "filler-%d", i), bytes.Repeat([]byte("g"), 200)); err != nil {
			t.Fatal(err)
		}
	}
	expire("{m}d")
	pending = s.Stats().Pending
	read("expired here, on the device", "{m}c")
	read("expired here, in memory", "{m}d")
	if err := reader.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"expired here, on the device", "expired here, in memory"} {
		if got := answers[name]; got != (readAnswer{}) {
			t.Errorf("%s: %+v, want NOT_FOUND", name, got)
		}
	}
	if got := s.Stats(); got.Parks != 1 || got.Pending != pending+1 {
		t.Errorf("parks %d, device reads %d; want 1 and 1", got.Parks, got.Pending-pending)
	}
}

// TestRESPReadsPark: on a migration's target, RESP read steps of keys it
// lacks in a Misses slot are parked, not answered TRYAGAIN: as holes, so
// that the pipeline's replies wait in order while later commands run (a
// SET of a parked key, reads of it), or, for EXISTS, with the connection
// waiting; each is answered by what the migration sends for its key, also
// after the step went to the device and met no live record there
// (repark), or NOT_FOUND once the slot leaves Misses. A parked read whose
// slot leaves the server is refused (here CLUSTERDOWN: the routing has no
// map); one whose connection closed is dropped.
func TestRESPReadsPark(t *testing.T) {
	s := startRESP(t, func(c *Config) {
		c.ServerID = "me"
		c.Store.Log = tinyLog(ssd.NewMemDevice()) // the fillers push {m}z to the device
	})
	ctx := context.Background()
	rc := goRedis(t, s, &redis.Options{MaxRetries: -1})
	garbageOnTheDevice(t, rc, "{m}z", "{m}y")
	pt := newParkingTarget(t, s)
	migrate := func(key, value string) {
		t.Helper()
		if err := pt.migrator.Migrate(7, wire.MigrateMoved, []byte(key), 0, []byte(value), nil); err != nil {
			t.Fatal(err)
		}
		if err := pt.migrator.Wait(); err != nil {
			t.Fatal(err)
		}
	}

	p := rc.Pipeline()
	get1 := p.Get(ctx, "{m}a")
	set := p.Set(ctx, "{m}a", "written after the read", 0)
	get2 := p.Get(ctx, "{m}a")
	mget := p.MGet(ctx, "{m}b", "{m}a")
	typ := p.Type(ctx, "{m}z")
	strlen := p.StrLen(ctx, "{m}a")
	existsSent := p.Exists(ctx, "{m}y", "{m}a") // {m}y: parked after the device, the connection waiting
	existsNever := p.Exists(ctx, "{m}c")        // parked once {m}y was sent
	done := make(chan error, 1)
	go func() { _, err := p.Exec(ctx); done <- err }()
	eventually(t, "four RESP reads parked, two after the device", func() bool {
		st := s.Stats()
		return st.ParkedReads == 4 && st.Reparks == 2
	})
	select {
	case err := <-done:
		t.Fatalf("the pipeline was answered with reads still parked: %v", err)
	default:
	}
	migrate("{m}a", "from the source")
	migrate("{m}z", "sent for z")
	migrate("{m}y", "sent for y")
	// Parks is monotonic: five parks with two still parked are a, z and y
	// answered (the answers reach the RESP connection's loop through its
	// task queue) and {m}c parked after them; b and c wait for the slot.
	eventually(t, "{m}a, {m}z and {m}y answered, {m}c parked", func() bool {
		st := s.Stats()
		return st.Parks == 5 && st.ParkedReads == 2
	})
	if err := s.Install(ctx, pt.base); err != nil { // every record arrived
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	equal(t, "GET parked, then sent", get1.Val(), "from the source")
	equal(t, "SET after it", set.Val(), "OK")
	equal(t, "GET after the SET", get2.Val(), "written after the read")
	if v := mget.Val(); len(v) != 2 || v[0] != nil || v[1] != "written after the read" {
		t.Errorf("MGET of a key parked, never sent, and a key written: %q", v)
	}
	equal(t, "TYPE parked after the device, then sent", typ.Val(), "string")
	equal(t, "STRLEN", strlen.Val(), int64(len("written after the read")))
	equal(t, "EXISTS of a key parked after the device, then sent, and a key written", existsSent.Val(), int64(2))
	equal(t, "EXISTS of a key parked, never sent", existsNever.Val(), int64(0))

	// Parked, then the slot leaves the server (a cancelled migration); and
	// parked on a connection that closed.
	if err := s.Install(ctx, pt.base.WithHolds(&pt.holds)); err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 1)
	go func() { refused <- rc.Get(ctx, "{m}e").Err() }()
	raw, err := net.Dial("tcp", s.RESPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write([]byte("*2\r\n$3\r\nGET\r\n$3\r\n{m}f\r\n")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two reads parked", func() bool { return s.Stats().ParkedReads == 2 })
	raw.Close()
	without := *cluster.AllSlots()
	without.Remove(cluster.Range{First: pt.slot, Last: pt.slot})
	if err := s.Install(ctx, &cluster.Routing{View: 1, Serving: &without}); err != nil {
		t.Fatal(err)
	}
	if err := <-refused; err == nil || !strings.HasPrefix(err.Error(), "CLUSTERDOWN") {
		t.Errorf("a parked RESP read whose slot left: %v, want CLUSTERDOWN", err)
	}
	eventually(t, "no read parked", func() bool { return s.Stats().ParkedReads == 0 })
	if got := s.Stats(); got.Parks != 7 || got.Reparks != 2 {
		t.Errorf("parks %d, after the device %d; want 7 and 2", got.Parks, got.Reparks)
	}
}

// TestRESPExpiryReadsPark: the RESP reads that want the expiry too (TTL,
// PTTL, EXPIRETIME, PEXPIRETIME) of keys a migration's target lacks park
// with their connection waiting, in memory or after the device, and answer
// from the record the migration sends with its expiry: one, none, one past
// (absent), or no record once the slot leaves Misses.
func TestRESPExpiryReadsPark(t *testing.T) {
	s := startRESP(t, func(c *Config) {
		c.ServerID = "me"
		c.Store.Log = tinyLog(ssd.NewMemDevice()) // the fillers push {m}y to the device
	})
	ctx := context.Background()
	rc := goRedis(t, s, &redis.Options{MaxRetries: -1})
	garbageOnTheDevice(t, rc, "{m}y")
	pt := newParkingTarget(t, s)
	type reply struct {
		name string
		val  int64
		err  error
	}
	replies := make(chan reply, 5)
	send := func(name string, cmd func() (int64, error)) {
		go func() { v, err := cmd(); replies <- reply{name, v, err} }()
	}
	// in unit, as the server replied it (go-redis keeps -1 and -2 as they are)
	in := func(unit time.Duration, cmd func(context.Context, string) *redis.DurationCmd, key string) func() (int64, error) {
		return func() (int64, error) {
			c := cmd(ctx, key)
			if c.Val() < 0 {
				return int64(c.Val()), c.Err()
			}
			return int64(c.Val() / unit), c.Err()
		}
	}
	// Each on its own connection: a connection waits for its parked read.
	send("TTL a", in(time.Second, rc.TTL, "{m}a"))
	send("PTTL y", in(time.Millisecond, rc.PTTL, "{m}y"))
	send("PEXPIRETIME b", in(time.Millisecond, rc.PExpireTime, "{m}b"))
	send("TTL d", in(time.Second, rc.TTL, "{m}d"))
	send("EXPIRETIME c", in(time.Second, rc.ExpireTime, "{m}c"))
	eventually(t, "five expiry reads parked, one after the device", func() bool {
		st := s.Stats()
		return st.ParkedReads == 5 && st.Reparks == 1
	})
	in100s := time.Now().Add(100 * time.Second).UnixMilli()
	for _, m := range []struct {
		key string
		at  int64
	}{{"{m}a", in100s}, {"{m}y", 0}, {"{m}b", in100s}, {"{m}d", time.Now().Add(-time.Second).UnixMilli()}} {
		if err := pt.migrator.Migrate(7, wire.MigrateMoved, []byte(m.key), m.at, []byte("sent"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := pt.migrator.Wait(); err != nil {
		t.Fatal(err)
	}
	got := map[string]reply{}
	for range 4 {
		r := <-replies
		got[r.name] = r
	}
	if err := s.Install(ctx, pt.base); err != nil { // every record arrived: {m}c has none
		t.Fatal(err)
	}
	r := <-replies
	got[r.name] = r
	want := map[string]int64{"TTL a": 100, "PTTL y": -1, "PEXPIRETIME b": in100s, "TTL d": -2, "EXPIRETIME c": -2}
	for name, w := range want {
		r := got[name]
		ok := r.val == w
		if name == "TTL a" {
			ok = r.val > 90 && r.val <= 100
		}
		if r.err != nil || !ok {
			t.Errorf("%s: %d %v, want %d", name, r.val, r.err, w)
		}
	}
}

// garbageOnTheDevice writes and deletes each key, then 400 fillers of 200
// bytes that push the deletions out of a tinyLog's memory: once a
// migration accepts their slot from the log's tail on, they are garbage
// of an earlier ownership, on the device.
func garbageOnTheDevice(t *testing.T, rc *redis.Client, keys ...string) {
	t.Helper()
	ctx := context.Background()
	for _, k := range keys {
		res(rc.Set(ctx, k, "garbage of an earlier ownership", 0).Result()).ok(t)
		res(rc.Del(ctx, k).Result()).ok(t)
	}
	p := rc.Pipeline()
	for i := range 400 {
		p.Set(ctx, fmt.Sprintf("filler-%d", i), strings.Repeat("f", 200), 0)
	}
	res(p.Exec(ctx)).ok(t)
}

// parkingTarget is s made a migration's target for the slot of {m}
// keys: it serves every slot, with that one in Misses and accepted by
// migration 7 from the log's tail on; reader reads, migrator sends
// MIGRATEs, and read records each answer by name.
type parkingTarget struct {
	t                *testing.T
	slot             uint16
	holds            cluster.Holds
	base             *cluster.Routing
	reader, migrator *client.Session
	answers          map[string]readAnswer
}

// readAnswer is what a read was answered.
type readAnswer struct {
	value string
	found bool
	err   error
}

func newParkingTarget(t *testing.T, s *Server) *parkingTarget {
	t.Helper()
	pt := &parkingTarget{t: t, slot: keyhash.Slot([]byte("{m}x")), answers: map[string]readAnswer{}}
	var slot cluster.SlotSet
	slot.Add(cluster.Range{First: pt.slot, Last: pt.slot})
	pt.holds = cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &slot,
		Accept: []cluster.Accepting{{ID: 7, Slots: &slot, Since: s.Store().Log().Tail()}}}
	pt.base = &cluster.Routing{View: 1, Serving: cluster.AllSlots()}
	if err := s.Install(context.Background(), pt.base.WithHolds(&pt.holds)); err != nil {
		t.Fatal(err)
	}
	pt.reader, pt.migrator = dialSession(t, client.Config{Addr: s.Addr()}), dialSession(t, client.Config{Addr: s.Addr()})
	return pt
}

// read queues the reader's READ of key; its answer is recorded as name.
func (pt *parkingTarget) read(name, key string) {
	pt.t.Helper()
	if err := pt.reader.Read([]byte(key), func(r client.Result) {
		pt.answers[name] = readAnswer{string(r.Value), r.Status == client.OK && r.Err == nil, r.Err}
	}); err != nil {
		pt.t.Fatal(err)
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestFetchAndAbsent: a source lends its records to a migration's target
// (MIGRATE fetch answers the key's value, NOT_FOUND, or NOT_OWNER for a
// migration it does not lend to); a target tells the node of the first
// read it parks on a key (OnParked) and answers it NOT_FOUND when told the
// source has none (MIGRATE absent).
func TestFetchAndAbsent(t *testing.T) {
	type parked struct {
		id  cluster.MigrationID
		key string
	}
	var mu sync.Mutex
	var told []parked
	s := startTest(t, func(c *Config) {
		c.ServerID = "me"
		c.OnParked = func(id cluster.MigrationID, key []byte) {
			mu.Lock()
			told = append(told, parked{id, string(key)})
			mu.Unlock()
		}
	})
	ctx := context.Background()
	mSlot := keyhash.Slot([]byte("{m}x"))
	var slot cluster.SlotSet
	slot.Add(cluster.Range{First: mSlot, Last: mSlot})
	base := &cluster.Routing{View: 1, Serving: cluster.AllSlots()}
	sess := dialSession(t, client.Config{Addr: s.Addr()})
	do := func(f func(client.Callback) error) client.Result {
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
	do(func(cb client.Callback) error { return sess.Upsert([]byte("{m}k"), []byte("v"), cb) })
	do(func(cb client.Callback) error { return sess.UpsertExpiring([]byte("{m}e"), []byte("w"), 1<<50, cb) })
	lend := cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &cluster.SlotSet{}, Lend: []cluster.Accepting{{ID: 9, Slots: &slot}}}
	if err := s.Install(ctx, base.WithHolds(&lend)); err != nil {
		t.Fatal(err)
	}
	fetch := func(id uint64, key string) client.Result {
		return do(func(cb client.Callback) error { return sess.Migrate(id, wire.MigrateFetch, []byte(key), 0, nil, cb) })
	}
	if r := fetch(9, "{m}k"); r.Err != nil || string(r.Value) != "\x00\x00\x00\x00\x00\x00\x00\x00v" {
		t.Errorf("fetch of a lent key: %+v", r)
	}
	if r := fetch(9, "{m}e"); r.Err != nil || string(r.Value) != "\x00\x00\x00\x00\x00\x00\x04\x00w" {
		t.Errorf("fetch of a lent key with an expiry: %+v", r)
	}
	if r := fetch(9, "{m}none"); r.Err != nil || r.Status != client.NotFound {
		t.Errorf("fetch of an absent key: %+v", r)
	}
	if r := fetch(8, "{m}k"); !errors.Is(r.Err, client.ErrNotOwner) {
		t.Errorf("fetch for a migration not lent to: %+v", r)
	}

	since := s.st.Log().Tail()
	target := cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &slot, Accept: []cluster.Accepting{{ID: 7, Slots: &slot, Since: since}}}
	if err := s.Install(ctx, base.WithHolds(&target)); err != nil {
		t.Fatal(err)
	}
	reader := dialSession(t, client.Config{Addr: s.Addr()})
	var got client.Result
	got.Err = errors.New("not answered")
	for range 2 { // the node is told once
		if err := reader.Read([]byte("{m}z"), func(r client.Result) { got = r }); err != nil {
			t.Fatal(err)
		}
	}
	if err := reader.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two reads parked", func() bool { return s.Stats().ParkedReads == 2 })
	mu.Lock()
	if len(told) != 1 || told[0] != (parked{7, "{m}z"}) {
		t.Errorf("the node was told %+v", told)
	}
	mu.Unlock()
	do(func(cb client.Callback) error { return sess.Migrate(7, wire.MigrateAbsent, []byte("{m}z"), 0, nil, cb) })
	if err := reader.Wait(); err != nil {
		t.Fatal(err)
	}
	if got.Err != nil || got.Status != client.NotFound {
		t.Errorf("a parked read the source has no record for: %+v", got)
	}
	// The absent answer wrote a deletion since the target began to accept
	// the slot: a read of the key answers not found at once, unparked and
	// not fetched again, and an increment runs.
	got = do(func(cb client.Callback) error { return sess.Read([]byte("{m}z"), cb) })
	if got.Err != nil || got.Status != client.NotFound || s.Stats().ParkedReads != 0 {
		t.Errorf("a read after the absent answer: %+v, %d parked", got, s.Stats().ParkedReads)
	}
	got = do(func(cb client.Callback) error { return sess.Add([]byte("{m}z"), 5, cb) })
	if got.Err != nil {
		t.Errorf("an increment after the absent answer: %+v", got)
	}
	mu.Lock()
	if len(told) != 1 {
		t.Errorf("the node was told %+v; want the key once", told)
	}
	mu.Unlock()
	// The answer arriving again (a late copy) deletes nothing written since.
	do(func(cb client.Callback) error { return sess.Migrate(7, wire.MigrateAbsent, []byte("{m}z"), 0, nil, cb) })
	if got = do(func(cb client.Callback) error { return sess.Read([]byte("{m}z"), cb) }); got.Err != nil || len(got.Value) != 8 || binary.LittleEndian.Uint64(got.Value) != 5 {
		t.Errorf("the increment after a repeated absent answer: %+v", got)
	}
}

// startSampling starts a server of one loop, changed by cfg, whose routing
// samples the slot of the hash tag {m} for migration 5, and dials it.
func startSampling(t *testing.T, cfg func(*Config)) (*Server, *client.Session) {
	t.Helper()
	s := startTest(t, func(c *Config) { c.ServerID = "me"; c.Loops = 1; cfg(c) })
	mSlot := keyhash.Slot([]byte("{m}x"))
	var slot cluster.SlotSet
	slot.Add(cluster.Range{First: mSlot, Last: mSlot})
	holds := cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &cluster.SlotSet{}, Sample: []cluster.Accepting{{ID: 5, Slots: &slot}}}
	if err := s.Install(context.Background(), (&cluster.Routing{View: 1, Serving: cluster.AllSlots()}).WithHolds(&holds)); err != nil {
		t.Fatal(err)
	}
	return s, dialSession(t, client.Config{Addr: s.Addr()})
}

// TestSampling: while the routing samples a migration's slots, every data
// operation remembers its key there, at most MaxSampled per loop; keys of
// other slots are not remembered; Sampled hands them out once.
func TestSampling(t *testing.T) {
	s, sess := startSampling(t, func(c *Config) { c.MaxSampled = 3 })
	ctx := context.Background()
	for _, k := range []string{"{m}a", "{m}b", "{m}a", "{h}other"} {
		if err := sess.Upsert([]byte(k), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"{m}c", "{m}d", "{m}e"} {
		if err := sess.Read([]byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	if keys, want := sampled(t, s, sess), [][]byte{[]byte("{m}a"), []byte("{m}b"), []byte("{m}c")}; !slices.EqualFunc(keys, want, bytes.Equal) {
		t.Errorf("sampled %q, want %q", keys, want)
	}
	if keys, _ := s.Sampled(ctx, 5); len(keys) != 0 {
		t.Errorf("sampled again: %q", keys)
	}
}

// sampled waits for sess's answers, and returns the keys s's loops
// sampled for migration 5, sorted.
func sampled(t *testing.T, s *Server, sess *client.Session) [][]byte {
	t.Helper()
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Sampled(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(keys, bytes.Compare)
	return keys
}

// TestSamplingBoundedByBytes: a loop samples no key that would take the
// bytes of its keys past MaxSampledBytes, however few keys it holds.
func TestSamplingBoundedByBytes(t *testing.T) {
	s, sess := startSampling(t, func(c *Config) { c.MaxSampledBytes = 11 })
	// 4 + 4 bytes fit in 11; 5 more do not; 3 more do.
	for _, k := range []string{"{m}a", "{m}b", "{m}cc", "{m}", "{m}a"} {
		if err := sess.Upsert([]byte(k), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if keys, want := sampled(t, s, sess), [][]byte{[]byte("{m}"), []byte("{m}a"), []byte("{m}b")}; !slices.EqualFunc(keys, want, bytes.Equal) {
		t.Errorf("sampled %q, want %q", keys, want)
	}
}
