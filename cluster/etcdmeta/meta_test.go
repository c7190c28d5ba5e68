package etcdmeta

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startMember(t *testing.T) *Member {
	t.Helper()
	m, err := StartMember(MemberConfig{Dir: t.TempDir(), Client: "127.0.0.1:0", Peer: freePort(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func dial(t *testing.T, endpoints []string, name string) *Store {
	t.Helper()
	s, err := Dial(Config{Endpoints: endpoints, Cluster: name, LeaseTTL: 2 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// conformance runs what every cluster.Metadata must do.
func conformance(t *testing.T, md cluster.Metadata) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	changes := md.Changes()
	st, err := md.Load(ctx)
	if err != nil || st.Map != nil || st.MapRevision != 0 {
		t.Fatalf("empty store: %+v %v", st, err)
	}
	srv := cluster.Server{ID: "a", Native: "127.0.0.1:1", Loops: 2}
	if err := md.Register(ctx, srv); err != nil {
		t.Fatal(err)
	}
	m, _ := cluster.NewMap("c", []cluster.Server{srv})
	rev, err := md.SwapMap(ctx, 0, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SwapMap(ctx, 0, m); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("a swap from a stale revision: %v", err)
	}
	if err := md.ReportApplied(ctx, "a", 3); err != nil {
		t.Fatal(err)
	}
	if err := md.ReportApplied(ctx, "a", 2); err != nil { // older: ignored
		t.Fatal(err)
	}
	st, err = md.Load(ctx)
	if err != nil || st.MapRevision != rev || st.Map.Epoch != 1 || st.Live["a"] != srv || st.Applied["a"] != 3 {
		t.Fatalf("after the writes: %+v %v", st, err)
	}
	select {
	case <-changes:
	case <-ctx.Done():
		t.Fatal("no change was signalled")
	}
	next, _ := st.Map.Assign([]cluster.Range{{First: 0, Last: 9}}, "a", st.Applied)
	if next != nil {
		t.Fatal("assigning a's own slots changed the map")
	}
	migrationConformance(ctx, t, md)
	planConformance(ctx, t, md)
	cleanConformance(ctx, t, md)
	leadConformance(ctx, t, md)
}

// cleanConformance: clean-up floors only grow; a migration record is
// deleted at its revision only, once.
func cleanConformance(ctx context.Context, t *testing.T, md cluster.Metadata) {
	for _, f := range []cluster.MigrationID{2, 1} { // the lower one changes nothing
		if err := md.ReportCleaned(ctx, "b", f); err != nil {
			t.Fatal(err)
		}
	}
	st, err := md.Load(ctx)
	if err != nil || st.Cleaned["b"] != 2 || st.Cleaned["a"] != 0 {
		t.Fatalf("floors %v, %v", st.Cleaned, err)
	}
	rec := st.Migrations[0]
	if err := md.DeleteMigration(ctx, rec.ID, rec.Revision-1); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("a delete at a stale revision: %v", err)
	}
	if err := md.DeleteMigration(ctx, rec.ID, rec.Revision); err != nil {
		t.Fatal(err)
	}
	if err := md.DeleteMigration(ctx, rec.ID, rec.Revision); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("deleting a record twice: %v", err)
	}
	now, err := md.Load(ctx)
	if err != nil || len(now.Migrations) != len(st.Migrations)-1 || now.Migrations[0].ID == rec.ID {
		t.Fatalf("after the delete: %+v %v", now.Migrations, err)
	}
}

// leadConformance: one leader at a time; a campaign waits while another
// leads and leads once that one's context ended (its lost channel closed).
func leadConformance(ctx context.Context, t *testing.T, md cluster.Metadata) {
	ctxA, cancelA := context.WithCancel(ctx)
	lostA, err := md.Lead(ctxA, "a")
	if err != nil {
		t.Fatal(err)
	}
	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	type lead struct {
		lost <-chan struct{}
		err  error
	}
	led := make(chan lead, 1)
	go func() {
		lost, err := md.Lead(ctxB, "b")
		led <- lead{lost, err}
	}()
	select {
	case l := <-led:
		t.Fatalf("b leads beside a: %v", l.err)
	case <-time.After(300 * time.Millisecond):
	}
	cancelA()
	select {
	case <-lostA:
	case <-ctx.Done():
		t.Fatal("a's lead not lost after its context ended")
	}
	var b lead
	select {
	case b = <-led:
		if b.err != nil {
			t.Fatal(b.err)
		}
	case <-ctx.Done():
		t.Fatal("b never leads after a resigned")
	}
	cancelB()
	select {
	case <-b.lost:
	case <-ctx.Done():
		t.Fatal("b's lead not lost after its context ended")
	}
	ctxC, cancelC := context.WithCancel(ctx)
	lost, err := md.Lead(ctxC, "c")
	if err != nil {
		t.Fatalf("c campaigns alone: %v", err)
	}
	cancelC()
	<-lost
}

// planConformance: a plan is created once, swapped on its revision, and
// swapped together with a migration record or not at all; plans load in
// id order; a plan is deleted on its revision only.
func planConformance(ctx context.Context, t *testing.T, md cluster.Metadata) {
	p := cluster.Plan{ID: 1, Kind: cluster.PlanDrain, Server: "b",
		Steps: []cluster.Step{{Source: "b", Target: "a", Ranges: []cluster.Range{{First: 0, Last: 9}}, State: cluster.StepPending}}}
	rev, err := md.SwapPlan(ctx, cluster.PlanSwap{Plan: p})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SwapPlan(ctx, cluster.PlanSwap{Plan: p}); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("creating plan 1 twice: %v", err)
	}
	st, _ := md.Load(ctx)
	if len(st.Plans) != 1 || st.Plans[0].Revision != rev || st.Plans[0].Steps[0].Ranges[0].Last != 9 {
		t.Fatalf("loaded %+v", st.Plans)
	}
	// A stale migration revision fails the plan's half too.
	p, rec := st.Plans[0], st.Migrations[1]
	p.Steps[0].State = cluster.StepRunning
	rec.CancelRequested = true
	stale := rec
	stale.Revision--
	if _, err := md.SwapPlan(ctx, cluster.PlanSwap{Plan: p, Migration: &stale}); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("a swap with a stale migration: %v", err)
	}
	if now, _ := md.Load(ctx); now.Plans[0].Steps[0].State != cluster.StepPending {
		t.Fatalf("half of a failed swap stored: %+v", now.Plans)
	}
	rev, err = md.SwapPlan(ctx, cluster.PlanSwap{Plan: p, Migration: &rec})
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range []cluster.Plan{{ID: 2, Kind: cluster.PlanAdd, Server: "c"}, {ID: 10, Kind: cluster.PlanAdd, Server: "c"}} {
		if _, err := md.SwapPlan(ctx, cluster.PlanSwap{Plan: q}); err != nil {
			t.Fatalf("plan %d: %v", i, err)
		}
	}
	now, _ := md.Load(ctx)
	if now.Plans[0].Steps[0].State != cluster.StepRunning || now.Plans[0].Revision != rev || !now.Migrations[1].CancelRequested ||
		now.Migrations[1].Revision != rev || len(now.Plans) != 3 || now.Plans[2].ID != 10 {
		t.Fatalf("after the swaps: %+v %+v", now.Plans, now.Migrations)
	}
	// A plan is deleted on its revision, once.
	two := now.Plans[1]
	if err := md.DeletePlan(ctx, two.ID, two.Revision-1); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("deleting plan 2 at a stale revision: %v", err)
	}
	if err := md.DeletePlan(ctx, two.ID, two.Revision); err != nil {
		t.Fatal(err)
	}
	if err := md.DeletePlan(ctx, two.ID, two.Revision); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("deleting plan 2 twice: %v", err)
	}
	if now, _ = md.Load(ctx); len(now.Plans) != 2 || now.Plans[0].ID != 1 || now.Plans[1].ID != 10 {
		t.Fatalf("after deleting plan 2: %+v", now.Plans)
	}
}

// migrationConformance: a record is created once, swapped on its revision,
// and swapped together with the map or not at all; records load in id
// order.
func migrationConformance(ctx context.Context, t *testing.T, md cluster.Metadata) {
	st, err := md.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	withB := st.Map.WithServer(cluster.Server{ID: "b", Native: "127.0.0.1:2"})
	if _, err := md.SwapMap(ctx, st.MapRevision, withB); err != nil {
		t.Fatal(err)
	}
	st, _ = md.Load(ctx)
	var recs []cluster.Migration
	for i, r := range []cluster.Range{{First: 0, Last: 9}, {First: 10, Last: 10}} {
		rec, err := cluster.NewMigration(st, "a", "b", []cluster.Range{r})
		if err != nil || rec.ID != cluster.MigrationID(i+1) {
			t.Fatalf("migration %d: %+v %v", i+1, rec, err)
		}
		if _, err := md.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec}); err != nil {
			t.Fatal(err)
		}
		if _, err := md.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec}); !errors.Is(err, cluster.ErrConflict) {
			t.Fatalf("creating migration %d twice: %v", rec.ID, err)
		}
		st, _ = md.Load(ctx)
		recs = st.Migrations
	}
	if len(recs) != 2 || recs[0].ID != 1 || recs[1].ID != 2 || recs[0].Revision == 0 || recs[0].Ranges[0].Last != 9 {
		t.Fatalf("loaded %+v", recs)
	}
	if _, err := cluster.NewMigration(st, "a", "b", []cluster.Range{{First: 5, Last: 20}}); !errors.Is(err, cluster.ErrMigrating) {
		t.Fatalf("overlapping a migration: %v", err)
	}
	moved, err := st.Map.Assign(recs[0].Ranges, "b", st.Applied)
	if err != nil {
		t.Fatal(err)
	}
	rec := recs[0]
	rec.Phase = cluster.PhaseTransfer
	stale := cluster.MigrationSwap{Migration: rec, Map: moved, MapRevision: st.MapRevision - 1}
	if _, err := md.SwapMigration(ctx, stale); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("a swap with a stale map: %v", err)
	}
	if now, _ := md.Load(ctx); now.Migrations[0].Phase != cluster.PhaseSample || now.MapRevision != st.MapRevision {
		t.Fatalf("half of a failed swap stored: %+v", now)
	}
	rev, err := md.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec, Map: moved, MapRevision: st.MapRevision})
	if err != nil {
		t.Fatal(err)
	}
	now, _ := md.Load(ctx)
	if now.Migrations[0].Phase != cluster.PhaseTransfer || now.Migrations[0].Revision != rev || now.MapRevision != rev ||
		now.Map.Epoch != moved.Epoch {
		t.Fatalf("after the swap: %+v", now)
	}
}

func TestConformanceMem(t *testing.T) { conformance(t, cluster.NewMem()) }

func TestConformanceEtcd(t *testing.T) {
	m := startMember(t)
	s := dial(t, []string{m.ClientAddr()}, "c")
	defer s.Close()
	conformance(t, s)
}

// TestRegistrationLapses: a closed store's registration goes at once (its
// lease is revoked); the token, once set, is required.
func TestRegistrationLapsesAndToken(t *testing.T) {
	ctx := context.Background()
	m := startMember(t)
	a, b := dial(t, []string{m.ClientAddr()}, "c"), dial(t, []string{m.ClientAddr()}, "c")
	defer b.Close()
	if err := a.Register(ctx, cluster.Server{ID: "a", Native: "x:1"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.Load(ctx); len(st.Live) != 1 {
		t.Fatalf("live %v", st.Live)
	}
	a.Close()
	if st, _ := b.Load(ctx); len(st.Live) != 0 {
		t.Fatalf("a closed store's registration stays: %v", st.Live)
	}
	if err := b.CheckToken(ctx, "anything"); err != nil {
		t.Fatalf("no token set, yet refused: %v", err)
	}
	if err := b.SetToken(ctx, "secret"); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckToken(ctx, "wrong"); !errors.Is(err, ErrToken) {
		t.Fatalf("wrong token: %v", err)
	}
	if err := b.SetToken(ctx, "other"); !errors.Is(err, ErrToken) {
		t.Fatalf("replacing the token: %v", err)
	}
	if err := b.CheckToken(ctx, "secret"); err != nil {
		t.Fatal(err)
	}
}

// TestCampaignEndsWithEtcdGone: a campaign waiting behind another leader
// returns at once when its context ends, with etcd gone (etcd's own
// Campaign then resigns through the client's context and would hang a
// server's shutdown until the client closed).
func TestCampaignEndsWithEtcdGone(t *testing.T) {
	m := startMember(t)
	s := dial(t, []string{m.ClientAddr()}, "c")
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.Lead(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ctxB, cancelB := context.WithCancel(ctx)
	ended := make(chan error, 1)
	go func() {
		_, err := s.Lead(ctxB, "b")
		ended <- err
	}()
	time.Sleep(200 * time.Millisecond)
	m.Close()
	cancelB()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("campaign ended with %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a campaign with etcd gone did not end with its context")
	}
}
