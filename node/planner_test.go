package node

import (
	"context"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// TestServersCarryOutPlans: with no operator's command driving it, a plan
// stored in the metadata store is carried out by the member that leads the
// planner's election (one of three); when that member stops, another
// leads.
func TestServersCarryOutPlans(t *testing.T) {
	ctx := context.Background()
	md := cluster.NewMem()
	a, b := twoMembers(t, md, memberConfig(t, md, "a"), memberConfig(t, md, "b"))
	c := startNode(t, memberConfig(t, md, "c"))
	eventually(t, "c registered", func() bool { st, _ := md.Load(ctx); _, ok := st.Live["c"]; return ok })
	if _, err := cluster.Change(ctx, md, 5, func(st cluster.State) (*cluster.Map, error) {
		return st.Map.WithServer(st.Live["c"]), nil
	}); err != nil {
		t.Fatal(err)
	}
	st, _ := md.Load(ctx)
	p, err := cluster.NewPlan(st, cluster.PlanAdd, "c", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SwapPlan(ctx, cluster.PlanSwap{Plan: p}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _ = md.Load(ctx)
		if q, _ := st.PlanByID(p.ID); q.Ended {
			if q.Reason != "" {
				t.Fatalf("plan ended: %s", q.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plan not carried out in 30 s: %+v", st.Plans)
		}
		time.Sleep(10 * time.Millisecond)
	}
	eventually(t, "c serving its share", func() bool { return serving(c) == cluster.Slots/3 })
	if serving(a)+serving(b) != cluster.Slots-cluster.Slots/3 {
		t.Fatalf("a %d, b %d, c %d slots", serving(a), serving(b), serving(c))
	}
	nodes := map[cluster.ServerID]*Node{"a": a, "b": b, "c": c}
	leader := md.Leader()
	if nodes[leader] == nil {
		t.Fatalf("leader %q", leader)
	}
	stopNode(t, nodes[leader])
	eventually(t, "another leader", func() bool { l := md.Leader(); return l != "" && l != leader })
}
