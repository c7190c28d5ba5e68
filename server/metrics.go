package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics exports the server's counters to Prometheus. It reads them when
// scraped (Server.Stats, the loops' atomic counters), so the request path
// pays nothing for it.
type metrics struct {
	s *Server

	ops, batches, rejected, errors, pending, held       *prometheus.Desc
	heldBatches, respCut                                *prometheus.Desc
	bytes, conns, view, logAddr, logMemory              *prometheus.Desc
	ioDepth, indexBuckets, indexEntries                 *prometheus.Desc
	keys, keyDoubts                                     *prometheus.Desc
	epoch, epochActions, loops                          *prometheus.Desc
	ckptTaken, ckptSeconds, ckptEnd, ckptTime           *prometheus.Desc
	ckptPause, flushes                                  *prometheus.Desc
	compRuns, compRecords, compBytes, compSeconds       *prometheus.Desc
	garbage, notOwner, clusterInfo, slots               *prometheus.Desc
	expired, expiring                                   *prometheus.Desc
	parked, parks, reparks, fetchesBelow, parkedCovered *prometheus.Desc
	parkWaits                                           *prometheus.Desc
	indirections                                        *prometheus.Desc
	bgShare, bgWorkers, fgP999, fgLevel                 *prometheus.Desc
}

func newMetrics(s *Server) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fleetkv_"+name, help, labels, nil)
	}
	return &metrics{s: s,
		ops:           d("operations_total", "Operations executed: native protocol by operation, RESP commands as op=\"resp\".", "op"),
		batches:       d("batches_total", "Native request batches executed."),
		rejected:      d("rejected_batches_total", "Native batches answered VIEW_CHANGED or RETRY_LATER."),
		errors:        d("protocol_errors_total", "Connections closed for malformed input."),
		pending:       d("pending_operations_total", "Operations that went to the device (a record below the log's head)."),
		held:          d("held_back_turns_total", "Connection turns held back because the loop was at --max-pending-io."),
		heldBatches:   d("held_batches_total", "Native turns that ended inside a request batch, after as many device reads as one turn may send."),
		respCut:       d("resp_cut_turns_total", "RESP turns that ended with commands left, after as many device reads as one turn may send."),
		bytes:         d("network_bytes_total", "Request and response bytes.", "direction"),
		conns:         d("connections", "Open client connections.", "protocol"),
		view:          d("view", "The server's view number."),
		logAddr:       d("log_address_bytes", "HybridLog markers, as log addresses.", "marker"),
		logMemory:     d("log_memory_bytes", "In-memory log budget (--memory)."),
		ioDepth:       d("io_in_flight", "Device reads and writes submitted and not completed."),
		indexBuckets:  d("index_buckets", "Hash index buckets.", "kind"),
		indexEntries:  d("index_entries", "Index entries created (deleted keys keep theirs until compaction)."),
		keys:          d("keys", "Live keys, counting blind writes over keys on the device as new keys until DBSIZE, compaction or the periodic check resolves them."),
		keyDoubts:     d("key_doubts", "Blind writes over keys on the device whose effect on the key count is not resolved yet."),
		epoch:         d("epoch", "Epoch counters: the current epoch and the safe one (every session past it).", "which"),
		epochActions:  d("epoch_pending_actions", "Actions (flushes, evictions, growth phases) waiting for the safe epoch."),
		loops:         d("event_loops", "Event loops serving connections."),
		ckptTaken:     d("checkpoints_total", "Checkpoints taken since the server started."),
		ckptSeconds:   d("checkpoint_seconds_total", "Time spent taking them."),
		ckptPause:     d("checkpoint_pause_seconds_total", "Time the event loops stood still for checkpoints' CPR points and flushes, summed over loops."),
		flushes:       d("flushes_total", "FLUSHALL and FLUSHDB commands done since the server started."),
		ckptEnd:       d("checkpoint_end_address", "Log address up to which the newest checkpoint made the store durable."),
		ckptTime:      d("checkpoint_timestamp_seconds", "When the newest checkpoint was taken (Unix time; 0: none)."),
		compRuns:      d("compactions_total", "Log compactions that moved the log's begin."),
		compRecords:   d("compaction_records_total", "Records compactions scanned, and those they copied to the tail (still live).", "kind"),
		compBytes:     d("compaction_bytes_total", "Bytes compactions scanned, and those they copied to the tail.", "kind"),
		compSeconds:   d("compaction_seconds_total", "Time spent compacting."),
		expired:       d("expired_keys_total", "Expired keys active expiry deleted."),
		expiring:      d("expiring_keys", "Keys with an expiry that active expiry's last complete pass met in memory (an estimate)."),
		garbage:       d("log_garbage_ratio", "Dead share of the log on the device, as last estimated (0 until the first estimate)."),
		notOwner:      d("not_owner_operations_total", "Operations refused because the server does not serve their key's slot (NOT_OWNER, MOVED)."),
		parked:        d("parked_reads", "Reads a migration's target holds until their keys arrive."),
		parks:         d("parked_reads_total", "Reads a migration's target ever held until their keys arrived."),
		reparks:       d("parked_after_device_reads_total", "Of the parked reads, those parked after the device did not find their key."),
		parkedCovered: d("parked_reads_covered_total", "A migration's target: parked reads answered through an indirection table (the source's log in the shared tier) once their slot left Misses."),
		parkWaits:     d("parked_read_wait_seconds", "A migration's target: how long parked reads waited until their key's record arrived, their slot left Misses or the read was refused."),
		fetchesBelow:  d("fetches_below_total", "A migration's source: fetches of its target answered with where the shared tier holds the key's chain, not with the record."),
		indirections:  d("indirections", "A migration's target: installed tables of indirection records, and the chains they send into the source's log in the shared tier, until resolved.", "what"),
		bgShare:       d("background_share", "Share of its time background work (a migration's move and its source's drop) may take, set from the foreground's p99.9 (1: admission control off)."),
		bgWorkers:     d("background_workers", "Background workers running (a migration's tasks, indirection resolvers); while any runs, admission control learns no level."),
		fgP999:        d("foreground_p999_seconds", "p99.9 of the waits of the batches and commands the loops answered (from their turn's start to their answer) over admission control's last interval."),
		fgLevel:       d("foreground_p999_level_seconds", "The foreground's p99.9 admission control learnt while no background work ran."),
		clusterInfo:   d("cluster_info", "Always 1; the labels name the server's cluster and id (empty outside a cluster).", "cluster", "server"),
		slots:         d("cluster_slots", "Slots the map assigns to the server (owned) and those it serves now (serving).", "state"),
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.s.Stats()
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	for op, n := range st.Ops {
		counter(m.ops, float64(n), op)
	}
	counter(m.batches, float64(st.Batches))
	counter(m.rejected, float64(st.Rejected))
	counter(m.errors, float64(st.Errors))
	counter(m.pending, float64(st.Pending))
	counter(m.held, float64(st.HeldBack))
	counter(m.heldBatches, float64(st.HeldBatches))
	counter(m.respCut, float64(st.RESPCutTurns))
	counter(m.bytes, float64(st.BytesIn), "in")
	counter(m.bytes, float64(st.BytesOut), "out")
	gauge(m.conns, float64(st.Connections-st.RESPConnections), "native")
	gauge(m.conns, float64(st.RESPConnections), "resp")
	gauge(m.view, float64(st.View))
	lg := st.Store.Log
	for _, a := range []struct {
		name string
		v    uint64
	}{{"begin", lg.Begin}, {"head", lg.Head}, {"flushed_until", lg.FlushedUntil},
		{"safe_read_only", lg.SafeReadOnly}, {"read_only", lg.ReadOnly}, {"tail", lg.Tail}} {
		gauge(m.logAddr, float64(a.v), a.name)
	}
	gauge(m.logMemory, float64(st.LogMemory))
	gauge(m.ioDepth, float64(st.IOInFlight))
	gauge(m.indexBuckets, float64(st.Store.Index.Buckets), "main")
	gauge(m.indexBuckets, float64(st.Store.Index.OverflowBuckets), "overflow")
	gauge(m.indexEntries, float64(st.Store.Index.Entries))
	gauge(m.keys, float64(st.Store.Keys))
	gauge(m.keyDoubts, float64(st.Store.Doubts))
	gauge(m.epoch, float64(st.Store.Epoch.Current), "current")
	gauge(m.epoch, float64(st.Store.Epoch.Safe), "safe")
	gauge(m.epochActions, float64(st.Store.Epoch.PendingActions))
	gauge(m.loops, float64(st.Loops))
	counter(m.ckptTaken, float64(st.Checkpoint.Taken))
	counter(m.ckptSeconds, float64(st.Checkpoint.TotalNanos)/1e9)
	counter(m.ckptPause, float64(st.Checkpoint.PauseNanos)/1e9)
	counter(m.flushes, float64(st.Flushes))
	gauge(m.ckptEnd, float64(st.Checkpoint.End))
	var ts float64
	if st.Checkpoint.Seq != 0 {
		ts = float64(st.Checkpoint.Time.UnixNano()) / 1e9
	}
	gauge(m.ckptTime, ts)
	cs := st.Compaction
	counter(m.compRuns, float64(cs.Runs))
	counter(m.compRecords, float64(cs.Records), "scanned")
	counter(m.compRecords, float64(cs.Copied), "copied")
	counter(m.compBytes, float64(cs.ScannedBytes), "scanned")
	counter(m.compBytes, float64(cs.CopiedBytes), "copied")
	counter(m.compSeconds, float64(cs.TotalNanos)/1e9)
	gauge(m.garbage, cs.Garbage)
	counter(m.expired, float64(st.Expiry.Reaped))
	gauge(m.expiring, float64(st.Expiry.Expiring))
	counter(m.notOwner, float64(st.NotOwner))
	gauge(m.parked, float64(st.ParkedReads))
	counter(m.parks, float64(st.Parks))
	counter(m.reparks, float64(st.Reparks))
	counter(m.fetchesBelow, float64(st.FetchesBelow))
	counter(m.parkedCovered, float64(st.ParkedCovered))
	if w := st.ParkWaits; w.Bounds != nil {
		ch <- prometheus.MustNewConstHistogram(m.parkWaits, w.Count(), w.Sum, w.cumulative())
	}
	gauge(m.indirections, float64(st.Store.IndirectionTables), "tables")
	gauge(m.indirections, float64(st.Store.IndirectionChains), "chains")
	ad := st.Admission
	gauge(m.bgShare, ad.Share)
	gauge(m.bgWorkers, float64(ad.Workers))
	gauge(m.fgP999, float64(ad.P999Us)/1e6)
	gauge(m.fgLevel, float64(ad.LevelUs)/1e6)
	gauge(m.clusterInfo, 1, st.Cluster.Cluster, st.Cluster.Server)
	gauge(m.slots, float64(st.Cluster.Owned), "owned")
	gauge(m.slots, float64(st.Cluster.Serving), "serving")
}

// metricsHandler serves /metrics: fleetkv's metrics, the Go runtime's and
// the process's.
func metricsHandler(s *Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newMetrics(s), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(s.cfg.Collectors...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
