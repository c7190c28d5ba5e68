package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/store"
)

func testConfig(dir string, md cluster.Metadata, id cluster.ServerID) Config {
	return Config{Dir: dir, Log: testLog(),
		Server: server.Config{Listen: "127.0.0.1:0", RESP: "127.0.0.1:0", Loops: 2, NoPin: true, CheckpointInterval: server.Off,
			CompactInterval: server.Off, Store: store.Config{IndexBits: 12, Log: hlog.Config{PageBits: 20, MemoryBytes: 16 << 20}}},
		Device:  DeviceConfig{SegmentSize: 1 << 20, IO: "pread"},
		Cluster: ClusterConfig{Name: "test", ServerID: id, Metadata: md, Timeout: time.Second}}
}

func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopNode(t, n) })
	return n
}

func stopNode(t *testing.T, n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
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
		time.Sleep(5 * time.Millisecond)
	}
}

func serving(n *Node) int { return n.Server().Routing().Serving.Count() }

// TestMembersFollowTheMap: two members register, a map spreads the slots
// over them, both serve their halves; a range moves and ends served by its
// new owner only; a routed client reaches both.
func TestMembersFollowTheMap(t *testing.T) {
	ctx := context.Background()
	md := cluster.NewMem()
	a := startNode(t, testConfig(t.TempDir(), md, "a"))
	b := startNode(t, testConfig(t.TempDir(), md, "b"))
	if serving(a) != 0 || serving(b) != 0 {
		t.Fatal("members serve slots before any map")
	}
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

	c, err := client.New(client.Config{Addr: a.Server().Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 200 {
		k := []byte{byte(i), 'k'}
		if err := c.Set(ctx, k, k); err != nil {
			t.Fatal(err)
		}
	}
	if a.Server().Stats().Ops["upsert"] == 0 || b.Server().Stats().Ops["upsert"] == 0 {
		t.Fatal("the client did not reach both members")
	}

	_, err = cluster.Change(ctx, md, 3, func(st cluster.State) (*cluster.Map, error) {
		return st.Map.Assign([]cluster.Range{{First: 0, Last: 99}}, "b", st.Applied)
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "slots 0-99 on b", func() bool {
		rb := b.Server().Routing()
		return rb.Serving.Has(0) && rb.Serving.Has(99) && !a.Server().Routing().Serving.Has(0)
	})
	st, _ = md.Load(ctx)
	if st.Applied["a"] != st.Map.Views["a"] || st.Map.Views["a"] != 2 {
		t.Fatalf("a applied %d of view %d", st.Applied["a"], st.Map.Views["a"])
	}
}

// TestMemberRestartsWithoutTheStore: a member restarted while the metadata
// store is down serves the routing it persisted, and catches up once the
// store is back.
func TestMemberRestartsWithoutTheStore(t *testing.T) {
	ctx := context.Background()
	md := cluster.NewMem()
	dir := t.TempDir()
	a, err := Start(testConfig(dir, md, "a"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a registered", func() bool { st, _ := md.Load(ctx); return len(st.Live) == 1 })
	st, _ := md.Load(ctx)
	m, _ := cluster.NewMap("test", []cluster.Server{st.Live["a"]})
	if _, err := md.SwapMap(ctx, st.MapRevision, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a serves every slot", func() bool { return serving(a) == cluster.Slots })
	stopNode(t, a)
	md.Expire("a") // its lease ran out

	md.SetDown(true)
	cfg := testConfig(dir, md, "") // the id comes from the directory
	a = startNode(t, cfg)
	if a.ID() != "a" || serving(a) != cluster.Slots {
		t.Fatalf("restarted as %q serving %d slots", a.ID(), serving(a))
	}
	md.SetDown(false)
	eventually(t, "a registered again", func() bool { st, _ := md.Load(ctx); return len(st.Live) == 1 })
	if _, err := resolveID(filepath.Join(dir, "cluster"), "other"); err == nil {
		t.Fatal("a directory of server a accepted as server other")
	}
}

// testLog discards the nodes' logs, or shows them with FLEETKV_TEST_LOG=1.
func testLog() *slog.Logger {
	if os.Getenv("FLEETKV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestDataDirectoryIsLocked: a second node on a data directory in use is
// refused with the holder's pid, and starts once the first stopped; a start
// that fails after it locked its directory releases it.
func TestDataDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir, nil, "")
	cfg.Cluster = ClusterConfig{}
	first, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Start(cfg)
	if err == nil {
		stopNode(t, second)
		stopNode(t, first)
		t.Fatal("a second node started on a data directory in use")
	}
	if want := fmt.Sprintf("in use by another server (pid %d)", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	other := testConfig(t.TempDir(), nil, "")
	other.Cluster = ClusterConfig{}
	other.Server.Listen = first.Server().Addr()
	if n, err := Start(other); err == nil { // the address is in use
		stopNode(t, n)
		t.Fatal("a node started on an address in use")
	}
	other.Server.Listen = "127.0.0.1:0"
	startNode(t, other) // the failed start released its directory
	stopNode(t, first)
	startNode(t, cfg)
}
