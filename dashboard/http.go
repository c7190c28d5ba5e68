package dashboard

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

//go:embed page.html
var page []byte

// State reads the cluster's state (the metadata store's; a standalone
// server's is a map of itself).
type State func(ctx context.Context) (cluster.State, error)

// Local returns the serving server's own sample.
type Local func() Sample

// FetchTimeout bounds the read of the state, and then the fetch of the
// servers' samples (all at once).
const FetchTimeout = 800 * time.Millisecond

// Handlers returns the dashboard's routes for an admin listener: the page
// at /, the overview at /cluster/overview and the server's own sample at
// /cluster/local. self is the serving server's id: its sample comes from
// local, the others' from their admin listeners. When the state cannot be
// read, the last one read stands in (the overview says since when), so the
// page still shows every server while the metadata store is down.
func Handlers(self cluster.ServerID, state State, local Local) map[string]http.Handler {
	client := &http.Client{Timeout: FetchTimeout}
	var last lastState
	return map[string]http.Handler{
		"GET /{$}": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
			_, _ = w.Write(page)
		}),
		"GET /cluster/local": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, local())
		}),
		"GET /cluster/overview": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st, stale := last.read(r.Context(), state)
			ctx, cancel := context.WithTimeout(r.Context(), FetchTimeout)
			defer cancel()
			o := Build(st, Gather(ctx, client, st, self, local), time.Now())
			o.Error = stale
			writeJSON(w, o)
		}),
	}
}

// lastState is the last state read without error, and when.
type lastState struct {
	mu sync.Mutex
	st cluster.State
	at time.Time
}

// read reads the state within FetchTimeout; when that fails it returns the
// last one read and what went wrong ("" when st is fresh).
func (l *lastState) read(ctx context.Context, state State) (st cluster.State, stale string) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	st, err := state(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.st, l.at = st, time.Now()
		return st, ""
	}
	if l.at.IsZero() {
		return cluster.State{}, err.Error()
	}
	return l.st, fmt.Sprintf("%v (showing the state read %s ago)", err, time.Since(l.at).Round(time.Second))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_ = json.NewEncoder(w).Encode(v)
}

// Gather fetches the sample of every server st names (its map or its live
// registrations) at once, each bounded by the client's timeout and ctx;
// self's comes from local. Self is always in the result, even when st
// names no server (the store did not answer).
func Gather(ctx context.Context, client *http.Client, st cluster.State, self cluster.ServerID, local Local) map[cluster.ServerID]Result {
	admins := map[cluster.ServerID]string{}
	if st.Map != nil {
		for id, s := range st.Map.Servers {
			admins[id] = s.Admin
		}
	}
	for id, s := range st.Live {
		if s.Admin != "" || admins[id] == "" {
			admins[id] = s.Admin
		}
	}
	out := map[cluster.ServerID]Result{}
	s := local()
	out[self] = Result{Sample: &s}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, admin := range admins {
		if id == self {
			continue
		}
		wg.Go(func() {
			r := fetch(ctx, client, admin)
			if r.Sample != nil && r.Sample.ID != id { // an address reused, or advertised as loopback
				r = Result{Err: fmt.Errorf("%s answered as %q", admin, r.Sample.ID)}
			}
			mu.Lock()
			out[id] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// Fetch reads the sample a server's admin listener serves at
// /cluster/local (a migration's source follows its target's BgShare).
func Fetch(ctx context.Context, client *http.Client, admin string) (*Sample, error) {
	r := fetch(ctx, client, admin)
	return r.Sample, r.Err
}

// fetch reads a server's /cluster/local.
func fetch(ctx context.Context, client *http.Client, admin string) Result {
	if admin == "" {
		return Result{Err: fmt.Errorf("no admin listener")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/cluster/local", nil)
	if err != nil {
		return Result{Err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{Err: fmt.Errorf("%s: %s", req.URL, resp.Status)}
	}
	var s Sample
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return Result{Err: fmt.Errorf("%s: %w", req.URL, err)}
	}
	return Result{Sample: &s}
}
