// Package dashboard is the cluster's web page: every server's admin
// listener serves it at / (an embedded page, no external assets) and the
// JSON it polls at /cluster/overview, which the server assembles from the
// metadata store's state and every server's own figures (/cluster/local).
//
// Build is pure: it turns a cluster.State and the servers' Samples into an
// Overview. Gather fetches the samples; Handlers wires both to HTTP.
package dashboard

import (
	"cmp"
	"slices"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/planner"
)

// Sample is one server's own figures at one time, served at
// /cluster/local: the page charts ops/s from two samples' Ops and Time.
type Sample struct {
	ID      cluster.ServerID `json:"id"`
	Time    time.Time        `json:"time"`
	Ops     int64            `json:"ops"`     // data operations answered since the server started
	P999Us  int64            `json:"p999_us"` // the foreground's p99.9 wait over the last admission interval
	BgShare float64          `json:"bg_share"`
	View    uint64           `json:"view"`
	Serving string           `json:"serving"` // the slots the loops serve, "0-99,200"
	// Tasks are the migration tasks (moves, ship-backs) running here.
	Tasks []cluster.TaskProgress `json:"tasks"`
	// Decisions are the latest the planner made while this server led
	// it (kept after it stopped leading).
	Decisions []planner.Decision `json:"decisions"`
}

// Overview is the page's JSON: the cluster at one time.
type Overview struct {
	Time    time.Time `json:"time"`
	Cluster string    `json:"cluster"`
	Epoch   uint64    `json:"map_epoch"`       // 0: no map yet
	Error   string    `json:"error,omitempty"` // the metadata store did not answer (the state is the last read, if any)
	// Ranges is the slot map: sorted, disjoint ranges and their owners.
	Ranges     []cluster.Assignment `json:"ranges"`
	Servers    []ServerView         `json:"servers"`
	Migrations []MigrationView      `json:"migrations"`
	Plans      []cluster.Plan       `json:"plans"`
	// Decisions are the planner's latest, from every server that led it,
	// the newest first.
	Decisions []DecisionView `json:"decisions"`
}

// ServerView is one server's row.
type ServerView struct {
	ID      cluster.ServerID `json:"id"`
	Admin   string           `json:"admin,omitempty"`
	Live    bool             `json:"live"`   // registered now
	InMap   bool             `json:"in_map"` // the map knows it
	View    uint64           `json:"view"`   // in the map
	Applied uint64           `json:"applied"`
	Slots   int              `json:"slots"` // assigned by the map
	// Reported is the ops/s the server last reported for rebalancing.
	Reported float64 `json:"reported_ops_per_sec"`
	Sample   *Sample `json:"sample,omitempty"` // nil when it did not answer
	Error    string  `json:"error,omitempty"`  // why it did not
}

// MigrationView is a migration's record, its phase by name and the
// progress of its running tasks.
type MigrationView struct {
	cluster.Migration
	PhaseName string                 `json:"phase_name"`
	Tasks     []cluster.TaskProgress `json:"tasks,omitempty"`
}

// DecisionView is a decision and the server whose planner made it.
type DecisionView struct {
	planner.Decision
	Server cluster.ServerID `json:"server"`
}

// Result is what fetching one server's sample gave.
type Result struct {
	Sample *Sample
	Err    error
}

// Shown bounds the ended migrations and plans an Overview lists (the
// newest); every running one is listed.
const Shown = 8

// ShownDecisions bounds the planner decisions an Overview lists (the
// newest, from every server).
const ShownDecisions = 16

// Build assembles the overview of st with the servers' samples. It is
// pure: the same arguments give the same Overview.
func Build(st cluster.State, samples map[cluster.ServerID]Result, now time.Time) Overview {
	o := Overview{Time: now, Ranges: []cluster.Assignment{}, Migrations: []MigrationView{}, Plans: []cluster.Plan{},
		Decisions: []DecisionView{}}
	if st.Map != nil {
		o.Cluster, o.Epoch = st.Map.Cluster, st.Map.Epoch
		o.Ranges = append(o.Ranges, st.Map.Ranges...)
	}
	o.Servers = servers(st, samples)
	tasks := map[cluster.MigrationID][]cluster.TaskProgress{}
	for _, sv := range o.Servers {
		if sv.Sample == nil {
			continue
		}
		for _, t := range sv.Sample.Tasks {
			tasks[t.Migration] = append(tasks[t.Migration], t)
		}
		for _, d := range sv.Sample.Decisions {
			o.Decisions = append(o.Decisions, DecisionView{Decision: d, Server: sv.ID})
		}
	}
	slices.SortStableFunc(o.Decisions, func(a, b DecisionView) int { return b.Time.Compare(a.Time) })
	o.Decisions = o.Decisions[:min(len(o.Decisions), ShownDecisions)]
	for _, m := range latest(st.Migrations, func(m cluster.Migration) bool { return m.Phase.Final() }) {
		o.Migrations = append(o.Migrations, MigrationView{Migration: m, PhaseName: m.Phase.String(), Tasks: tasks[m.ID]})
	}
	o.Plans = append(o.Plans, latest(st.Plans, func(p cluster.Plan) bool { return p.Ended })...)
	return o
}

// servers lists every server the map or the live registrations name, in
// the order of their ids.
func servers(st cluster.State, samples map[cluster.ServerID]Result) []ServerView {
	byID := map[cluster.ServerID]*ServerView{}
	add := func(s cluster.Server) *ServerView {
		v := byID[s.ID]
		if v == nil {
			v = &ServerView{ID: s.ID}
			byID[s.ID] = v
		}
		if s.Admin != "" {
			v.Admin = s.Admin
		}
		return v
	}
	if st.Map != nil {
		for _, s := range st.Map.Servers {
			v := add(s)
			v.InMap, v.View, v.Slots = true, st.Map.Views[s.ID], st.Map.Owned(s.ID).Count()
		}
	}
	for _, s := range st.Live {
		add(s).Live = true
	}
	for id := range samples {
		add(cluster.Server{ID: id})
	}
	out := make([]ServerView, 0, len(byID))
	for id, v := range byID {
		v.Applied, v.Reported = st.Applied[id], st.Loads[id].OpsPerSec
		if r, ok := samples[id]; ok {
			v.Sample = r.Sample
			if r.Err != nil {
				v.Error = r.Err.Error()
			}
		}
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b ServerView) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// latest returns every x of xs that has not ended, and the last Shown of
// those that have, in their order in xs.
func latest[T any](xs []T, ended func(T) bool) []T {
	keep := make([]bool, len(xs))
	n := 0
	for i := len(xs) - 1; i >= 0; i-- {
		if !ended(xs[i]) {
			keep[i] = true
		} else if n < Shown {
			keep[i] = true
			n++
		}
	}
	out := []T{}
	for i, x := range xs {
		if keep[i] {
			out = append(out, x)
		}
	}
	return out
}
