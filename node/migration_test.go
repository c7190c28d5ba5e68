package node

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetkv/fleetkv/admit"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/store"
)

func memberConfig(t *testing.T, md cluster.Metadata, id cluster.ServerID) Config {
	c := testConfig(t.TempDir(), md, id)
	c.Cluster.MigrationTick = 10 * time.Millisecond
	return c
}

// twoMembers starts members a and b over md, spreads the slots over them
// and returns them once both serve their halves.
func twoMembers(t *testing.T, md cluster.Metadata, ca, cb Config) (a, b *Node) {
	t.Helper()
	ctx := context.Background()
	a, b = startNode(t, ca), startNode(t, cb)
	eventually(t, "both registered", func() bool { st, _ := md.Load(ctx); return len(st.Live) == 2 })
	st, _ := md.Load(ctx)
	m, err := cluster.NewMap("test", []cluster.Server{st.Live["a"], st.Live["b"]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SwapMap(ctx, st.MapRevision, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the halves served", func() bool { return serving(a) == cluster.Slots/2 && serving(b) == cluster.Slots/2 })
	if !a.Server().Routing().Serving.Has(0) {
		t.Fatal("a does not serve slot 0")
	}
	return a, b
}

// startMigration stores a new migration of ranges from one member to
// another.
func startMigration(t *testing.T, md cluster.Metadata, from, to cluster.ServerID, ranges []cluster.Range) cluster.MigrationID {
	t.Helper()
	ctx := context.Background()
	st, err := md.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := cluster.NewMigration(st, from, to, ranges)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec}); err != nil {
		t.Fatal(err)
	}
	return rec.ID
}

// waitPhase waits until migration id's record is final and returns it.
func waitFinal(t *testing.T, md cluster.Metadata, id cluster.MigrationID) cluster.Migration {
	t.Helper()
	var rec cluster.Migration
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := md.Load(context.Background())
		if err == nil {
			if r, ok := st.MigrationByID(id); ok && r.Phase.Final() {
				return r
			} else if ok {
				rec = r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("migration %d not final after 30 s: %+v", id, rec)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writer keeps writing keys through a routed client until stopped, and
// remembers the value each key last got acknowledged. Any failed operation
// fails the test: a migration must not fail a client.
type writer struct {
	t     *testing.T
	stop  chan struct{}
	done  chan struct{}
	acked map[string]string // the writer goroutine's until halt
	n     atomic.Int64
}

func startWriter(t *testing.T, addr string, keys int) *writer {
	w := &writer{t: t, stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]string{}}
	c, err := client.New(client.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		defer c.Close()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			k, v := fmt.Sprintf("w%d", i%keys), fmt.Sprintf("v%d", i)
			if err := c.Set(context.Background(), []byte(k), []byte(v)); err != nil {
				t.Errorf("set %s during the migration: %v", k, err)
				return
			}
			w.acked[k] = v
			w.n.Add(1)
		}
	}()
	return w
}

// halt stops the writer and returns what it wrote.
func (w *writer) halt() map[string]string {
	close(w.stop)
	<-w.done
	if w.n.Load() == 0 {
		w.t.Fatal("the writer wrote nothing")
	}
	return w.acked
}

// wrote waits until the writer wrote n more keys.
func (w *writer) wrote(n int64) {
	w.t.Helper()
	from := w.n.Load()
	eventually(w.t, "the writer writes", func() bool { return w.n.Load() >= from+n })
}

// fill writes n keys through c, deleting every tenth, and returns what
// they hold.
func fill(t *testing.T, c *client.Client, n int) map[string]string {
	t.Helper()
	ctx := context.Background()
	want := map[string]string{}
	for i := range n {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("before-%d", i)
		if err := c.Set(ctx, []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
		if i%10 == 3 {
			if _, err := c.Delete(ctx, []byte(k)); err != nil {
				t.Fatal(err)
			}
			want[k] = ""
		}
	}
	return want
}

// check reads every key of want through c ("": absent).
func check(t *testing.T, c *client.Client, want map[string]string) {
	t.Helper()
	for k, wv := range want {
		v, found, err := c.Get(context.Background(), []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if found != (wv != "") || string(v) != wv {
			t.Fatalf("%s (slot %d) reads %q %v, want %q", k, keyhash.Slot([]byte(k)), v, found, wv)
		}
	}
}

func dialCluster(t *testing.T, n *Node) *client.Client {
	c, err := client.New(client.Config{Addr: n.Server().Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// keysIn counts the live keys n's store holds of r.
func keysIn(n *Node, r cluster.Range) int64 {
	k, err := n.Server().Store().CountKeys(context.Background(), keyhash.FirstHash(r.First), keyhash.LastHash(r.Last))
	if err != nil {
		return -1
	}
	return k
}

// servedBy waits until to serves every slot of r and from none.
func servedBy(t *testing.T, r cluster.Range, to, from *Node) {
	t.Helper()
	eventually(t, "the slots served by their owner only", func() bool {
		rt, rf := to.Server().Routing(), from.Server().Routing()
		return rt.Serving.Has(r.First) && rt.Serving.Has(r.Last) && !rf.Serving.Has(r.First) && !rf.Serving.Has(r.Last)
	})
}

// TestLiveMigration moves a quarter of the slots from member a to member b
// while a client writes: the migration completes, no client operation
// fails, every key written before or during it reads its last acknowledged
// value afterwards, b serves the slots and a serves none of them and, once
// it cleaned up, holds none of their keys.
func TestLiveMigration(t *testing.T) {
	md := cluster.NewMem()
	a, b := twoMembers(t, md, memberConfig(t, md, "a"), memberConfig(t, md, "b"))
	c := dialCluster(t, a)
	want := fill(t, c, 3000)
	moving := quarter
	// Keys of the moving slots with an expiry keep it on the target.
	ctx := context.Background()
	expiring := map[string]time.Time{}
	for i := 0; len(expiring) < 20; i++ {
		k := fmt.Sprintf("e%d", i)
		if s := keyhash.Slot([]byte(k)); s < moving.First || s > moving.Last {
			continue
		}
		if err := c.SetTTL(ctx, []byte(k), []byte("x"), time.Hour); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(2 * time.Hour).Truncate(time.Millisecond)
		if _, _, err := c.Expire(ctx, []byte(k), at); err != nil {
			t.Fatal(err)
		}
		expiring[k] = at
	}

	w := startWriter(t, a.Server().Addr(), 500)
	id := startMigration(t, md, "a", "b", []cluster.Range{moving})
	rec := waitFinal(t, md, id)
	maps.Copy(want, w.halt())
	if rec.Phase != cluster.PhaseComplete {
		t.Fatalf("migration ended %s: %s", rec.Phase, rec.Reason)
	}
	check(t, c, want)
	for k, at := range expiring {
		// Expire with the same time changes nothing and answers the old one.
		if existed, old, err := c.Expire(ctx, []byte(k), at); err != nil || !existed || !old.Equal(at) {
			t.Fatalf("%s after the move: %v, expiry %v (want %v), %v", k, existed, old, at, err)
		}
	}
	servedBy(t, moving, b, a)
	eventually(t, "a dropped its copies", func() bool { return keysIn(a, moving) == 0 })
	if keysIn(b, moving) == 0 {
		t.Fatal("b holds no key of the slots")
	}
	// Both report that they need the record no more (the planner keeps
	// the newest records, so it stays).
	eventually(t, "both servers' clean-up floors pass the migration", func() bool {
		st, err := md.Load(ctx)
		return err == nil && st.Cleaned["a"] > id && st.Cleaned["b"] > id
	})
}

// gate blocks a member's migration task of one kind until released (or
// aborted), and tells when one got there.
type gate struct {
	kind    cluster.TaskKind
	reached chan struct{}
	release chan struct{}
}

// quarter is the slots the tests migrate: a quarter of them, all a's.
var quarter = cluster.Range{First: 0, Last: cluster.Slots/4 - 1}

// gateOn holds back cfg's member's tasks of kind (gate).
func gateOn(cfg *Config, kind cluster.TaskKind) *gate {
	g := newGate(kind)
	cfg.Cluster.taskGate = g.run
	return g
}

func newGate(kind cluster.TaskKind) *gate {
	return &gate{kind: kind, reached: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *gate) run(ctx context.Context, t cluster.Task) error {
	if t.Kind != g.kind {
		return nil
	}
	select {
	case g.reached <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s task after 30 s", g.kind)
	}
}

// requestCancel asks for migration id to be cancelled, as an operator does.
func requestCancel(t *testing.T, md cluster.Metadata, id cluster.MigrationID) {
	t.Helper()
	ctx := context.Background()
	for try := 0; ; try++ {
		st, err := md.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := st.MigrationByID(id)
		rec.CancelRequested = true
		if _, err = md.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec}); err == nil {
			return
		}
		if try == 20 {
			t.Fatal(err)
		}
	}
}

// TestMigrationCancelledAfterTransfer: a migration cancelled while it
// moves, after the target served the slots and took writes, ends Cancelled:
// the writes the target acknowledged are shipped back, no client operation
// failed, the source serves the slots again and the target dropped them.
func TestMigrationCancelledAfterTransfer(t *testing.T) {
	md := cluster.NewMem()
	ca := memberConfig(t, md, "a")
	move := gateOn(&ca, cluster.TaskMove)
	a, b := twoMembers(t, md, ca, memberConfig(t, md, "b"))
	c := dialCluster(t, a)
	want := fill(t, c, 3000)
	moving := quarter

	w := startWriter(t, a.Server().Addr(), 500)
	id := startMigration(t, md, "a", "b", []cluster.Range{moving})
	move.wait(t)
	servedBy(t, moving, b, a)
	w.wrote(200) // some of them to b
	requestCancel(t, md, id)
	rec := waitFinal(t, md, id)
	close(move.release)
	maps.Copy(want, w.halt())
	if rec.Phase != cluster.PhaseCancelled {
		t.Fatalf("migration ended %s: %s", rec.Phase, rec.Reason)
	}
	check(t, c, want)
	servedBy(t, moving, a, b)
	eventually(t, "b dropped its copies", func() bool { return keysIn(b, moving) == 0 })
}

// TestMigrationTargetRestarts: the target restarts after it took the
// records and before it checkpointed them; the source learns it from the
// target's new incarnation, moves them again, and the migration completes
// with every key in place.
func TestMigrationTargetRestarts(t *testing.T) {
	md := cluster.NewMem()
	cb := memberConfig(t, md, "b")
	ckpt := gateOn(&cb, cluster.TaskCheckpoint)
	a, b := twoMembers(t, md, memberConfig(t, md, "a"), cb)
	want := fill(t, dialCluster(t, a), 3000)
	moving := quarter

	w := startWriter(t, a.Server().Addr(), 500)
	id := startMigration(t, md, "a", "b", []cluster.Range{moving})
	ckpt.wait(t)
	w.wrote(100)
	maps.Copy(want, w.halt())
	inc := b.Server().Incarnation()
	stopNode(t, b)
	cb.Cluster.taskGate = nil
	b = startNode(t, cb)
	if b.Server().Incarnation() != inc+1 {
		t.Fatalf("restarted as incarnation %d after %d", b.Server().Incarnation(), inc)
	}
	if rec := waitFinal(t, md, id); rec.Phase != cluster.PhaseComplete {
		t.Fatalf("migration ended %s: %s", rec.Phase, rec.Reason)
	}
	check(t, dialCluster(t, a), want) // c's session with b was lost with b
	servedBy(t, moving, b, a)
	eventually(t, "a dropped its copies", func() bool { return keysIn(a, moving) == 0 })
}

// TestParkedReadsAreFetched: while the source's move is held back, a read
// of a key the target has not received is parked and answered by the
// record the target's node fetches from the source; a read of a key the
// source never had answers NOT_FOUND the same way.
func TestParkedReadsAreFetched(t *testing.T) {
	md := cluster.NewMem()
	ca := memberConfig(t, md, "a")
	move := gateOn(&ca, cluster.TaskMove)
	a, b := twoMembers(t, md, ca, memberConfig(t, md, "b"))
	c := dialCluster(t, a)
	want := fill(t, c, 2000)
	moving := quarter
	startMigration(t, md, "a", "b", []cluster.Range{moving})
	move.wait(t)
	servedBy(t, moving, b, a)
	eventually(t, "b holds reads of keys it lacks", func() bool {
		h := b.Server().Routing().Misses
		return h != nil && h.Has(moving.First)
	})
	reader := dialCluster(t, b)
	checked := 0
	for k, v := range want {
		if s := keyhash.Slot([]byte(k)); s < moving.First || s > moving.Last {
			continue
		}
		got, found, err := reader.Get(context.Background(), []byte(k))
		if err != nil || found != (v != "") || string(got) != v {
			t.Fatalf("%s read through b while the move is held back: %q %v %v, want %q", k, got, found, err, v)
		}
		checked++
	}
	if checked == 0 || b.Server().Stats().Parks == 0 {
		t.Fatalf("%d keys read, %d reads parked", checked, b.Server().Stats().Parks)
	}
	close(move.release)
}

// TestHotKeysGoFirst: the keys clients use while the source samples are
// at the target before the move sends the rest (held back here), though
// no read reached the target to fetch them; the keys nobody used are not.
func TestHotKeysGoFirst(t *testing.T) {
	md := cluster.NewMem()
	ca := memberConfig(t, md, "a")
	move := gateOn(&ca, cluster.TaskMove)
	ca.Cluster.SampleTicks = 20
	a, b := twoMembers(t, md, ca, memberConfig(t, md, "b"))
	c := dialCluster(t, a)
	want := fill(t, c, 2000)
	moving := quarter
	var hot, cold []string
	for k, v := range want {
		if s := keyhash.Slot([]byte(k)); v == "" || s < moving.First || s > moving.Last {
			continue
		}
		if len(hot) < 20 {
			hot = append(hot, k)
		} else {
			cold = append(cold, k)
		}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // a client keeps reading the hot keys
		defer close(done)
		r := dialCluster(t, a)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := r.Get(context.Background(), []byte(hot[i%len(hot)])); err != nil {
				t.Errorf("read %s: %v", hot[i%len(hot)], err)
				return
			}
		}
	}()
	id := startMigration(t, md, "a", "b", []cluster.Range{moving})
	eventually(t, "the sampling ends", func() bool {
		st, err := md.Load(context.Background())
		rec, _ := st.MigrationByID(id)
		return err == nil && rec.Phase >= cluster.PhasePrepare
	})
	close(stop) // before b serves: no read of b fetches a key
	<-done
	move.wait(t)
	if n := b.Server().Stats().Parks; n != 0 {
		t.Fatalf("b parked %d reads", n)
	}
	s, err := b.Server().Store().NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	has := func(k string) bool {
		_, st, err := s.Read([]byte(k), nil)
		if st == store.Pending {
			s.CompletePending(true)
			t.Fatalf("%s went to b's device", k)
		}
		return err == nil && st == store.OK
	}
	for _, k := range hot {
		if !has(k) {
			t.Fatalf("hot key %s is not at the target when the move begins", k)
		}
	}
	moved := 0
	for _, k := range cold {
		if has(k) {
			moved++
		}
	}
	if moved == len(cold) {
		t.Fatalf("every one of %d cold keys is at the target before the move", len(cold))
	}
	s.Suspend()
	close(move.release)
}

// TestSourceFollowsTheTargetsShare: while b takes a migration's records it
// counts as running background work (its admission control sets a share),
// and a's data tasks read b's share from b's admin listener, which their
// duty takes when it is the smaller (paced); once the migration ended, b
// counts nothing.
func TestSourceFollowsTheTargetsShare(t *testing.T) {
	md := cluster.NewMem()
	ca, cb := memberConfig(t, md, "a"), memberConfig(t, md, "b")
	move := gateOn(&ca, cluster.TaskMove)
	for _, c := range []*Config{&ca, &cb} {
		c.Server.Admin = "127.0.0.1:0"
		c.Server.AdmitInterval = time.Hour // the test sets the shares
	}
	a, b := twoMembers(t, md, ca, cb)
	fill(t, dialCluster(t, a), 500)
	startMigration(t, md, "a", "b", []cluster.Range{quarter})
	move.wait(t)
	eventually(t, "b counts taking the records as background work", func() bool {
		return b.Server().Background().Active() >= 1
	})
	b.Server().Background().Set(0.2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peer := a.member.peerShare(ctx, "b")
	eventually(t, "a reads b's share", func() bool { return peer() == 0.2 })
	d := admit.Duty{Budget: a.Server().Background(), Peer: peer}
	if a.Server().Background().Share() <= 0.2 {
		t.Fatalf("a's own share %v: the test needs it above b's", a.Server().Background().Share())
	}
	d.Begin()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	d.Wait(ctx)
	if rest := time.Since(start); rest < 40*time.Millisecond {
		t.Fatalf("a's duty rested %v after 20 ms of work at b's share of 0.2, want about 80 ms", rest)
	}
	close(move.release)
	eventually(t, "the migration ended and b counts nothing", func() bool {
		return serving(b) == cluster.Slots/2+int(quarter.Last-quarter.First+1) && b.Server().Background().Active() == 0
	})
}

// TestSnapshotTargetKeepsItsWrites: a target whose checkpoints are log
// snapshots (they leave its log mutable) holds a stale copy of a key in
// the slots it takes; the migration's drop deletes it, and a client's
// write to the key on the target before the move reaches it wins over
// the source's record the move sends. The write goes to the tail, not in
// place into the drop's tombstone below the migration's Since, where the
// move's conditional insert would not see it.
func TestSnapshotTargetKeepsItsWrites(t *testing.T) {
	md := cluster.NewMem()
	ca, cb := memberConfig(t, md, "a"), memberConfig(t, md, "b")
	cb.Server.SnapshotCheckpoints = true
	move := gateOn(&ca, cluster.TaskMove)
	a, b := twoMembers(t, md, ca, cb)
	c := dialCluster(t, a)
	moving := quarter
	var key []byte
	for i := 0; key == nil; i++ {
		if k := fmt.Appendf(nil, "stale-%d", i); keyhash.Slot(k) <= moving.Last {
			key = k
		}
	}
	if err := c.Set(context.Background(), key, []byte("source")); err != nil {
		t.Fatal(err)
	}
	s, err := b.Server().Store().NewSession() // what b kept from an earlier ownership
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upsert(key, bytes.Repeat([]byte("x"), 64)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	startMigration(t, md, "a", "b", []cluster.Range{moving})
	move.wait(t)
	servedBy(t, moving, b, a)
	if err := c.Set(context.Background(), key, []byte("target")); err != nil {
		t.Fatal(err)
	}
	close(move.release)
	eventually(t, "a dropped its copies", func() bool { return keysIn(a, moving) == 0 })
	got, found, err := c.Get(context.Background(), key)
	if err != nil || !found || string(got) != "target" {
		t.Fatalf("%s after the move: %q %v %v, want the write b took", key, got, found, err)
	}
}

// pushOut writes to keys that b serves until every record b held in
// memory before is on its device.
func pushOut(t *testing.T, c *client.Client, b *Node) {
	t.Helper()
	log := b.Server().Store().Log()
	tail := log.Tail()
	big := make([]byte, 64<<10)
	for i := 0; log.Head() <= tail; i++ {
		k := fmt.Sprintf("push%d", i)
		if keyhash.Slot([]byte(k)) < cluster.Slots/2 {
			continue // a's half
		}
		if err := c.Set(context.Background(), []byte(k), big); err != nil {
			t.Fatal(err)
		}
	}
}

// heldMove starts members a and b over a metadata store md whose
// migrations' move tasks on a are held back (move) until the test
// releases them, beating slowly enough that a source waits 5 s for its
// target's progress before it cancels.
func heldMove(t *testing.T) (md *cluster.Mem, move *gate, a, b *Node) {
	t.Helper()
	md = cluster.NewMem()
	ca := memberConfig(t, md, "a")
	ca.Cluster.MigrationTick = 50 * time.Millisecond // the source cancels after 100 beats without progress
	move = gateOn(&ca, cluster.TaskMove)
	a, b = twoMembers(t, md, ca, memberConfig(t, md, "b"))
	return md, move, a, b
}

// tagIn returns a hash tag ("{t…}") whose keys' slot is in r.
func tagIn(r cluster.Range) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("{t%d}", i); keyhash.Slot([]byte(k)) >= r.First && keyhash.Slot([]byte(k)) <= r.Last {
			return k
		}
	}
}

// TestRefusalsFetchTheKey: while the source's move is held back, an
// operation that decides from a key's value (an increment) on the target
// runs once the key's record is there (taken at the handover, fetched, or
// written since; in memory or on the target's device), and one on a key
// not there yet is refused but has the node fetch the key, so that the
// client's retry succeeds, also where the source has no record of it
// (an increment, a RESP SETNX); a RESP GET of a key not there yet is
// parked while the node fetches the key, and answers its value the first
// time, and so does a PTTL with the key's expiry; a RESP DEL of two keys, one not there
// yet, deletes neither at first.
func TestRefusalsFetchTheKey(t *testing.T) {
	md, move, a, b := heldMove(t)
	c := dialCluster(t, a)
	ctx := context.Background()
	var counters, plain, fresh, expiring []string // fresh: never written
	src := redis.NewClient(&redis.Options{Addr: a.Server().RESPAddr(), MaxRetries: -1})
	defer src.Close()
	for i := 0; len(counters) < 20 || len(plain) < 20 || len(fresh) < 20 || len(expiring) < 3; i++ {
		k := fmt.Sprintf("n%d", i)
		if keyhash.Slot([]byte(k)) > quarter.Last {
			continue
		}
		if len(fresh) < 20 {
			fresh = append(fresh, k)
		} else if len(counters) < 20 {
			if _, err := c.Incr(ctx, []byte(k), 10); err != nil {
				t.Fatal(err)
			}
			counters = append(counters, k)
		} else if len(expiring) < 3 {
			if err := src.Set(ctx, k, "e-"+k, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			expiring = append(expiring, k)
		} else {
			if err := c.Set(ctx, []byte(k), []byte("v-"+k)); err != nil {
				t.Fatal(err)
			}
			plain = append(plain, k)
		}
	}
	tag := tagIn(quarter) // a DEL of two keys of one slot, one fetched first
	pair := []string{tag + "a", tag + "b"}
	for _, k := range pair {
		if err := c.Set(ctx, []byte(k), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	startMigration(t, md, "a", "b", []cluster.Range{quarter})
	move.wait(t)
	servedBy(t, quarter, b, a)
	held := func(after string) {
		t.Helper()
		if h := b.Server().Routing().Misses; h == nil || !h.Has(quarter.First) {
			t.Fatalf("after %s, the slots left Misses while the move was held back: the migration was cancelled", after)
		}
	}
	refused := b.Server().Stats().NotOwner
	for _, k := range counters {
		v, err := c.Incr(ctx, []byte(k), 1)
		if err != nil || v != 11 {
			t.Fatalf("increment of %s on the target while the move is held back: %d, %v; want 11", k, v, err)
		}
	}
	if b.Server().Stats().NotOwner == refused {
		t.Fatal("no increment was refused: the keys were at the target before the test asked")
	}
	pushOut(t, c, b) // the incremented records leave the target's memory: it reads them from its device
	for _, k := range counters {
		v, err := c.Incr(ctx, []byte(k), 1)
		if err != nil || v != 12 {
			t.Fatalf("increment of %s, its record on the target's device, while the move is held back: %d, %v; want 12", k, v, err)
		}
	}
	for _, k := range fresh[:10] { // the source answers absent: a deletion lets them run
		v, err := c.Incr(ctx, []byte(k), 1)
		if err != nil || v != 1 {
			t.Fatalf("increment of %s, which the source never held, on the target while the move is held back: %d, %v; want 1", k, v, err)
		}
	}
	held("the increments")
	rc := redis.NewClient(&redis.Options{Addr: b.Server().RESPAddr(), MaxRetries: -1})
	defer rc.Close()
	retry := func(f func() error) error { // what a Redis Cluster client does with TRYAGAIN
		var err error
		for try := 0; try < 50; try++ {
			if err = f(); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
		return err
	}
	parks := b.Server().Stats().Parks
	for _, k := range append(plain, pair[0]) {
		got, err := rc.Get(ctx, k).Result() // parked, not TRYAGAIN: no retry
		if want := "v-" + k; err != nil || got != want && k != pair[0] {
			t.Fatalf("RESP GET %s on the target while the move is held back: %q, %v; want %q", k, got, err, want)
		}
	}
	if b.Server().Stats().Parks == parks {
		t.Error("no RESP GET was parked: the keys were at the target before the test asked")
	}
	parks = b.Server().Stats().Parks
	for _, k := range expiring {
		left, err := rc.PTTL(ctx, k).Result() // parked too, answered with the expiry fetched
		if err != nil || left <= 0 || left > time.Hour {
			t.Fatalf("RESP PTTL %s (an hour at the source) on the target while the move is held back: %v, %v", k, left, err)
		}
	}
	if b.Server().Stats().Parks == parks {
		t.Error("no RESP PTTL was parked: the keys were at the target before the test asked")
	}
	for _, k := range fresh[10:] {
		var set bool
		err := retry(func() (err error) { set, err = rc.SetNX(ctx, k, "nx", 0).Result(); return err })
		if err != nil || !set {
			t.Fatalf("RESP SETNX %s, which the source never held, on the target while the move is held back: %v, %v; want set", k, set, err)
		}
		if got, err := rc.Get(ctx, k).Result(); err != nil || got != "nx" {
			t.Fatalf("RESP GET %s after its SETNX: %q, %v", k, got, err)
		}
	}
	var deleted int64
	if err := retry(func() (err error) { deleted, err = rc.Del(ctx, pair...).Result(); return err }); err != nil || deleted != 2 {
		t.Fatalf("RESP DEL %v on the target, %s fetched before: %d, %v; want 2", pair, pair[0], deleted, err)
	}
	held("the RESP commands")
	close(move.release)
}

// TestLateRefusalIsRerouted: an increment on a migration target whose
// device read finds no record of its key written since the handover (the
// key's chain leaves memory at another key's record, written there since)
// is refused in its completion; the routed client re-issues it, the
// refusal had the key fetched, and the retry returns the right value.
func TestLateRefusalIsRerouted(t *testing.T) {
	md, move, a, b := heldMove(t)
	c := dialCluster(t, a)
	ctx := context.Background()
	tag := tagIn(quarter)
	k := []byte(tag + "counter")
	bits := b.Server().Store().Stats().Index.Bits
	hk := keyhash.Hash(k)
	var other []byte // shares k's index bucket and tag on b: its chain
	for i := 0; other == nil; i++ {
		x := fmt.Appendf(nil, "%sother%d", tag, i)
		if h := keyhash.Hash(x); h&(1<<14-1) == hk&(1<<14-1) && index.BucketOf(h, bits) == index.BucketOf(hk, bits) {
			other = x
		}
	}
	if _, err := c.Incr(ctx, k, 10); err != nil {
		t.Fatal(err)
	}
	startMigration(t, md, "a", "b", []cluster.Range{quarter})
	move.wait(t)
	servedBy(t, quarter, b, a)
	if err := c.Set(ctx, other, []byte("written on the target")); err != nil {
		t.Fatal(err)
	}
	pushOut(t, c, b)
	if b.Server().Store().Stats().Index.Bits != bits {
		t.Fatal("b's index grew: the keys no longer share a chain")
	}
	if m := b.Server().Routing().Misses; m == nil || !m.Has(keyhash.Slot(k)) {
		t.Fatal("the slot left Misses before the increment")
	}
	refused := b.Server().Stats().NotOwner
	v, err := c.Incr(ctx, k, 1)
	if err != nil || v != 11 {
		t.Fatalf("increment refused after its device read, re-routed: %d, %v; want 11", v, err)
	}
	if b.Server().Stats().NotOwner == refused {
		t.Error("the increment was not refused: the test did not reach the late refusal")
	}
	close(move.release)
}
