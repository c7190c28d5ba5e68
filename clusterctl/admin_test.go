package clusterctl

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// tokens is a Tokens over one token, as etcdmeta keeps it.
type tokens struct{ set string }

var errToken = errors.New("wrong token")

func (t *tokens) SetToken(_ context.Context, tok string) error {
	if t.set == "" {
		t.set = tok
		return nil
	}
	return t.CheckToken(context.Background(), tok)
}

func (t *tokens) CheckToken(_ context.Context, tok string) error {
	if t.set != "" && tok != t.set {
		return errToken
	}
	return nil
}

// fakeAdmin answers /cluster/keys with keys for slots listing slot 7.
func fakeAdmin(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		for _, part := range strings.Split(r.URL.Query().Get("slots"), ",") {
			rs, _ := cluster.ParseRanges(part)
			if len(rs) == 1 && rs[0].First <= 7 && rs[0].Last >= 7 {
				n = 3
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]int{"keys": n})
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestInitAndAssign: init spreads the slots over the registered servers
// and records the token; assign needs the token, refuses slots with keys,
// adds a registered server to the map, and moves empty slots.
func TestInitAndAssign(t *testing.T) {
	ctx := context.Background()
	md := cluster.NewMem()
	admin := fakeAdmin(t)
	for _, id := range []cluster.ServerID{"a", "b"} {
		if err := md.Register(ctx, cluster.Server{ID: id, Native: string(id) + ":1", Admin: admin}); err != nil {
			t.Fatal(err)
		}
	}
	tok := &tokens{}
	a := &Admin{MD: md, Tokens: tok, Token: "secret"}
	m, err := a.Init(ctx, "c", 2, time.Second)
	if err != nil || len(m.Ranges) != 2 || tok.set != "secret" {
		t.Fatalf("init: %+v %v (token %q)", m, err, tok.set)
	}
	if _, err := a.Init(ctx, "c", 2, time.Second); err == nil {
		t.Fatal("a second init")
	}
	wrong := &Admin{MD: md, Tokens: tok, Token: "guess"}
	if _, err := wrong.Assign(ctx, []cluster.Range{{First: 0, Last: 5}}, "b"); !errors.Is(err, errToken) {
		t.Fatalf("assign with a wrong token: %v", err)
	}
	if _, err := a.Assign(ctx, []cluster.Range{{First: 0, Last: 10}}, "b"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("assign of slots with keys: %v", err)
	}
	if err := md.Register(ctx, cluster.Server{ID: "c", Native: "c:1", Admin: admin}); err != nil {
		t.Fatal(err)
	}
	m, err = a.Assign(ctx, []cluster.Range{{First: 0, Last: 5}}, "c")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := m.Owner(3); o.Owner != "c" || o.From != "a" || m.Views["a"] != 2 || m.Views["c"] != 2 {
		t.Fatalf("after assign: %+v views %v", o, m.Views)
	}
	if err := a.WaitServing(ctx, m, 50*time.Millisecond); err == nil {
		t.Fatal("served before a applied its new view")
	}
	if err := md.ReportApplied(ctx, "a", 2); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitServing(ctx, m, 50*time.Millisecond); err == nil {
		t.Fatal("served before c installed its view of the map")
	}
	for _, id := range []cluster.ServerID{"b", "c"} { // b's view is init's
		if err := md.ReportApplied(ctx, id, m.Views[id]); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.WaitServing(ctx, m, time.Second); err != nil {
		t.Fatal(err)
	}
	// Slots a migration holds are refused.
	mst, _ := md.Load(ctx)
	rec, err := cluster.NewMigration(mst, "b", "a", []cluster.Range{{First: 9000, Last: 9100}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Assign(ctx, []cluster.Range{{First: 9050, Last: 9050}}, "c"); !errors.Is(err, cluster.ErrMigrating) {
		t.Fatalf("assign of a migrating slot: %v", err)
	}
	st, err := a.Status(ctx, "c", time.Millisecond)
	if err != nil || len(st.Servers) != 3 || st.Servers[2].Slots != 6 {
		t.Fatalf("status: %+v %v", st, err)
	}
	var b strings.Builder
	st.WriteTable(&b)
	if !strings.Contains(b.String(), "0-5") {
		t.Fatalf("status table:\n%s", b.String())
	}
}

// progressAdmin answers /cluster/migrations with tasks and /stats with
// parked reads.
func progressAdmin(t *testing.T, tasks []cluster.TaskProgress, parked uint64) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cluster/migrations":
			_ = json.NewEncoder(w).Encode(tasks)
		case "/stats":
			_ = json.NewEncoder(w).Encode(map[string]uint64{"parked_reads": parked})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestMigrationProgress: a running migration's progress comes from its
// source's task and its target's held reads, with the rate of its records;
// an ended one has none; the list draws it as a bar.
func TestMigrationProgress(t *testing.T) {
	ctx := context.Background()
	md := cluster.NewMem()
	src := progressAdmin(t, []cluster.TaskProgress{{Migration: 1, Task: "move", Slots: 8192, SlotsDone: 4096, Records: 300000, Seconds: 2}}, 0)
	for id, admin := range map[cluster.ServerID]string{"a": src, "b": progressAdmin(t, nil, 42)} {
		if err := md.Register(ctx, cluster.Server{ID: id, Native: string(id) + ":1", Admin: admin}); err != nil {
			t.Fatal(err)
		}
	}
	ms := []cluster.Migration{
		{ID: 1, Source: "a", Target: "b", Ranges: []cluster.Range{{First: 8192, Last: 16383}}, Phase: cluster.PhaseMove},
		{ID: 2, Source: "b", Target: "a", Ranges: []cluster.Range{{First: 0, Last: 9}}, Phase: cluster.PhaseComplete},
		{ID: 3, Source: "a", Target: "gone", Ranges: []cluster.Range{{First: 10, Last: 19}}, Phase: cluster.PhaseSample},
	}
	a := &Admin{MD: md}
	got := a.MigrationProgress(ctx, ms)
	if want := (Progress{Task: "move", Slots: 8192, SlotsDone: 4096, Records: 300000, Rate: 150000, Held: 42}); got[1] != want {
		t.Fatalf("progress of the move %+v, want %+v", got[1], want)
	}
	if _, ok := got[2]; ok {
		t.Fatal("an ended migration has progress")
	}
	if p := got[3]; !strings.Contains(p.Error, "gone") {
		t.Fatalf("a migration whose target is not live: %+v, want an error naming it", p)
	}
	down := &Admin{MD: failingLoad{md}}
	for _, m := range ms {
		p, ok := down.MigrationProgress(ctx, ms)[m.ID]
		if m.Phase.Final() != !ok || (ok && !strings.Contains(p.Error, "metadata store down")) {
			t.Fatalf("migration %d with the metadata store down: %+v %v, want an entry naming the error while it runs", m.ID, p, ok)
		}
	}
	var b strings.Builder
	WriteMigrations(&b, ms, got)
	if line := b.String(); !strings.Contains(line, "move [##########..........]  50% 300000 records 150000/s, 42 reads held") {
		t.Fatalf("the list draws\n%s", line)
	}
}

// failingLoad is a metadata store whose Load fails.
type failingLoad struct{ cluster.Metadata }

func (failingLoad) Load(context.Context) (cluster.State, error) {
	return cluster.State{}, errors.New("metadata store down")
}
