package node

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/dashboard"
)

// overview reads the dashboard's JSON from n's admin listener.
func overview(t *testing.T, n *Node) dashboard.Overview {
	t.Helper()
	resp, err := http.Get("http://" + n.Server().AdminAddr() + "/cluster/overview")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o dashboard.Overview
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestDashboardStandalone: a standalone server's dashboard shows it as a
// cluster of one that owns every slot, with the operations it answered.
func TestDashboardStandalone(t *testing.T) {
	cfg := testConfig(t.TempDir(), nil, "")
	cfg.Cluster = ClusterConfig{}
	cfg.Server.Admin = "127.0.0.1:0"
	n := startNode(t, cfg)
	c, err := client.New(client.Config{Addr: n.Server().Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 50 {
		if err := c.Set(context.Background(), []byte{byte(i)}, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	o := overview(t, n)
	if len(o.Servers) != 1 || len(o.Ranges) != 1 || o.Ranges[0].Owner != standaloneID || o.Ranges[0].Len() != cluster.Slots {
		t.Fatalf("%+v", o)
	}
	s := o.Servers[0]
	if s.ID != standaloneID || !s.Live || s.Slots != cluster.Slots || s.Sample == nil || s.Sample.Ops < 50 || s.Sample.Serving != "0-16383" {
		t.Fatalf("%+v %+v", s, s.Sample)
	}
}

// TestDashboardMembers: a member's overview lists both members of its
// cluster with the samples it fetched from their admin listeners.
func TestDashboardMembers(t *testing.T) {
	md := cluster.NewMem()
	cfg := func(id cluster.ServerID) Config {
		c := testConfig(t.TempDir(), md, id)
		c.Server.Admin = "127.0.0.1:0"
		return c
	}
	_, b := twoMembers(t, md, cfg("a"), cfg("b"))
	o := overview(t, b)
	if o.Cluster != "test" || len(o.Servers) != 2 || len(o.Ranges) != 2 {
		t.Fatalf("%+v", o)
	}
	for _, s := range o.Servers {
		if s.Sample == nil || s.Sample.ID != s.ID || s.Sample.View != s.View || s.Slots != cluster.Slots/2 || s.Error != "" {
			t.Fatalf("%s: %+v %+v", s.ID, s, s.Sample)
		}
	}
}
