package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/cluster/etcdmeta"
	"github.com/fleetkv/fleetkv/clusterctl"
)

var (
	seedFlag    = flag.Uint64("chaos-seed", 0, "TestChaos: the seed of the fault schedule, the migrations and the clients' choices (0: from the clock)")
	faultsFlag  = flag.Int("chaos-faults", 6, "TestChaos: faults to inject")
	spanFlag    = flag.Duration("chaos-span", 18*time.Second, "TestChaos: time over which the faults are spread")
	keysFlag    = flag.Int("chaos-keys", 16, "TestChaos: keys the clients share (half registers, half counters)")
	clientsFlag = flag.Int("chaos-clients", 3, "TestChaos: client goroutines, each with its own routed sessions")
	kindsFlag   = flag.String("chaos-kinds", "", "TestChaos: the kinds of fault to draw, comma-separated (kill-server, kill-meta, cut-meta, cut-peer, cut-client, lose, delay; empty: all)")
	modeFlag    = flag.String("chaos-checkpoint-mode", "", "TestChaos: the servers' --checkpoint-mode (fold-over or snapshot; empty: from the seed, snapshot for odd seeds)")
)

// checkpointMode is the servers' --checkpoint-mode for a run of seed:
// -chaos-checkpoint-mode, or else one of the two by the seed's parity, so
// that runs with clock seeds (make test) cover both.
func checkpointMode(seed uint64) string {
	switch {
	case *modeFlag != "":
		return *modeFlag
	case seed%2 == 1:
		return "snapshot"
	}
	return "fold-over"
}

// innerEnv carries the network's description to the test run again inside
// the clients' namespace: a run with it set is the harness proper.
const innerEnv = "FLEETKV_CHAOS_NET"

// netSpec describes a Net to the inner run.
type netSpec struct {
	Prefix string
	Nodes  []string
	Bin    string
	Seed   uint64
}

var (
	metaNodes   = []string{"meta-0", "meta-1", "meta-2"}
	serverNodes = []string{"s1", "s2", "s3"}
)

// clientNode is the namespace of the clients and the harness's control.
const clientNode = "c"

// TestChaos builds the network (a namespace per process, and one for the
// clients) and runs the test again inside the clients' namespace, where
// every process is reachable; see runChaos.
func TestChaos(t *testing.T) {
	if spec := os.Getenv(innerEnv); spec != "" {
		runChaos(t, spec)
		return
	}
	if why := Available(); why != "" {
		t.Skip("chaos: " + why)
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d, checkpoint mode %s (replay: go test ./internal/chaos -run TestChaos -chaos-seed %d -chaos-faults %d -chaos-span %v)",
		seed, checkpointMode(seed), seed, *faultsFlag, *spanFlag)
	bin := filepath.Join(t.TempDir(), "fleetkv")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fleetkv/fleetkv/cmd/fleetkv").CombinedOutput(); err != nil {
		t.Fatalf("build fleetkv: %v\n%s", err, out)
	}
	if gone, err := CleanStale(); err != nil || len(gone) > 0 {
		t.Logf("namespaces of dead runs deleted: %v (%v)", gone, err)
	}
	nt, err := NewNet(fmt.Sprintf("fkv%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := nt.Close(); err != nil {
			t.Error(err)
		}
	}()
	for _, node := range append(append(append([]string(nil), metaNodes...), serverNodes...), clientNode) {
		if _, err := nt.Add(node); err != nil {
			t.Fatal(err)
		}
	}
	spec, _ := json.Marshal(netSpec{Prefix: nt.prefix, Nodes: nt.Nodes(), Bin: bin, Seed: seed})
	if err := runInside(t, nt, string(spec), seed); err != nil {
		t.Fatalf("the run inside the namespaces failed (%v); replay with -chaos-seed %d", err, seed)
	}
}

// runInside runs the test binary again inside the clients' namespace with
// spec, its output logged line by line as it comes. It is killed 30 s
// before the test's deadline, so that the namespaces are still deleted.
func runInside(t *testing.T, nt *Net, spec string, seed uint64) error {
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-30*time.Second))
		defer cancel()
	}
	args := append(nt.Exec(clientNode), os.Args[0])
	args = append(append(args, innerArgs(os.Args[1:])...), "-test.run=^TestChaos$", "-test.v=true", fmt.Sprintf("-chaos-seed=%d", seed))
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), innerEnv+"="+spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("killed 30 s before the test's deadline: %w", err)
	}
	return err
}

// innerArgs are the outer run's flags that the inner run may share: none
// that names a file the outer run writes (its test log, profiles,
// coverage), and not its -test.run.
func innerArgs(args []string) []string {
	var out []string
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "test.testlogfile", "test.coverprofile", "test.gocoverdir", "test.cpuprofile", "test.memprofile", "test.blockprofile",
			"test.mutexprofile", "test.trace", "test.outputdir", "test.artifacts", "test.run":
			continue
		}
		out = append(out, a)
	}
	return out
}

// harness is the inner run's view of the cluster.
type harness struct {
	t     *testing.T
	net   *Net
	local *clusterctl.Local
	md    *etcdmeta.Store
	admin *clusterctl.Admin
	rng   *rand.Rand
	hist  *History
	start time.Time
	netem bool // the kernel delays packets (tc netem)
	procs map[string]*clusterctl.Proc
	// crashes and faults count what was injected.
	crashes, faults int
}

// runChaos is the harness, inside the clients' namespace.
func runChaos(t *testing.T, specJSON string) {
	var spec netSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		t.Fatal(err)
	}
	nt := AttachNet(spec.Prefix, spec.Nodes)
	h := &harness{t: t, net: nt, rng: rand.New(rand.NewPCG(spec.Seed, 1)), start: time.Now(), procs: map[string]*clusterctl.Proc{},
		hist: NewHistory()}
	h.netem = nt.Delay(clientNode, 1) == nil
	_ = nt.Heal()
	kinds, err := ParseKinds(*kindsFlag)
	if err != nil {
		t.Fatal(err)
	}
	if !h.netem {
		kinds = slices.DeleteFunc(slices.Clone(kinds), func(k FaultKind) bool { return k == Delay })
		h.t.Log("no tc netem here: no delay faults")
	}
	if len(kinds) == 0 {
		t.Fatalf("no kind of fault left to draw from %q here", *kindsFlag)
	}
	sched := NewSchedule(spec.Seed, *faultsFlag, *spanFlag, serverNodes, metaNodes, kinds)
	h.startCluster(spec.Bin, checkpointMode(spec.Seed))

	h.start = time.Now() // before the goroutines that log with it
	ctx, stopClients := context.WithCancel(context.Background())
	clientsDone := h.startClients(ctx, spec.Seed)
	migCtx, stopMigrations := context.WithCancel(context.Background())
	migrationsDone := h.migrateAtRandom(migCtx)
	var clients *clientStats
	// A t.Fatal on the way stops the goroutines before the test ends
	// (they log through t); cleanups run in reverse, so before the
	// cluster's is stopped.
	t.Cleanup(func() {
		stopMigrations()
		<-migrationsDone
		stopClients()
		if clients == nil {
			<-clientsDone
		}
	})
	for _, f := range sched {
		time.Sleep(time.Until(h.start.Add(f.At)))
		h.inject(f)
	}
	stopMigrations()
	<-migrationsDone
	h.quiesce()
	stopClients()
	cs := <-clientsDone
	clients = &cs
	h.finalReads()
	h.checkServing()
	h.checkInjected(sched, cs)
	h.checkHistory(cs)
}

// checkInjected fails the run when what it injected and checked falls
// short of its schedule: every scheduled fault injected, a crash in the
// history for every server killed, durability marks taken.
func (h *harness) checkInjected(sched []Fault, cs clientStats) {
	kills := 0
	for _, f := range sched {
		if f.Kind == KillServer {
			kills++
		}
	}
	switch {
	case h.faults != len(sched):
		h.t.Fatalf("%d faults injected of %d scheduled", h.faults, len(sched))
	case h.crashes != kills:
		h.t.Fatalf("%d crashes in the history for %d servers killed", h.crashes, kills)
	case cs.marks == 0:
		h.t.Fatal("no durability mark was taken: the history cannot show a lost durable write")
	}
}

// startCluster starts the meta members and servers (checkpoints in mode),
// each in its namespace, and the map.
func (h *harness) startCluster(bin, mode string) {
	t := h.t
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := clusterctl.LocalConfig{Bin: bin, Dir: t.TempDir(), Name: "chaos", Servers: len(serverNodes), Metas: len(metaNodes),
		Place: func(name string) (string, []string) { return h.net.Addr(name), h.net.Exec(name) },
		ServerArgs: []string{"--loops", "1", "--pin=false", "--memory", "32MiB", "--page-size", "1MiB", "--segment-size", "8MiB",
			"--checkpoint-interval", "1s", "--checkpoint-mode", mode, "--meta-timeout", "1s", "--rebalance", "off"}}
	l, err := clusterctl.StartLocal(ctx, cfg, func(eps []string) (cluster.Metadata, error) { return dial(eps) })
	if err != nil {
		t.Fatal(err)
	}
	h.local = l
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(append([]*clusterctl.Proc(nil), l.Servers...), l.Metas...) {
				if b, err := os.ReadFile(p.Log); err == nil {
					t.Logf("%s's log (tail):\n%s", p.Name, tail(b, 4000))
				}
			}
		}
		l.Stop()
		if h.md != nil {
			h.md.Close()
		}
	})
	for _, p := range append(append([]*clusterctl.Proc(nil), l.Servers...), l.Metas...) {
		h.procs[p.Name] = p
	}
	if h.md, err = dial(l.MetaEndpoints()); err != nil {
		t.Fatal(err)
	}
	h.admin = &clusterctl.Admin{MD: h.md, Tokens: h.md}
	m, err := h.admin.Init(ctx, "chaos", len(serverNodes), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.admin.WaitServing(ctx, m, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// dial connects to the chaos cluster's metadata store.
func dial(endpoints []string) (*etcdmeta.Store, error) {
	return etcdmeta.Dial(etcdmeta.Config{Endpoints: endpoints, Cluster: "chaos", DialTimeout: 2 * time.Second,
		LeaseTTL: 2 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// logf logs with the time since the faults started.
func (h *harness) logf(format string, args ...any) {
	h.t.Helper()
	h.t.Logf("%7.2fs %s", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

// inject puts fault f in place, waits for its time and takes it away.
func (h *harness) inject(f Fault) {
	h.logf("fault %s", f)
	h.faults++
	var err error
	switch f.Kind {
	case KillServer, KillMeta:
		err = h.kill(f.Node)
	case CutMeta:
		for _, m := range metaNodes {
			if err == nil {
				err = h.net.Cut(f.Node, m)
			}
		}
	case CutPeer:
		h.migrate(h.rng, f.Node, f.Peer)
		err = h.net.Cut(f.Node, f.Peer)
	case CutClient:
		err = h.net.Cut(f.Node, clientNode)
	case Lose:
		err = h.net.Lose(f.Node, 0.2)
	case Delay:
		err = h.net.Delay(f.Node, 20)
	}
	if err != nil {
		h.t.Fatalf("fault %s: %v", f, err)
	}
	time.Sleep(f.For)
	if err := h.net.Heal(); err != nil {
		h.t.Fatalf("heal after %s: %v", f, err)
	}
	if f.Kind == KillServer || f.Kind == KillMeta {
		h.restart(h.procs[f.Node])
	}
}

// restart starts p again and waits until it answers (a server's admin
// /healthz, a meta member's client port), so that the next fault finds it
// up: faults come one at a time, and two meta members down at once would
// be two faults.
func (h *harness) restart(p *clusterctl.Proc) {
	t := h.t
	if err := h.local.Start(p); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !h.answers(p) {
		if !p.Running() || time.Now().After(deadline) {
			b, _ := os.ReadFile(p.Log)
			t.Fatalf("%s did not come back up (running %v); its log (tail):\n%s", p.Name, p.Running(), tail(b, 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answers reports whether p's process answers on its port.
func (h *harness) answers(p *clusterctl.Proc) bool {
	if strings.HasPrefix(p.Name, "meta") {
		c, err := net.DialTimeout("tcp", p.Native, 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Admin+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill ends node's process with SIGKILL. A server's is a crash in the
// history: what it had not made durable may be gone.
func (h *harness) kill(node string) error {
	p := h.procs[node]
	if !p.Running() {
		return fmt.Errorf("%s is not running", node)
	}
	call := h.hist.Now()
	h.local.Kill(p)
	if strings.HasPrefix(node, "s") {
		h.hist.Add(crashClient, Input{Kind: Crash}, call, Output{}, h.hist.Now())
		h.crashes++
	}
	return nil
}

// migrateAtRandom starts a migration of a random part of a random server's
// slots to another every one to three seconds until ctx ends.
func (h *harness) migrateAtRandom(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	rng := rand.New(rand.NewPCG(h.rng.Uint64(), 2))
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))):
			}
			from := serverNodes[rng.IntN(len(serverNodes))]
			to := from
			for to == from {
				to = serverNodes[rng.IntN(len(serverNodes))]
			}
			h.migrate(rng, from, to)
		}
	}()
	return done
}

// migrate starts moving a random part (16 to 2048 slots) of one of from's
// ranges to to; a refusal (one running, the store unreachable) is logged.
func (h *harness) migrate(rng *rand.Rand, from, to string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := h.md.Load(ctx)
	if err != nil {
		h.logf("migration %s->%s not started: %v", from, to, err)
		return
	}
	rs := st.Map.Owned(cluster.ServerID(from)).Ranges()
	if len(rs) == 0 {
		h.logf("migration %s->%s not started: %s owns nothing", from, to, from)
		return
	}
	r := rs[rng.IntN(len(rs))]
	n := min(r.Len(), 16+rng.IntN(2033))
	first := int(r.First) + rng.IntN(r.Len()-n+1)
	part := cluster.Range{First: uint16(first), Last: uint16(first + n - 1)}
	rec, err := h.admin.Migrate(ctx, []cluster.Range{part}, cluster.ServerID(to))
	if err != nil {
		h.logf("migration %s->%s of %v not started: %v", from, to, part, err)
		return
	}
	h.logf("migration %d: %s->%s of %v", rec.ID, from, to, part)
}

// quiesce heals the network and waits until every migration has ended
// (completed or cancelled). Every process must still be running: the
// harness restarts what it kills, so one that is down exited by itself.
func (h *harness) quiesce() {
	t := h.t
	if err := h.net.Heal(); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.procs {
		if !p.Running() {
			b, _ := os.ReadFile(p.Log)
			t.Fatalf("%s exited by itself; its log (tail):\n%s", p.Name, tail(b, 3000))
		}
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := h.md.Load(ctx)
		cancel()
		var running []string
		var complete, cancelled int
		for _, m := range st.Migrations {
			switch {
			case m.Phase == cluster.PhaseComplete:
				complete++
			case m.Phase == cluster.PhaseCancelled:
				cancelled++
			default:
				running = append(running, fmt.Sprintf("%d %s->%s %s", m.ID, m.Source, m.Target, m.Phase))
			}
		}
		if err == nil && len(running) == 0 {
			h.logf("quiet: of the migration records kept (the planner deletes old ones), %d completed, %d cancelled", complete, cancelled)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("migrations still running 120 s after the last fault: %v (%v)", running, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
