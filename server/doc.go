// Package server runs fleetkv's event loops: gnet/v2 loops, one per core by
// default, each locked to its OS thread and pinned to a core, each owning its
// connections end to end. A loop reads whole batches from a connection's
// input buffer without copying, executes every operation against the shared
// store through the loop's own store session (its epoch slot), and writes
// all responses of one read with one write. Nothing on that path hands work
// to another goroutine, takes a lock or allocates in steady state.
//
// The package also serves the admin HTTP endpoints (pprof, health, stats)
// and shuts down gracefully. It must never let one connection's bad input
// affect another connection or the process.
//
// # Files
//
//	server.go        Server: start, listeners, the routing pointer (Install,
//	                 BumpView), shutdown, the loop registry
//	config.go        Config and its defaults (Off)
//	handler.go       gnet callbacks: open, close, traffic; conn
//	loop.go          loop: per-turn routing (turn), native traffic, writes,
//	                 pending completions, polling, MaxPendingIO hold-back
//	exec.go          native batches: view check, decode-ahead with prefetch,
//	                 OPEN, data and control operations
//	gateway.go       every data operation of both fronts: slot check, store
//	                 call, pending registration (await), error classification
//	resp.go          RESP connections: parse window, run, park on the device
//	resp_cmds.go     the RESP command table and the data commands
//	resp_merge.go    RESP's mergers (SET modes, the decimal INCR, APPEND's length)
//	resp_holes.go    cold reads of a RESP connection in parallel: reply holes filled in order
//	resp_cluster.go  CLUSTER, MOVED/TRYAGAIN/CLUSTERDOWN, CROSSSLOT
//	resp_durable.go  SAVE, BGSAVE, WAITAOF; respAside (work off the loop)
//	resp_info.go     INFO
//	durability.go    checkpoints: periodic, on demand, at shutdown; CPR points
//	pause.go         the checkpoint's pause of every loop at its CPR point
//	sessions.go      native sessions across connections and restarts (resume)
//	compaction.go    automatic and on-demand log compaction
//	admin.go         admin HTTP: /healthz, /stats, /metrics, /checkpoint,
//	                 /compact, /cluster/keys, /debug/pprof/; Stats
//	metrics.go       the Prometheus collector over Stats
//	bell.go          a loop's doorbell: deferred turns behind the sockets
//	admit.go         admission control: the background's share from the
//	                 foreground's p99.9
//	expiry.go        active expiry of keys nobody reads
//	resp_expire.go   RESP's expiry commands (EX, TTL and their kin)
//	flush.go         FLUSHALL: drop every key, behind a connection barrier
//	scan.go          SCAN, KEYS, RANDOMKEY: walks of the index
//	glob.go          Redis glob patterns for SCAN MATCH and KEYS
//	listen.go        the listeners: SO_REUSEPORT, one per loop
//	slotload.go      per-slot load counters for rebalancing
//	sampling.go      a migration's source: hot keys sampled, sent first
//	lend.go          a migration's source: keys fetched by the target
//	parking.go       a migration's target: reads parked until their keys arrive
//	deliver.go       a migration's target: fetched records handed to the loops
//	waits.go         wait histograms (parked reads)
//	pin_linux.go     pinning a loop's thread to a core
//	version.go       the version string
//
// # Goroutines
//
//	goroutine                  runs                                may touch
//	one per event loop (gnet)  traffic, OnOpen/OnClose, queued     its loop, conns and respConns, its
//	                           tasks (Install, pause, poll)        store session; Server through its
//	                                                               atomics and mu
//	gnet.Rotate (server.go)    the engine until Shutdown           nothing of the loops
//	admin HTTP (admin.go)      one per request                     Server's exported methods, Stats
//	durability (durability.go) periodic and requested checkpoints  the store's checkpoint; the loops
//	                                                               only through tasks (pause.go)
//	compaction (compaction.go) garbage estimates, compactions      the store's compaction session
//	respAside (resp_durable.go) one per SAVE/WAITAOF/COUNTKEYSINSLOT the store (checkpoint, CountKeys);
//	                                                               back on the loop through a task
//	store device goroutines    I/O completions                     wake the loop (wake) only
//	a node's fetcher (Deliver) records fetched for parked reads    the parked registry (its lock);
//	                                                               the loops only through tasks
//
// Install and the checkpoint's pause reach the loops as tasks queued on
// each loop (onEveryLoop, loopPause), so each loop switches at its own
// point, between events, and never while it runs a batch.
package server
