package etcdmeta

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/fleetkv/fleetkv/cluster"
)

// Store is a cluster's metadata in etcd. Its methods are safe from any
// goroutine.
type Store struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger
	ttl    int64

	mu struct {
		sync.Mutex
		lease   clientv3.LeaseID // 0: none alive
		watches []chan struct{}
	}
	cancel context.CancelFunc
	done   chan struct{}
}

var _ cluster.Metadata = (*Store)(nil)

// Config says how to reach etcd.
type Config struct {
	Endpoints   []string      // host:port of etcd's client URLs
	Cluster     string        // the cluster's name: its keys' prefix
	DialTimeout time.Duration // default 5 s
	LeaseTTL    time.Duration // registrations lapse this long after the process stops renewing them; default 5 s
	Log         *slog.Logger
}

// Dial connects to etcd. It does not wait for etcd to answer: calls fail
// (within their contexts) while it is unreachable, and the client keeps
// trying its endpoints.
func Dial(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 || cfg.Cluster == "" {
		return nil, errors.New("etcdmeta: give etcd's endpoints and the cluster's name")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout,
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcdmeta: %w", err)
	}
	s := &Store{cli: cli, prefix: "/fleetkv/" + cfg.Cluster + "/", log: cfg.Log, ttl: max(int64(cfg.LeaseTTL/time.Second), 1),
		done: make(chan struct{})}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go s.watch(ctx)
	return s, nil
}

func (s *Store) key(parts ...string) string { return s.prefix + strings.Join(parts, "/") }

// Load reads the whole prefix at one revision.
func (s *Store) Load(ctx context.Context) (cluster.State, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return cluster.State{}, fmt.Errorf("etcdmeta: load: %w", err)
	}
	st := cluster.State{Live: map[cluster.ServerID]cluster.Server{}, Applied: map[cluster.ServerID]uint64{},
		Loads: map[cluster.ServerID]cluster.ServerLoad{}, Cleaned: map[cluster.ServerID]cluster.MigrationID{}}
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), s.prefix)
		kind, id, _ := strings.Cut(name, "/")
		switch kind {
		case "map":
			m, err := decode[cluster.Map](kv.Key, kv.Value)
			if err != nil {
				return st, err
			}
			st.Map, st.MapRevision = &m, kv.ModRevision
		case "servers":
			srv, err := decode[cluster.Server](kv.Key, kv.Value)
			if err != nil {
				return st, err
			}
			st.Live[cluster.ServerID(id)] = srv
		case "migrations":
			m, err := decode[cluster.Migration](kv.Key, kv.Value)
			if err != nil {
				return st, err
			}
			m.Revision = kv.ModRevision
			st.Migrations = append(st.Migrations, m) // keys sort by id (migrationKey)
		case "plans":
			p, err := decode[cluster.Plan](kv.Key, kv.Value)
			if err != nil {
				return st, err
			}
			p.Revision = kv.ModRevision
			st.Plans = append(st.Plans, p) // keys sort by id (planKey)
		case "load":
			l, err := decode[cluster.ServerLoad](kv.Key, kv.Value)
			if err != nil {
				return st, err
			}
			st.Loads[cluster.ServerID(id)] = l
		case "applied", "cleaned":
			v, err := strconv.ParseUint(string(kv.Value), 10, 64)
			if err != nil {
				return st, fmt.Errorf("etcdmeta: %s: %w", kv.Key, err)
			}
			if kind == "applied" {
				st.Applied[cluster.ServerID(id)] = v
			} else {
				st.Cleaned[cluster.ServerID(id)] = cluster.MigrationID(v)
			}
		}
	}
	return st, nil
}

// decode parses the JSON value of key as a T.
func decode[T any](key, value []byte) (T, error) {
	var v T
	if err := json.Unmarshal(value, &v); err != nil {
		return v, fmt.Errorf("etcdmeta: %s: %w", key, err)
	}
	return v, nil
}

// casPut is one put of a swap: value (JSON) at key if the key's
// ModRevision is still rev (0: no such key).
type casPut struct {
	key   string
	rev   int64
	value any
}

// swap stores every put in one transaction if every key is still at its
// revision, and returns the new revision; cluster.ErrConflict when one
// moved. what names the swap in errors.
func (s *Store) swap(ctx context.Context, what string, puts ...casPut) (int64, error) {
	var ifs []clientv3.Cmp
	var ops []clientv3.Op
	for _, p := range puts {
		b, err := json.Marshal(p.value)
		if err != nil {
			return 0, err
		}
		ifs = append(ifs, clientv3.Compare(clientv3.ModRevision(p.key), "=", p.rev))
		ops = append(ops, clientv3.OpPut(p.key, string(b)))
	}
	resp, err := s.cli.Txn(ctx).If(ifs...).Then(ops...).Commit()
	switch {
	case err != nil:
		return 0, fmt.Errorf("etcdmeta: swap %s: %w", what, err)
	case !resp.Succeeded:
		return 0, cluster.ErrConflict
	}
	return resp.Header.Revision, nil
}

// SwapMap stores m if the map key's ModRevision is still prev.
func (s *Store) SwapMap(ctx context.Context, prev int64, m *cluster.Map) (int64, error) {
	return s.swap(ctx, "the map", casPut{s.key("map"), prev, m})
}

// SwapMigration stores w's record if its key's ModRevision is still
// w.Migration.Revision (0: no such key), and w's map with it if the map
// key's is still w.MapRevision, in one transaction.
func (s *Store) SwapMigration(ctx context.Context, w cluster.MigrationSwap) (int64, error) {
	puts := []casPut{{s.migrationKey(w.Migration.ID), w.Migration.Revision, w.Migration}}
	if w.Map != nil {
		puts = append(puts, casPut{s.key("map"), w.MapRevision, w.Map})
	}
	return s.swap(ctx, fmt.Sprintf("migration %d", w.Migration.ID), puts...)
}

// SwapPlan stores w's plan if its key's ModRevision is still
// w.Plan.Revision (0: no such key), and w's migration record with it if
// that key's is still w.Migration.Revision, in one transaction.
func (s *Store) SwapPlan(ctx context.Context, w cluster.PlanSwap) (int64, error) {
	puts := []casPut{{s.planKey(w.Plan.ID), w.Plan.Revision, w.Plan}}
	if m := w.Migration; m != nil {
		puts = append(puts, casPut{s.migrationKey(m.ID), m.Revision, m})
	}
	return s.swap(ctx, fmt.Sprintf("plan %d", w.Plan.ID), puts...)
}

// DeletePlan deletes plan id's key if its ModRevision is still rev.
func (s *Store) DeletePlan(ctx context.Context, id cluster.PlanID, rev int64) error {
	return s.delete(ctx, s.planKey(id), rev)
}

// DeleteMigration removes migration record id if it is still at revision
// rev (cluster.Metadata).
func (s *Store) DeleteMigration(ctx context.Context, id cluster.MigrationID, rev int64) error {
	return s.delete(ctx, s.migrationKey(id), rev)
}

// delete removes key if it is still at revision rev (not 0: it exists).
func (s *Store) delete(ctx context.Context, key string, rev int64) error {
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit()
	switch {
	case err != nil:
		return fmt.Errorf("etcdmeta: delete %s: %w", key, err)
	case !resp.Succeeded || rev == 0:
		return cluster.ErrConflict
	}
	return nil
}

// planKey is the key of plan id: zero-padded, so that keys sort as ids do.
func (s *Store) planKey(id cluster.PlanID) string {
	return s.key("plans", fmt.Sprintf("%020d", uint64(id)))
}

// migrationKey is the key of migration id's record: zero-padded, so that
// keys sort as ids do.
func (s *Store) migrationKey(id cluster.MigrationID) string {
	return s.key("migrations", fmt.Sprintf("%020d", uint64(id)))
}

// Register records srv under the store's lease, granting one (kept alive
// until Close) when none is alive.
func (s *Store) Register(ctx context.Context, srv cluster.Server) error {
	lease, err := s.lease(ctx)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(srv)
	if _, err := s.cli.Put(ctx, s.key("servers", string(srv.ID)), string(b), clientv3.WithLease(lease)); err != nil {
		s.dropLease(lease)
		return fmt.Errorf("etcdmeta: register %s: %w", srv.ID, err)
	}
	return nil
}

// lease returns the live lease, granting one and keeping it alive.
func (s *Store) lease(ctx context.Context) (clientv3.LeaseID, error) {
	s.mu.Lock()
	id := s.mu.lease
	s.mu.Unlock()
	if id != 0 {
		return id, nil
	}
	g, err := s.cli.Grant(ctx, s.ttl)
	if err != nil {
		return 0, fmt.Errorf("etcdmeta: lease: %w", err)
	}
	ka, err := s.cli.KeepAlive(context.Background(), g.ID)
	if err != nil {
		return 0, fmt.Errorf("etcdmeta: keep the lease alive: %w", err)
	}
	s.mu.Lock()
	s.mu.lease = g.ID
	s.mu.Unlock()
	go func() {
		for range ka { // drained until the lease is lost or revoked
		}
		s.dropLease(g.ID)
	}()
	return g.ID, nil
}

// ReportLoad records l under the registration's lease (it goes with the
// registration); the watch signals no change for it.
func (s *Store) ReportLoad(ctx context.Context, id cluster.ServerID, l cluster.ServerLoad) error {
	lease, err := s.lease(ctx)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(l)
	if _, err := s.cli.Put(ctx, s.key("load", string(id)), string(b), clientv3.WithLease(lease)); err != nil {
		// The lease is kept: a slow moment is no reason to grant another
		// (its keepalive would run on); a lost one is dropped by it.
		return fmt.Errorf("etcdmeta: report load of %s: %w", id, err)
	}
	return nil
}

// dropLease forgets lease id: the next Register grants a new one.
func (s *Store) dropLease(id clientv3.LeaseID) {
	s.mu.Lock()
	if s.mu.lease == id {
		s.mu.lease = 0
	}
	s.mu.Unlock()
	s.signal()
}

// ReportApplied records view for id when it is newer than the recorded one.
func (s *Store) ReportApplied(ctx context.Context, id cluster.ServerID, view uint64) error {
	return s.raise(ctx, s.key("applied", string(id)), view)
}

// ReportCleaned raises server id's clean-up floor (cluster.Metadata): the
// key cleaned/<id>, under no lease.
func (s *Store) ReportCleaned(ctx context.Context, id cluster.ServerID, floor cluster.MigrationID) error {
	return s.raise(ctx, s.key("cleaned", string(id)), uint64(floor))
}

// raise stores v at key k (a decimal number, under no lease) unless k
// holds v or more already: the value only grows.
func (s *Store) raise(ctx context.Context, k string, v uint64) error {
	for {
		resp, err := s.cli.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("etcdmeta: raise %s: %w", k, err)
		}
		rev := int64(0)
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if old, err := strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64); err == nil && old >= v {
				return nil
			}
		}
		t, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, strconv.FormatUint(v, 10))).Commit()
		if err != nil {
			return fmt.Errorf("etcdmeta: raise %s: %w", k, err)
		}
		if t.Succeeded {
			return nil
		}
	}
}

// Lead campaigns for the planner's election (key prefix "planner/") on a
// session of its own: a lease of the store's TTL, kept alive while ctx
// lasts. The lead is lost when the lease lapses (etcd unreachable for a
// TTL) or ctx ends, which resigns and revokes it at once.
func (s *Store) Lead(ctx context.Context, id cluster.ServerID) (<-chan struct{}, error) {
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(int(s.ttl)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("etcdmeta: lead: %w", err)
	}
	e := concurrency.NewElection(sess, s.key("planner"))
	// A campaign whose ctx ends resigns through the client's own context,
	// which never ends before Close: with etcd unreachable it would hang a
	// shutdown. So it runs aside, and ends with the client at the latest.
	campaign := make(chan error, 1)
	go func() { campaign <- e.Campaign(ctx, string(id)) }()
	select {
	case err := <-campaign:
		if err != nil {
			sess.Close()
			return nil, fmt.Errorf("etcdmeta: lead: %w", err)
		}
	case <-ctx.Done():
		go func() {
			<-campaign
			sess.Close()
		}()
		return nil, ctx.Err()
	}
	lost := make(chan struct{})
	go func() {
		select {
		case <-sess.Done():
		case <-ctx.Done():
		}
		close(lost) // first: the leader stops acting at once
		// Revoking the session's lease deletes the election key, so the
		// next candidate leads now, not a TTL later (the session's own
		// Close revokes through ctx, which has ended).
		sess.Orphan()
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = s.cli.Revoke(rctx, sess.Lease())
		cancel()
	}()
	return lost, nil
}

// Changes returns a channel signalled after every change under the prefix
// (and after the registration's lease is lost).
func (s *Store) Changes() <-chan struct{} {
	c := make(chan struct{}, 1)
	s.mu.Lock()
	s.mu.watches = append(s.mu.watches, c)
	s.mu.Unlock()
	return c
}

func (s *Store) signal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.mu.watches {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// watch signals every change under the prefix until ctx ends, watching
// again whenever a watch ends (etcd restarted, compacted).
func (s *Store) watch(ctx context.Context) {
	defer close(s.done)
	for ctx.Err() == nil {
		wc := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.prefix, clientv3.WithPrefix())
		for resp := range wc {
			if resp.Err() != nil {
				break
			}
			if !s.onlyLoads(resp.Events) {
				s.signal()
			}
		}
		s.signal() // something may have changed unseen
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// onlyLoads reports whether every event is a load report's (ReportLoad),
// which a reader need not be woken for: the servers report every few
// seconds.
func (s *Store) onlyLoads(evs []*clientv3.Event) bool {
	for _, ev := range evs {
		if !strings.HasPrefix(string(ev.Kv.Key), s.key("load")+"/") {
			return false
		}
	}
	return len(evs) > 0
}

// Close stops watching, revokes the registration's lease (its servers
// entry goes at once) and closes the client.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	s.mu.Lock()
	lease := s.mu.lease
	s.mu.Unlock()
	if lease != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = s.cli.Revoke(ctx, lease)
		cancel()
	}
	return s.cli.Close()
}

// SetToken records the cluster's admin token (its SHA-256) unless one is
// set already; an empty token changes nothing.
func (s *Store) SetToken(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	k := s.key("token")
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, hashToken(token))).Commit()
	if err != nil {
		return fmt.Errorf("etcdmeta: set the token: %w", err)
	}
	if !resp.Succeeded {
		return s.CheckToken(ctx, token)
	}
	return nil
}

// ErrToken is returned for a missing or wrong admin token.
var ErrToken = errors.New("etcdmeta: the cluster's admin token is required (--token or FLEETKV_CLUSTER_TOKEN) and the one given is wrong or missing")

// CheckToken returns nil when the cluster has no token or token is it.
func (s *Store) CheckToken(ctx context.Context, token string) error {
	resp, err := s.cli.Get(ctx, s.key("token"))
	if err != nil {
		return fmt.Errorf("etcdmeta: read the token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	if subtle.ConstantTimeCompare(resp.Kvs[0].Value, []byte(hashToken(token))) != 1 {
		return ErrToken
	}
	return nil
}

func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:])
}

// Leader returns the client endpoint of the member that leads the etcd
// cluster now.
func (s *Store) Leader(ctx context.Context) (string, error) {
	var errs []error
	for _, ep := range s.cli.Endpoints() {
		st, err := s.cli.Status(ctx, ep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return ep, nil
		}
	}
	return "", fmt.Errorf("etcdmeta: no member leads: %w", errors.Join(errs...))
}
