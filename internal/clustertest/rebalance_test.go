package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
)

// hotLoad runs reads and writes of keys (uniformly chosen) on threads
// routed clients until stopped; it returns how many operations ran and
// the first error.
func hotLoad(t *testing.T, addr string, keys [][]byte, threads int) (stop func() (int64, error)) {
	ctx, cancel := context.WithCancel(context.Background())
	var ops atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range threads {
		c, err := client.New(client.Config{Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			for ctx.Err() == nil {
				k := keys[rng.IntN(len(keys))]
				var err error
				if rng.IntN(10) == 0 {
					err = c.Set(ctx, k, k)
				} else {
					var ok bool
					var v []byte
					v, ok, err = c.Get(ctx, k)
					if err == nil && (!ok || string(v) != string(k)) {
						err = fmt.Errorf("%s read %q, %v", k, v, ok)
					}
				}
				if err != nil && ctx.Err() == nil {
					firstErr.CompareAndSwap(nil, err)
				}
				ops.Add(1)
			}
		}()
	}
	return func() (int64, error) {
		cancel()
		wg.Wait()
		err, _ := firstErr.Load().(error)
		return ops.Load(), err
	}
}

// TestHotSpotRebalances: three servers with --rebalance on (short window
// and cool-down); a load whose keys all hash to 64 of s1's slots makes s1
// hot. Within 60 s the planner, on its own, moves slots until the busiest
// server's reported load is under 1.5× the mean; no slot moves twice; the
// load sees no error and no wrong value.
func TestHotSpotRebalances(t *testing.T) {
	tc := startCluster(t, 1, 3, "--rebalance", "on", "--rebalance-window", "2s", "--rebalance-cooldown", "3s",
		"--rebalance-floor", "100")
	ctx := context.Background()
	var keys [][]byte
	for slot := uint16(100); slot < 164; slot++ { // s1 owns 0-5460
		keys = append(keys, keysOfSlot(slot, 8)...)
	}
	c, err := client.New(client.Config{Addr: tc.Servers[0].Native})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := c.Set(ctx, k, k); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	stop := hotLoad(t, tc.Servers[1].Native, keys, 3)
	start := time.Now()
	balanced := false
	for !balanced && time.Since(start) < 60*time.Second {
		time.Sleep(500 * time.Millisecond)
		st, err := loadState(tc)
		if err != nil || len(st.Loads) < 3 {
			continue
		}
		var sum, top float64
		for _, l := range st.Loads {
			sum += l.OpsPerSec
			top = max(top, l.OpsPerSec)
		}
		mean := sum / float64(len(st.Loads))
		balanced = mean > 0 && top < 1.5*mean && planCount(st) > 0
		t.Logf("%5.1fs busiest %.0f ops/s, mean %.0f (%.2fx), %d rebalance plans", time.Since(start).Seconds(), top, mean, top/max(mean, 1), planCount(st))
	}
	ops, err := stop()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !balanced {
		t.Fatalf("not balanced within 60 s (%d ops)", ops)
	}
	st, err := loadState(tc)
	if err != nil {
		t.Fatal(err)
	}
	var moved cluster.SlotSet
	for _, p := range st.Plans {
		if p.Kind != cluster.PlanRebalance {
			t.Fatalf("a plan of kind %s", p.Kind)
		}
		for _, s := range p.Steps {
			for _, r := range s.Ranges {
				for x := int(r.First); x <= int(r.Last); x++ {
					if moved.Has(uint16(x)) {
						t.Fatalf("slot %d moved twice: %+v", x, st.Plans)
					}
				}
				moved.Add(r)
			}
		}
	}
	t.Logf("balanced after %.1f s, %d ops; plans: %d", time.Since(start).Seconds(), ops, len(st.Plans))
}

func planCount(st cluster.State) int {
	n := 0
	for _, p := range st.Plans {
		if p.Kind == cluster.PlanRebalance && p.Ended && p.Reason == "" {
			n++
		}
	}
	return n
}
