// Package planner carries a cluster's plans (cluster.Plan: add a server,
// drain one) out against its metadata store: Drive takes one plan to its
// end, one stored change (cluster.Plan.Next) at a time, and Run, which the
// servers run while their member leads the cluster's election
// (cluster.Metadata.Lead), drives every plan that has not ended. Any
// number of drivers may run at once (the elected one and an operator's
// command): every change is a compare-and-swap on the plan's revision, so
// they only race.
package planner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// poll is how often a driver looks again without a change signalled.
const poll = time.Second

// Drive carries plan id to its end and returns it ended. It calls report
// with the plan whenever it changed. A failed read or write of the store
// is tried again until ctx ends; the plan stays in the store, so a later
// Drive of it (from any process) resumes it.
func Drive(ctx context.Context, md cluster.Metadata, id cluster.PlanID, report func(cluster.Plan)) (cluster.Plan, error) {
	return drive(ctx, md, md.Changes(), id, report)
}

// drive is Drive, woken by changes: a subscription of md's that outlives
// it (each Changes call subscribes for the store's life, so Run, which
// drives plan after plan, subscribes once).
func drive(ctx context.Context, md cluster.Metadata, changes <-chan struct{}, id cluster.PlanID, report func(cluster.Plan)) (cluster.Plan, error) {
	var last cluster.Plan
	var lastErr error
	for {
		p, done, err := advance(ctx, md, id)
		if (err == nil || errors.Is(err, errIdle)) && p.Revision != last.Revision {
			last = p
			if report != nil {
				report(p)
			}
		}
		switch {
		case done && errors.Is(err, errNoPlan) && last.ID != 0:
			return last, ErrPlanGone // it was here: it ended, and Run pruned it
		case done:
			return p, err
		case err == nil:
			continue // a change was stored: look again at once
		case errors.Is(err, cluster.ErrConflict):
			// Another driver stored one first: read again once it is
			// signalled (or soon), not in a hot loop.
		case !errors.Is(err, errIdle):
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return last, errors.Join(ctx.Err(), lastErr)
		case <-changes:
		case <-time.After(poll):
		}
	}
}

// advance stores plan id's next change. It returns the plan as it stands,
// done when it ended, and an error (cluster.ErrConflict: a race; errIdle:
// nothing to do until the store changes).
func advance(ctx context.Context, md cluster.Metadata, id cluster.PlanID) (cluster.Plan, bool, error) {
	st, err := md.Load(ctx)
	if err != nil {
		return cluster.Plan{}, false, err
	}
	p, ok := st.PlanByID(id)
	if !ok {
		return p, true, fmt.Errorf("%w %d", errNoPlan, id)
	}
	if p.Ended {
		return p, true, nil
	}
	w, ok := p.Next(st)
	if !ok {
		return p, false, errIdle
	}
	rev, err := md.SwapPlan(ctx, w)
	if err != nil {
		return p, false, err
	}
	w.Plan.Revision = rev
	return w.Plan, false, nil
}

// errIdle is advance's answer when the plan waits for the store to change.
var errIdle = errors.New("planner: the plan waits")

// errNoPlan is advance's answer for a plan the store does not hold.
var errNoPlan = errors.New("planner: no plan")

// ErrPlanGone is Drive's answer when the plan it drove left the store:
// it ended, and the elected planner deleted it (it keeps the newest ended
// plans). Drive returns the plan as it last saw it.
var ErrPlanGone = errors.New("planner: the plan ended and was deleted from the store (the planner keeps the newest 16 ended plans)")

// Decisions counts what a planner's Rebalancer decided, for /metrics, and
// keeps the latest decisions for the dashboard (Recent).
type Decisions struct {
	Hot      atomic.Uint64 // servers seen turning hot
	Planned  atomic.Uint64 // rebalance plans stored (RebalanceOn)
	Observed atomic.Uint64 // rebalance plans only logged (RebalanceObserve)
	Failed   atomic.Uint64 // rebalance plans the store refused

	mu     sync.Mutex
	recent []Decision // the newest last; at most keptDecisions
}

// Decision is one of a planner's rebalancing decisions.
type Decision struct {
	Time time.Time      `json:"time"`
	Kind string         `json:"kind"` // hot, planned, observed or failed (the counter it added to)
	Note string         `json:"note"`
	Plan cluster.PlanID `json:"plan,omitempty"`
}

// keptDecisions is how many decisions Recent returns at most.
const keptDecisions = 16

// record counts a decision of kind and keeps it.
func (d *Decisions) record(kind string, n *atomic.Uint64, note string, plan cluster.PlanID) {
	n.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.recent) == keptDecisions {
		d.recent = append(d.recent[:0], d.recent[1:]...)
	}
	d.recent = append(d.recent, Decision{Time: time.Now(), Kind: kind, Note: note, Plan: plan})
}

// Recent returns the latest decisions, the newest first.
func (d *Decisions) Recent() []Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Decision, len(d.recent))
	for i, x := range d.recent {
		out[len(out)-1-i] = x
	}
	return out
}

// Run drives every plan of md that has not ended, in the order of their
// ids, until ctx ends, logging each change of a step. While none is left
// it steps rb (nil: no rebalancing) once a poll and on every change, and
// stores the plan it makes (RebalanceOn) or logs it (RebalanceObserve);
// counts go to dec (nil: none). changes is a subscription to md's changes
// (Metadata.Changes), which the caller keeps across runs: one lives as
// long as the store.
func Run(ctx context.Context, md cluster.Metadata, changes <-chan struct{}, log *slog.Logger, rb *cluster.Rebalancer, dec *Decisions) {
	if dec == nil {
		dec = &Decisions{}
	}
	for ctx.Err() == nil {
		st, err := md.Load(ctx)
		if err == nil {
			collect(ctx, md, st, log) // also between plans' drives: their running steps' records stay
		}
		if id, ok := unended(st); ok {
			if _, err := drive(ctx, md, changes, id, logger(log)); err != nil && ctx.Err() == nil {
				log.Warn("planner: plan not driven", "plan", id, "err", err)
			}
			continue
		}
		if err == nil {
			prune(ctx, md, st, keepSince(rb, time.Now()), log)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("planner: metadata store; will retry", "err", err)
		case err == nil && rb != nil:
			if rebalance(ctx, md, st, rb, log, dec) {
				continue // drive it
			}
		}
		select {
		case <-ctx.Done():
		case <-changes:
		case <-time.After(poll):
		}
	}
}

// rebalance steps rb over st and acts on its decision; it reports whether
// it stored a plan.
func rebalance(ctx context.Context, md cluster.Metadata, st cluster.State, rb *cluster.Rebalancer, log *slog.Logger, dec *Decisions) bool {
	d := rb.Step(st, time.Now())
	switch {
	case d.Plan == nil && d.Note != "":
		dec.record("hot", &dec.Hot, d.Note, 0)
		log.Info("rebalance: "+d.Note, "mode", rb.Config().Mode)
	case d.Plan != nil && rb.Config().Mode == cluster.RebalanceObserve:
		dec.record("observed", &dec.Observed, d.Note, d.Plan.ID)
		log.Info("rebalance (observe, nothing moves): "+d.Note, "plan", d.Plan.ID)
	case d.Plan != nil:
		if _, err := md.SwapPlan(ctx, cluster.PlanSwap{Plan: *d.Plan}); err != nil {
			dec.record("failed", &dec.Failed, d.Note+": "+err.Error(), d.Plan.ID)
			log.Warn("rebalance: plan not stored", "err", err, "decision", d.Note)
			return false
		}
		dec.record("planned", &dec.Planned, d.Note, d.Plan.ID)
		log.Info("rebalance: "+d.Note, "plan", d.Plan.ID)
		return true
	}
	return false
}

// keptPlans is how many ended plans the store keeps. A cluster that
// rebalances on its own ends a plan every cool-down, and every server
// reads every plan on every change of the store.
const keptPlans = 16

// prune deletes st's ended plans but the newest keptPlans (by id) and
// those started after since. The newest plan is always kept, so new ids
// (NewPlan: one above the highest) never repeat. A plan that moved
// meanwhile stays (a conflict) until the next pass.
func prune(ctx context.Context, md cluster.Metadata, st cluster.State, since time.Time, log *slog.Logger) {
	ended := 0
	for i := len(st.Plans) - 1; i >= 0; i-- { // st.Plans is in id order
		p := &st.Plans[i]
		if !p.Ended {
			continue
		}
		if ended++; ended <= keptPlans || p.At.After(since) {
			continue
		}
		if err := md.DeletePlan(ctx, p.ID, p.Revision); err != nil && !errors.Is(err, cluster.ErrConflict) {
			if ctx.Err() != nil {
				return // the lead ended
			}
			log.Warn("planner: ended plan not deleted; will retry", "plan", p.ID, "err", err)
			return
		}
	}
}

// keptMigrations is how many of the newest migration records the store
// keeps whether or not a server needs them, for `fleetkv cluster
// migrations` and the dashboard; older ones stay while a server needs
// them. Every server reads every record on every change of the store.
const keptMigrations = 64

// collect deletes the migration records no server needs any more
// (cluster.Collectable) but the newest keptMigrations. A record that
// moved meanwhile stays (a conflict) until the next pass.
func collect(ctx context.Context, md cluster.Metadata, st cluster.State, log *slog.Logger) {
	for _, m := range cluster.Collectable(st, keptMigrations) {
		if err := md.DeleteMigration(ctx, m.ID, m.Revision); err != nil && !errors.Is(err, cluster.ErrConflict) {
			if ctx.Err() == nil {
				log.Warn("planner: migration record not deleted; will retry", "migration", m.ID, "err", err)
			}
			return
		}
	}
}

// keepSince returns when the plans prune must keep start: the rebalancer
// never moves back a slot that a rebalance plan started within its
// NoMoveBack moved, and it reads that from the stored plans.
func keepSince(rb *cluster.Rebalancer, now time.Time) time.Time {
	if rb == nil {
		return now
	}
	return now.Add(-rb.Config().NoMoveBack)
}

// unended returns the first plan of st that has not ended.
func unended(st cluster.State) (cluster.PlanID, bool) {
	for _, p := range st.Plans {
		if !p.Ended {
			return p.ID, true
		}
	}
	return 0, false
}

// ChangedSteps returns the indexes of p's steps whose state or migration
// differ from prev's (every step when prev has fewer).
func ChangedSteps(prev, p cluster.Plan) []int {
	var out []int
	for i := range p.Steps {
		if i < len(prev.Steps) && prev.Steps[i].State == p.Steps[i].State && prev.Steps[i].Migration == p.Steps[i].Migration {
			continue
		}
		out = append(out, i)
	}
	return out
}

// logger returns a report that logs every step whose state changed since
// the last report, and the plan's end.
func logger(log *slog.Logger) func(cluster.Plan) {
	var prev cluster.Plan
	return func(p cluster.Plan) {
		for _, i := range ChangedSteps(prev, p) {
			s := &p.Steps[i]
			log.Info("plan step", "plan", p.ID, "kind", p.Kind, "server", p.Server, "step", i+1, "source", s.Source,
				"target", s.Target, "slots", s.Slots(), "state", s.State, "migration", s.Migration, "note", s.Note)
		}
		if p.Ended {
			log.Info("plan ended", "plan", p.ID, "kind", p.Kind, "server", p.Server, "summary", p.Summary(), "reason", p.Reason)
		}
		prev = p
	}
}
