package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
)

// crashClient is the client id crashes are recorded under; finalClient
// the final reads'.
const (
	crashClient = 900
	finalClient = 901
)

// clientStats count what the clients did.
type clientStats struct {
	ops, failed, unknown, marks, markFailures, redials int
}

func (a *clientStats) add(b clientStats) {
	a.ops += b.ops
	a.failed += b.failed
	a.unknown += b.unknown
	a.marks += b.marks
	a.markFailures += b.markFailures
	a.redials += b.redials
}

// natives returns the servers' native addresses.
func (h *harness) natives() []string {
	var out []string
	for _, p := range h.local.Servers {
		out = append(out, p.Native)
	}
	return out
}

// keys returns the keys the clients share: registers r0, r1, ... (get,
// set, delete) and counters c0, c1, ... (get, increment, delete).
func keys() []string {
	var out []string
	for i := range *keysFlag {
		kind := "r"
		if i%2 == 1 {
			kind = "c"
		}
		out = append(out, fmt.Sprintf("%s%d", kind, i/2))
	}
	return out
}

// startClients runs the clients until ctx ends; their summed counts come
// on the channel.
func (h *harness) startClients(ctx context.Context, seed uint64) <-chan clientStats {
	out := make(chan clientStats, 1)
	var wg sync.WaitGroup
	stats := make([]clientStats, *clientsFlag)
	for i := range stats {
		wg.Go(func() { stats[i] = h.runClient(ctx, i, rand.New(rand.NewPCG(seed, uint64(100+i)))) })
	}
	go func() {
		wg.Wait()
		var sum clientStats
		for _, s := range stats {
			sum.add(s)
		}
		out <- sum
	}()
	return out
}

// written is an acknowledged write no durability mark covers yet.
type written struct {
	id  int
	ret int64
}

// runClient runs one client: one operation at a time on its routed
// Cluster, and every 20 a WaitDurable whose success marks the writes
// acknowledged since the last. Any error makes the operation's outcome
// unknown and the Cluster is dialled again (the writes it acknowledged get
// no mark: their connections' commit points may be gone).
func (h *harness) runClient(ctx context.Context, id int, rng *rand.Rand) clientStats {
	var st clientStats
	ks := keys()
	cfg := client.Config{Addr: h.natives()[id%len(serverNodes)], Seeds: h.natives(), DialTimeout: time.Second,
		RerouteTimeout: 3 * time.Second}
	var c *client.Cluster
	unmarked := map[string]written{}
	drop := func() {
		if c != nil {
			go c.Close() // it may wait on a cut connection until its deadline
		}
		c = nil
		clear(unmarked)
		st.redials++
	}
	for ctx.Err() == nil {
		if c == nil {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var err error
			c, err = client.DialCluster(dctx, cfg)
			cancel()
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		in := h.pick(rng, ks)
		call := h.hist.Now()
		out, sent, err := do(ctx, c, in)
		ret := h.hist.Now()
		st.ops++
		if err != nil {
			if in.Kind != Get && sent { // a read that failed says nothing
				h.hist.Add(id, in, call, Output{Unknown: true}, ret)
				st.unknown++
			} else {
				st.failed++
			}
			drop()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		h.hist.Add(id, in, call, out, ret)
		if in.Kind != Get {
			unmarked[in.Key] = written{in.ID, ret}
		}
		if st.ops%20 == 0 {
			h.mark(ctx, id, c, unmarked, &st)
		}
		time.Sleep(time.Millisecond)
	}
	if c != nil {
		go c.Close()
	}
	return st
}

// mark waits until c's operations are durable and records a mark for the
// last write of each key since the previous mark.
func (h *harness) mark(ctx context.Context, id int, c *client.Cluster, unmarked map[string]written, st *clientStats) {
	// A mark's call is after its write's return, strictly: porcupine
	// orders a call before a return at the same time, and a mark it may
	// place before its write constrains nothing (durable).
	call := h.hist.Now()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := c.WaitDurable(wctx)
	cancel()
	if err != nil {
		st.markFailures++
		clear(unmarked)
		return
	}
	now := h.hist.Now()
	for k, w := range unmarked {
		h.hist.Add(id, Input{Kind: Durable, Key: k, Ref: w.id}, max(call, w.ret+1), Output{}, max(now, w.ret+1))
		st.marks++
	}
	clear(unmarked)
}

// pick draws an operation: 40 % reads, 45 % writes (a register's set, a
// counter's increment), 15 % deletes.
func (h *harness) pick(rng *rand.Rand, ks []string) Input {
	k := ks[rng.IntN(len(ks))]
	switch p := rng.IntN(100); {
	case p < 40:
		return Input{Kind: Get, Key: k}
	case p < 85 && k[0] == 'r':
		id := h.hist.NextID()
		return Input{Kind: Set, Key: k, Val: fmt.Sprintf("v%d", id), ID: id}
	case p < 85:
		return Input{Kind: Incr, Key: k, Delta: 1 + rng.Int64N(9), ID: h.hist.NextID()}
	default:
		return Input{Kind: Del, Key: k, ID: h.hist.NextID()}
	}
}

// do runs one operation on c within 2 s. sent is false when it failed
// before it was queued (no session could be dialled): only then is it
// known not to have been applied; any later failure may follow its
// execution (an ERROR batch fails the batches in flight, a dropped
// Cluster's Close may still send its re-routed operations).
func do(ctx context.Context, c *client.Cluster, in Input) (out Output, sent bool, err error) {
	var opErr error
	cb := func(r client.Result) {
		if r.Err != nil {
			opErr = r.Err
			return
		}
		out.Found = r.Status == client.OK
		switch in.Kind {
		case Get:
			out.Val = string(r.Value)
		case Incr:
			if len(r.Value) != 8 {
				opErr = fmt.Errorf("an increment answered %d bytes", len(r.Value))
				return
			}
			out.N = int64(binary.LittleEndian.Uint64(r.Value))
		}
	}
	key := []byte(in.Key)
	switch in.Kind {
	case Get:
		err = c.Read(key, cb)
	case Set:
		err = c.Upsert(key, []byte(in.Val), cb)
	case Del:
		err = c.Delete(key, cb)
	case Incr:
		err = c.Add(key, in.Delta, cb)
	}
	if err != nil {
		return out, false, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return out, true, errors.Join(c.WaitContext(wctx), opErr)
}

// finalReads reads every key once the cluster is quiet (each retried for
// up to 20 s): the history's last word on each.
func (h *harness) finalReads() {
	t := h.t
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, k := range keys() {
		for {
			c, err := client.DialCluster(ctx, client.Config{Addr: h.natives()[0], Seeds: h.natives()})
			if err == nil {
				in := Input{Kind: Get, Key: k}
				call := h.hist.Now()
				var out Output
				out, _, err = do(ctx, c, in)
				if err == nil {
					h.hist.Add(finalClient, in, call, out, h.hist.Now())
				}
				c.Close()
			}
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("final read of %s: %v", k, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// checkServing checks, for up to 30 s until it holds, that every slot is
// served by exactly one server (as each server's /stats says), its owner
// in the stored map.
func (h *harness) checkServing() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := h.servingOnce()
		if err == nil {
			h.logf("every slot served by exactly one server, its owner in the map")
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// servingOnce is one look of checkServing.
func (h *harness) servingOnce() error {
	var by [cluster.Slots]string
	for _, p := range h.local.Servers {
		var st struct {
			Cluster struct {
				Ranges string `json:"serving_ranges"`
			} `json:"cluster"`
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := h.admin.GetJSON(ctx, "http://"+p.Admin+"/stats", &st)
		cancel()
		if err != nil {
			return err
		}
		if st.Cluster.Ranges == "" {
			continue
		}
		rs, err := cluster.ParseRanges(st.Cluster.Ranges)
		if err != nil {
			return fmt.Errorf("%s serves %q: %v", p.Name, st.Cluster.Ranges, err)
		}
		for _, r := range rs {
			for s := int(r.First); s <= int(r.Last); s++ {
				if by[s] != "" {
					return fmt.Errorf("slot %d served by %s and %s", s, by[s], p.Name)
				}
				by[s] = p.Name
			}
		}
	}
	for s, who := range by {
		if who == "" {
			return fmt.Errorf("slot %d served by no server", s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := h.md.Load(ctx)
	if err != nil {
		return err
	}
	for _, a := range st.Map.Ranges {
		for s := int(a.First); s <= int(a.Last); s++ {
			if by[s] != string(a.Owner) {
				return fmt.Errorf("slot %d served by %s, owned by %s in the map", s, by[s], a.Owner)
			}
		}
	}
	return nil
}

// checkHistory checks the history with porcupine; a history that is not
// linearizable is drawn to an HTML file kept for the reader.
func (h *harness) checkHistory(clients clientStats) {
	t := h.t
	ops := h.hist.Operations()
	answered := clients.ops - clients.unknown - clients.failed
	h.logf("history: %d operations (%d clients' ops: %d answered, %d failed (reads, or before they were sent), %d unknown outcomes; %d durability marks, %d failed waits, %d redials), %d server crashes, %d faults",
		len(ops), clients.ops, answered, clients.failed, clients.unknown, clients.marks, clients.markFailures, clients.redials, h.crashes, h.faults)
	if answered < 100*len(keys()) {
		t.Fatalf("only %d operations answered: too few to check", answered)
	}
	start := time.Now()
	model := Model()
	res, info := porcupine.CheckOperationsVerbose(model, ops, 5*time.Minute)
	h.logf("porcupine: %s in %v", res, time.Since(start).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		dir, err := os.MkdirTemp("", "fleetkv-chaos-")
		if err == nil {
			path := filepath.Join(dir, "history.html")
			if err = porcupine.VisualizePath(model, info, path); err == nil {
				t.Fatalf("the history is not linearizable: see %s", path)
			}
		}
		t.Fatalf("the history is not linearizable (drawing it: %v)", err)
	default:
		t.Fatal("porcupine could not decide within 5 minutes")
	}
}
