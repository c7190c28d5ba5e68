package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/server/servertest"
	"github.com/fleetkv/fleetkv/store"
)

// twoServers starts servers a and b, each serving half of the slots.
func twoServers(t *testing.T) (a, b *server.Server, m *cluster.Map) {
	t.Helper()
	ca, cb := servertest.Config(), servertest.Config()
	ca.ServerID, cb.ServerID = "a", "b"
	a, b = servertest.Start(t, ca), servertest.Start(t, cb)
	m, err := cluster.NewMap("test", []cluster.Server{{ID: "a", Native: a.Addr()}, {ID: "b", Native: b.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	install(t, a, "a", m, nil)
	install(t, b, "b", m, nil)
	return a, b, m
}

func install(t *testing.T, s *server.Server, id cluster.ServerID, m *cluster.Map, applied map[cluster.ServerID]uint64) {
	t.Helper()
	r := &cluster.Routing{View: m.Views[id], Serving: m.Serving(id, applied), Map: m}
	if err := s.Install(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// keysIn returns n keys whose slots lie in r.
func keysIn(r cluster.Range, n int) [][]byte {
	var keys [][]byte
	for i := 0; len(keys) < n; i++ {
		k := []byte(fmt.Sprint("key-", i))
		if s := keyhash.Slot(k); s >= r.First && s <= r.Last {
			keys = append(keys, k)
		}
	}
	return keys
}

func stored(t *testing.T, s *server.Server, key []byte) string {
	t.Helper()
	ss, err := s.Store().NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	v, st, err := ss.Read(key, nil)
	if err != nil || st == store.Pending {
		t.Fatalf("read %q: %v %v", key, st, err)
	}
	return string(v)
}

// TestClusterRoutesBySlot: operations reach the server that owns their
// key's slot, over one session per server.
func TestClusterRoutesBySlot(t *testing.T) {
	a, b, m := twoServers(t)
	c, err := client.DialCluster(context.Background(), client.Config{Addr: b.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 1000 {
		k := []byte(fmt.Sprint("k", i))
		if err := c.Upsert(k, k, func(r client.Result) {
			if r.Err != nil {
				t.Error(r.Err)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	must(t, c.Wait())
	for i := range 1000 {
		k := []byte(fmt.Sprint("k", i))
		owner, _ := m.Owner(keyhash.Slot(k))
		on, off := a, b
		if owner.Owner == "b" {
			on, off = b, a
		}
		if stored(t, on, k) != string(k) || stored(t, off, k) != "" {
			t.Fatalf("key %s is not (only) on its owner %s", k, owner.Owner)
		}
	}
	if st := c.Stats(); st.Rerouted != 0 || st.Fetches != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestClusterReroutesMovedSlots: a range of slots moves from a to b (a
// stops serving it, then b takes it) while a Cluster appends numbered
// entries to keys in it. Every append lands exactly once and in order: the
// prefix on a, the rest on b.
func TestClusterReroutesMovedSlots(t *testing.T) {
	a, b, m := twoServers(t)
	moved := cluster.Range{First: 100, Last: 199} // a's
	keys := keysIn(moved, 8)
	c, err := client.DialCluster(context.Background(), client.Config{Addr: a.Addr(), BatchBytes: 512, InFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const rounds = 3000
	done := make(chan error, 1)
	for i := range rounds {
		if i == rounds/3 {
			go func() { done <- moveSlots(a, b, m, moved) }()
		}
		for _, k := range keys {
			if err := c.Append(k, []byte(fmt.Sprint(i, ",")), func(r client.Result) {
				if r.Err != nil {
					t.Errorf("append: %v", r.Err)
				}
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	must(t, c.Wait())
	must(t, <-done)
	var want strings.Builder
	for i := range rounds {
		fmt.Fprint(&want, i, ",")
	}
	for _, k := range keys {
		if got := stored(t, a, k) + stored(t, b, k); got != want.String() {
			t.Fatalf("key %s: the appends on a and b are %q...%q, not the sequence", k, got[:min(len(got), 40)], got[max(0, len(got)-40):])
		}
	}
	if st := c.Stats(); st.Rerouted == 0 && st.ViewMoves == 0 {
		t.Fatalf("the client never noticed the move: %+v", st)
	}
}

// moveSlots moves r from a to b as the metadata rules say: a takes the map
// without r and confirms, then b takes r.
func moveSlots(a, b *server.Server, m *cluster.Map, r cluster.Range) error {
	next, err := m.Assign([]cluster.Range{r}, "b", nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	ra := &cluster.Routing{View: next.Views["a"], Serving: next.Serving("a", nil), Map: next}
	if err := a.Install(ctx, ra); err != nil {
		return err
	}
	applied := map[cluster.ServerID]uint64{"a": next.Views["a"]}
	rb := &cluster.Routing{View: next.Views["b"], Serving: next.Serving("b", applied), Map: next}
	return b.Install(ctx, rb)
}

// TestClusterGivesUpOnUnservedSlots: a slot whose owner never takes it
// over fails its operations with ErrNotOwner after RerouteTimeout.
func TestClusterGivesUpOnUnservedSlots(t *testing.T) {
	a, _, m := twoServers(t)
	next, err := m.Assign([]cluster.Range{{First: 0, Last: 9}}, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	install(t, a, "a", next, nil) // a gives the slots up; b never learns
	c, err := client.DialCluster(context.Background(), client.Config{Addr: a.Addr(), RerouteTimeout: 200e6})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got error
	k := keysIn(cluster.Range{First: 0, Last: 9}, 1)[0]
	must(t, c.Upsert(k, k, func(r client.Result) { got = r.Err }))
	must(t, c.Wait())
	if !errors.Is(got, client.ErrNotOwner) {
		t.Fatalf("upsert to a slot nobody serves: %v", got)
	}
}

// TestClusterRerouteTimeoutIsPerEpisode: RerouteTimeout bounds one spell
// of refusals without progress, not the time since the first refusal
// under one map: two handovers, each shorter than the timeout and further
// apart than it, under the same map, fail nothing.
func TestClusterRerouteTimeoutIsPerEpisode(t *testing.T) {
	a, b, m := twoServers(t)
	next, err := m.Assign([]cluster.Range{{First: 0, Last: 9}}, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	install(t, a, "a", next, nil)
	c, err := client.DialCluster(context.Background(), client.Config{Addr: a.Addr(), RerouteTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := keysIn(cluster.Range{First: 0, Last: 9}, 1)[0]
	applied := map[cluster.ServerID]uint64{"a": next.Views["a"]}
	for spell := range 2 {
		if spell == 1 {
			time.Sleep(500 * time.Millisecond) // longer than the timeout
		}
		install(t, b, "b", next, nil) // b does not serve the slots yet
		serve := &cluster.Routing{View: next.Views["b"], Serving: next.Serving("b", applied), Map: next}
		time.AfterFunc(150*time.Millisecond, func() {
			if err := b.Install(context.Background(), serve); err != nil {
				t.Error(err)
			}
		})
		var got error
		must(t, c.Upsert(k, k, func(r client.Result) { got = r.Err }))
		must(t, c.Wait())
		if got != nil {
			t.Fatalf("spell %d of refusals: %v", spell, got)
		}
	}
}

// TestClusterReroutesRefusedCompletions: a read that b, a migration's
// target, parks (answered PENDING) and then refuses in its completion
// (NOT_OWNER: b stopped serving the slot) is re-issued by the Cluster
// until b serves the slot again, and answered then; it does not fail,
// also when a read of the key was sent after it (refused and re-issued
// too). When a write of the key was sent after it (and ran), it fails
// instead: re-issued, it would read that later write.
func TestClusterReroutesRefusedCompletions(t *testing.T) {
	for _, after := range []string{"nothing", "a read", "a write"} {
		t.Run(after+" after it", func(t *testing.T) { refusedCompletion(t, after) })
	}
}

func refusedCompletion(t *testing.T, after string) {
	ctx := context.Background()
	a, b, m := twoServers(t)
	r := cluster.Range{First: 0, Last: 9}
	k := keysIn(r, 1)[0]
	c, err := client.DialCluster(ctx, client.Config{Addr: a.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next, err := m.Assign([]cluster.Range{r}, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	install(t, a, "a", next, nil) // a gives the slots up
	var rs cluster.SlotSet
	rs.Add(r)
	holds := cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &rs,
		Accept: []cluster.Accepting{{ID: 1, Slots: &rs, Since: b.Store().Log().Tail()}}}
	applied := map[cluster.ServerID]uint64{"a": next.Views["a"]}
	rb := &cluster.Routing{View: next.Views["b"], Serving: next.Serving("b", applied), Map: next}
	if err := b.Install(ctx, rb.WithHolds(&holds)); err != nil {
		t.Fatal(err)
	}
	var got, got2 client.Result
	must(t, c.Read(k, func(r client.Result) { got = r; got.Value = bytes.Clone(r.Value) }))
	parked := uint64(1)
	switch after {
	case "a write":
		must(t, c.Upsert(k, []byte("written after the read"), nil)) // blind: b takes it
	case "a read":
		must(t, c.Read(k, func(r client.Result) { got2 = r; got2.Value = bytes.Clone(r.Value) }))
		parked = 2
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }() // c is this goroutine's until done
	waitFor := func(what string, cond func() bool) {
		for start := time.Now(); !cond(); time.Sleep(time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatal(what)
			}
		}
	}
	waitFor("b parked no read", func() bool { return b.Stats().ParkedReads == parked })
	refused := b.Stats().NotOwner
	install(t, b, "b", next, nil) // b stops serving: the parked reads are refused
	if after == "a write" {
		must(t, <-done)
		if !errors.Is(got.Err, client.ErrNotOwner) {
			t.Fatalf("the read refused after a later write answered %q, %v", got.Value, got.Err)
		}
		return
	}
	waitFor("b refused nothing", func() bool { return b.Stats().NotOwner > refused+parked })
	if n := b.Stats().Parks; n != parked {
		t.Fatalf("b parked %d reads of a slot it does not serve", n-parked)
	}
	ss, err := b.Store().NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Upsert(k, []byte("on b")); err != nil {
		t.Fatal(err)
	}
	ss.Close()
	install(t, b, "b", next, applied) // b serves again, without holds
	must(t, <-done)
	if got.Err != nil || string(got.Value) != "on b" {
		t.Fatalf("the parked read answered %q, %v", got.Value, got.Err)
	}
	if after == "a read" && (got2.Err != nil || string(got2.Value) != "on b") {
		t.Fatalf("the read sent after it answered %q, %v", got2.Value, got2.Err)
	}
}
