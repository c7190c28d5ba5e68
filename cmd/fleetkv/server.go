package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/node"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

type serverFlags struct {
	listen, admin, dir, authToken  string
	resp, requirePass              string
	io                             string
	segmentSize                    sizeFlag
	loops, maxPendingIO, ioDepth   int
	maxHeld, migrationRate         int
	maxSampled                     int
	pin, reusePort, readCopy       bool
	memory, pageSize               sizeFlag
	mutable                        float64
	indexBits                      uint
	maxBatch, maxKey, maxValue     sizeFlag
	maxInput, maxSampledBytes      sizeFlag
	logLevel, logFormat            string
	mutexFraction, blockRate       int
	checkpointInterval             time.Duration
	compactInterval                time.Duration
	activeExpireInterval           time.Duration
	admitInterval                  time.Duration
	compactThreshold               float64
	compactChunk                   sizeFlag
	indexSnapshots, planner        bool
	checkpointMode                 string
	cluster, serverID, advertise   string
	meta                           string
	metaTimeout                    time.Duration
	rebalance                      string
	rebalanceWindow, rebalanceCool time.Duration
	rebalanceFloor                 float64
	sharedTier                     string
	tierSegmentSize                sizeFlag
}

func serverCmd() *cobra.Command { return newServerCmd(runServer) }

// newServerCmd builds the server command around run, which gets the parsed
// flags (tests pass a run that only validates them).
func newServerCmd(run func(*cobra.Command, serverFlags) error) *cobra.Command {
	f := serverFlags{memory: 1 << 30, pageSize: 32 << 20, segmentSize: 1 << 30, compactChunk: 1 << 30, maxBatch: 1 << 20, maxKey: 64 << 10, maxValue: 16 << 20, maxInput: 256 << 20, maxSampledBytes: server.DefaultMaxSampledBytes}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a fleetkv server until SIGINT or SIGTERM",
		Long: `Run a fleetkv server: one event loop per core by default, each pinned to
its core, serving the binary batched protocol on --listen, the Redis
protocol (RESP2: redis-cli, redis-benchmark, go-redis) on --resp when set,
and admin HTTP (/healthz, /stats, /debug/pprof/) on --admin.

The newest part of the log (--memory) is kept in memory; older pages are
flushed to segment files under DIR/log (O_DIRECT, through io_uring or a
pread/pwrite pool, --io) and reads of them complete asynchronously on the
loop that issued them. Every --checkpoint-interval, at shutdown and on
demand (POST /checkpoint on the admin listener, RESP SAVE), the server makes
everything it holds durable (a fold-over, or with --checkpoint-mode snapshot
a copy of the in-memory log under DIR/checkpoints) and records the
checkpoint under DIR/checkpoints; a server started on that directory recovers the newest
checkpoint (loading the index snapshot it refers to, and replaying only
the log written after it). Writes after the last checkpoint are lost by a
crash.

Updated and deleted keys leave dead records in the log. Every
--compact-interval the server estimates the dead share of the log on the
device; at --compact-threshold it compacts the oldest --compact-chunk (live
records are copied to the tail, the log's begin moves past the rest), and
the segment files below the new begin are deleted after the next checkpoint.
POST /compact compacts everything on the device now.

Keys may expire (RESP SET EX and the EXPIRE family, native UPSERT_EXPIRING
and EXPIRE). An expired key reads as absent at once; every
--active-expire-interval a background step deletes the expired keys of a
slice of the index held in memory, so DBSIZE and memory follow, and
compaction drops expired records on the device.

In a cluster (--cluster, --meta) the server follows the slot map and takes
part in live migrations ('fleetkv cluster migrate'). For kill -9 tests,
$FLEETKV_FAILPOINT makes it kill itself at one point of a migration:
before:TASK or after:TASK (sample, prepare, send-hot, move, ship-back,
checkpoint, drop) or stored:PHASE (sample, prepare, transfer, move,
complete, cancelling, cancelled; the source's stores).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:7400", "data address host:port (port 0 picks a free one); a port another socket listens on is refused")
	fl.StringVar(&f.admin, "admin", "127.0.0.1:7401", "admin HTTP address (pprof, healthz, stats); empty turns it off")
	fl.StringVar(&f.dir, "dir", "./data", "data directory, locked while the server runs (DIR/LOCK: a second server on it is refused)")
	fl.IntVar(&f.loops, "loops", 0, "event loops (0: one per CPU)")
	fl.BoolVar(&f.pin, "pin", true, "pin each event loop's thread to a core (and, with fewer loops than CPUs, keep io_uring's threads off those cores)")
	fl.BoolVar(&f.reusePort, "reuseport", true, "one SO_REUSEPORT listener per loop (false: one listener, round-robin hand-off)")
	fl.StringVar(&f.authToken, "auth-token", os.Getenv("FLEETKV_AUTH_TOKEN"), "token every session must present (default $FLEETKV_AUTH_TOKEN)")
	fl.StringVar(&f.resp, "resp", "", "Redis-protocol address host:port, served by the same loops; empty turns it off")
	fl.StringVar(&f.requirePass, "requirepass", os.Getenv("FLEETKV_REQUIREPASS"), "password RESP clients must give with AUTH (default $FLEETKV_REQUIREPASS)")
	fl.Var(&f.memory, "memory", "in-memory log budget (older records are read from DIR/log)")
	fl.IntVar(&f.maxSampled, "migration-max-sampled", server.DefaultMaxSampled, "per loop and migration: keys a migration's source samples while they are used, to send first when the target takes over (0: none)")
	fl.Var(&f.maxSampledBytes, "migration-max-sampled-bytes", "per loop and migration: bytes of the keys --migration-max-sampled counts, at most (0: none sampled)")
	fl.IntVar(&f.maxHeld, "migration-max-held", 65536, "per loop: reads a migration's target holds until their keys arrive (more are refused and retried by the client; 0: none held)")
	fl.IntVar(&f.migrationRate, "migration-rate", 0, "records a second a migration's move sends at most (0: as fast as the target takes them)")
	fl.IntVar(&f.maxPendingIO, "max-pending-io", 4096, "per loop: operations waiting for the device above which connections with such operations stop being read")
	fl.BoolVar(&f.readCopy, "read-copy", true, "copy records that reads bring in from the device to the log's tail, so keys read often stay in memory")
	fl.IntVar(&f.ioDepth, "io-depth", 0, "device queue depth: io_uring entries (default 1024, a power of two) or pread workers (default 32)")
	fl.StringVar(&f.io, "io", "", "I/O engine: uring or pread (default: uring, or pread when io_uring is unavailable)")
	fl.Var(&f.segmentSize, "segment-size", "log segment file size (a power of two, at least 1MiB; preallocated)")
	fl.Var(&f.pageSize, "page-size", "log page size (a power of two, 4KiB..1GiB; no record is larger)")
	fl.Float64Var(&f.mutable, "mutable-fraction", 0.9, "share of the in-memory log updated in place, (0, 1]")
	fl.UintVar(&f.indexBits, "index-bits", 20, "log2 of the initial number of index buckets (the index grows by itself)")
	fl.Var(&f.maxBatch, "max-batch", "largest request batch body accepted")
	fl.Var(&f.maxKey, "max-key", "largest key accepted")
	fl.Var(&f.maxValue, "max-value", "largest value accepted")
	fl.Var(&f.maxInput, "max-input", "unanswered input one connection may make the server buffer (a client held back by --max-pending-io, or sending faster than it is served); past it the connection gets an error and is closed; at least two --max-batch")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json (log/slog)")
	fl.DurationVar(&f.checkpointInterval, "checkpoint-interval", 5*time.Second, "time between checkpoints (also taken at shutdown, on POST /checkpoint and on RESP SAVE); 0 turns the periodic ones off")
	fl.DurationVar(&f.compactInterval, "compact-interval", 10*time.Second, "time between estimates of the log's dead share (compaction also runs on POST /compact); 0 turns automatic compaction off")
	fl.DurationVar(&f.activeExpireInterval, "active-expire-interval", 100*time.Millisecond, "time between two steps of active expiry (each looks at about 20 000 keys in memory and deletes the expired ones); 0 turns it off (expired keys then leave when written over, deleted or compacted)")
	fl.DurationVar(&f.admitInterval, "admit-interval", 200*time.Millisecond, "time between two looks of admission control at the p99.9 of the foreground's waits (each batch or command, from its turn's start to its answer), which sets the share of time a migration's move and its source's drop take: it rises while the p99.9 stays within 1.5x its level without background work and falls twice as fast otherwise, never under a tenth; 0 turns it off (the move then runs flat out, the drop at a fixed quarter)")
	fl.Float64Var(&f.compactThreshold, "compact-threshold", 0.5, "dead share of the log on the device, in (0, 1], at which a compaction of its oldest --compact-chunk starts; 0 turns automatic compaction off")
	fl.Var(&f.compactChunk, "compact-chunk", "how much of the oldest log one automatic compaction covers")
	fl.StringVar(&f.checkpointMode, "checkpoint-mode", "fold-over", "fold-over: a checkpoint flushes the in-memory log and makes it read-only (updates after it append); snapshot: it writes the in-memory log to a file under DIR/checkpoints and keeps it mutable")
	fl.BoolVar(&f.indexSnapshots, "index-snapshots", true, "checkpoints also write a snapshot of the index (when the log since the last one has grown to four times its size), so that recovery replays only the log after it")
	fl.StringVar(&f.cluster, "cluster", "", "name of the cluster to join (with --meta); empty: a standalone server owning every slot")
	fl.StringVar(&f.meta, "meta", "", "the metadata store's client endpoints, host:port,... (fleetkv meta members or any etcd cluster)")
	fl.StringVar(&f.serverID, "server-id", "", "this server's id in the cluster (default: the one recorded under DIR/cluster, or a new one)")
	fl.StringVar(&f.sharedTier, "shared-tier", "", "where sealed log segments go for other servers to read: dir:///path (a directory every server reads) or s3://bucket/prefix?endpoint=host:port[&secure=true] (credentials from $FLEETKV_S3_ACCESS_KEY/$FLEETKV_S3_SECRET_KEY or $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY); empty: none")
	fl.Var(&f.tierSegmentSize, "tier-segment-size", "bytes per segment in the shared tier (a power of two, at least 1MiB and --page-size; default 64MiB or --page-size)")
	fl.StringVar(&f.advertise, "advertise-host", "", "host other servers and clients reach this one at, when it listens on 0.0.0.0")
	fl.BoolVar(&f.planner, "planner", true, "campaign to be the cluster's planner, which carries out add-server and drain plans (one server at a time leads, elected in the metadata store)")
	fl.StringVar(&f.rebalance, "rebalance", "observe", "what the cluster's planner, while this server leads it, does about load: off, observe (log the moves it would make) or on (make them)")
	fl.DurationVar(&f.rebalanceWindow, "rebalance-window", 10*time.Second, "how long a server stays hot (above the mean + 1 standard deviation, 1.25x the mean and --rebalance-floor) before slots move off it")
	fl.DurationVar(&f.rebalanceCool, "rebalance-cooldown", 60*time.Second, "no rebalancing this long after any plan or migration ended (a slot a rebalance moved stays 5 minutes)")
	fl.Float64Var(&f.rebalanceFloor, "rebalance-floor", 1000, "operations a second under which no server is hot")
	fl.DurationVar(&f.metaTimeout, "meta-timeout", 2*time.Second, "bound on each call to the metadata store (the data path never waits for it)")
	fl.IntVar(&f.mutexFraction, "mutex-profile-fraction", 0, "sample 1 in N mutex contention events for /debug/pprof/mutex (0: off)")
	fl.IntVar(&f.blockRate, "block-profile-rate", 0, "sample blocking events lasting N ns or more for /debug/pprof/block (0: off)")
	return cmd
}

// config validates the flags and turns them into a server configuration.
func (f serverFlags) config() (server.Config, error) {
	if f.ioDepth < 0 || f.ioDepth > 32768 {
		return server.Config{}, fmt.Errorf("--io-depth %d: want 1..32768 (0: the engine's default)", f.ioDepth)
	}
	if f.maxPendingIO < 1 {
		return server.Config{}, fmt.Errorf("--max-pending-io %d: want at least 1", f.maxPendingIO)
	}
	if f.loops < 0 {
		return server.Config{}, fmt.Errorf("--loops %d: want 0 (one per CPU) or more", f.loops)
	}
	if f.migrationRate < 0 {
		return server.Config{}, fmt.Errorf("--migration-rate %d: want 0 (no cap) or more", f.migrationRate)
	}
	if f.maxSampled < 0 {
		return server.Config{}, fmt.Errorf("--migration-max-sampled %d: want 0 (none sampled) or more", f.maxSampled)
	}
	if f.maxSampledBytes > 1<<40 {
		return server.Config{}, fmt.Errorf("--migration-max-sampled-bytes %v: want at most 1TiB", &f.maxSampledBytes)
	}
	if f.maxHeld < 0 {
		return server.Config{}, fmt.Errorf("--migration-max-held %d: want 0 (none held) or more", f.maxHeld)
	}
	if !(f.mutable > 0 && f.mutable <= 1) {
		return server.Config{}, fmt.Errorf("--mutable-fraction %v: want a fraction in (0, 1]", f.mutable)
	}
	if f.indexBits < 4 || f.indexBits > 40 {
		return server.Config{}, fmt.Errorf("--index-bits %d: want 4..40", f.indexBits)
	}
	if f.maxKey == 0 || f.maxValue == 0 || f.maxBatch == 0 {
		return server.Config{}, errors.New("--max-key, --max-value and --max-batch must be positive")
	}
	if _, err := parseLevel(f.logLevel); err != nil {
		return server.Config{}, err
	}
	if f.checkpointInterval < 0 {
		return server.Config{}, errors.New("--checkpoint-interval must be 0 (off) or positive")
	}
	if f.activeExpireInterval < 0 {
		return server.Config{}, errors.New("--active-expire-interval must be 0 (off) or positive")
	}
	if f.admitInterval < 0 {
		return server.Config{}, errors.New("--admit-interval must be 0 (off) or positive")
	}
	if f.compactInterval < 0 || !(f.compactThreshold >= 0 && f.compactThreshold <= 1) || f.compactChunk < f.pageSize {
		return server.Config{}, errors.New("--compact-interval must be 0 (off) or positive, --compact-threshold in [0, 1] (0: off), --compact-chunk at least --page-size")
	}
	if f.checkpointMode != "fold-over" && f.checkpointMode != "snapshot" {
		return server.Config{}, fmt.Errorf("--checkpoint-mode %q: want fold-over or snapshot", f.checkpointMode)
	}
	if f.mutexFraction < 0 || f.blockRate < 0 {
		return server.Config{}, errors.New("--mutex-profile-fraction and --block-profile-rate must be 0 or more")
	}
	if f.logFormat != "text" && f.logFormat != "json" {
		return server.Config{}, fmt.Errorf("--log-format %q: want text or json", f.logFormat)
	}
	if f.io != "" && f.io != ssd.IOUring && f.io != ssd.IOPread {
		return server.Config{}, fmt.Errorf("--io %q: want uring or pread", f.io)
	}
	if ss := uint64(f.segmentSize); ss < 1<<20 || ss&(ss-1) != 0 {
		return server.Config{}, fmt.Errorf("--segment-size %v: want a power of two of at least 1MiB", formatSize(ss))
	}
	if f.segmentSize < f.pageSize {
		return server.Config{}, errors.New("--segment-size must be at least --page-size")
	}
	ps := uint64(f.pageSize)
	if ps == 0 || ps&(ps-1) != 0 {
		return server.Config{}, fmt.Errorf("--page-size %v is not a power of two", formatSize(ps))
	}
	if f.maxKey > 1<<32 || f.maxValue > 1<<32 || f.maxBatch > 1<<32 {
		return server.Config{}, errors.New("--max-key, --max-value and --max-batch must be at most 4GiB")
	}
	if f.maxInput > 1<<40 {
		return server.Config{}, errors.New("--max-input must be at most 1TiB")
	}
	return server.Config{
		Listen: f.listen, Admin: f.admin, Loops: f.loops, NoPin: !f.pin, NoReusePort: !f.reusePort,
		CheckpointInterval: checkpointInterval(f.checkpointInterval),
		CompactInterval:    checkpointInterval(f.compactInterval), CompactChunk: uint64(f.compactChunk),
		ActiveExpireInterval: checkpointInterval(f.activeExpireInterval),
		AdmitInterval:        checkpointInterval(f.admitInterval),
		CompactThreshold:     compactThreshold(f.compactThreshold), NoIndexSnapshots: !f.indexSnapshots,
		SnapshotCheckpoints: f.checkpointMode == "snapshot",
		AuthToken:           f.authToken, MaxParked: offIfZero(f.maxHeld), MaxSampled: offIfZero(f.maxSampled),
		MaxSampledBytes: offIfZero(int(f.maxSampledBytes)), RESP: f.resp, RequirePass: f.requirePass, MaxPendingIO: f.maxPendingIO,
		MaxInput: int(f.maxInput),
		Limits:   wire.Limits{MaxBatch: int(f.maxBatch), MaxKey: int(f.maxKey), MaxValue: int(f.maxValue)},
		Store: store.Config{IndexBits: f.indexBits, CopyReadsToTail: f.readCopy, Log: hlog.Config{
			PageBits: uint(bits.TrailingZeros64(ps)), MemoryBytes: uint64(f.memory), MutableFraction: f.mutable}},
	}, nil
}

func runServer(cmd *cobra.Command, f serverFlags) error {
	cfg, err := f.nodeConfig()
	if err != nil {
		return err
	}
	log := newLogger(cmd.ErrOrStderr(), f.logLevel, f.logFormat)
	cfg.Log = log
	runtime.SetMutexProfileFraction(f.mutexFraction)
	runtime.SetBlockProfileRate(f.blockRate)
	log.Info("configuration", configAttrs(cmd)...)
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	log.Info("data directory", "dir", f.dir, "version", server.Version, "cluster", f.cluster, "server_id", n.ID())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(ctx)
}

// nodeConfig validates the flags and turns them into a node configuration.
func (f serverFlags) nodeConfig() (node.Config, error) {
	scfg, err := f.config()
	if err != nil {
		return node.Config{}, err
	}
	if (f.cluster == "") != (f.meta == "") {
		return node.Config{}, errors.New("--cluster and --meta go together: a cluster member needs the metadata store")
	}
	if f.metaTimeout <= 0 {
		return node.Config{}, errors.New("--meta-timeout must be positive")
	}
	mode, err := cluster.ParseRebalanceMode(f.rebalance)
	if err != nil {
		return node.Config{}, fmt.Errorf("--rebalance: %w", err)
	}
	if f.rebalanceWindow <= 0 || f.rebalanceCool <= 0 || f.rebalanceFloor <= 0 {
		return node.Config{}, errors.New("--rebalance-window, --rebalance-cooldown and --rebalance-floor must be positive")
	}
	if ts := uint64(f.tierSegmentSize); ts != 0 && (ts < 1<<20 || ts&(ts-1) != 0 || ts < uint64(f.pageSize)) {
		return node.Config{}, fmt.Errorf("--tier-segment-size %v: want a power of two of at least 1MiB and --page-size", formatSize(ts))
	}
	if f.sharedTier != "" && !strings.HasPrefix(f.sharedTier, "dir://") && !strings.HasPrefix(f.sharedTier, "s3://") {
		return node.Config{}, fmt.Errorf("--shared-tier %q: want dir:///path or s3://bucket/prefix?endpoint=host:port", f.sharedTier)
	}
	return node.Config{Dir: f.dir, Server: scfg, Tier: node.TierConfig{URL: f.sharedTier, SegmentSize: uint64(f.tierSegmentSize)},
		Device: node.DeviceConfig{SegmentSize: uint64(f.segmentSize), IO: f.io, Depth: f.ioDepth},
		Cluster: node.ClusterConfig{Name: f.cluster, ServerID: cluster.ServerID(f.serverID), Meta: splitList(f.meta),
			AdvertiseHost: f.advertise, Timeout: f.metaTimeout, Failpoint: os.Getenv("FLEETKV_FAILPOINT"), MigrationRate: f.migrationRate,
			NoPlanner: !f.planner, Rebalance: cluster.RebalanceConfig{Mode: mode, Window: f.rebalanceWindow, Cooldown: f.rebalanceCool,
				Floor: f.rebalanceFloor}}}, nil
}

// newLogger returns the server's slog logger; level and format are valid.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	lv, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// configAttrs lists every flag's value, with secrets shown only as set or
// not, for the configuration line logged once at start.
func configAttrs(cmd *cobra.Command) []any {
	var attrs []any
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Name == "help" {
			return
		}
		v := fl.Value.String()
		if secretFlags[fl.Name] {
			v = map[bool]string{true: "(set)", false: "(not set)"}[v != ""]
		}
		attrs = append(attrs, fl.Name, v)
	})
	return attrs
}

var secretFlags = map[string]bool{"auth-token": true, "requirepass": true}

// compactThreshold maps the flag's 0 (off) to server.Off.
func compactThreshold(t float64) float64 {
	if t == 0 {
		return server.Off
	}
	return t
}

// offIfZero maps a count flag's 0 (off) to server.Off.
func offIfZero(n int) int {
	if n == 0 {
		return server.Off
	}
	return n
}

// checkpointInterval maps an interval flag's 0 (off) to server.Off.
func checkpointInterval(d time.Duration) time.Duration {
	if d == 0 {
		return server.Off
	}
	return d
}

func parseLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return level, nil
}
