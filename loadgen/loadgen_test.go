package loadgen

import (
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/loadgen/timeline"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/server/servertest"
)

func startServer(t *testing.T) *server.Server {
	t.Helper()
	return servertest.Start(t, servertest.Config())
}

// TestVerifiedRuns loads keys, then runs every workload with --verify
// semantics: every read is checked against what the run wrote, and every
// counter at the end.
func TestVerifiedRuns(t *testing.T) {
	s := startServer(t)
	base := Config{Servers: []string{s.Addr()}, Keys: 5000, ValueSize: 24, Threads: 2, Sessions: 2,
		BatchBytes: 2 << 10, InFlight: 3, Verify: true, Dist: "zipf", Seed: 7}
	load := base
	load.Workload = "load"
	rep, err := Run(context.Background(), load, nil)
	if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 || rep.Ops != 5000 {
		t.Fatalf("load: %+v %v", rep, err)
	}
	for _, w := range []string{"ycsb-a", "ycsb-b", "ycsb-c"} {
		cfg := base
		cfg.Workload, cfg.Ops = w, 20000
		rep, err := Run(context.Background(), cfg, nil)
		if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 {
			t.Fatalf("%s: %+v %v", w, rep, err)
		}
		if rep.Ops < 20000 || rep.OpsPerSec <= 0 || rep.P50us <= 0 || rep.P999us < rep.P50us {
			t.Fatalf("%s: implausible report %+v", w, rep)
		}
	}
	// ycsb-f adds to 8-byte integers: load 8-byte values, then add, then
	// every counter is read back.
	f := base
	f.ValueSize, f.Workload = 8, "load"
	if rep, err := Run(context.Background(), f, nil); err != nil || rep.Errors != 0 {
		t.Fatalf("load 8-byte values: %+v %v", rep, err)
	}
	f.Workload, f.Ops = "ycsb-f", 20000
	if rep, err := Run(context.Background(), f, nil); err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 || rep.Ops < 20000 {
		t.Fatalf("ycsb-f: %+v %v", rep, err)
	}
	f.ValueSize = 24
	if _, err := Run(context.Background(), f, nil); err == nil {
		t.Fatal("ycsb-f with 24-byte values accepted")
	}
}

// TestVerifyCatchesAWrongValue: values changed behind the run's back are
// reported (the check is not vacuous).
func TestVerifyCatchesAWrongValue(t *testing.T) {
	s := startServer(t)
	cfg := Config{Servers: []string{s.Addr()}, Keys: 50, ValueSize: 16, Workload: "load", Verify: true, Seed: 3}
	if rep, err := Run(context.Background(), cfg, nil); err != nil || rep.VerifyFailures != 0 {
		t.Fatalf("load: %+v %v", rep, err)
	}
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var key [8]byte
	for k := uint64(0); k < 50; k++ {
		binary.LittleEndian.PutUint64(key[:], k)
		c.Set(context.Background(), key[:], make([]byte, 16)) // not a value of key k
	}
	cfg.Workload, cfg.Ops = "ycsb-c", 2000
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.VerifyFailures == 0 || rep.FirstProblem == "" {
		t.Fatalf("no verify failure reported: %+v", rep)
	}
}

// TestVerifyLoadedCatchesALostKey: with VerifyLoaded, a loaded key that
// went missing is reported; without it, absence is allowed.
func TestVerifyLoadedCatchesALostKey(t *testing.T) {
	s := startServer(t)
	cfg := Config{Servers: []string{s.Addr()}, Keys: 50, ValueSize: 16, Workload: "load", Verify: true, Seed: 3}
	if rep, err := Run(context.Background(), cfg, nil); err != nil || rep.VerifyFailures != 0 {
		t.Fatalf("load: %+v %v", rep, err)
	}
	cfg.Workload, cfg.Ops, cfg.VerifyLoaded = "ycsb-c", 2000, true
	if rep, err := Run(context.Background(), cfg, nil); err != nil || rep.VerifyFailures != 0 {
		t.Fatalf("every key loaded: %+v %v", rep, err)
	}
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var key [8]byte
	binary.LittleEndian.PutUint64(key[:], 7)
	if _, err := c.Delete(context.Background(), key[:]); err != nil {
		t.Fatal(err)
	}
	cfg.Dist = "uniform"
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil || rep.VerifyFailures == 0 {
		t.Fatalf("a lost key went unreported: %+v %v", rep, err)
	}
	cfg.VerifyLoaded = false
	if rep, err := Run(context.Background(), cfg, nil); err != nil || rep.VerifyFailures != 0 {
		t.Fatalf("without VerifyLoaded: %+v %v", rep, err)
	}
}

// TestTimeline: a run with a timeline writes its header and a row per
// step, each with the operations completed in it, which timeline.Read
// reads back.
func TestTimeline(t *testing.T) {
	s := startServer(t)
	var tl strings.Builder
	rep, err := Run(context.Background(), Config{Servers: []string{s.Addr()}, Keys: 1000, Workload: "ycsb-b",
		Duration: time.Second, Warmup: time.Millisecond, Timeline: &tl, TimelineEvery: 50 * time.Millisecond}, nil)
	if err != nil || rep.Ops == 0 {
		t.Fatalf("%+v %v", rep, err)
	}
	lines := strings.Split(strings.TrimSpace(tl.String()), "\n")
	if lines[0] != timeline.Header || len(lines) < 10 {
		t.Fatalf("timeline of %d lines:\n%s", len(lines), tl.String())
	}
	// A row's latencies come from the threads' interval histograms, which
	// a starved machine (make test runs packages side by side, under
	// -race) can deliver a row late: a row may count operations without
	// them, but some row has them.
	busy, timed := 0, 0
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) != 6 {
			t.Fatalf("row %q", l)
		}
		if ops, _ := strconv.ParseFloat(f[1], 64); ops > 0 {
			busy++
		}
		if f[3] != "0" {
			timed++
		}
	}
	if busy < len(lines)/2 || timed == 0 {
		t.Fatalf("only %d of %d rows saw operations, %d latencies:\n%s", busy, len(lines)-1, timed, tl.String())
	}
	read, err := timeline.Read(strings.NewReader(tl.String())) // what fleetkv loadgen plot draws
	if err != nil || len(read.T) != len(lines)-1 || len(read.P999us) != len(read.T) || len(read.Errors) != len(read.T) {
		t.Fatalf("the timeline read back: %v", err)
	}
}

func TestProgressAndConfigErrors(t *testing.T) {
	s := startServer(t)
	var out strings.Builder
	rep, err := Run(context.Background(), Config{Servers: []string{s.Addr()}, Keys: 1000,
		Workload: "ycsb-b", Duration: 1500 * time.Millisecond, Warmup: 200 * time.Millisecond}, &out)
	if err != nil || rep.Ops == 0 {
		t.Fatalf("%+v %v", rep, err)
	}
	if !strings.Contains(out.String(), "ops/s") {
		t.Fatalf("no progress line in %q", out.String())
	}
	for _, bad := range []Config{
		{Servers: []string{s.Addr()}, Keys: 10, Workload: "ycsb-z", Ops: 1},
		{Servers: []string{s.Addr()}, Keys: 0, Workload: "ycsb-a", Ops: 1},
		{Keys: 10, Workload: "ycsb-a", Ops: 1},
		{Servers: []string{s.Addr()}, Keys: 10, Workload: "ycsb-a"},
		{Servers: []string{s.Addr()}, Keys: 10, Workload: "ycsb-a", Ops: 1, ValueSize: 4},
	} {
		if _, err := Run(context.Background(), bad, nil); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

// TestRoutedRunOverTwoServers: with two servers sharing the slots, a
// verified run reaches both through one address, with no re-routing, and a
// plain-session run is refused two servers.
func TestRoutedRunOverTwoServers(t *testing.T) {
	ca, cb := servertest.Config(), servertest.Config()
	ca.ServerID, cb.ServerID = "a", "b"
	a, b := servertest.Start(t, ca), servertest.Start(t, cb)
	m, err := cluster.NewMap("test", []cluster.Server{{ID: "a", Native: a.Addr()}, {ID: "b", Native: b.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range map[cluster.ServerID]*server.Server{"a": a, "b": b} {
		if err := s.Install(context.Background(), &cluster.Routing{View: 1, Serving: m.Serving(id, nil), Map: m}); err != nil {
			t.Fatal(err)
		}
	}
	base := Config{Servers: []string{b.Addr()}, Keys: 4000, ValueSize: 16, Threads: 2, Sessions: 2,
		BatchBytes: 2 << 10, Verify: true, Seed: 3}
	load := base
	load.Workload = "load"
	if rep, err := Run(context.Background(), load, nil); err != nil || rep.Errors != 0 {
		t.Fatalf("load: %+v %v", rep, err)
	}
	run := base
	run.Workload, run.Ops = "ycsb-a", 20000
	rep, err := Run(context.Background(), run, nil)
	if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 || !rep.Routed || rep.Rerouted != 0 {
		t.Fatalf("routed run: %+v %v", rep, err)
	}
	for _, s := range []*server.Server{a, b} {
		if st := s.Stats(); st.Ops["upsert"] < 1000 || st.NotOwner != 0 {
			t.Fatalf("server %s: %d upserts, %d refused", s.Addr(), st.Ops["upsert"], st.NotOwner)
		}
	}
	plain := run
	plain.NoRoute, plain.Servers = true, []string{a.Addr(), b.Addr()}
	if _, err := Run(context.Background(), plain, nil); err == nil {
		t.Fatal("plain sessions to two servers accepted")
	}
}

// TestClosedLoop: with ClosedLoop every operation is its own batch (one in
// flight per thread), the run verifies, and the report says so; over the
// standard transport and the blocking one, which is meant for it.
func TestClosedLoop(t *testing.T) {
	for _, tr := range []string{client.TransportStd, client.TransportBlocking} {
		t.Run(tr, func(t *testing.T) { testClosedLoop(t, tr) })
	}
}

func testClosedLoop(t *testing.T, transport string) {
	s := startServer(t)
	cfg := Config{Servers: []string{s.Addr()}, Keys: 2000, ValueSize: 16, Threads: 2, Sessions: 1,
		Verify: true, Dist: "uniform", Seed: 3, Workload: "load", Transport: transport}
	if rep, err := Run(context.Background(), cfg, nil); err != nil || rep.Errors != 0 {
		t.Fatalf("load: %+v %v", rep, err)
	}
	before := s.Stats()
	cfg.Workload, cfg.Ops, cfg.ClosedLoop = "ycsb-a", 3000, true
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 || rep.Ops < 3000 || !rep.ClosedLoop {
		t.Fatalf("closed loop: %+v %v", rep, err)
	}
	after := s.Stats()
	ops := after.Ops["read"] + after.Ops["upsert"] - before.Ops["read"] - before.Ops["upsert"]
	batches := int64(after.Batches - before.Batches)
	// Every data operation came alone; the control batches (OPEN, the slot
	// map) are the few extra.
	if ops < 3000 || batches < ops || batches > ops+16 {
		t.Fatalf("%d data operations in %d batches: not one operation per batch", ops, batches)
	}
}

// TestTTLRunsExpire: a load with a TTL writes values that expire: the
// server holds every key, then none once the TTL passed; --verify is
// refused beside a TTL.
func TestTTLRunsExpire(t *testing.T) {
	s := startServer(t)
	cfg := Config{Servers: []string{s.Addr()}, Keys: 2000, ValueSize: 16, Workload: "load", TTL: 300 * time.Millisecond}
	if rep, err := Run(context.Background(), cfg, nil); err != nil || rep.Errors != 0 || rep.Ops != 2000 {
		t.Fatalf("load with a TTL: %+v %v", rep, err)
	}
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := binary.LittleEndian.AppendUint64(nil, 1999)
	if _, found, err := c.Get(context.Background(), key); err != nil || !found {
		t.Fatalf("the last key loaded: %v %v", found, err)
	}
	time.Sleep(400 * time.Millisecond)
	for k := range uint64(2000) {
		if _, found, err := c.Get(context.Background(), binary.LittleEndian.AppendUint64(nil, k)); err != nil || found {
			t.Fatalf("key %d after its TTL: %v %v", k, found, err)
		}
	}
	cfg.Verify = true
	if _, err := Run(context.Background(), cfg, nil); err == nil {
		t.Fatal("--verify with --ttl accepted")
	}
}
