package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/planner"
)

// state is a three-server cluster: a and b in the map and live, c live
// but not yet in the map, one migration a→b running and Shown+2 ended.
func state(t *testing.T, admin map[cluster.ServerID]string) cluster.State {
	t.Helper()
	m, err := cluster.NewMap("t", []cluster.Server{{ID: "a", Admin: admin["a"]}, {ID: "b", Admin: admin["b"]}})
	if err != nil {
		t.Fatal(err)
	}
	st := cluster.State{Map: m, Live: map[cluster.ServerID]cluster.Server{}, Applied: map[cluster.ServerID]uint64{"a": 1, "b": 1},
		Loads: map[cluster.ServerID]cluster.ServerLoad{"a": {OpsPerSec: 10}}}
	for _, id := range []cluster.ServerID{"a", "b", "c"} {
		st.Live[id] = cluster.Server{ID: id, Admin: admin[id]}
	}
	for i := range Shown + 2 {
		st.Migrations = append(st.Migrations, cluster.Migration{ID: cluster.MigrationID(i + 1), Source: "a", Target: "b",
			Ranges: []cluster.Range{{First: uint16(i), Last: uint16(i)}}, Phase: cluster.PhaseComplete})
	}
	st.Migrations = append(st.Migrations, cluster.Migration{ID: Shown + 3, Source: "a", Target: "b",
		Ranges: []cluster.Range{{First: 100, Last: 199}}, Phase: cluster.PhaseMove})
	st.Plans = []cluster.Plan{{ID: 1, Kind: cluster.PlanAdd, Server: "c", Ended: true}, {ID: 2, Kind: cluster.PlanDrain, Server: "a"}}
	return st
}

// TestBuild: every server the map or the registrations name is listed in
// id order with its sample or its error; running tasks join their
// migration; only the newest Shown ended migrations are kept beside the
// running one; decisions from every server are merged, the newest first.
func TestBuild(t *testing.T) {
	st := state(t, nil)
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	samples := map[cluster.ServerID]Result{
		"a": {Sample: &Sample{ID: "a", Ops: 5, Tasks: []cluster.TaskProgress{{Migration: Shown + 3, Task: "move", Slots: 100, SlotsDone: 40}},
			Decisions: []planner.Decision{{Time: t0, Kind: "hot", Note: "old"}}}},
		"b": {Sample: &Sample{ID: "b", Decisions: []planner.Decision{{Time: t0.Add(time.Second), Kind: "planned", Note: "new", Plan: 2}}}},
		"c": {Err: errors.New("connection refused")},
	}
	o := Build(st, samples, t0)
	if o.Cluster != "t" || o.Epoch != 1 || len(o.Ranges) != 2 {
		t.Fatalf("map: %q epoch %d ranges %v", o.Cluster, o.Epoch, o.Ranges)
	}
	if len(o.Servers) != 3 || o.Servers[0].ID != "a" || o.Servers[2].ID != "c" {
		t.Fatalf("servers %+v", o.Servers)
	}
	a, c := o.Servers[0], o.Servers[2]
	if !a.InMap || !a.Live || a.Slots != cluster.Slots/2 || a.Reported != 10 || a.Sample == nil || a.Sample.Ops != 5 {
		t.Fatalf("a: %+v", a)
	}
	if c.InMap || !c.Live || c.Sample != nil || c.Error != "connection refused" {
		t.Fatalf("c: %+v", c)
	}
	if len(o.Migrations) != Shown+1 || o.Migrations[0].ID != 3 {
		t.Fatalf("%d migrations, first %d; want %d from 3", len(o.Migrations), o.Migrations[0].ID, Shown+1)
	}
	run := o.Migrations[Shown]
	if run.PhaseName != "move" || len(run.Tasks) != 1 || run.Tasks[0].SlotsDone != 40 {
		t.Fatalf("running migration %+v", run)
	}
	if len(o.Plans) != 2 {
		t.Fatalf("plans %+v", o.Plans)
	}
	if len(o.Decisions) != 2 || o.Decisions[0].Note != "new" || o.Decisions[0].Server != "b" || o.Decisions[1].Server != "a" {
		t.Fatalf("decisions %+v", o.Decisions)
	}
}

// TestBuildWithoutStore: when the store did not answer (an empty state),
// the serving server is still listed with its sample.
func TestBuildWithoutStore(t *testing.T) {
	o := Build(cluster.State{}, map[cluster.ServerID]Result{"a": {Sample: &Sample{ID: "a", Ops: 1}}}, time.Now())
	if len(o.Servers) != 1 || o.Servers[0].Sample == nil || o.Servers[0].Live || len(o.Ranges) != 0 {
		t.Fatalf("%+v", o)
	}
}

// TestHandlers: over real sockets, a's overview fetches b's sample from
// b's admin listener, takes its own from its Local, reports c (whose
// listener is gone) with an error, and serves the page at / only.
func TestHandlers(t *testing.T) {
	serve := func(id cluster.ServerID, state State) *httptest.Server {
		mux := http.NewServeMux()
		for p, h := range Handlers(id, state, func() Sample { return Sample{ID: id, Ops: int64(len(id)) * 7, Time: time.Now()} }) {
			mux.Handle(p, h)
		}
		return httptest.NewServer(mux)
	}
	var st cluster.State
	load := func(context.Context) (cluster.State, error) { return st, nil }
	a, b := serve("a", load), serve("b", load)
	defer a.Close()
	defer b.Close()
	down := httptest.NewServer(http.NotFoundHandler()) // after a and b: they cannot get its port
	admin := map[cluster.ServerID]string{"c": strings.TrimPrefix(down.URL, "http://")}
	down.Close()
	admin["a"], admin["b"] = strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://")
	st = state(t, admin)

	var o Overview
	getJSON(t, a.URL+"/cluster/overview", &o)
	if len(o.Servers) != 3 {
		t.Fatalf("servers %+v", o.Servers)
	}
	for _, s := range o.Servers[:2] {
		if s.Sample == nil || s.Sample.ID != s.ID || s.Error != "" {
			t.Fatalf("%s: %+v", s.ID, s)
		}
	}
	if o.Servers[2].Sample != nil || o.Servers[2].Error == "" {
		t.Fatalf("c answered: %+v", o.Servers[2])
	}
	resp, err := http.Get(a.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if resp, err = http.Get(a.URL + "/nothing"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/nothing: %s", resp.Status)
	}
}

// TestOverviewReportsStoreError: a store that fails gives an overview with
// its error and the serving server's own sample.
func TestOverviewReportsStoreError(t *testing.T) {
	h := Handlers("a", func(context.Context) (cluster.State, error) { return cluster.State{}, errors.New("etcd down") },
		func() Sample { return Sample{ID: "a"} })
	srv := httptest.NewServer(h["GET /cluster/overview"])
	defer srv.Close()
	var o Overview
	getJSON(t, srv.URL, &o)
	if o.Error != "etcd down" || len(o.Servers) != 1 || o.Servers[0].Sample == nil {
		t.Fatalf("%+v", o)
	}
}

// TestOverviewOutlivesTheStore: once the store stops answering, the
// overview shows the last state read (every server, fetched as before)
// and says so.
func TestOverviewOutlivesTheStore(t *testing.T) {
	st := state(t, nil)
	var fail atomic.Bool
	h := Handlers("a", func(context.Context) (cluster.State, error) {
		if fail.Load() {
			return cluster.State{}, errors.New("etcd down")
		}
		return st, nil
	}, func() Sample { return Sample{ID: "a"} })
	srv := httptest.NewServer(h["GET /cluster/overview"])
	defer srv.Close()
	var o Overview
	getJSON(t, srv.URL, &o)
	if o.Error != "" || len(o.Servers) != 3 {
		t.Fatalf("fresh: %+v", o)
	}
	fail.Store(true)
	o = Overview{}
	getJSON(t, srv.URL, &o)
	if !strings.HasPrefix(o.Error, "etcd down (showing the state read") || len(o.Servers) != 3 || o.Epoch != 1 {
		t.Fatalf("stale: error %q, %d servers, epoch %d", o.Error, len(o.Servers), o.Epoch)
	}
}

// TestGatherBoundsPeers: a peer that never answers, and one that answers
// as another server, are reported with an error while the overview still
// comes back within the fetch timeout.
func TestGatherBoundsPeers(t *testing.T) {
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer stuck.Close()
	imposter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, Sample{ID: "a"}) }))
	defer imposter.Close()
	st := state(t, map[cluster.ServerID]string{"b": strings.TrimPrefix(stuck.URL, "http://"), "c": strings.TrimPrefix(imposter.URL, "http://")})
	start := time.Now()
	got := Gather(context.Background(), &http.Client{Timeout: FetchTimeout}, st, "a", func() Sample { return Sample{ID: "a"} })
	if took := time.Since(start); took > 3*FetchTimeout {
		t.Fatalf("took %v", took)
	}
	if got["a"].Sample == nil || got["b"].Err == nil || got["c"].Err == nil || !strings.Contains(got["c"].Err.Error(), `answered as "a"`) {
		t.Fatalf("%+v", got)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
