package clustertest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/loadgen"
)

// runPlan starts a plan of kind for id and drives it to its end.
func (tc *testCluster) runPlan(t *testing.T, kind cluster.PlanKind, id cluster.ServerID) cluster.Plan {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := tc.admin.StartPlan(ctx, kind, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, err = tc.admin.RunPlan(ctx, p.ID, func(q cluster.Plan) {
		t.Logf("%6.3fs %s: %s", time.Since(start).Seconds(), &q, q.Summary())
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Reason != "" {
		t.Fatalf("%s ended: %s", &p, p.Reason)
	}
	return p
}

// waitPlan waits until plan id ended, driven by the servers' elected
// planner alone, and returns it.
func (tc *testCluster) waitPlan(t *testing.T, id cluster.PlanID) cluster.Plan {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := tc.md.Load(ctx)
		cancel()
		if p, ok := st.PlanByID(id); err == nil && ok && p.Ended {
			if p.Reason != "" {
				t.Fatalf("%s ended: %s", &p, p.Reason)
			}
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("plan %d not ended in 3 minutes: %+v %v", id, st.Plans, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slotCounts returns how many slots the stored map gives each server.
func (tc *testCluster) slotCounts(t *testing.T) map[cluster.ServerID]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := tc.md.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[cluster.ServerID]int{}
	for _, id := range st.Map.ServerIDs() {
		out[id] = st.Map.Owned(id).Count()
	}
	return out
}

// TestAddAndDrainUnderLoad: two servers sharing a tier, real processes. A
// verified YCSB-B load runs through the routed client while a third server
// is started and added (fleetkv cluster add-server's plan: a third of the
// slots, from both; driven by the test as the command would), then s1 is
// drained (its slots go to s2 and s3; the plan is only stored, and the
// servers' elected planner carries it out). The load sees no failed
// operation and no stale read; the map ends 0 / 8192 / 8192; s1 keeps no
// key and is stopped; every loaded key reads back through the two servers
// left.
func TestAddAndDrainUnderLoad(t *testing.T) {
	tc := startCluster(t, 1, 2, "--shared-tier", "dir://"+filepath.Join(t.TempDir(), "shared"))
	cfg := loadgen.Config{Servers: []string{tc.Servers[0].Native, tc.Servers[1].Native}, Keys: 20000, ValueSize: 32, Threads: 2,
		Seed: 13, Verify: true, VerifyLoaded: true, Dist: "zipf", Warmup: time.Millisecond, Duration: 5 * time.Minute}
	loadAll(t, cfg)
	cfg.Workload = "ycsb-b"
	stop := background(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s3, err := tc.AddServer(ctx, tc.md)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	add := tc.runPlan(t, cluster.PlanAdd, cluster.ServerID(s3.Name))
	if got := tc.slotCounts(t); got["s3"] != cluster.Slots/3 || got["s1"]+got["s2"] != cluster.Slots-cluster.Slots/3 || len(add.Steps) != 2 {
		stop()
		t.Fatalf("after adding s3: %v, %d steps", got, len(add.Steps))
	}
	drain, err := tc.admin.StartPlan(ctx, cluster.PlanDrain, "s1", 0)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	tc.waitPlan(t, drain.ID)
	time.Sleep(300 * time.Millisecond)
	rep := stop()
	t.Logf("load during the plans: %d ops, %.0f ops/s, p99.9 %.0f µs, rerouted %d, map fetches %d",
		rep.Ops, rep.OpsPerSec, rep.P999us, rep.Rerouted, rep.MapFetches)
	if rep.Ops == 0 || rep.Errors != 0 || rep.VerifyFailures != 0 {
		t.Fatalf("load during the plans: %d ops, %d errors, %d verify failures (%s)", rep.Ops, rep.Errors,
			rep.VerifyFailures, rep.FirstProblem)
	}
	if got := tc.slotCounts(t); got["s1"] != 0 || got["s2"] != cluster.Slots/2 || got["s3"] != cluster.Slots/2 {
		t.Fatalf("after draining s1: %v", got)
	}
	all := []cluster.Range{{First: 0, Last: cluster.Slots - 1}}
	deadline := time.Now().Add(30 * time.Second)
	for keysAt(t, tc.Servers[0], all) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("drained s1 keeps %d keys", keysAt(t, tc.Servers[0], all))
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc.Terminate(tc.Servers[0], 30*time.Second)
	cfg.Servers = []string{tc.Servers[1].Native, s3.Native}
	cfg.Workload, cfg.Ops, cfg.Dist, cfg.Duration, cfg.Threads = "ycsb-c", 60000, "uniform", 0, 1
	if rep, err := loadgen.Run(context.Background(), cfg, nil); err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 {
		t.Fatalf("reading back without s1: %+v %v", rep, err)
	}
}
