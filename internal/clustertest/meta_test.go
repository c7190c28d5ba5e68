package clustertest

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/clusterctl"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/loadgen"
)

const loadKeys = 20000

// load inserts the load generator's keys through the first server.
func load(t *testing.T, tc *testCluster) {
	t.Helper()
	rep, err := loadgen.Run(context.Background(), loadgen.Config{Servers: []string{tc.Servers[0].Native}, Workload: "load",
		Keys: loadKeys, ValueSize: 16, Verify: true, Seed: 1}, nil)
	if err != nil || rep.Errors != 0 {
		t.Fatalf("load: %+v %v", rep, err)
	}
}

// ycsb runs a verified YCSB-B Zipf load for d through the routed client.
func ycsb(tc *testCluster, d time.Duration) (loadgen.Report, error) {
	return loadgen.Run(context.Background(), loadgen.Config{Servers: []string{tc.Servers[len(tc.Servers)-1].Native},
		Workload: "ycsb-b", Dist: "zipf", Keys: loadKeys, ValueSize: 16, Duration: d, Warmup: 100 * time.Millisecond,
		Verify: true, Seed: 2, BatchBytes: 4 << 10, InFlight: 2}, nil)
}

// emptySlot returns a slot none of the load generator's keys hash to,
// owned by owner in m.
func emptySlot(t *testing.T, m *cluster.Map, owner cluster.ServerID) uint16 {
	t.Helper()
	used := map[uint16]bool{}
	var k [8]byte
	for i := range uint64(loadKeys) {
		binary.LittleEndian.PutUint64(k[:], i)
		used[keyhash.Slot(k[:])] = true
	}
	for s := range uint16(cluster.Slots) {
		if a, ok := m.Owner(s); ok && a.Owner == owner && !used[s] {
			return s
		}
	}
	t.Fatalf("no empty slot of %s", owner)
	return 0
}

// metaProc returns the meta member serving clients on endpoint.
func (tc *testCluster) metaProc(t *testing.T, endpoint string) *clusterctl.Proc {
	for _, p := range tc.Metas {
		if p.Native == endpoint {
			return p
		}
	}
	t.Fatalf("no meta member at %s", endpoint)
	return nil
}

// TestMetaLeaderLoss: with three meta members, the leader is killed while
// a verified load runs: the load sees no error; once a new leader is
// elected a map change takes effect.
func TestMetaLeaderLoss(t *testing.T) {
	tc := startCluster(t, 3, 2)
	load(t, tc)
	ctx := context.Background()
	type result struct {
		rep loadgen.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := ycsb(tc, 5*time.Second)
		done <- result{rep, err}
	}()
	time.Sleep(1500 * time.Millisecond)
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	leader, err := tc.md.Leader(lctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	tc.Kill(tc.metaProc(t, leader))
	r := <-done
	if r.err != nil || r.rep.Errors != 0 || r.rep.VerifyFailures != 0 || r.rep.Ops == 0 {
		t.Fatalf("load across the leader's loss: %+v %v", r.rep, r.err)
	}
	// A change after the election takes effect.
	st, err := loadState(tc)
	if err != nil {
		t.Fatal(err)
	}
	slot := emptySlot(t, st.Map, "s1")
	var m *cluster.Map
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		m, err = tc.admin.Assign(actx, []cluster.Range{{First: slot, Last: slot}}, "s2")
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("assign after the leader's loss: %v", err)
	}
	tc.waitRouting(t, m.Epoch)
	k := keysOfSlot(slot, 1)[0]
	c, err := client.New(client.Config{Addr: tc.Servers[0].Native})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, k, []byte("after")); err != nil {
		t.Fatal(err)
	}
	var on2 struct{ Keys int64 }
	adminJSON(t, tc.Servers[1], "/cluster/keys?slots="+itoa(int(slot)), &on2)
	if on2.Keys != 1 {
		t.Fatalf("the moved slot's key is not on s2 (%d keys there)", on2.Keys)
	}
}

func loadState(tc *testCluster) (cluster.State, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		st, err := tc.md.Load(ctx)
		if err == nil || ctx.Err() != nil {
			return st, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetaDown: with the metadata store gone, servers keep serving what
// they own (a verified load sees no error, a new client bootstraps from a
// server); when it is back, they register again.
func TestMetaDown(t *testing.T) {
	tc := startCluster(t, 1, 2)
	load(t, tc)
	tc.Kill(tc.Metas[0])
	rep, err := ycsb(tc, 3*time.Second)
	if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 || rep.Ops == 0 {
		t.Fatalf("load with the metadata store down: %+v %v", rep, err)
	}
	if err := tc.Start(tc.Metas[0]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := tc.md.Load(context.Background())
		if err == nil && len(st.Live) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers did not register again: %+v %v", st.Live, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}
