package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/clusterctl"
	"github.com/fleetkv/fleetkv/keyhash"
)

// adminJSON reads a server's admin endpoint.
func adminJSON(t *testing.T, p *clusterctl.Proc, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + p.Admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

type stats struct {
	Ops      map[string]int64 `json:"ops"`
	NotOwner uint64           `json:"not_owner_ops"`
	Cluster  struct {
		Serving int    `json:"serving_slots"`
		Ranges  string `json:"serving_ranges"`
	} `json:"cluster"`
}

// TestClientsReachEveryOwner: three servers; the native client, go-redis's
// ClusterClient and redis-cli -c write and read 10 000 keys spread over the
// slots, each through one server's address, and every server serves its
// share with no operation refused.
func TestClientsReachEveryOwner(t *testing.T) {
	tc := startCluster(t, 1, 3)
	ctx := context.Background()
	const n = 10000
	nc, err := client.New(client.Config{Addr: tc.Servers[0].Native})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	slots := map[uint16]bool{}
	for i := range n {
		k := []byte(fmt.Sprint("n:", i))
		slots[keyhash.Slot(k)] = true
		if err := nc.Set(ctx, k, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(slots) < n/2 {
		t.Fatalf("10 000 keys in only %d slots", len(slots))
	}
	for i := range n {
		if v, ok, err := nc.Get(ctx, []byte(fmt.Sprint("n:", i))); err != nil || !ok || string(v) != fmt.Sprint(i) {
			t.Fatalf("native n:%d = %q %v %v", i, v, ok, err)
		}
	}

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{tc.Servers[1].RESP}})
	defer cc.Close()
	for i := range n {
		if err := cc.Set(ctx, fmt.Sprint("r:", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if v, err := cc.Get(ctx, fmt.Sprint("r:", i)).Int(); err != nil || v != i {
			t.Fatalf("go-redis r:%d = %d %v", i, v, err)
		}
		if i%97 == 0 { // what the native client wrote, read through RESP
			if v, err := cc.Get(ctx, fmt.Sprint("n:", i)).Result(); err != nil || v != fmt.Sprint(i) {
				t.Fatalf("go-redis n:%d = %q %v", i, v, err)
			}
		}
	}

	// redis-cli -c, commands on stdin, through the third server.
	var script strings.Builder
	for i := range 300 {
		fmt.Fprintf(&script, "SET c:%d v%d\n", i, i)
	}
	for i := range 300 {
		fmt.Fprintf(&script, "GET c:%d\n", i)
	}
	port := tc.Servers[2].RESP[strings.LastIndexByte(tc.Servers[2].RESP, ':')+1:]
	cmd := exec.Command("redis-cli", "-c", "-p", port)
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("redis-cli -c: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	redirects := 0
	for i := 0; sc.Scan(); i++ {
		if strings.HasPrefix(sc.Text(), "-> Redirected to slot") {
			redirects++
			i--
			continue
		}
		want := "OK"
		if i >= 300 {
			want = fmt.Sprint("v", i-300)
		}
		if sc.Text() != want {
			t.Fatalf("redis-cli line %d = %q, want %q", i, sc.Text(), want)
		}
	}
	if redirects == 0 {
		t.Fatal("redis-cli was never redirected: every key on one server?")
	}
	for i := 0; i < 300; i += 7 {
		if v, err := cc.Get(ctx, fmt.Sprint("c:", i)).Result(); err != nil || v != fmt.Sprint("v", i) {
			t.Fatalf("c:%d = %q %v", i, v, err)
		}
	}

	for _, p := range tc.Servers {
		var st stats
		adminJSON(t, p, "/stats", &st)
		if rs, err := cluster.ParseRanges(st.Cluster.Ranges); err != nil || len(rs) == 0 || rs[0].Len() != st.Cluster.Serving {
			t.Fatalf("%s serves %d slots as %q (%v): one range each", p.Name, st.Cluster.Serving, st.Cluster.Ranges, err)
		}
		if st.Ops["upsert"] < n/5 || st.Ops["resp"] < n/5 || st.Cluster.Serving < cluster.Slots/4 {
			t.Fatalf("%s served %d upserts, %d RESP commands, %d slots: not its share", p.Name, st.Ops["upsert"], st.Ops["resp"], st.Cluster.Serving)
		}
	}
}

// TestStaleClientsAreRedirected: clients learn the map, then an empty
// slot moves from s1 to s2 under them. The native Cluster is told
// VIEW_CHANGED (or NOT_OWNER) and re-routes; go-redis's ClusterClient
// follows MOVED; a plain client of s1 is told MOVED. Each operation lands
// once, on the new owner.
func TestStaleClientsAreRedirected(t *testing.T) {
	tc := startCluster(t, 1, 2)
	ctx := context.Background()
	s1, s2 := tc.Servers[0], tc.Servers[1]
	st, err := tc.md.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const slot = 100
	if a, _ := st.Map.Owner(slot); a.Owner != "s1" {
		t.Fatalf("slot %d belongs to %s", slot, a.Owner)
	}
	keys := keysOfSlot(slot, 3)

	nat, err := client.DialCluster(ctx, client.Config{Addr: s1.Native})
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{s1.RESP}})
	defer cc.Close()
	plain := redis.NewClient(&redis.Options{Addr: s1.RESP})
	defer plain.Close()
	// Warm up: both clients have their maps and connections.
	if err := cc.Set(ctx, "warm", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := nat.Upsert([]byte("warm2"), []byte("1"), nil); err != nil || nat.Wait() != nil {
		t.Fatal(err)
	}

	m, err := tc.admin.Assign(ctx, []cluster.Range{{First: slot, Last: slot}}, "s2")
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.admin.WaitServing(ctx, m, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	tc.waitRouting(t, m.Epoch)

	var natErr error
	if err := nat.Append(keys[0], []byte("a"), func(r client.Result) { natErr = r.Err }); err != nil {
		t.Fatal(err)
	}
	if err := nat.Wait(); err != nil || natErr != nil {
		t.Fatalf("native append to the moved slot: %v %v", err, natErr)
	}
	if s := nat.Stats(); s.ViewMoves+s.Rerouted == 0 {
		t.Fatalf("the native client was not redirected: %+v", s)
	}
	if err := cc.Append(ctx, string(keys[1]), "b").Err(); err != nil {
		t.Fatalf("ClusterClient append to the moved slot: %v", err)
	}
	err = plain.Get(ctx, string(keys[2])).Err()
	if want := fmt.Sprintf("MOVED %d %s", slot, s2.RESP); err == nil || err.Error() != want {
		t.Fatalf("plain client on s1: %v, want %s", err, want)
	}
	for i, want := range []string{"a", "b"} {
		if v, err := cc.Get(ctx, string(keys[i])).Result(); err != nil || v != want {
			t.Fatalf("%s = %q %v, want %q (applied once, on the new owner)", keys[i], v, err, want)
		}
	}
	var on1, on2 struct{ Keys int64 }
	adminJSON(t, s1, fmt.Sprintf("/cluster/keys?slots=%d", slot), &on1)
	adminJSON(t, s2, fmt.Sprintf("/cluster/keys?slots=%d", slot), &on2)
	if on1.Keys != 0 || on2.Keys != 2 {
		t.Fatalf("slot %d holds %d keys on s1 and %d on s2, want 0 and 2", slot, on1.Keys, on2.Keys)
	}
	// Slots with keys are not assigned.
	if _, err := tc.admin.Assign(ctx, []cluster.Range{{First: slot, Last: slot}}, "s1"); err == nil {
		t.Fatal("a slot holding keys was assigned")
	}
}

// keysOfSlot returns n keys of the slot.
func keysOfSlot(slot uint16, n int) [][]byte {
	var out [][]byte
	for i := 0; len(out) < n; i++ {
		k := []byte(fmt.Sprint("stale:", i))
		if keyhash.Slot(k) == slot {
			out = append(out, k)
		}
	}
	return out
}
