// Command redisload drives a Redis Cluster (or fleetkv's RESP port in a
// cluster) with pipelined GETs through go-redis's ClusterClient, which
// follows MOVED and ASK and reloads the slot map when the cluster changes
// shape, and writes a timeline of completed GETs per interval. The
// benchmark scripts use it as the peer's load where redis-benchmark
// --cluster gives up (it exits when a node joins: "could not find node
// with ID ... in current configuration").
//
//	go run ./internal/redisload --addr 127.0.0.1:7000 --keys 1000000 --duration 30s --timeline out.csv
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "a node of the cluster, host:port")
	keys := flag.Int("keys", 1000000, "GET key:%012d for keys chosen uniformly in 0..keys-1 (redis-benchmark's -r names)")
	threads := flag.Int("threads", 4, "goroutines, each with one pipeline in flight")
	pipeline := flag.Int("pipeline", 16, "GETs per pipeline")
	duration := flag.Duration("duration", 30*time.Second, "run length")
	interval := flag.Duration("interval", 250*time.Millisecond, "timeline row length")
	timeline := flag.String("timeline", "", "write t_s,rps,errors rows here")
	flag.Parse()
	if err := run(*addr, *keys, *threads, *pipeline, *duration, *interval, *timeline); err != nil {
		fmt.Fprintln(os.Stderr, "redisload:", err)
		os.Exit(1)
	}
}

func run(addr string, keys, threads, pipeline int, duration, interval time.Duration, timeline string) error {
	if keys < 1 || threads < 1 || pipeline < 1 || interval <= 0 {
		return errors.New("--keys, --threads, --pipeline and --interval must be positive")
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, MaxRedirects: 16, PoolSize: threads * 2})
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	if err := cc.Ping(ctx).Err(); err != nil {
		return err
	}
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for ctx.Err() == nil {
				n, err := getBatch(ctx, cc, rng, keys, pipeline)
				ops.Add(int64(n))
				if err != nil && ctx.Err() == nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	rows := record(ctx, &ops, &errs, interval)
	wg.Wait()
	if timeline != "" {
		if err := os.WriteFile(timeline, rows, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("ops %d, errors %d", ops.Load(), errs.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf(" (first: %s)", e)
	}
	fmt.Println()
	return nil
}

// getBatch sends one pipeline of GETs and returns how many were answered
// (a missing key is an answer).
func getBatch(ctx context.Context, cc *redis.ClusterClient, rng *rand.Rand, keys, n int) (int, error) {
	p := cc.Pipeline()
	cmds := make([]*redis.StringCmd, n)
	for j := range cmds {
		cmds[j] = p.Get(ctx, fmt.Sprintf("key:%012d", rng.IntN(keys)))
	}
	_, err := p.Exec(ctx)
	done := 0
	for _, c := range cmds {
		if c.Err() == nil || errors.Is(c.Err(), redis.Nil) {
			done++
		}
	}
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return done, err
}

// record samples the counters every interval until ctx ends and returns
// the timeline as CSV.
func record(ctx context.Context, ops, errs *atomic.Int64, interval time.Duration) []byte {
	out := []byte("t_s,rps,errors\n")
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastOps, lastErrs int64
	for {
		select {
		case <-ctx.Done():
			return out
		case now := <-tick.C:
			o, e := ops.Load(), errs.Load()
			out = fmt.Appendf(out, "%.2f,%.0f,%d\n", now.Sub(start).Seconds(), float64(o-lastOps)/interval.Seconds(), e-lastErrs)
			lastOps, lastErrs = o, e
		}
	}
}
