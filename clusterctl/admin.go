package clusterctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// Tokens checks and sets the cluster's admin token.
type Tokens interface {
	SetToken(ctx context.Context, token string) error
	CheckToken(ctx context.Context, token string) error
}

// Admin acts on one cluster.
type Admin struct {
	MD     cluster.Metadata
	Tokens Tokens // nil: the store keeps no token
	Token  string // the token the operator gave
	HTTP   *http.Client
}

func (a *Admin) client() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

func (a *Admin) authorize(ctx context.Context) error {
	if a.Tokens == nil {
		return nil
	}
	return a.Tokens.CheckToken(ctx, a.Token)
}

// Init creates the slot map of cluster name, the slots spread evenly over
// the registered servers, once at least want servers have registered
// (waiting up to wait). It records the admin token when one is given and
// none is set. A cluster that has a map already is refused.
func (a *Admin) Init(ctx context.Context, name string, want int, wait time.Duration) (*cluster.Map, error) {
	if a.Tokens != nil {
		if err := a.Tokens.SetToken(ctx, a.Token); err != nil {
			return nil, err
		}
	}
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	st, err := a.waitLive(ctx, max(want, 1), wait)
	if err != nil {
		return nil, err
	}
	if st.Map != nil {
		return nil, fmt.Errorf("clusterctl: cluster %q has a slot map already (epoch %d)", name, st.Map.Epoch)
	}
	servers := make([]cluster.Server, 0, len(st.Live))
	for _, s := range st.Live {
		servers = append(servers, s)
	}
	m, err := cluster.NewMap(name, servers)
	if err != nil {
		return nil, err
	}
	if _, err := a.MD.SwapMap(ctx, st.MapRevision, m); err != nil {
		return nil, err
	}
	return m, nil
}

// waitLive waits until want servers are registered.
func (a *Admin) waitLive(ctx context.Context, want int, wait time.Duration) (cluster.State, error) {
	deadline := time.Now().Add(wait)
	for {
		st, err := a.MD.Load(ctx)
		if err == nil && len(st.Live) >= want {
			return st, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("clusterctl: %d servers registered, waited for %d", len(st.Live), want)
			}
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ErrNotEmpty refuses to assign slots that hold keys: moving data is
// migration's job.
var ErrNotEmpty = errors.New("clusterctl: the slots hold keys; assign moves only empty slots (moving data is migration)")

// Assign gives the slots of rs to server to. Every slot must be empty: its
// owner is asked (admin /cluster/keys) and must answer. A registered
// server not in the map yet joins it.
func (a *Admin) Assign(ctx context.Context, rs []cluster.Range, to cluster.ServerID) (*cluster.Map, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	st, err := a.MD.Load(ctx)
	if err != nil {
		return nil, err
	}
	if st.Map == nil {
		return nil, cluster.ErrNoMap
	}
	if err := a.checkEmpty(ctx, st, rs, to); err != nil {
		return nil, err
	}
	return cluster.Change(ctx, a.MD, 5, func(st cluster.State) (*cluster.Map, error) {
		if err := st.NotMigrating(rs); err != nil {
			return nil, err
		}
		m := st.Map
		if _, ok := m.Servers[to]; !ok {
			live, ok := st.Live[to]
			if !ok {
				return nil, fmt.Errorf("%w: %q is neither in the map nor registered", cluster.ErrUnknownServer, to)
			}
			m = m.WithServer(live)
		}
		return m.Assign(rs, to, st.Applied)
	})
}

// checkEmpty asks every current owner of slots in rs (other than to) how
// many keys it holds in them.
func (a *Admin) checkEmpty(ctx context.Context, st cluster.State, rs []cluster.Range, to cluster.ServerID) error {
	parts := map[cluster.ServerID][]cluster.Range{}
	for _, r := range rs {
		for _, as := range st.Map.Ranges {
			lo, hi := max(as.First, r.First), min(as.Last, r.Last)
			if lo <= hi && as.Owner != to {
				parts[as.Owner] = append(parts[as.Owner], cluster.Range{First: lo, Last: hi})
			}
		}
	}
	for id, parts := range parts {
		srv := st.Map.Servers[id]
		if live, ok := st.Live[id]; ok {
			srv = live
		}
		n, err := a.countKeys(ctx, srv, parts)
		if err != nil {
			return fmt.Errorf("clusterctl: cannot ask %s (owner of %v) whether the slots are empty: %w", id, parts, err)
		}
		if n > 0 {
			return fmt.Errorf("%w: %s holds %d keys in %v", ErrNotEmpty, id, n, parts)
		}
	}
	return nil
}

// countKeys asks srv's admin endpoint for the live keys of rs.
func (a *Admin) countKeys(ctx context.Context, srv cluster.Server, rs []cluster.Range) (int64, error) {
	if srv.Admin == "" {
		return 0, errors.New("the server has no admin address")
	}
	var out struct{ Keys int64 }
	if err := a.GetJSON(ctx, "http://"+srv.Admin+"/cluster/keys?slots="+cluster.FormatRanges(rs), &out); err != nil {
		return 0, err
	}
	return out.Keys, nil
}

// GetJSON reads the JSON document at url (a server's admin endpoint) into v.
func (a *Admin) GetJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := a.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// WaitServing waits until every handover of m is complete (each previous
// owner applied the view without its slots) and every owner applied its
// view of m, so the new owners serve them.
func (a *Admin) WaitServing(ctx context.Context, m *cluster.Map, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		st, err := a.MD.Load(ctx)
		if err == nil && handedOver(m, st.Applied) {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("clusterctl: the servers have not applied the new map yet (are they up?)")
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// handedOver reports whether every owner serves its slots under m: the
// previous owners have applied their views (the handover), and each owner
// has applied its own view of m (installed the routing; a client that
// reads m before then is refused by it).
func handedOver(m *cluster.Map, applied map[cluster.ServerID]uint64) bool {
	for _, id := range m.ServerIDs() {
		if m.Owned(id).Count() == 0 {
			continue
		}
		if applied[id] < m.Views[id] || m.Serving(id, applied).Count() != m.Owned(id).Count() {
			return false
		}
	}
	return true
}
