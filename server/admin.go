package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/store"
)

// adminServer serves /healthz, /stats, /metrics, /checkpoint (POST),
// /compact (POST), /cluster/keys (live keys of slots), /debug/pprof/ and
// Config.AdminRoutes (the node's dashboard) on its own listener, apart from
// the data path. A browser's cross-origin POST is refused (403).
type adminServer struct {
	addr string
	srv  *http.Server
}

func startAdmin(s *Server, addr string) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server: admin listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if s.closed.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Stats())
	})
	mux.Handle("/metrics", metricsHandler(s))
	mux.HandleFunc("/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST to take a checkpoint", http.StatusMethodNotAllowed)
			return
		}
		m, err := s.Checkpoint(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	})
	mux.HandleFunc("/compact", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST to compact the log (until=ADDRESS: up to there; default everything on the device)", http.StatusMethodNotAllowed)
			return
		}
		var until uint64
		if v := r.URL.Query().Get("until"); v != "" {
			var err error
			if until, err = strconv.ParseUint(v, 10, 64); err != nil {
				http.Error(w, fmt.Sprintf("until=%q: not a log address", v), http.StatusBadRequest)
				return
			}
		}
		cs, err := s.Compact(r.Context(), until)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(cs)
	})
	mux.HandleFunc("/cluster/migrations", func(w http.ResponseWriter, _ *http.Request) {
		var v any = []any{}
		if s.cfg.Progress != nil {
			v = s.cfg.Progress()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	})
	mux.HandleFunc("/cluster/keys", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.countKeys(r.Context(), r.URL.Query().Get("slots"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"keys": n})
	})
	if s.cfg.AdminRoutes != nil {
		for pattern, h := range s.cfg.AdminRoutes(s) {
			mux.Handle(pattern, h)
		}
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// The dashboard makes a browser a client of this listener: a page of
	// another origin must not make it POST a checkpoint or a compaction.
	// Tools (curl, the CLI) send no Origin or Sec-Fetch-Site and pass.
	h := http.NewCrossOriginProtection().Handler(mux)
	a := &adminServer{addr: ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server failed", "err", err)
		}
	}()
	return a, nil
}

func (a *adminServer) shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }

// countKeys counts the live keys of the slots ("0-99,200"; every slot
// when empty) that the store holds, served here or not
// (GET /cluster/keys?slots=...).
func (s *Server) countKeys(ctx context.Context, slots string) (int64, error) {
	rs := []cluster.Range{{First: 0, Last: cluster.Slots - 1}}
	if slots != "" {
		var err error
		if rs, err = cluster.ParseRanges(slots); err != nil {
			return 0, err
		}
	}
	total := int64(0)
	for _, r := range rs {
		n, err := s.st.CountKeys(ctx, keyhash.FirstHash(r.First), keyhash.LastHash(r.Last))
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// Stats is the admin page's JSON.
type Stats struct {
	View            uint64           `json:"view"`
	Loops           int              `json:"loops"`
	Connections     int64            `json:"connections"`
	RESPConnections int64            `json:"resp_connections"`
	Ops             map[string]int64 `json:"ops"`
	Batches         uint64           `json:"batches"`
	Rejected        uint64           `json:"rejected_batches"`
	NotOwner        uint64           `json:"not_owner_ops"`  // operations refused for a slot not served here
	ParkedReads     uint64           `json:"parked_reads"`   // reads a migration's target holds now until their keys arrive
	Parks           uint64           `json:"parks"`          // reads ever parked
	Reparks         uint64           `json:"reparks"`        // of them, reads parked after the device did not find their key
	ParkedCovered   uint64           `json:"parked_covered"` // parked reads answered through an indirection table when their slot left Misses
	ParkWaits       WaitHistogram    `json:"park_waits"`     // how long the parked reads waited until answered
	FetchesBelow    uint64           `json:"fetches_below"`  // a source's fetches answered with where the shared tier has the key
	Errors          uint64           `json:"errors"`
	Pending         uint64           `json:"pending_ops"`
	HeldBack        uint64           `json:"held_back"`           // connection turns held back by MaxPendingIO
	HeldBatches     uint64           `json:"held_batches"`        // native turns that ended inside a batch (turnReads)
	RESPCutTurns    uint64           `json:"resp_cut_turns"`      // RESP turns that ended at turnReads with commands left
	RESPParallel    uint64           `json:"resp_parallel_reads"` // RESP device reads issued without stopping their connection
	BytesIn         uint64           `json:"bytes_in"`
	BytesOut        uint64           `json:"bytes_out"`
	Store           store.Stats      `json:"store"`
	LogMemory       uint64           `json:"log_memory"`   // in-memory log budget
	IOInFlight      int              `json:"io_in_flight"` // device requests outstanding; 0 for devices that do not count them
	Checkpoint      CheckpointStats  `json:"checkpoint"`
	Flushes         uint64           `json:"flushes"` // FLUSHALL and FLUSHDB done
	Compaction      CompactionStats  `json:"compaction"`
	Expiry          ExpiryStats      `json:"expiry"`
	Admission       AdmissionStats   `json:"admission"` // background work's share of time (admit.go)
	Memory          MemStats         `json:"memory"`
	Cluster         ClusterStats     `json:"cluster"`
}

// ClusterStats say where the server stands in its cluster.
type ClusterStats struct {
	Cluster string `json:"cluster,omitempty"` // "" outside any cluster
	Server  string `json:"server,omitempty"`
	View    uint64 `json:"view"`
	Epoch   uint64 `json:"map_epoch"`      // of the map the loops route by
	Owned   int    `json:"owned_slots"`    // assigned to the server by that map
	Serving int    `json:"serving_slots"`  // served now (owned and handed over)
	Ranges  string `json:"serving_ranges"` // those slots, as "0-99,200"
}

// clusterStats describes the routing the loops take.
func (s *Server) clusterStats() ClusterStats {
	r := s.route.Load()
	cs := ClusterStats{View: r.View, Serving: r.Serving.Count(), Owned: r.Serving.Count(), Ranges: cluster.FormatRanges(r.Serving.Ranges())}
	if r.Map != nil {
		cs.Cluster, cs.Server, cs.Epoch = r.Map.Cluster, string(s.cfg.ServerID), r.Map.Epoch
		cs.Owned = r.Map.Owned(s.cfg.ServerID).Count()
	}
	return cs
}

// CheckpointStats say how durable the server is: checkpoints taken since
// start and their total time, and the newest one (Seq 0: none yet).
type CheckpointStats struct {
	Enabled    bool   `json:"enabled"`
	Taken      uint64 `json:"taken"`
	TotalNanos uint64 `json:"total_nanos"`
	// PauseNanos is the time the loops stood still for checkpoints' CPR
	// points (and FLUSHALL), summed over loops and pauses: each loop from
	// its stop (it then completes its pending writes and reads its points)
	// until every loop has stopped and the end is read.
	PauseNanos uint64    `json:"pause_nanos"`
	Seq        uint64    `json:"seq"`
	End        uint64    `json:"end"`
	Time       time.Time `json:"time"`
	// Recovered is what the recovery at start found; nil for a new store.
	Recovered *store.RecoveryStats `json:"recovered,omitempty"`
}

// MemStats is the part of the Go runtime's memory statistics worth watching.
type MemStats struct {
	HeapAlloc  uint64 `json:"heap_alloc"`
	HeapSys    uint64 `json:"heap_sys"`
	NumGC      uint32 `json:"num_gc"`
	Goroutines int    `json:"goroutines"`
}

// Summary is the part of Stats that is cheap to read: no runtime
// statistics (runtime.ReadMemStats stops the world), no store walk.
type Summary struct {
	Ops       int64          // data operations answered since start (control operations not counted)
	Admission AdmissionStats // background work's share and the foreground's p99.9
	Cluster   ClusterStats
}

// Summary sums the loops' operation counters and reads admission control
// and the routing: what a dashboard polls every second.
func (s *Server) Summary() Summary {
	sum := Summary{Admission: s.adm.stats(), Cluster: s.clusterStats()}
	s.mu.Lock()
	for _, l := range s.mu.list {
		for i := range l.stats.ops {
			if opNames[i] != "control" {
				sum.Ops += int64(l.stats.ops[i].Load())
			}
		}
	}
	s.mu.Unlock()
	return sum
}

var opNames = [...]string{"read", "upsert", "delete", "add", "append", "control", "resp", "expire"}

// Stats sums the loops' counters.
func (s *Server) Stats() Stats {
	lg := s.st.Log()
	st := Stats{View: s.View(), Ops: map[string]int64{}, Store: s.st.Stats(), LogMemory: lg.Frames() * lg.PageSize()}
	if d, ok := lg.Device().(interface{ InFlight() int }); ok {
		st.IOInFlight = d.InFlight()
	}
	s.mu.Lock()
	st.Loops = len(s.mu.list)
	for _, l := range s.mu.list {
		for i := range l.stats.ops {
			st.Ops[opNames[i]] += int64(l.stats.ops[i].Load())
		}
		st.Batches += l.stats.batches.Load()
		st.Rejected += l.stats.rejected.Load()
		st.NotOwner += l.stats.notOwner.Load()
		st.ParkedReads += l.stats.parked.Load()
		st.Parks += l.stats.parks.Load()
		st.Reparks += l.stats.reparks.Load()
		st.ParkedCovered += l.stats.parkedCovered.Load()
		st.ParkWaits.add(&l.stats.parkWaits)
		st.FetchesBelow += l.stats.fetchesBelow.Load()
		st.Errors += l.stats.errors.Load()
		st.Pending += l.stats.pending.Load()
		st.HeldBack += l.stats.held.Load()
		st.HeldBatches += l.stats.heldBatches.Load()
		st.RESPCutTurns += l.stats.respCut.Load()
		st.RESPParallel += l.stats.respHoles.Load()
		st.BytesIn += l.stats.bytesIn.Load()
		st.BytesOut += l.stats.bytesOut.Load()
		st.Connections += l.stats.conns.Load()
		st.RESPConnections += l.stats.respConns.Load()
	}
	s.mu.Unlock()
	st.Checkpoint = CheckpointStats{Enabled: s.dur != nil, Taken: s.stats.checkpoints.Load(), TotalNanos: s.stats.checkpointNanos.Load(),
		PauseNanos: s.stats.pauseNanos.Load()}
	st.Flushes = s.stats.flushes.Load()
	if s.dur != nil {
		last := s.dur.latest()
		st.Checkpoint.Seq, st.Checkpoint.End, st.Checkpoint.Time = last.Seq, last.Store.End, last.Time
		st.Checkpoint.Recovered = s.dur.recovered
	}
	st.Compaction = s.comp.stats()
	st.Expiry = s.expiry.stats()
	st.Admission = s.adm.stats()
	st.Cluster = s.clusterStats()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	st.Memory = MemStats{HeapAlloc: m.HeapAlloc, HeapSys: m.HeapSys, NumGC: m.NumGC, Goroutines: runtime.NumGoroutine()}
	return st
}
