package clusterctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/planner"
)

// StartPlan stores a new plan of kind for server id (each step moving at
// most maxSlots slots; 0: no limit) and returns it; an add joins a
// registered server to the map first. When a plan of the same kind for the
// same server has not ended, it is returned instead, to be resumed.
func (a *Admin) StartPlan(ctx context.Context, kind cluster.PlanKind, id cluster.ServerID, maxSlots int) (cluster.Plan, error) {
	if err := a.authorize(ctx); err != nil {
		return cluster.Plan{}, err
	}
	if kind == cluster.PlanAdd {
		if err := a.join(ctx, id); err != nil {
			return cluster.Plan{}, err
		}
	}
	for try := 0; ; try++ {
		st, err := a.MD.Load(ctx)
		if err != nil {
			return cluster.Plan{}, err
		}
		for _, p := range st.Plans {
			if !p.Ended && p.Kind == kind && p.Server == id {
				return p, nil
			}
		}
		p, err := cluster.NewPlan(st, kind, id, maxSlots)
		if err != nil {
			return cluster.Plan{}, err
		}
		p.At = time.Now()
		rev, err := a.MD.SwapPlan(ctx, cluster.PlanSwap{Plan: p})
		if errors.Is(err, cluster.ErrConflict) && try < 5 {
			continue
		}
		p.Revision = rev
		return p, err
	}
}

// Plans returns every plan, in the order of their ids.
func (a *Admin) Plans(ctx context.Context) ([]cluster.Plan, error) {
	st, err := a.MD.Load(ctx)
	return st.Plans, err
}

// CancelPlan asks plan id's planner to start no more steps and cancel the
// running ones' migrations.
func (a *Admin) CancelPlan(ctx context.Context, id cluster.PlanID) (cluster.Plan, error) {
	if err := a.authorize(ctx); err != nil {
		return cluster.Plan{}, err
	}
	for {
		st, err := a.MD.Load(ctx)
		if err != nil {
			return cluster.Plan{}, err
		}
		p, ok := st.PlanByID(id)
		switch {
		case !ok:
			return cluster.Plan{}, fmt.Errorf("clusterctl: no plan %d", id)
		case p.Ended:
			return p, fmt.Errorf("clusterctl: %s ended already", &p)
		case p.CancelRequested:
			return p, nil
		}
		p.CancelRequested = true
		_, err = a.MD.SwapPlan(ctx, cluster.PlanSwap{Plan: p})
		if !errors.Is(err, cluster.ErrConflict) {
			return p, err
		}
	}
}

// RunPlan carries plan id to its end (planner.Drive) and returns it
// ended, calling report with the plan whenever it changed. Stopped early
// (ctx), it leaves the plan in the store: the servers' elected planner, or
// RunPlan again, goes on with it.
func (a *Admin) RunPlan(ctx context.Context, id cluster.PlanID, report func(cluster.Plan)) (cluster.Plan, error) {
	return planner.Drive(ctx, a.MD, id, report)
}

// WritePlans writes a table of plans and their steps.
func WritePlans(w io.Writer, ps []cluster.Plan) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "no plans")
		return
	}
	for i, p := range ps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		WritePlan(w, p)
	}
}

// WritePlan writes plan p: a line of its state, then a line per step.
func WritePlan(w io.Writer, p cluster.Plan) {
	state := "running"
	switch {
	case p.Ended && p.Reason == "":
		state = "done"
	case p.Ended:
		state = "ended: " + p.Reason
	case p.CancelRequested:
		state = "cancel requested"
	case p.Reason != "":
		state = "failing: " + p.Reason
	}
	fmt.Fprintf(w, "%s: %s; %s\n", &p, state, p.Summary())
	fmt.Fprintf(w, "  %-4s %-12s %-12s %-6s %-10s %-9s %s\n", "STEP", "SOURCE", "TARGET", "SLOTS", "STATE", "MIGRATION", "RANGES / NOTE")
	for i, s := range p.Steps {
		mig := "-"
		if s.Migration != 0 {
			mig = strconv.FormatUint(uint64(s.Migration), 10)
		}
		note := cluster.FormatRanges(s.Ranges)
		if s.Note != "" {
			note += "  (" + s.Note + ")"
		}
		fmt.Fprintf(w, "  %-4d %-12s %-12s %-6d %-10s %-9s %s\n", i+1, s.Source, s.Target, s.Slots(), s.State, mig, note)
	}
}
