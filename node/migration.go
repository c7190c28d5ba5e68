package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fleetkv/fleetkv/admit"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/dashboard"
	"github.com/fleetkv/fleetkv/migrate"
	"github.com/fleetkv/fleetkv/wire"
)

// migrations is a member's part in live migrations: the cluster.Migrator
// it drives, the holds installed on its loops, the data tasks it runs and
// the messages it exchanges with peers. Only the membership goroutine
// touches it, except events and pulls (any goroutine sends), known (mu)
// and sources (atomic; the fetcher reads it, fetch.go).
//
// Invariant: holds are persisted (DIR/cluster/holds.json) before the loops
// take them, and the loops always route by the follower's installed
// routing under the installed holds (install, installHolds): the Migrator
// is told HoldsInstalled only when both are true.
type migrations struct {
	g      *cluster.Migrator
	inc    uint64
	holds  cluster.Holds  // on every loop and persisted
	todo   *cluster.Holds // handed out, not yet installed (a failed install is tried again)
	file   holdsFile
	events chan event
	runs   map[taskKey]*taskRun
	seq    uint64
	peers  map[cluster.ServerID]chan []byte
	wg     sync.WaitGroup // the task and peer goroutines
	tick   time.Duration
	token  string
	gate   func(context.Context, cluster.Task) error // ClusterConfig.taskGate
	cut    func(context.Context, func(int)) error    // ClusterConfig.cutGate
	fetch  func(context.Context) error               // ClusterConfig.fetchGate
	fail   string                                    // ClusterConfig.Failpoint
	rate   int                                       // ClusterConfig.MigrationRate
	// receiving ends this server's count as background work while it
	// takes a migration's records as its target (nil: it takes none):
	// its admission control then sets a share, which the source follows
	// (peerShare). On the membership goroutine.
	receiving func()

	mu    sync.Mutex
	known map[cluster.ServerID]cluster.Server // peers' entries (addresses, tier), newest read

	running sync.Map // the running data tasks' *runProgress, each run its own key (progress.go)

	pulls   chan pull                                                // keys the loops parked reads on (onParked)
	sources atomic.Pointer[map[cluster.MigrationID]cluster.ServerID] // the source of each migration this server is the target of
	fetches fetchCounts                                              // what became of the parked keys (fetch.go)
}

// event is what reaches the membership goroutine from others: a peer's
// message, or how a task went.
type event struct {
	msg      []byte
	task     cluster.Task
	seq      uint64
	result   uint64
	err      error
	progress bool
}

type taskKey struct {
	id   cluster.MigrationID
	kind cluster.TaskKind
}

// taskRun is a task started and not yet reported: its reports count only
// while seq is the key's current run (an aborted run's do not).
type taskRun struct {
	seq    uint64
	cancel context.CancelFunc
}

// eventQueue bounds what waits for the membership goroutine; a message
// that finds it full is dropped (the migrators send again).
const eventQueue = 1024

// prepareMigrations restores the holds persisted in dir, counts this start
// in the incarnation and sets up the migrator.
func prepareMigrations(dir string, cc ClusterConfig, id cluster.ServerID, token string) (*migrations, error) {
	f := holdsFile{dir: dir}
	saved, err := f.load(cc.Name, id)
	if err != nil {
		return nil, err
	}
	inc, err := nextIncarnation(dir)
	if err != nil {
		return nil, err
	}
	tick := cc.MigrationTick
	if tick == 0 {
		tick = 100 * time.Millisecond
	}
	g := cluster.NewMigrator(cluster.MigratorConfig{Self: id, Incarnation: inc, SampleTicks: cc.SampleTicks}, saved)
	return &migrations{g: g, inc: inc, holds: g.InitialHolds(), file: f, events: make(chan event, eventQueue),
		runs: map[taskKey]*taskRun{}, peers: map[cluster.ServerID]chan []byte{}, tick: tick, token: token,
		gate: cc.taskGate, cut: cc.cutGate, fetch: cc.fetchGate, fail: cc.Failpoint, rate: cc.MigrationRate, known: map[cluster.ServerID]cluster.Server{}, pulls: make(chan pull, pullQueue)}, nil
}

// onMessage takes a peer's message on a loop (server.Config.OnMigrator).
func (g *migrations) onMessage(b []byte) {
	select {
	case g.events <- event{msg: append([]byte(nil), b...)}:
	default:
	}
}

// learnAddrs records where the peers listen: registrations first (a
// restart on other ports), then the map.
func (g *migrations) learnAddrs(st cluster.State) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st.Map != nil {
		for id, s := range st.Map.Servers {
			g.known[id] = s
		}
	}
	for id, s := range st.Live {
		g.known[id] = s
	}
}

func (g *migrations) addr(id cluster.ServerID) string { return g.peer(id).Native }

// sourceOf returns the source of migration id, when this server is its
// target.
func (g *migrations) sourceOf(id cluster.MigrationID) (cluster.ServerID, bool) {
	srcs := g.sources.Load()
	if srcs == nil {
		return "", false
	}
	src, ok := (*srcs)[id]
	return src, ok
}

// peer returns the newest entry read for server id.
func (g *migrations) peer(id cluster.ServerID) cluster.Server {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.known[id]
}

// take handles an event on the membership goroutine.
func (m *member) take(ev event) {
	g := m.mg
	if ev.msg != nil {
		var msg cluster.Message
		if err := json.Unmarshal(ev.msg, &msg); err != nil {
			m.log.Warn("migration: a peer's message does not decode", "err", err)
			return
		}
		g.g.Step(msg)
		return
	}
	k := taskKey{ev.task.Migration, ev.task.Kind}
	if run := g.runs[k]; run == nil || run.seq != ev.seq {
		return // aborted
	}
	switch {
	case ev.progress:
		g.g.TaskProgress(ev.task)
	case ev.err != nil:
		delete(g.runs, k)
		m.log.Warn("migration task failed; it will be tried again", "migration", ev.task.Migration, "task", ev.task.Kind, "err", ev.err)
		g.g.TaskFailed(ev.task)
	default:
		delete(g.runs, k)
		m.log.Info("migration task done", "migration", ev.task.Migration, "task", ev.task.Kind)
		g.g.TaskDone(ev.task, ev.result)
	}
}

// migrate does what the migrator asks until it asks nothing: holds first
// (nothing in the same Ready relies on them), then tasks, messages and the
// record to store.
func (m *member) migrate(ctx context.Context) error {
	g := m.mg
	for {
		if err := m.installHolds(ctx); err != nil {
			return err
		}
		g.g.StepRouting(m.routing)
		rd, ok := g.g.Ready()
		if !ok {
			return nil
		}
		g.todo = rd.Holds
		if err := m.installHolds(ctx); err != nil {
			return err
		}
		for _, t := range rd.Abort {
			if run := g.runs[taskKey{t.Migration, t.Kind}]; run != nil {
				run.cancel()
				delete(g.runs, taskKey{t.Migration, t.Kind})
			}
		}
		for _, t := range rd.Tasks {
			m.startTask(ctx, t)
		}
		for _, msg := range rd.Messages {
			m.sendMessage(ctx, msg)
		}
		if p := rd.Persist; p != nil {
			var rev int64
			err := m.call(ctx, func(ctx context.Context) error {
				var err error
				rev, err = m.md.SwapMigration(ctx, *p)
				return err
			})
			g.g.Persisted(rev, err)
			if err != nil && !errors.Is(err, cluster.ErrConflict) {
				return fmt.Errorf("store migration %d: %w", p.Migration.ID, err)
			}
			if err == nil {
				m.failpoint("stored:" + p.Migration.Phase.String())
				m.log.Info("migration phase stored", "migration", p.Migration.ID, "phase", p.Migration.Phase,
					"source", p.Migration.Source, "target", p.Migration.Target, "reason", p.Migration.Reason)
			}
		}
		if f := rd.Cleaned; f != 0 {
			err := m.call(ctx, func(ctx context.Context) error { return m.md.ReportCleaned(ctx, m.id, f) })
			g.g.CleanedReported(f, err)
			if err != nil {
				m.log.Debug("clean-up floor not reported; will retry", "floor", f, "err", err)
			}
		}
	}
}

// installHolds persists the holds handed out and installs them, under the
// installed routing, on every loop.
func (m *member) installHolds(ctx context.Context) error {
	g := m.mg
	h := g.todo
	if h == nil {
		return nil
	}
	if err := g.file.save(m.name, m.id, h); err != nil {
		return err
	}
	if err := m.srv.Install(ctx, m.routing.WithHolds(h)); err != nil {
		return err
	}
	g.holds, g.todo = *h, nil
	g.g.HoldsInstalled(h.Version)
	m.countReceiving(h)
	sources := map[cluster.MigrationID]cluster.ServerID{}
	for _, rec := range h.Save {
		if rec.Target == m.id {
			sources[rec.ID] = rec.Source
		}
	}
	g.sources.Store(&sources)
	m.log.Info("migration holds installed", "version", h.Version, "held_slots", h.Hold.Count(), "miss_slots", h.Misses.Count(),
		"accepting", len(h.Accept))
	return nil
}

// countReceiving counts this server as running background work while its
// holds accept a migration's records as the target (an Accepting with a
// Since: the source's ship-back acceptances have none).
func (m *member) countReceiving(h *cluster.Holds) {
	g := m.mg
	receiving := false
	for _, a := range h.Accept {
		receiving = receiving || a.Since != 0
	}
	switch {
	case receiving && g.receiving == nil:
		g.receiving = m.srv.Background().Begin()
	case !receiving && g.receiving != nil:
		g.receiving()
		g.receiving = nil
	}
}

// startTask runs t on a goroutine of its own.
func (m *member) startTask(ctx context.Context, t cluster.Task) {
	g := m.mg
	g.seq++
	ctx, cancel := context.WithCancel(ctx)
	run := &taskRun{seq: g.seq, cancel: cancel}
	g.runs[taskKey{t.Migration, t.Kind}] = run
	report := func(ev event) {
		ev.task, ev.seq = t, run.seq
		select {
		case g.events <- ev:
		case <-ctx.Done():
		}
	}
	m.log.Info("migration task started", "migration", t.Migration, "task", t.Kind, "ranges", len(t.Ranges), "peer", t.Peer)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer cancel()
		if t.Kind != cluster.TaskSample { // the loops sample, as they serve
			defer m.srv.Background().Begin()() // admission control: background work runs
		}
		m.failpoint("before:" + t.Kind.String())
		result, err := m.runTask(ctx, t, func() { report(event{progress: true}) })
		if err == nil {
			m.failpoint("after:" + t.Kind.String())
		}
		report(event{result: result, err: err})
	}()
}

// runTask does the work of t: drops and checkpoints on this server, sends
// over a session with the peer.
func (m *member) runTask(ctx context.Context, t cluster.Task, progress func()) (uint64, error) {
	if m.mg.gate != nil {
		if err := m.mg.gate(ctx, t); err != nil {
			return 0, err
		}
	}
	st := m.srv.Store()
	switch t.Kind {
	case cluster.TaskSample:
		return 0, nil // the loops sample while the phase lasts (Holds.Sample)
	case cluster.TaskPrepare, cluster.TaskDrop:
		var duty *admit.Duty // a prepare holds the migration up: flat out
		if t.Kind == cluster.TaskDrop {
			duty = &admit.Duty{Share: dropShare, Budget: m.srv.Background()}
		}
		if t.Kind == cluster.TaskDrop && m.ind != nil {
			if err := m.ind.forget(ctx, t.Migration); err != nil { // a cancelled target's table
				return 0, err
			}
		}
		since, err := migrate.Drop(ctx, st, t.Ranges, duty)
		if err != nil {
			return 0, err
		}
		// A prepare's checkpoint is a fold-over in either checkpoint mode:
		// the target tells the records written since the drop by their
		// address (at or above since: the move's conditional insert, the
		// parked reads, a cancel's ship-back), so none may be written in
		// place below it later. A snapshot would leave the drop's
		// tombstones mutable, and a client's write revive one in place.
		checkpoint := m.srv.Checkpoint
		if t.Kind == cluster.TaskPrepare {
			checkpoint = m.srv.FoldOver
		}
		if _, err = checkpoint(ctx); err != nil {
			return 0, err
		}
		if t.Kind == cluster.TaskDrop && m.ind != nil {
			return since, m.ind.releaseCancelled(ctx, t.Migration, m.id)
		}
		return since, nil
	case cluster.TaskCheckpoint:
		if err := m.takeIndirections(ctx, t.Migration); err != nil {
			return 0, err
		}
		if _, err := m.srv.Checkpoint(ctx); err != nil {
			return 0, err
		}
		if m.ind != nil {
			return 0, m.ind.commit(t.Migration) // the move's records are durable now
		}
		return 0, nil
	}
	sess, err := m.dialPeer(ctx, t.Peer)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	defer sess.StopOn(ctx)()
	switch t.Kind {
	case cluster.TaskSendHot:
		keys, err := m.srv.Sampled(ctx, t.Migration)
		if err != nil {
			return 0, err
		}
		m.log.Info("migration: sending the sampled keys first", "migration", t.Migration, "keys", len(keys))
		return migrate.SendKeys(ctx, st, keys, sess, t.Migration)
	case cluster.TaskMove:
		rp, untrack := m.mg.track(t)
		defer untrack()
		return m.move(ctx, t, sess, rp.count(m.paced(ctx, progress, m.peerShare(ctx, t.Peer))))
	case cluster.TaskShipBack:
		rp, untrack := m.mg.track(t)
		defer untrack()
		return migrate.Send(ctx, st, t.Ranges, t.Since, sess, t.Migration, wire.MigrateShipped,
			rp.count(m.paced(ctx, progress, m.peerShare(ctx, t.Peer))))
	}
	return 0, fmt.Errorf("node: unknown migration task %v", t.Kind)
}

// dropShare is the part of its time a drop task works (migrate.Drop): the
// copies a completed move leaves on its source, or a cancelled one on its
// target, are served to no one, and their drop, which reads the ranges
// from the device and deletes every key, took the foreground's deepest
// dip of a move on 2 CPUs when it ran flat out (BENCHMARKS.md).
const dropShare = 0.25

// paced returns a data task's progress callback: it reports progress,
// works the share of the time that the admission control of this server,
// or the peer's (peer: peerShare) when smaller, allows (admit.Duty: it
// follows the foreground's p99.9), and holds the task back to at most
// ClusterConfig.MigrationRate records a second, the ceiling.
func (m *member) paced(ctx context.Context, progress func(), peer func() float64) migrate.Progress {
	rate := m.mg.rate
	start, sent := time.Now(), 0
	// The duty's clock starts at the first report (the move's seal before
	// it is not the sending's work).
	duty := &admit.Duty{Budget: m.srv.Background(), Peer: peer, Slice: dutySlice}
	return func(records, _ int) {
		progress()
		duty.Wait(ctx)
		if rate <= 0 {
			return
		}
		sent += records
		due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			duty.Begin() // the wait was a rest too, not work
		}
	}
}

// shareEvery is how often a data task reads its peer's background share.
const shareEvery = 500 * time.Millisecond

// peerShare reads the background share that server id's admission
// control allows (its /cluster/local sample) every shareEvery until ctx
// ends, and returns what reads the latest: 0 (unknown: no limit) before
// the first answer, after a failed one, and for a peer without an admin
// listener.
func (m *member) peerShare(ctx context.Context, id cluster.ServerID) func() float64 {
	var share atomic.Uint64 // math.Float64bits
	read := func() float64 { return math.Float64frombits(share.Load()) }
	admin := m.mg.peer(id).Admin
	if admin == "" {
		return read
	}
	hc := &http.Client{Timeout: shareEvery}
	m.mg.wg.Add(1)
	go func() {
		defer m.mg.wg.Done()
		t := time.NewTicker(shareEvery)
		defer t.Stop()
		for {
			s, err := dashboard.Fetch(ctx, hc, admin)
			v := 0.0
			if err == nil && s.ID == id {
				v = s.BgShare
			}
			share.Store(math.Float64bits(v))
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return read
}

func (m *member) dialPeer(ctx context.Context, id cluster.ServerID) (*client.Session, error) {
	addr := m.mg.addr(id)
	if addr == "" {
		return nil, fmt.Errorf("node: no address known for server %s", id)
	}
	return client.DialContext(ctx, client.Config{Addr: addr, AuthToken: m.mg.token, DialTimeout: m.timeout})
}

// peerQueue bounds the messages waiting for one peer; more are dropped.
const peerQueue = 64

// sendMessage queues msg for its peer's sender goroutine.
func (m *member) sendMessage(ctx context.Context, msg cluster.Message) {
	g := m.mg
	b, err := json.Marshal(msg)
	if err != nil {
		m.log.Error("migration: encode a message", "err", err)
		return
	}
	q := g.peers[msg.To]
	if q == nil {
		q = make(chan []byte, peerQueue)
		g.peers[msg.To] = q
		g.wg.Add(1)
		go m.sendTo(ctx, msg.To, q)
	}
	select {
	case q <- b:
	default:
	}
}

// sendTo delivers the messages for peer over one session, dialled again
// after a failure; a message that fails is dropped.
func (m *member) sendTo(ctx context.Context, peer cluster.ServerID, q <-chan []byte) {
	defer m.mg.wg.Done()
	var sess *client.Session
	defer func() {
		if sess != nil {
			sess.Close()
		}
	}()
	for {
		var b []byte
		select {
		case <-ctx.Done():
			return
		case b = <-q:
		}
		if sess == nil {
			var err error
			if sess, err = m.dialPeer(ctx, peer); err != nil {
				m.log.Debug("migration: peer unreachable", "peer", peer, "err", err)
				continue
			}
		}
		if err := deliver(ctx, sess, b, m.timeout); err != nil {
			m.log.Debug("migration: message not delivered", "peer", peer, "err", err)
			sess.Close()
			sess = nil
		}
	}
}

// deliver sends one message and waits for its answer, at most timeout.
func deliver(ctx context.Context, sess *client.Session, b []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer sess.StopOn(ctx)()
	var failed error
	if err := sess.Migrator(b, func(r client.Result) { failed = r.Err }); err != nil {
		return err
	}
	if err := sess.Wait(); err != nil {
		return err
	}
	return failed
}

// failpoint kills the process when point is the configured failpoint
// (ClusterConfig.Failpoint).
func (m *member) failpoint(point string) {
	if m.mg.fail == "" || m.mg.fail != point {
		return
	}
	m.log.Warn("failpoint reached: killing the process", "failpoint", point)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal ends the process
}

// stopTasks cancels every task and waits for every goroutine of the
// migrations (ctx is cancelled: the peer senders end too).
func (g *migrations) stopTasks() {
	for _, run := range g.runs {
		run.cancel()
	}
	g.wg.Wait()
}
