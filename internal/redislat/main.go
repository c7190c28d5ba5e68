// Command redislat measures the latency of reads over one server's RESP
// port with go-redis: MGETs of --mget keys sent one after another, or GETs
// sent one at a time by each of --threads goroutines (a queue depth of
// --threads). Keys are key:%012d chosen uniformly in 0..keys-1, the names
// redis-benchmark -r uses. It prints the p50, p99 and max in microseconds.
// scripts/bench-resp-cold.sh compares an MGET of cold keys with a single
// cold read at queue depth 32 this way.
//
//	go run ./internal/redislat --addr 127.0.0.1:6379 --mget 500 --count 100
//	go run ./internal/redislat --addr 127.0.0.1:6379 --threads 32 --count 20000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "the server's RESP address, host:port")
	keys := flag.Int("keys", 1000000, "keys are key:%012d for numbers chosen uniformly in 0..keys-1")
	mget := flag.Int("mget", 0, "keys per MGET; 0 sends single GETs")
	threads := flag.Int("threads", 1, "goroutines, each with one request in flight")
	count := flag.Int("count", 1000, "requests in all (MGETs or GETs)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if err := run(*addr, *keys, *mget, *threads, *count, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "redislat:", err)
		os.Exit(1)
	}
}

func run(addr string, keys, mget, threads, count int, seed uint64) error {
	if keys < 1 || mget < 0 || threads < 1 || count < 1 {
		return errors.New("--keys, --threads and --count must be positive, --mget not negative")
	}
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: threads, ReadTimeout: 10 * time.Second})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		return err
	}
	h := hdrhistogram.New(1, 60_000_000, 3)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(t)))
			local := hdrhistogram.New(1, 60_000_000, 3)
			var err error
			for i := t; i < count && err == nil; i += threads {
				var us int64
				us, err = request(ctx, c, rng, keys, mget)
				_ = local.RecordValue(us)
			}
			mu.Lock()
			defer mu.Unlock()
			h.Merge(local)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("requests %d p50_us %d p99_us %d max_us %d\n", h.TotalCount(), h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.Max())
	return nil
}

// request sends one MGET of n keys (one GET when n is 0) and returns its
// latency in microseconds. A missing key is an answer, not an error.
func request(ctx context.Context, c *redis.Client, rng *rand.Rand, keys, n int) (int64, error) {
	if n == 0 {
		k := fmt.Sprintf("key:%012d", rng.IntN(keys))
		start := time.Now()
		err := c.Get(ctx, k).Err()
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		return time.Since(start).Microseconds(), err
	}
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("key:%012d", rng.IntN(keys))
	}
	start := time.Now()
	vs, err := c.MGet(ctx, ks...).Result()
	us := time.Since(start).Microseconds()
	if err == nil && len(vs) != n {
		err = fmt.Errorf("MGET of %d keys answered %d values", n, len(vs))
	}
	return us, err
}
