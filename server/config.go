package server

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetkv/fleetkv/checkpoint"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// Config configures a Server. The zero value of every field but Listen
// means its default.
type Config struct {
	// Listen is the data address, host:port (port 0 picks a free one).
	Listen string
	// Admin is the admin HTTP address; empty turns it off.
	Admin string
	// Loops is the number of event loops. Default: one per CPU.
	Loops int
	// NoPin leaves loop threads unpinned (they are pinned to cores by
	// default).
	NoPin bool
	// NoReusePort gives all loops one listener with round-robin hand-off
	// instead of one SO_REUSEPORT listener per loop.
	NoReusePort bool
	// AuthToken, when set, must be presented by every session's OPEN.
	AuthToken string
	// RESP is the address of the Redis-protocol listener, served by the
	// same loops; empty turns it off.
	RESP string
	// RequirePass, when set, must be given with AUTH (or HELLO's AUTH) on
	// every RESP connection before other commands.
	RequirePass string
	// Limits bound batches, keys and values. Default wire.DefaultLimits.
	Limits wire.Limits
	// MaxResponse bounds the response bytes one batch may produce; results
	// past it are answered with a TOO_LARGE error. Default 64 MiB.
	MaxResponse int
	// MaxInput bounds the unanswered input one connection may make the
	// server buffer (a native client held back by MaxPendingIO, or sending
	// faster than its turns run; a RESP client likewise, as Redis's
	// client-query-buffer-limit): past it the connection gets an error and
	// is closed. At least two of the largest batches. Default 256 MiB.
	MaxInput int
	// MaxPendingIO bounds each loop's operations waiting for the device:
	// at the bound the loop stops reading new batches from its connections
	// until completions bring it below. Default 4096.
	MaxPendingIO int
	// Store configures the store the server opens.
	Store store.Config
	// Recovered, when set, runs once the store is open (recovered, when
	// there was a checkpoint) and before the server serves: what the store
	// must hold before any operation goes in there (node installs its
	// indirection tables).
	Recovered func(*store.Store) error
	// Checkpoints, when set, is where the server records checkpoints: at
	// start it recovers the newest one (store.Recover over Store.Log.Device,
	// which must then hold that log), it takes one every CheckpointInterval
	// and when it shuts down. Nil: no durability.
	Checkpoints *checkpoint.Dir
	// CheckpointInterval is the time between periodic checkpoints. Default
	// 5 s; Off: only on demand and at shutdown.
	CheckpointInterval time.Duration
	// CompactInterval is the time between garbage estimates. Default 10 s;
	// Off: compaction only on demand.
	CompactInterval time.Duration
	// CompactThreshold is the dead share of the log on the device at which
	// a compaction starts. Default 0.5; Off: only on demand.
	CompactThreshold float64
	// CompactChunk is how many bytes of the oldest log one automatic
	// compaction covers. Default 1 GiB.
	CompactChunk uint64
	// ActiveExpireInterval is the time between two steps of active expiry
	// (expiry.go). Default 100 ms; Off: expired keys leave only when read
	// over, deleted, or compacted.
	ActiveExpireInterval time.Duration
	// AdmitInterval is how often the server measures the foreground's
	// p99.9 (the wall time of the loops' turns) and sets the share of time
	// background work may take (Server.Background, admit.go). Default
	// 200 ms; Off: no control, the share stays 1.
	AdmitInterval time.Duration
	// ActiveExpireKeys is about how many keys one step of active expiry
	// looks at. Default 20 000.
	ActiveExpireKeys int
	// NoIndexSnapshots turns off the index snapshots checkpoints take (when
	// the log since the last one outgrows the index), so that recovery
	// always replays, and verifies, the whole log from its begin.
	NoIndexSnapshots bool
	// SnapshotCheckpoints makes the periodic and requested checkpoints log
	// snapshots (the in-memory log is written to a file under the
	// checkpoint directory, and stays mutable) instead of fold-overs (it is
	// flushed to the log and made read-only). The one at shutdown is a
	// fold-over either way: nothing is updated after it.
	SnapshotCheckpoints bool
	// ServerID is the server's id in its cluster ("" outside any).
	ServerID cluster.ServerID
	// Routing is what the loops route by from the start (a cluster
	// member's persisted routing); nil: every slot, view 1.
	Routing *cluster.Routing
	// MaxParked bounds the reads each loop parks on a migration's target
	// until their keys arrive (parking.go); more are refused NOT_OWNER and
	// the client retries them. Default 65536; negative: no read is parked.
	MaxParked int
	// MaxSampled bounds the keys each loop samples for a migration's
	// source (sampling.go). Default DefaultMaxSampled; negative: none.
	MaxSampled int
	// MaxSampledBytes bounds the bytes of the keys each loop samples for a
	// migration's source. Default DefaultMaxSampledBytes; negative: none.
	MaxSampledBytes int
	// OnParked, when set, is told of a key of migration id's slots that
	// the target may not hold yet: the first read a loop parks on it
	// (parking.go), or an operation refused for it (a RESP read, one that
	// decides from the value: gateway.go's fetchMissing), so that the node
	// fetches the key's record from the source and a retry finds it. It
	// runs on a loop: it must not block, and key is valid only during the
	// call.
	OnParked func(id cluster.MigrationID, key []byte)
	// Progress, when set, says how far the node's running migration tasks
	// got; the admin listener serves it as JSON at /cluster/migrations.
	Progress func() any
	// AdminRoutes, when set, gives more routes for the admin listener
	// (ServeMux patterns to handlers; the node's dashboard). It is called
	// once, with the server, before the listener serves; the handlers may
	// run before Start returns.
	AdminRoutes func(s *Server) map[string]http.Handler
	// Collectors are more metrics for /metrics (the node's: its
	// planner's decisions).
	Collectors []prometheus.Collector
	// Incarnation identifies this run of the server among its runs on the
	// same data (a boot counter): MIGRATOR operations answer it.
	Incarnation uint64
	// OnMigrator, when set, takes the message of every MIGRATOR operation
	// with a value (a peer's migrator's, cluster.Message in JSON). It runs
	// on a loop: it must not block, and b is valid only during the call.
	OnMigrator func(b []byte)
}

// Off turns off what a field whose zero value means its default would do
// (CheckpointInterval, CompactInterval, CompactThreshold,
// ActiveExpireInterval, AdmitInterval): any negative
// value does. Command-line flags say off with 0, and the flag parsing maps
// that to Off (fleetkv server --help).
const Off = -1

const defaultMaxResponse = 64 << 20

// DefaultMaxSampled is Config.MaxSampled's default. Every key sampled is
// sent to the target when it takes the slots over; a read of a key not
// sent parks there until the node fetches the key from the source. In
// bench-elastic (1 M keys, YCSB-B Zipf), 65 536 left 158-191 K reads
// parked on the added server, and 262 144 about half that, for 0.18-0.32 s
// of sending instead of 0.12-0.36 s (BENCHMARKS.md, "Hot keys sampled
// four times as deep"). Each costs a copy of its key in the loop until
// the migration's hand-over.
const DefaultMaxSampled = 262144

// DefaultMaxSampledBytes is Config.MaxSampledBytes' default: the keys of
// DefaultMaxSampled at 64 bytes each. Without it, keys of the largest size
// (wire.DefaultLimits.MaxKey, 64 KiB) would let a loop hold 16 GiB of
// copies for one migration.
const DefaultMaxSampledBytes = 16 << 20

// defaultMaxInput is Config.MaxInput's default: room for a RESP command of
// 15 bulks of the default largest size.
const defaultMaxInput = 256 << 20

func (c *Config) fill() error {
	if c.Listen == "" {
		return errors.New("server: no listen address")
	}
	if c.Loops == 0 {
		c.Loops = runtime.NumCPU()
	}
	if c.Limits == (wire.Limits{}) {
		c.Limits = wire.DefaultLimits
	}
	if c.MaxInput == 0 {
		c.MaxInput = defaultMaxInput
	}
	if c.MaxResponse == 0 {
		c.MaxResponse = defaultMaxResponse
	}
	if c.MaxPendingIO == 0 {
		c.MaxPendingIO = 4096
	}
	if c.MaxParked == 0 {
		c.MaxParked = 65536
	}
	if c.MaxSampled == 0 {
		c.MaxSampled = DefaultMaxSampled
	}
	if c.MaxSampledBytes == 0 {
		c.MaxSampledBytes = DefaultMaxSampledBytes
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 5 * time.Second
	}
	if c.CompactInterval == 0 {
		c.CompactInterval = 10 * time.Second
	}
	if c.CompactThreshold == 0 {
		c.CompactThreshold = 0.5
	}
	if c.CompactChunk == 0 {
		c.CompactChunk = 1 << 30
	}
	if c.ActiveExpireInterval == 0 {
		c.ActiveExpireInterval = 100 * time.Millisecond
	}
	if c.AdmitInterval == 0 {
		c.AdmitInterval = 200 * time.Millisecond
	}
	if c.ActiveExpireKeys <= 0 {
		c.ActiveExpireKeys = 20000
	}
	switch {
	case c.Loops < 1 || c.Loops > 1024:
		return fmt.Errorf("server: %d loops outside 1..1024", c.Loops)
	case c.Limits.MaxBatch < 1 || c.Limits.MaxKey < 1 || c.Limits.MaxValue < 0:
		return fmt.Errorf("server: limits %+v must be positive", c.Limits)
	case c.MaxPendingIO < 1:
		return fmt.Errorf("server: max pending I/O %d must be positive", c.MaxPendingIO)
	case c.CompactThreshold > 1:
		return fmt.Errorf("server: compaction threshold %v above 1", c.CompactThreshold)
	case c.MaxInput < 2*(wire.HeaderSize+c.Limits.MaxBatch):
		return fmt.Errorf("server: max input %d bytes: at least two batches of %d", c.MaxInput, c.Limits.MaxBatch)
	case c.MaxResponse < wire.HeaderSize:
		return fmt.Errorf("server: max response %d too small", c.MaxResponse)
	}
	if c.Store.MaxKeyLen == 0 || c.Store.MaxKeyLen > c.Limits.MaxKey {
		c.Store.MaxKeyLen = c.Limits.MaxKey
	}
	return nil
}
