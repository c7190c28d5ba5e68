package clustertest

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/clusterctl"
	"github.com/fleetkv/fleetkv/loadgen"
)

// migrateAndWait moves rs to server to and waits until the migration is
// final; it returns the final record.
func (tc *testCluster) migrateAndWait(t *testing.T, rs []cluster.Range, to cluster.ServerID) cluster.Migration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rec, err := tc.admin.Migrate(ctx, rs, to)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rec, err = tc.admin.WaitMigration(ctx, rec.ID, 80*time.Second, func(m cluster.Migration) {
		t.Logf("%6.3fs migration %d %s", time.Since(start).Seconds(), m.ID, m.Phase)
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// owned returns the ranges the stored map gives id.
func (tc *testCluster) owned(t *testing.T, id cluster.ServerID) []cluster.Range {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := tc.md.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.Map.Owned(id).Ranges()
}

// loadAll loads every key of cfg and fails the test on any error.
func loadAll(t *testing.T, cfg loadgen.Config) {
	t.Helper()
	cfg.Workload, cfg.Ops, cfg.Duration = "load", 0, 0
	rep, err := loadgen.Run(context.Background(), cfg, nil)
	if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 {
		t.Fatalf("load: %+v %v", rep, err)
	}
}

// background runs a verified load until stopped and returns its report.
func background(t *testing.T, cfg loadgen.Config) (stop func() loadgen.Report) {
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		rep loadgen.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := loadgen.Run(ctx, cfg, nil)
		done <- result{rep, err}
	}()
	return func() loadgen.Report {
		cancel()
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.rep
	}
}

// TestMigrationUnderLoad: two servers and a meta member, real processes.
// A verified YCSB-B load runs through the routed client while every slot of
// s1 moves to s2 and back: both migrations complete, and the load sees no
// failed operation and no read that differs from the value last written
// (nor a loaded key missing).
func TestMigrationUnderLoad(t *testing.T) {
	tc := startCluster(t, 1, 2)
	cfg := loadgen.Config{Servers: []string{tc.Servers[0].Native}, Keys: 20000, ValueSize: 32, Threads: 2, Seed: 5,
		Verify: true, VerifyLoaded: true, Dist: "zipf", Warmup: time.Millisecond, Duration: 5 * time.Minute}
	loadAll(t, cfg)
	cfg.Workload = "ycsb-b"
	stop := background(t, cfg)
	time.Sleep(500 * time.Millisecond)
	half := tc.owned(t, "s1")
	if rec := tc.migrateAndWait(t, half, "s2"); rec.Phase != cluster.PhaseComplete {
		stop()
		t.Fatalf("to s2: %s (%s)", rec.Phase, rec.Reason)
	}
	if got := tc.owned(t, "s1"); len(got) != 0 {
		t.Fatalf("s1 still owns %v", got)
	}
	if rec := tc.migrateAndWait(t, half, "s1"); rec.Phase != cluster.PhaseComplete {
		stop()
		t.Fatalf("back to s1: %s (%s)", rec.Phase, rec.Reason)
	}
	time.Sleep(500 * time.Millisecond)
	rep := stop()
	t.Logf("load during the migrations: %d ops, %.0f ops/s, p99.9 %.0f µs, rerouted %d, map fetches %d",
		rep.Ops, rep.OpsPerSec, rep.P999us, rep.Rerouted, rep.MapFetches)
	if rep.Ops == 0 || rep.Errors != 0 || rep.VerifyFailures != 0 {
		t.Fatalf("load during the migrations: %d ops, %d errors, %d verify failures (%s)", rep.Ops, rep.Errors,
			rep.VerifyFailures, rep.FirstProblem)
	}
}

// restartWith stops p gracefully (its last checkpoint holds everything it
// acknowledged) and starts it again with env.
func (tc *testCluster) restartWith(t *testing.T, p *clusterctl.Proc, env ...string) {
	t.Helper()
	tc.Terminate(p, 30*time.Second)
	p.Env = env
	if err := tc.Start(p); err != nil {
		t.Fatal(err)
	}
}

// keysAt asks p's admin endpoint how many live keys it holds in rs (-1:
// it does not answer).
func keysAt(t *testing.T, p *clusterctl.Proc, rs []cluster.Range) int64 {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.String())
	}
	resp, err := http.Get("http://" + p.Admin + "/cluster/keys?slots=" + strings.Join(parts, ","))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var out struct{ Keys int64 }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return -1
	}
	return out.Keys
}

// waitExit waits until p's process ended.
func waitExit(t *testing.T, p *clusterctl.Proc, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for p.Running() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach its failpoint within %v", p.Name, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMigrationSurvivesKill9: for each failpoint, the source's or the
// target's process kills itself there (SIGKILL) during a migration of every
// slot of s1 to s2, and is started again: the migration ends (complete,
// or cancelled and rolled back), every slot has one owner serving it, and
// every loaded key reads its value through the routed client.
func TestMigrationSurvivesKill9(t *testing.T) {
	cases := []struct {
		server    int // 0: the source s1, 1: the target s2
		failpoint string
	}{
		{1, "after:prepare"},     // dropped and checkpointed, Prepared not sent
		{0, "stored:transfer"},   // ownership moved, nothing sent yet
		{0, "before:move"},       // the target serves, holding reads of absent keys
		{1, "before:checkpoint"}, // took every record, not checkpointed
		{0, "stored:complete"},   // complete, the source's copies not dropped
	}
	for _, c := range cases {
		t.Run(c.failpoint, func(t *testing.T) {
			tc := startCluster(t, 1, 2)
			cfg := loadgen.Config{Servers: []string{tc.Servers[0].Native, tc.Servers[1].Native}, Keys: 10000, ValueSize: 32, Seed: 9,
				Verify: true, VerifyLoaded: true, Dist: "uniform"}
			loadAll(t, cfg)
			p := tc.Servers[c.server]
			tc.restartWith(t, p, "FLEETKV_FAILPOINT="+c.failpoint)
			tc.waitRouting(t, 1)
			half := tc.owned(t, "s1")
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			rec, err := tc.admin.Migrate(ctx, half, "s2")
			if err != nil {
				t.Fatal(err)
			}
			waitExit(t, p, 60*time.Second)
			p.Env = nil
			if err := tc.Start(p); err != nil {
				t.Fatal(err)
			}
			rec, err = tc.admin.WaitMigration(ctx, rec.ID, 80*time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s killed at %s: migration %s %s", p.Name, c.failpoint, rec.Phase, rec.Reason)
			st, err := tc.md.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tc.waitRouting(t, st.Map.Epoch)
			cfg.Workload, cfg.Ops = "ycsb-c", 50000 // reads nearly every key (uniform)
			rep, err := loadgen.Run(ctx, cfg, nil)
			if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 {
				t.Fatalf("reading back: %+v %v", rep, err)
			}
			left := tc.Servers[0] // the copies the final phase leaves: the source's when complete
			if rec.Phase == cluster.PhaseCancelled {
				left = tc.Servers[1]
			}
			deadline := time.Now().Add(30 * time.Second)
			for keysAt(t, left, half) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s keeps %d keys of slots it does not own", left.Name, keysAt(t, left, half))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestMigrationSurvivesMetaKill9: the metadata store's only member is
// killed (SIGKILL) right after a migration is stored and started again two
// seconds later: the migration waits and then ends, a verified load running
// throughout sees no failed operation and no stale read, and every loaded
// key reads back.
func TestMigrationSurvivesMetaKill9(t *testing.T) {
	tc := startCluster(t, 1, 2)
	cfg := loadgen.Config{Servers: []string{tc.Servers[0].Native, tc.Servers[1].Native}, Keys: 10000, ValueSize: 32,
		Threads: 2, Seed: 11, Verify: true, VerifyLoaded: true, Dist: "zipf", Warmup: time.Millisecond, Duration: 5 * time.Minute}
	loadAll(t, cfg)
	cfg.Workload = "ycsb-b"
	stop := background(t, cfg)
	half := tc.owned(t, "s1")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rec, err := tc.admin.Migrate(ctx, half, "s2")
	if err != nil {
		stop()
		t.Fatal(err)
	}
	tc.Kill(tc.Metas[0])
	time.Sleep(2 * time.Second)
	if err := tc.Start(tc.Metas[0]); err != nil {
		stop()
		t.Fatal(err)
	}
	rec, err = tc.admin.WaitMigration(ctx, rec.ID, 80*time.Second, nil)
	rep := stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migration %s %s; load: %d ops, rerouted %d", rec.Phase, rec.Reason, rep.Ops, rep.Rerouted)
	if rep.Ops == 0 || rep.Errors != 0 || rep.VerifyFailures != 0 {
		t.Fatalf("load across the metadata store's restart: %d ops, %d errors, %d verify failures (%s)", rep.Ops, rep.Errors,
			rep.VerifyFailures, rep.FirstProblem)
	}
	cfg.Workload, cfg.Ops, cfg.Dist, cfg.Duration = "ycsb-c", 50000, "uniform", 0
	if rep, err := loadgen.Run(ctx, cfg, nil); err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 {
		t.Fatalf("reading back: %+v %v", rep, err)
	}
}
