package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/planner"
	"github.com/fleetkv/fleetkv/server"
)

// ClusterConfig makes a process a member of a cluster.
type ClusterConfig struct {
	Name string
	// ServerID is the member's id; "": the one recorded in the data
	// directory, or a new one recorded there.
	ServerID cluster.ServerID
	// Meta lists the metadata store's (etcd's) client endpoints, host:port.
	Meta []string
	// Metadata, when set, is used instead of dialling Meta (tests: an
	// in-memory cluster.Mem); Start does not close it.
	Metadata cluster.Metadata
	// AdvertiseHost, when set, replaces the host of the addresses the
	// member publishes (a server listening on 0.0.0.0).
	AdvertiseHost string
	// Timeout bounds each call to the metadata store, and each message to
	// a peer. Default 2 s.
	Timeout time.Duration
	// MigrationTick is the beat of the member's migrator (how soon it
	// sends again what is not answered, times out a silent peer: a few
	// and 100 beats). Default 100 ms.
	MigrationTick time.Duration
	// SampleTicks is how many beats a migration's source samples the keys
	// clients use, to send them first. Default 10.
	SampleTicks int
	// MigrationRate caps the records a second a migration's move (or
	// ship-back) sends; 0: as fast as the peer takes them.
	MigrationRate int

	// NoPlanner keeps the member out of the planner's election: it never
	// carries out the cluster's plans (add-server, drain).
	NoPlanner bool
	// Rebalance is what the member's planner, while it leads, does about
	// the load the servers report (cluster.Rebalancer); Mode "" is off.
	Rebalance cluster.RebalanceConfig
	// LoadInterval is how often the member reports its per-slot load to
	// the metadata store (default 2 s).
	LoadInterval time.Duration

	// Failpoint, for kill -9 tests of real processes, names where the
	// member kills its own process (SIGKILL): "before:TASK" as a migration
	// task (sample, prepare, send-hot, move, ship-back, checkpoint, drop)
	// starts, "after:TASK" once it ran and before it is reported, and
	// "stored:PHASE" once the source stored that phase of a migration.
	// cmd/fleetkv sets it from $FLEETKV_FAILPOINT. "": none.
	Failpoint string

	// taskGate, when set (fault injection in tests), runs before every
	// migration task; an error fails the task.
	taskGate func(context.Context, cluster.Task) error
	// resolveGate, when set (tests), runs before a resolver pulls a
	// table's keys in: a test holds it to read through the indirections.
	resolveGate func(context.Context) error
	// cutGate, when set (tests), runs once a move through the tier has
	// pinned and sealed the log, before it scans: a test holds it to
	// read keys the move has not sent, reporting the move's progress
	// meanwhile (the source would cancel it otherwise).
	cutGate func(ctx context.Context, progress func(records int)) error
	// fetchGate, when set (tests), runs before the fetcher fetches a batch
	// of parked keys: a test holds it to keep reads parked.
	fetchGate func(context.Context) error
}

// member is a node's membership of its cluster.
//
// Invariant: a routing is persisted before its view is reported applied
// (cluster.Follower asks for the ack only after Installed, which run calls
// after the routing is persisted and on every loop).
type member struct {
	id        cluster.ServerID
	name      string
	md        cluster.Metadata
	ownsMD    bool
	file      routingFile
	f         *cluster.Follower
	routing   *cluster.Routing // the follower's, installed (under mg's holds) on every loop
	mg        *migrations
	srv       *server.Server
	log       *slog.Logger
	timeout   time.Duration
	adv       string
	noPlanner bool
	rebalance cluster.RebalanceConfig
	loadEvery time.Duration
	decisions planner.Decisions       // the planner's, while it led
	opsPerSec atomic.Pointer[float64] // the load last reported
	tier      string                  // the shared tier's URL (Config.Tier), "" for none
	sealer    *sealer                 // the node's, nil without a shared tier
	ind       *indirector             // the node's, nil without a shared tier
	cancel    context.CancelFunc
	done      chan struct{}
}

// prepareMember resolves the member's id, restores the routing it
// persisted and connects to the metadata store; it sets the server's id and
// first routing in scfg.
func prepareMember(cfg Config, scfg *server.Config) (*member, error) {
	cc := cfg.Cluster
	m := &member{name: cc.Name, log: cfg.Log.With("cluster", cc.Name), timeout: cc.Timeout, adv: cc.AdvertiseHost, tier: cfg.Tier.URL,
		noPlanner: cc.NoPlanner, rebalance: cc.Rebalance, loadEvery: cc.LoadInterval,
		file: routingFile{dir: clusterDir(cfg.Dir)}}
	if m.timeout == 0 {
		m.timeout = 2 * time.Second
	}
	if m.loadEvery == 0 {
		m.loadEvery = 2 * time.Second
	}
	var err error
	if m.id, err = resolveID(m.file.dir, cc.ServerID); err != nil {
		return nil, err
	}
	restored, err := m.file.load(cc.Name, m.id)
	if err != nil {
		return nil, err
	}
	if m.md = cc.Metadata; m.md == nil {
		if m.md, err = dialMeta(cc.Name, cc.Meta, m.timeout, m.log); err != nil {
			return nil, err
		}
		m.ownsMD = true
	}
	if m.mg, err = prepareMigrations(m.file.dir, cc, m.id, scfg.AuthToken); err != nil {
		m.closeMeta()
		return nil, err
	}
	m.f = cluster.NewFollower(m.id, restored)
	m.routing = restored
	if restored == nil {
		// Nothing served until the map says so.
		m.routing = &cluster.Routing{Serving: &cluster.SlotSet{}, Map: &cluster.Map{Cluster: cc.Name}}
	}
	scfg.ServerID = m.id
	scfg.Routing = m.routing.WithHolds(&m.mg.holds)
	scfg.Incarnation = m.mg.inc
	scfg.OnMigrator = m.mg.onMessage
	scfg.OnParked = m.mg.onParked
	scfg.Progress = m.mg.progress
	scfg.Collectors = append(scfg.Collectors, m.collectors()...)
	m.log = m.log.With("server", string(m.id))
	return m, nil
}

// start registers the member and follows the metadata store until close.
func (m *member) start(srv *server.Server) {
	m.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan struct{})
	go m.run(ctx)
	m.mg.wg.Add(1)
	go m.fetch(ctx)
	m.mg.wg.Add(1)
	go m.reportLoad(ctx)
	if !m.noPlanner {
		m.mg.wg.Add(1)
		go m.plan(ctx)
	}
}

// plan campaigns for the cluster's planner and, while the member leads,
// carries out every plan that has not ended (planner.Run), until ctx ends.
func (m *member) plan(ctx context.Context) {
	defer m.mg.wg.Done()
	changes := m.md.Changes() // one subscription for every term (it lives as long as the store)
	for ctx.Err() == nil {
		lost, err := m.md.Lead(ctx, m.id)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("planner election: will retry", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(retryEvery):
			}
			continue
		}
		m.log.Info("leading the cluster's planner")
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
			case <-lctx.Done():
			}
			cancel()
		}()
		planner.Run(lctx, m.md, changes, m.log, cluster.NewRebalancer(m.rebalance), &m.decisions)
		cancel()
		<-lost // closed once ctx ended or the lead was lost: Run ends only then
		m.log.Info("no longer leading the cluster's planner")
	}
}

func (m *member) close() error {
	if m.cancel != nil {
		m.cancel()
		<-m.done
		m.mg.stopTasks()
	}
	return m.closeMeta()
}

func (m *member) closeMeta() error {
	if m.ownsMD {
		return m.md.Close()
	}
	return nil
}

// self is the member's entry as clients reach it.
func (m *member) self() cluster.Server {
	return cluster.Server{ID: m.id, Native: m.advertise(m.srv.Addr()), RESP: m.advertise(m.srv.RESPAddr()),
		Admin: m.advertise(m.srv.AdminAddr()), Loops: m.srv.Loops(), Tier: m.tier}
}

func (m *member) advertise(addr string) string {
	if addr == "" || m.adv == "" {
		return addr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(m.adv, port)
}

// retryEvery is how soon a member tries the metadata store again after a
// failure, when no change is signalled meanwhile.
const retryEvery = time.Second

// run follows the metadata store and drives the migrator: after every
// signalled change (and every retryEvery after a failure) it reads the
// state; after that and after every tick, peer's message and task outcome
// it does what the follower and the migrator say.
func (m *member) run(ctx context.Context) {
	defer close(m.done)
	changes := m.md.Changes()
	registered := false
	retry := time.NewTimer(0)
	defer retry.Stop()
	tick := time.NewTicker(m.mg.tick)
	defer tick.Stop()
	for {
		read := false
		select {
		case <-ctx.Done():
			return
		case <-changes:
			read = true
		case <-retry.C:
			read = true
		case <-tick.C:
			m.mg.g.Tick()
		case ev := <-m.mg.events:
			m.take(ev)
		}
		if !read {
			m.warn(ctx, m.drive(ctx))
			continue
		}
		err := m.sync(ctx, &registered)
		if err == nil {
			err = m.drive(ctx)
		}
		m.warn(ctx, err)
		if err != nil || !registered {
			retry.Reset(retryEvery)
		}
	}
}

func (m *member) warn(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		m.log.Warn("metadata store: will retry; serving what was installed", "err", err)
	}
}

// drive does what the follower and the migrator ask.
func (m *member) drive(ctx context.Context) error {
	return errors.Join(m.apply(ctx), m.migrate(ctx))
}

// sync registers the member when it is not, reads the state, and
// installs, persists and acknowledges what the follower asks for.
func (m *member) sync(ctx context.Context, registered *bool) error {
	self := m.self()
	st, err := m.load(ctx)
	if err != nil {
		return err
	}
	if live, ok := st.Live[m.id]; !ok || live != self || !*registered {
		if err := m.call(ctx, func(ctx context.Context) error { return m.md.Register(ctx, self) }); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		*registered = true
		m.log.Info("registered in the metadata store", "native", self.Native, "resp", self.RESP, "admin", self.Admin)
	}
	if st.Map != nil {
		if _, ok := st.Map.Servers[m.id]; ok && st.Map.Servers[m.id] != self {
			if err := m.publishAddresses(ctx, self); err != nil {
				return err
			}
		}
	}
	m.f.StepMap(st.Map)
	m.f.StepApplied(st.Applied)
	m.mg.learnAddrs(st)
	m.mg.g.StepState(st)
	return nil
}

func (m *member) load(ctx context.Context) (cluster.State, error) {
	var st cluster.State
	err := m.call(ctx, func(ctx context.Context) error {
		var err error
		st, err = m.md.Load(ctx)
		return err
	})
	return st, err
}

// publishAddresses records the member's current addresses in the map (a
// restart on other ports).
func (m *member) publishAddresses(ctx context.Context, self cluster.Server) error {
	return m.call(ctx, func(ctx context.Context) error {
		_, err := cluster.Change(ctx, m.md, 5, func(st cluster.State) (*cluster.Map, error) {
			if st.Map == nil {
				return nil, nil
			}
			if _, ok := st.Map.Servers[m.id]; !ok {
				return nil, nil
			}
			return st.Map.WithServer(self), nil
		})
		return err
	})
}

// apply does what the follower asks until it asks nothing.
func (m *member) apply(ctx context.Context) error {
	for {
		rd, ok := m.f.Ready()
		switch {
		case !ok:
			return nil
		case rd.Install != nil:
			if err := m.install(ctx, rd.Install); err != nil {
				return err
			}
		default:
			if err := m.call(ctx, func(ctx context.Context) error { return m.md.ReportApplied(ctx, m.id, rd.Ack) }); err != nil {
				return fmt.Errorf("report view %d applied: %w", rd.Ack, err)
			}
			m.f.Acked(rd.Ack)
		}
	}
}

// install persists r, makes every loop take it under the installed holds,
// and tells the follower.
func (m *member) install(ctx context.Context, r *cluster.Routing) error {
	if err := m.file.save(m.name, m.id, r); err != nil {
		return err
	}
	if err := m.srv.Install(ctx, r.WithHolds(&m.mg.holds)); err != nil {
		return err
	}
	m.routing = r
	m.f.Installed(r)
	m.log.Info("routing installed", "view", r.View, "map_epoch", r.Map.Epoch, "serving_slots", r.Serving.Count())
	return nil
}

// call runs fn with the member's timeout.
func (m *member) call(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	return fn(ctx)
}

// errNoMeta is returned for a cluster member with no metadata store.
var errNoMeta = errors.New("node: a cluster member needs the metadata store's endpoints (--meta)")
