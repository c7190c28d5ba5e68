package loadgen

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Workload mixes: percent of reads, upserts and read-modify-writes (ADD).
var workloads = map[string][3]int{
	"ycsb-a": {50, 50, 0},
	"ycsb-b": {95, 5, 0},
	"ycsb-c": {100, 0, 0},
	"ycsb-f": {0, 0, 100},
	"load":   {0, 100, 0},
}

// Config describes one load run.
type Config struct {
	Servers    []string      // host:port of servers to fetch the slot map from (any of a cluster's, or the one server)
	AuthToken  string        // sent with every session's OPEN
	Workload   string        // load, ycsb-a, ycsb-b, ycsb-c or ycsb-f
	Dist       string        // uniform or zipf
	Keys       uint64        // key count
	KeyOffset  uint64        // the first key's number: keys are KeyOffset..KeyOffset+Keys-1
	ValueSize  int           // bytes per value (>= 8)
	Threads    int           // client goroutines; default 1
	Sessions   int           // sessions per thread and server; default 1
	BatchBytes int           // default 32 KiB
	InFlight   int           // batches in flight per session; default 4
	Duration   time.Duration // run length, after Warmup (not for load)
	Ops        uint64        // stop after this many measured operations (0: no limit)
	Warmup     time.Duration // operations during the warm-up are not measured
	Verify     bool          // check every read against what the run wrote
	// VerifyLoaded, with Verify, also fails a read that finds absent a key
	// the run did not write: an earlier load wrote every key.
	VerifyLoaded bool
	// Timeline, when set, receives a CSV row every TimelineEvery (default
	// 100 ms): seconds since the start, ops/s, p50, p99 and p99.9 in µs of
	// the operations completed in it, and the errors in it.
	Timeline      io.Writer
	TimelineEvery time.Duration
	Seed          uint64
	Transport     string // client transport: std (default), netpoll or blocking
	// NoRoute sends through plain sessions to Servers[0] instead of
	// routed Clusters (the baseline of the routing's cost).
	NoRoute bool
	// ClosedLoop issues an operation only once the thread's previous one
	// has its result: one operation in flight per thread, each timed from
	// just before it is sent (redis-benchmark -P 1 -c 1's measure).
	// InFlight and BatchBytes then do not matter.
	ClosedLoop bool
	// TTL, when positive, gives every value an upsert writes an expiry TTL
	// after it is sent (native UPSERT_EXPIRING): keys not written again
	// within TTL expire.
	TTL time.Duration
}

func (c *Config) fill() error {
	if c.Threads == 0 {
		c.Threads = 1
	}
	if c.Sessions == 0 {
		c.Sessions = 1
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 32 << 10
	}
	if c.TimelineEvery <= 0 {
		c.TimelineEvery = 100 * time.Millisecond
	}
	if c.InFlight == 0 {
		c.InFlight = 4
	}
	if c.ValueSize == 0 {
		c.ValueSize = 8
	}
	if c.Transport == "" {
		c.Transport = "std"
	}
	if c.Dist == "" {
		c.Dist = "uniform"
	}
	if c.Workload == "load" {
		c.Warmup = 0 // every insert counts: the load is over when the keys are in
	}
	if _, ok := workloads[c.Workload]; !ok {
		return fmt.Errorf("loadgen: unknown workload %q (want load, ycsb-a, ycsb-b, ycsb-c or ycsb-f)", c.Workload)
	}
	switch {
	case len(c.Servers) == 0:
		return errors.New("loadgen: no server address")
	case c.Keys == 0:
		return errors.New("loadgen: key count must be positive")
	case c.ValueSize < 8:
		return fmt.Errorf("loadgen: value size %d below 8 bytes", c.ValueSize)
	case c.Threads < 1 || c.Sessions < 1 || c.InFlight < 1:
		return errors.New("loadgen: threads, sessions and in-flight must be positive")
	case c.BatchBytes < 64:
		return fmt.Errorf("loadgen: batch size %d bytes: at least 64 (a header and one operation)", c.BatchBytes)
	case c.Workload != "load" && c.Duration <= 0 && c.Ops == 0:
		return errors.New("loadgen: give a duration or an operation count")
	case c.TTL < 0:
		return errors.New("loadgen: a negative TTL")
	case c.TTL > 0 && c.Verify:
		return errors.New("loadgen: --verify cannot judge reads of keys that may have expired: drop --ttl or --verify")
	case c.Workload == "ycsb-f" && c.ValueSize != 8:
		return errors.New("loadgen: ycsb-f adds to 8-byte integers: use --value-size 8 (and load with it)")
	case c.NoRoute && len(c.Servers) > 1:
		return errors.New("loadgen: without routing, give one server")
	case c.Verify && c.Keys < uint64(c.Threads*c.Sessions):
		return errors.New("loadgen: verify needs at least one key per session")
	}
	return nil
}
