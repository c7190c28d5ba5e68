package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
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
	// Timeout bounds each call to the metadata store. Default 2 s.
	Timeout time.Duration
}

// member is a node's membership of its cluster.
//
// Invariant: a routing is persisted before its view is reported applied
// (cluster.Follower asks for the ack only after Installed, which run calls
// after the routing is persisted and on every loop).
type member struct {
	id      cluster.ServerID
	name    string
	md      cluster.Metadata
	ownsMD  bool
	file    routingFile
	f       *cluster.Follower
	srv     *server.Server
	log     *slog.Logger
	timeout time.Duration
	adv     string
	cancel  context.CancelFunc
	done    chan struct{}
}

// prepareMember resolves the member's id, restores the routing it
// persisted and connects to the metadata store; it sets the server's id and
// first routing in scfg.
func prepareMember(cfg Config, scfg *server.Config) (*member, error) {
	cc := cfg.Cluster
	m := &member{name: cc.Name, log: cfg.Log.With("cluster", cc.Name), timeout: cc.Timeout, adv: cc.AdvertiseHost,
		file: routingFile{dir: clusterDir(cfg.Dir)}}
	if m.timeout == 0 {
		m.timeout = 2 * time.Second
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
	m.f = cluster.NewFollower(m.id, restored)
	scfg.ServerID = m.id
	scfg.Routing = restored
	if restored == nil {
		// Nothing served until the map says so.
		scfg.Routing = &cluster.Routing{Serving: &cluster.SlotSet{}, Map: &cluster.Map{Cluster: cc.Name}}
	}
	m.log = m.log.With("server", string(m.id))
	return m, nil
}

// start registers the member and follows the metadata store until close.
func (m *member) start(srv *server.Server) {
	m.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan struct{})
	go m.run(ctx)
}

func (m *member) close() error {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
	if m.ownsMD {
		return m.md.Close()
	}
	return nil
}

// self is the member's entry as clients reach it.
func (m *member) self() cluster.Server {
	return cluster.Server{ID: m.id, Native: m.advertise(m.srv.Addr()), RESP: m.advertise(m.srv.RESPAddr()),
		Admin: m.advertise(m.srv.AdminAddr()), Loops: m.srv.Loops()}
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

// run follows the metadata store: after every signalled change (and every
// retryEvery after a failure) it reads the state and does what the follower
// says.
func (m *member) run(ctx context.Context) {
	defer close(m.done)
	changes := m.md.Changes()
	registered := false
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-retry.C:
		}
		err := m.sync(ctx, &registered)
		if err != nil && ctx.Err() == nil {
			m.log.Warn("metadata store: will retry; serving what was installed", "err", err)
		}
		if err != nil || !registered {
			retry.Reset(retryEvery)
		}
	}
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
	return m.apply(ctx)
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

// install persists r, makes every loop take it, and tells the follower.
func (m *member) install(ctx context.Context, r *cluster.Routing) error {
	if err := m.file.save(m.name, m.id, r); err != nil {
		return err
	}
	if err := m.srv.Install(ctx, r); err != nil {
		return err
	}
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
