package clusterctl

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// completeMigrations plays the servers: every running migration completes
// (the map moves its slots and the source reports the view without them),
// except those asked to cancel, which are cancelled. It stops with ctx.
func completeMigrations(ctx context.Context, md *cluster.Mem) {
	changes := md.Changes()
	for {
		st, err := md.Load(ctx)
		for _, m := range st.Migrations {
			if err != nil || m.Phase.Final() {
				continue
			}
			if m.CancelRequested {
				m.Phase = cluster.PhaseCancelled
				_, _ = md.SwapMigration(ctx, cluster.MigrationSwap{Migration: m})
				break
			}
			next, err := st.Map.Assign(m.Ranges, m.Target, st.Applied)
			if err != nil {
				break
			}
			m.Phase = cluster.PhaseComplete
			if _, err := md.SwapMigration(ctx, cluster.MigrationSwap{Migration: m, Map: next, MapRevision: st.MapRevision}); err == nil {
				_ = md.ReportApplied(ctx, m.Source, next.Views[m.Source])
			}
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestPlanAddAndDrain: add-server joins a registered server and plans its
// share; starting it again resumes the same plan and another plan is
// refused while it runs; RunPlan carries it to its end, reporting; a drain
// then empties a server; a cancelled plan ends with its running migration
// cancelled.
func TestPlanAddAndDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	md := cluster.NewMem()
	for _, id := range []cluster.ServerID{"a", "b", "c"} {
		if err := md.Register(ctx, cluster.Server{ID: id, Native: string(id) + ":1"}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := md.Load(ctx)
	m, _ := cluster.NewMap("t", []cluster.Server{st.Live["a"], st.Live["b"]})
	if _, err := md.SwapMap(ctx, 0, m); err != nil {
		t.Fatal(err)
	}
	a := &Admin{MD: md}
	p, err := a.StartPlan(ctx, cluster.PlanAdd, "c", 1000)
	if err != nil || len(p.Steps) != 6 {
		t.Fatalf("add c: %+v %v", p, err)
	}
	if again, err := a.StartPlan(ctx, cluster.PlanAdd, "c", 0); err != nil || again.ID != p.ID {
		t.Fatalf("add c again: %+v %v, want plan %d resumed", again, err, p.ID)
	}
	if _, err := a.StartPlan(ctx, cluster.PlanDrain, "a", 0); !errors.Is(err, cluster.ErrPlanRunning) {
		t.Fatalf("a drain beside the add: %v", err)
	}
	go completeMigrations(ctx, md)
	reports := 0
	p, err = a.RunPlan(ctx, p.ID, func(cluster.Plan) { reports++ })
	if err != nil || !p.Ended || p.Reason != "" || reports < 6 {
		t.Fatalf("add c ran to %+v, %v, %d reports", p, err, reports)
	}
	st, _ = md.Load(ctx)
	for _, id := range []cluster.ServerID{"a", "b", "c"} {
		if n := st.Map.Owned(id).Count(); n < cluster.Slots/3 || n > cluster.Slots/3+1 {
			t.Fatalf("%s owns %d slots after the add", id, n)
		}
	}
	d, err := a.StartPlan(ctx, cluster.PlanDrain, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = a.RunPlan(ctx, d.ID, nil); err != nil || d.Reason != "" {
		t.Fatalf("drain a: %+v %v", d, err)
	}
	st, _ = md.Load(ctx)
	if st.Map.Owned("a").Count() != 0 || st.Map.Owned("b").Count()+st.Map.Owned("c").Count() != cluster.Slots {
		t.Fatalf("after the drain: %v", st.Map.Ranges)
	}
	if _, err := a.CancelPlan(ctx, d.ID); err == nil {
		t.Fatal("an ended plan was cancelled")
	}
	var b strings.Builder
	WritePlans(&b, []cluster.Plan{p, d})
	if !strings.Contains(b.String(), "plan 2 (drain a): done") || strings.Count(b.String(), "done") < 9 {
		t.Fatalf("plans written as:\n%s", b.String())
	}
}

// TestCancelPlan: a plan cancelled while its migration runs asks that
// migration to cancel and ends once it did, its other steps cancelled.
func TestCancelPlan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	md := cluster.NewMem()
	m, _ := cluster.NewMap("t", []cluster.Server{{ID: "a"}, {ID: "b"}})
	if _, err := md.SwapMap(ctx, 0, m); err != nil {
		t.Fatal(err)
	}
	a := &Admin{MD: md}
	p, err := a.StartPlan(ctx, cluster.PlanDrain, "a", 2000)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan cluster.Plan, 1)
	go func() {
		q, _ := a.RunPlan(ctx, p.ID, nil)
		done <- q
	}()
	for {
		st, _ := md.Load(ctx)
		if len(st.Migrations) == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := a.CancelPlan(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	for { // the planner asks the running migration to cancel
		st, _ := md.Load(ctx)
		if st.Migrations[0].CancelRequested {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	go completeMigrations(ctx, md)
	q := <-done
	if !q.Ended || q.Reason == "" || q.Steps[0].State != cluster.StepCancelled || q.Steps[1].State != cluster.StepCancelled {
		t.Fatalf("cancelled plan: %+v", q)
	}
	st, _ := md.Load(ctx)
	if len(st.Migrations) != 1 || st.Migrations[0].Phase != cluster.PhaseCancelled {
		t.Fatalf("migrations: %+v", st.Migrations)
	}
}
