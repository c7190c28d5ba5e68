// Package clustertest runs real fleetkv clusters (fleetkv meta members and
// fleetkv server processes on loopback, through clusterctl.Local) and
// checks what users of the cluster see: the routed native client, go-redis's
// ClusterClient and redis-cli -c reach every slot's owner; a client whose
// map went stale is redirected with no operation lost or applied twice;
// losing the metadata store's leader, or the whole store, costs the data
// path nothing.
package clustertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/cluster/etcdmeta"
	"github.com/fleetkv/fleetkv/clusterctl"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetkv-clustertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "fleetkv")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fleetkv/fleetkv/cmd/fleetkv").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fleetkv: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testCluster is a running local cluster and an admin over its store.
type testCluster struct {
	*clusterctl.Local
	md    *etcdmeta.Store
	admin *clusterctl.Admin
	name  string
}

func dialStore(name string, endpoints []string) (*etcdmeta.Store, error) {
	return etcdmeta.Dial(etcdmeta.Config{Endpoints: endpoints, Cluster: name, DialTimeout: 2 * time.Second,
		LeaseTTL: 2 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// startCluster starts metas meta members and n servers, creates the map
// and waits until every server serves its slots.
func startCluster(t *testing.T, metas, n int, serverArgs ...string) *testCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	name := "t"
	cfg := clusterctl.LocalConfig{Bin: bin, Dir: t.TempDir(), Name: name, Servers: n, Metas: metas,
		ServerArgs: []string{"--loops", "1", "--pin=false", "--memory", "32MiB", "--page-size", "1MiB",
			"--segment-size", "8MiB", "--checkpoint-interval", "2s", "--meta-timeout", "1s"}}
	cfg.ServerArgs = append(cfg.ServerArgs, serverArgs...)
	l, err := clusterctl.StartLocal(ctx, cfg, func(eps []string) (cluster.Metadata, error) { return dialStore(name, eps) })
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{Local: l, name: name}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(append([]*clusterctl.Proc(nil), l.Servers...), l.Metas...) {
				if b, err := os.ReadFile(p.Log); err == nil {
					t.Logf("%s's log (tail):\n%s", p.Name, tail(b, 3000))
				}
			}
		}
		tc.md.Close()
		l.Stop()
	})
	if tc.md, err = dialStore(name, l.MetaEndpoints()); err != nil {
		t.Fatal(err)
	}
	tc.admin = &clusterctl.Admin{MD: tc.md, Tokens: tc.md}
	m, err := tc.admin.Init(ctx, name, n, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc.waitRouting(t, m.Epoch)
	return tc
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitRouting waits until every server has applied its view of the map of
// at least epoch (read from the store).
func (tc *testCluster) waitRouting(t *testing.T, epoch uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := tc.md.Load(ctx)
		cancel()
		if err == nil && st.Map != nil && st.Map.Epoch >= epoch {
			done := true
			for id, v := range st.Map.Views {
				if st.Map.Owned(id).Count() > 0 && st.Applied[id] < v {
					done = false
				}
			}
			if done {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers did not apply map epoch %d: %+v %v", epoch, st.Applied, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
