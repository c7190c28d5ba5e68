package planner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
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
		md := &subscriptions{Metadata: cluster.NewMem()}
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
			Run(ctx, md, md.Changes(), slog.New(slog.NewTextHandler(io.Discard, nil)), rb, &dec)
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
		if n := md.n.Load(); n != 1 {
			t.Errorf("%s: %d subscriptions to the store's changes, want the caller's one (Run and the plans it drove took %d)", mode, n, n-1)
		}
		want := map[cluster.RebalanceMode]string{cluster.RebalanceObserve: "observed", cluster.RebalanceOn: "planned"}[mode]
		if r := dec.Recent(); len(r) == 0 || r[0].Kind != want || r[0].Plan == 0 || r[0].Note == "" {
			t.Fatalf("%s: recent decisions %+v, want the newest %s with its plan", mode, r, want)
		}
	}
}

// subscriptions counts the subscriptions to a store's changes: each lives
// as long as the store.
type subscriptions struct {
	cluster.Metadata
	n atomic.Int32
}

func (s *subscriptions) Changes() <-chan struct{} {
	s.n.Add(1)
	return s.Metadata.Changes()
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

// TestRunKeepsTheNewestEndedPlans: Run deletes every ended plan but the
// newest keptPlans and the rebalance plans its rebalancer still reads (no
// slot moves back within NoMoveBack), so the store does not grow with
// every rebalance; a new plan's id still comes after every earlier one.
func TestRunKeepsTheNewestEndedPlans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	md := mapped(ctx, t)
	const ended = keptPlans + 5
	for id := cluster.PlanID(1); id <= ended; id++ {
		p := cluster.Plan{ID: id, Kind: cluster.PlanAdd, Server: "b", Ended: true, At: time.Now().Add(-time.Hour)}
		if id == 1 { // within the rebalancer's NoMoveBack: it reads the plan
			p.Kind, p.At = cluster.PlanRebalance, time.Now().Add(-time.Minute)
		}
		if _, err := md.SwapPlan(ctx, cluster.PlanSwap{Plan: p}); err != nil {
			t.Fatal(err)
		}
	}
	rb := cluster.NewRebalancer(cluster.RebalanceConfig{Mode: cluster.RebalanceOn, NoMoveBack: 5 * time.Minute})
	done := make(chan struct{})
	go func() {
		Run(ctx, md, md.Changes(), slog.New(slog.NewTextHandler(io.Discard, nil)), rb, nil)
		close(done)
	}()
	st, _ := md.Load(ctx)
	for ; len(st.Plans) > keptPlans+1 && ctx.Err() == nil; st, _ = md.Load(ctx) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	var ids []cluster.PlanID
	for _, p := range st.Plans {
		ids = append(ids, p.ID)
	}
	if len(ids) != keptPlans+1 || ids[0] != 1 || ids[1] != ended-keptPlans+1 || ids[keptPlans] != ended {
		t.Fatalf("plans %v kept; want 1 (a recent rebalance) and %d..%d", ids, ended-keptPlans+1, ended)
	}
	p, err := cluster.NewPlan(st, cluster.PlanDrain, "b", 0)
	if err != nil || p.ID != ended+1 {
		t.Fatalf("the next plan: id %d, %v; want %d", p.ID, err, ended+1)
	}
}

// TestDriveOfAPlanThatLeftTheStore: a plan deleted while Drive follows it
// (Run prunes ended plans) ends the drive with ErrPlanGone and the plan
// as Drive last saw it, not with an empty plan.
func TestDriveOfAPlanThatLeftTheStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	md := mapped(ctx, t)
	st, _ := md.Load(ctx)
	ranges := []cluster.Range{{First: 0, Last: 9}}
	rec, err := cluster.NewMigration(st, "a", "b", ranges) // holds the slots: the plan's step waits
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec}); err != nil {
		t.Fatal(err)
	}
	p := cluster.Plan{ID: 3, Kind: cluster.PlanDrain, Server: "a", Steps: []cluster.Step{{Source: "a", Target: "b", Ranges: ranges, State: cluster.StepPending}}}
	if _, err := md.SwapPlan(ctx, cluster.PlanSwap{Plan: p}); err != nil {
		t.Fatal(err)
	}
	seen := make(chan cluster.Plan, 16)
	type result struct {
		p   cluster.Plan
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := Drive(ctx, md, 3, func(p cluster.Plan) { seen <- p })
		done <- result{p, err}
	}()
	first := <-seen
	if err := md.DeletePlan(ctx, 3, first.Revision); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !errors.Is(r.err, ErrPlanGone) || r.p.ID != 3 || r.p.Revision != first.Revision {
		t.Fatalf("Drive of a deleted plan: plan %d at revision %d, %v; want plan 3 at %d, ErrPlanGone", r.p.ID, r.p.Revision, r.err, first.Revision)
	}
}

// mapped returns a store whose map spreads the slots over servers a and b.
func mapped(ctx context.Context, t *testing.T) *cluster.Mem {
	t.Helper()
	md := cluster.NewMem()
	m, _ := cluster.NewMap("t", []cluster.Server{{ID: "a"}, {ID: "b"}})
	if _, err := md.SwapMap(ctx, 0, m); err != nil {
		t.Fatal(err)
	}
	return md
}

// TestRunDeletesMigrationRecordsNoOneNeeds: the elected planner deletes
// the final migration records below both their servers' clean-up floors,
// keeping the newest keptMigrations; a record a server still needs stays.
func TestRunDeletesMigrationRecordsNoOneNeeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	md := mapped(ctx, t)
	const n = keptMigrations + 10
	for id := cluster.MigrationID(1); id <= n; id++ {
		rec := cluster.Migration{ID: id, Source: "a", Target: "b", Phase: cluster.PhaseComplete}
		if id == 3 {
			rec.Target = "c" // c has not cleaned it up
		}
		if _, err := md.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec}); err != nil {
			t.Fatal(err)
		}
	}
	for id, f := range map[cluster.ServerID]cluster.MigrationID{"a": n + 1, "b": n + 1, "c": 3} {
		if err := md.ReportCleaned(ctx, id, f); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		Run(ctx, md, md.Changes(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
		close(done)
	}()
	st, _ := md.Load(ctx)
	for ; len(st.Migrations) > keptMigrations+1 && ctx.Err() == nil; st, _ = md.Load(ctx) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	var ids []cluster.MigrationID
	for _, m := range st.Migrations {
		ids = append(ids, m.ID)
	}
	if len(ids) != keptMigrations+1 || ids[0] != 3 || ids[1] != n-keptMigrations+1 || ids[keptMigrations] != n {
		t.Fatalf("records %v kept; want 3 (c needs it) and %d..%d", ids, n-keptMigrations+1, n)
	}
}
