package planner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// TestRunRebalances: with no plan to drive, Run steps its rebalancer over
// the reported loads and stores the plan it makes, which it then drives
// (here the plan's migration starts; no server runs it); observing, it
// only counts.
func TestRunRebalances(t *testing.T) {
	for _, mode := range []cluster.RebalanceMode{cluster.RebalanceOn, cluster.RebalanceObserve} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		md := cluster.NewMem()
		servers := []cluster.Server{{ID: "a"}, {ID: "b"}, {ID: "c"}}
		for _, s := range servers {
			if err := md.Register(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		m, _ := cluster.NewMap("t", servers)
		if _, err := md.SwapMap(ctx, 0, m); err != nil {
			t.Fatal(err)
		}
		_ = md.ReportLoad(ctx, "a", cluster.ServerLoad{OpsPerSec: 9000, Slots: []cluster.SlotLoad{{Slot: 7, OpsPerSec: 4500}, {Slot: 8, OpsPerSec: 4500}}})
		_ = md.ReportLoad(ctx, "b", cluster.ServerLoad{OpsPerSec: 10})
		_ = md.ReportLoad(ctx, "c", cluster.ServerLoad{OpsPerSec: 20})
		rb := cluster.NewRebalancer(cluster.RebalanceConfig{Mode: mode, Window: time.Millisecond, Cooldown: time.Millisecond})
		var dec Decisions
		done := make(chan struct{})
		go func() {
			Run(ctx, md, slog.New(slog.NewTextHandler(io.Discard, nil)), rb, &dec)
			close(done)
		}()
		for dec.Planned.Load()+dec.Observed.Load() == 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		st, _ := md.Load(ctx)
		switch {
		case mode == cluster.RebalanceObserve && (len(st.Plans) != 0 || dec.Observed.Load() != 1):
			t.Fatalf("observing: %d plans stored, %d observed", len(st.Plans), dec.Observed.Load())
		case mode == cluster.RebalanceOn:
			for ctx.Err() == nil && len(st.Migrations) == 0 {
				time.Sleep(10 * time.Millisecond)
				st, _ = md.Load(ctx)
			}
			if len(st.Plans) != 1 || st.Plans[0].Kind != cluster.PlanRebalance || len(st.Migrations) != 1 ||
				st.Migrations[0].Source != "a" || st.Migrations[0].Target != "b" || st.Migrations[0].Ranges[0] != (cluster.Range{First: 7, Last: 7}) {
				t.Fatalf("plans %+v, migrations %+v", st.Plans, st.Migrations)
			}
		}
		cancel()
		<-done
		want := map[cluster.RebalanceMode]string{cluster.RebalanceObserve: "observed", cluster.RebalanceOn: "planned"}[mode]
		if r := dec.Recent(); len(r) == 0 || r[0].Kind != want || r[0].Plan == 0 || r[0].Note == "" {
			t.Fatalf("%s: recent decisions %+v, want the newest %s with its plan", mode, r, want)
		}
	}
}

// TestDecisionsKeepTheNewest: Recent holds the latest keptDecisions, the
// newest first, while the counters count every decision.
func TestDecisionsKeepTheNewest(t *testing.T) {
	var d Decisions
	for i := range keptDecisions + 5 {
		d.record("hot", &d.Hot, fmt.Sprint(i), 0)
	}
	r := d.Recent()
	if len(r) != keptDecisions || r[0].Note != fmt.Sprint(keptDecisions+4) || r[len(r)-1].Note != "5" || d.Hot.Load() != keptDecisions+5 {
		t.Fatalf("recent %d (first %q, last %q), hot %d", len(r), r[0].Note, r[len(r)-1].Note, d.Hot.Load())
	}
}
