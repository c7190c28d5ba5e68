package clustertest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/clusterctl"
)

// TestExternalEtcd: servers join a cluster whose metadata lives in an
// independent etcd (Debian's etcd-server, v3.4), not a fleetkv meta
// member; the map is created, a verified load runs, an empty slot moves.
func TestExternalEtcd(t *testing.T) {
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcd not found: install Debian's etcd-server (.ci/run does)")
	}
	client, peer := twoPorts(t)
	dir := t.TempDir()
	cmd := exec.Command(etcdBin, "--name", "ext", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "ext=http://"+peer)
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// The servers' ports are picked free next: until etcd holds its client
	// port, one of them can be that port (a server then fails to listen).
	waitListening(t, client, 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	name := "ext"
	cfg := clusterctl.LocalConfig{Bin: bin, Dir: filepath.Join(dir, "cluster"), Name: name, Servers: 2, ExternalMeta: []string{client},
		ServerArgs: []string{"--loops", "1", "--pin=false", "--memory", "32MiB", "--page-size", "1MiB", "--segment-size", "8MiB"}}
	l, err := clusterctl.StartLocal(ctx, cfg, func(eps []string) (cluster.Metadata, error) { return dialStore(name, eps) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	md, err := dialStore(name, []string{client})
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	tc := &testCluster{Local: l, md: md, admin: &clusterctl.Admin{MD: md, Tokens: md}, name: name}
	m, err := tc.admin.Init(ctx, name, 2, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc.waitRouting(t, m.Epoch)
	load(t, tc)
	if rep, err := ycsb(tc, time.Second); err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 || rep.Ops == 0 {
		t.Fatalf("YCSB-B with the map in an external etcd: %+v %v", rep, err)
	}
	slot := emptySlot(t, m, "s1")
	m, err = tc.admin.Assign(ctx, []cluster.Range{{First: slot, Last: slot}}, "s2")
	if err != nil {
		t.Fatal(err)
	}
	tc.waitRouting(t, m.Epoch)
}

// twoPorts returns two loopback addresses free now.
func twoPorts(t *testing.T) (string, string) {
	t.Helper()
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return a.Addr().String(), b.Addr().String()
}

// waitListening waits until something accepts connections at addr.
func waitListening(t *testing.T, addr string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens at %s after %v: %v", addr, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
