package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
)

// respPair starts servers a and b with RESP fronts sharing the slots.
func respPair(t *testing.T) (a, b *Server, m *cluster.Map) {
	t.Helper()
	a = startRESP(t, func(c *Config) { c.ServerID = "a" })
	b = startRESP(t, func(c *Config) { c.ServerID = "b" })
	m, err := cluster.NewMap("rc", []cluster.Server{{ID: "a", Native: a.Addr(), RESP: a.RESPAddr()}, {ID: "b", Native: b.Addr(), RESP: b.RESPAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range map[cluster.ServerID]*Server{"a": a, "b": b} {
		if err := s.Install(context.Background(), &cluster.Routing{View: 1, Serving: m.Serving(id, nil), Map: m}); err != nil {
			t.Fatal(err)
		}
	}
	return a, b, m
}

// TestRedisClusterClient: go-redis's ClusterClient, given one address,
// learns the slots from CLUSTER SLOTS and reads and writes keys of every
// slot on their owners.
func TestRedisClusterClient(t *testing.T) {
	a, b, _ := respPair(t)
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{a.RESPAddr()}})
	defer cc.Close()
	const n = 2000
	for i := range n {
		if err := cc.Set(ctx, fmt.Sprint("key:", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if v, err := cc.Get(ctx, fmt.Sprint("key:", i)).Int(); err != nil || v != i {
			t.Fatalf("key:%d = %d, %v", i, v, err)
		}
	}
	if a.Stats().NotOwner+b.Stats().NotOwner != 0 {
		t.Fatal("the cluster client was redirected: its map did not match")
	}
	if ua, ub := a.Stats().Ops["resp"], b.Stats().Ops["resp"]; ua < n/2 || ub < n/2 {
		t.Fatalf("commands on a %d, on b %d: not both owners", ua, ub)
	}
	// Each server's KEYS and SCAN return the keys of its own slots.
	total := 0
	for _, srv := range []*Server{a, b} {
		rc := goRedis(t, srv, nil)
		ks := res(rc.Keys(ctx, "key:*").Result()).ok(t)
		scanned := scanAll(t, rc, []any{"MATCH", "key:*", "COUNT", 100})
		if len(ks) < n/4 || len(scanned) != len(ks) {
			t.Fatalf("KEYS on one server: %d keys, SCAN %d, of %d", len(ks), len(scanned), n)
		}
		for _, k := range ks {
			if (keyhash.Slot([]byte(k)) < 8192) != (srv == a) {
				t.Fatalf("KEYS on %s returned %s, of slot %d", srv.Addr(), k, keyhash.Slot([]byte(k)))
			}
		}
		total += len(ks)
	}
	if total != n {
		t.Fatalf("KEYS on both servers: %d keys, want %d", total, n)
	}
	// Keys sharing a tag go to one slot: multi-key commands work on them.
	if err := cc.MSet(ctx, "{u1}.x", "1", "{u1}.y", "2").Err(); err != nil {
		t.Fatal(err)
	}
	if vs, err := cc.MGet(ctx, "{u1}.x", "{u1}.y").Result(); err != nil || vs[0] != "1" || vs[1] != "2" {
		t.Fatalf("MGET of one tag = %v %v", vs, err)
	}
}

// TestClusterCommands: CLUSTER's answers describe the map; a key of the
// other server is MOVED there; multi-key commands across slots are
// CROSSSLOT; outside a cluster CLUSTER is disabled.
func TestClusterCommands(t *testing.T) {
	a, b, m := respPair(t)
	ctx := context.Background()
	ra := goRedis(t, a, nil)
	if s, err := ra.ClusterKeySlot(ctx, "somekey").Result(); err != nil || s != 11058 {
		t.Fatalf("CLUSTER KEYSLOT somekey = %d %v", s, err)
	}
	info, err := ra.ClusterInfo(ctx).Result()
	if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:2") {
		t.Fatalf("CLUSTER INFO = %q %v", info, err)
	}
	nodes, err := ra.ClusterNodes(ctx).Result()
	if err != nil || strings.Count(nodes, "\n") != 2 || !strings.Contains(nodes, "myself,master") ||
		!strings.Contains(nodes, b.RESPAddr()+"@") || !strings.Contains(nodes, " 8192-16383") {
		t.Fatalf("CLUSTER NODES = %q %v", nodes, err)
	}
	id, err := ra.ClusterMyID(ctx).Result()
	if err != nil || len(id) != 40 || !strings.HasPrefix(nodes, id) {
		t.Fatalf("CLUSTER MYID = %q %v (nodes %q)", id, err, nodes)
	}
	shards, err := ra.ClusterShards(ctx).Result()
	if err != nil || len(shards) != 2 || len(shards[0].Nodes) != 1 {
		t.Fatalf("CLUSTER SHARDS = %+v %v", shards, err)
	}
	slots, err := ra.ClusterSlots(ctx).Result()
	if err != nil || len(slots) != 2 || slots[1].Start != 8192 || slots[1].Nodes[0].Addr != b.RESPAddr() {
		t.Fatalf("CLUSTER SLOTS = %+v %v", slots, err)
	}
	// A key b owns, asked of a.
	var theirs string
	for i := 0; theirs == ""; i++ {
		if k := fmt.Sprint("k", i); keyhash.Slot([]byte(k)) >= 8192 {
			theirs = k
		}
	}
	err = ra.MGet(ctx, theirs).Err()
	if want := fmt.Sprintf("MOVED %d %s", keyhash.Slot([]byte(theirs)), b.RESPAddr()); err == nil || err.Error() != want {
		t.Fatalf("MGET of b's key on a: %v, want %s", err, want)
	}
	if err := ra.Del(ctx, "k1", "k2", "k3").Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Fatalf("DEL across slots: %v", err)
	}
	owned := 0
	for i := range 300 {
		if k := fmt.Sprint("k", i); keyhash.Slot([]byte(k)) < 8192 {
			if err := ra.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			owned++
		}
	}
	total := int64(0)
	for s := range uint16(8192) {
		n, err := ra.ClusterCountKeysInSlot(ctx, int(s)).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != int64(owned) {
		t.Fatalf("COUNTKEYSINSLOT over a's slots sums to %d, a holds %d", total, owned)
	}
	_ = m

	standalone := goRedis(t, startRESP(t, nil), nil)
	if err := standalone.ClusterSlots(ctx).Err(); err == nil || err.Error() != errClusterDisabled {
		t.Fatalf("CLUSTER SLOTS outside a cluster: %v", err)
	}
	if err := standalone.MGet(ctx, "k1", "k2").Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("MGET across slots outside a cluster: %v", err)
	}
}
