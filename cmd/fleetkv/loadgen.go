package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetkv/fleetkv/loadgen"
)

func loadgenCmd() *cobra.Command {
	var (
		cfg       loadgen.Config
		servers   string
		jsonPath  string
		timeline  string
		batch     sizeFlag = 32 << 10
		keys, ops uint64
		valueSize sizeFlag = 8
		route     bool
	)
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Drive fleetkv servers with a YCSB workload and report ops/s and latency",
		Long: `Drive fleetkv servers with a YCSB workload through the native client.

Workloads: load (insert keys 0..N-1 once), ycsb-a (50% read, 50% upsert),
ycsb-b (95/5), ycsb-c (read only), ycsb-f (add to 8-byte counters).
A progress line per second goes to stderr, the report to stdout, with
--json the report as JSON to a file, and with --timeline a CSV row every
--timeline-every (ops/s, p50, p99, p99.9, errors) to a file, to plot what a
migration or a checkpoint does to the load (fleetkv loadgen plot draws it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Servers = splitList(servers)
			cfg.NoRoute = !route
			cfg.BatchBytes, cfg.Keys, cfg.Ops, cfg.ValueSize = int(batch), keys, ops, int(valueSize)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if timeline != "" {
				f, err := os.Create(timeline)
				if err != nil {
					return fmt.Errorf("--timeline: %w", err)
				}
				defer f.Close()
				w := bufio.NewWriter(f)
				defer w.Flush()
				cfg.Timeline = w
			}
			rep, err := loadgen.Run(ctx, cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			printReport(cmd, rep)
			if jsonPath != "" {
				b, _ := json.MarshalIndent(rep, "", "  ")
				if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
					return fmt.Errorf("--json: %w", err)
				}
			}
			if rep.Errors != 0 || rep.VerifyFailures != 0 {
				return fmt.Errorf("%d errors, %d verify failures; first: %s", rep.Errors, rep.VerifyFailures, rep.FirstProblem)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&servers, "servers", "127.0.0.1:7400", "comma-separated server addresses: any servers of the cluster (the slot map is fetched from the first that answers and operations are routed by it), or the one server")
	fl.BoolVar(&route, "route", true, "route operations by slot through the cluster's map (false: plain sessions to the one server given, the routing's baseline)")
	fl.StringVar(&cfg.Workload, "workload", "ycsb-b", "load, ycsb-a, ycsb-b, ycsb-c or ycsb-f")
	fl.StringVar(&cfg.Dist, "dist", "zipf", "key distribution: uniform or zipf (YCSB's scrambled Zipfian, theta 0.99)")
	fl.Uint64Var(&keys, "keys", 1_000_000, "number of keys")
	fl.Uint64Var(&cfg.KeyOffset, "key-offset", 0, "number of the first key (keys are OFFSET..OFFSET+N-1), to give concurrent runs disjoint keys")
	fl.Var(&valueSize, "value-size", "value size (at least 8 bytes; ycsb-f needs exactly 8)")
	fl.IntVar(&cfg.Threads, "threads", 1, "client threads (goroutines)")
	fl.IntVar(&cfg.Sessions, "sessions", 1, "sessions per thread and server")
	fl.Var(&batch, "batch-size", "batch size in bytes")
	fl.IntVar(&cfg.InFlight, "in-flight", 4, "batches in flight per session")
	fl.DurationVar(&cfg.Duration, "duration", 10*time.Second, "run length after the warm-up (not for load)")
	fl.Uint64Var(&ops, "ops", 0, "stop after this many measured operations (0: no limit)")
	fl.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up not counted in the report")
	fl.BoolVar(&cfg.Verify, "verify", false, "check every read against what the run wrote")
	fl.DurationVar(&cfg.TTL, "ttl", 0, "give every value an upsert writes this expiry (0: none); keys not written again within it expire (not with --verify)")
	fl.BoolVar(&cfg.VerifyLoaded, "verify-loaded", false, "with --verify, also fail a read that finds absent a key the run did not write (a load run wrote every key)")
	fl.BoolVar(&cfg.ClosedLoop, "closed-loop", false, "one operation in flight per thread: each waits for the previous one's result and is timed from its send (as redis-benchmark -P 1 -c 1); --in-flight and --batch-size do not apply")
	fl.StringVar(&jsonPath, "json", "", "write the report as JSON to this file")
	fl.StringVar(&timeline, "timeline", "", "write a CSV timeline to this file: t_s,ops_per_s,p50_us,p99_us,p999_us,errors")
	fl.DurationVar(&cfg.TimelineEvery, "timeline-every", 100*time.Millisecond, "the timeline's step")
	fl.StringVar(&cfg.AuthToken, "auth-token", os.Getenv("FLEETKV_AUTH_TOKEN"), "session token (default $FLEETKV_AUTH_TOKEN)")
	fl.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	cmd.AddCommand(plotCmd())
	fl.StringVar(&cfg.Transport, "transport", "std", "client transport: std (Go's net package), netpoll (cloudwego/netpoll) or blocking (Go's net package, waiting for responses in read(2) on the session's OS thread: lower latency with one operation in flight, a thread per session)")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func printReport(cmd *cobra.Command, r loadgen.Report) {
	inFlight := fmt.Sprintf("%d-byte batches, %d in flight", r.BatchBytes, r.InFlight)
	if r.ClosedLoop {
		inFlight = "closed loop (one operation in flight per thread)"
	}
	fmt.Fprintf(cmd.OutOrStdout(), `workload   %s (%s keys, %d of them, %d-byte values)
clients    %d threads x %d sessions, %s, %s transport
ops        %d in %.2fs = %.0f ops/s
latency    p50 %.0fus  p99 %.0fus  p99.9 %.0fus  max %.0fus
errors     %d (verify failures %d)
`, r.Workload, r.Dist, r.Keys, r.ValueSize, r.Threads, r.Sessions, inFlight, r.Transport,
		r.Ops, r.Seconds, r.OpsPerSec, r.P50us, r.P99us, r.P999us, r.MaxUs, r.Errors, r.VerifyFailures)
	if r.Routed {
		fmt.Fprintf(cmd.OutOrStdout(), "routing    by slot: %d map fetches, %d operations re-routed, %d VIEW_CHANGED\n",
			r.MapFetches, r.Rerouted, r.ViewChanges)
	}
}
