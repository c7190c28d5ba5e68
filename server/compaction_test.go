package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/checkpoint"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/store"
)

// TestCompactionDeletesSegmentsAndSurvivesRestart overwrites and deletes
// keys until the log spans several 1 MiB segments, lets the automatic
// compaction run, compacts the rest on demand, takes a checkpoint, and
// checks that the segment files below the new begin are gone, every key
// reads back as written (deleted keys stay deleted), and the same holds
// after a restart on the directory.
func TestCompactionDeletesSegmentsAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	tune := func(c *Config) {
		c.CompactInterval, c.CompactThreshold, c.CompactChunk = 20*time.Millisecond, 0.3, 1<<20
	}
	s, dev := durableServerWith(t, dir, tune)
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := map[string][]byte{}
	for round := range 20 {
		for i := range 200 {
			k, v := fmt.Sprintf("k%d", i), bytes.Repeat([]byte{byte(round), byte(i)}, 200+4*round) // growing: no in-place updates
			if err := c.Set(ctx, []byte(k), v); err != nil {
				t.Fatal(err)
			}
			want[k] = v
		}
	}
	for i := 0; i < 200; i += 2 {
		k := fmt.Sprintf("k%d", i)
		if _, err := c.Delete(ctx, []byte(k)); err != nil {
			t.Fatal(err)
		}
		want[k] = nil
	}
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Compaction.Runs == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no automatic compaction: %+v", s.Stats().Compaction)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var cs store.CompactStats
	post(t, s, "/compact", &cs)
	var m struct{ Store store.Checkpoint }
	post(t, s, "/checkpoint", &m)
	begin := s.Stats().Store.Log.Begin
	if m.Store.Begin != begin || begin < 1<<20 {
		t.Fatalf("checkpoint begin %d, log begin %d, last compaction %+v", m.Store.Begin, begin, cs)
	}
	for seg := uint64(0); (seg+1)<<20 <= begin; seg++ {
		if _, err := os.Stat(filepath.Join(dir, "log", fmt.Sprintf("log.%08d", seg))); !os.IsNotExist(err) {
			t.Errorf("segment %d below begin %d: %v, want it deleted", seg, begin, err)
		}
	}
	checkKeys(t, c, want, "after compaction")
	c.Close()
	shutdown(t, s, dev)

	s, dev = durableServerWith(t, dir, tune)
	defer shutdown(t, s, dev)
	if got := s.Stats().Store.Log.Begin; got < begin {
		t.Fatalf("recovered begin %d, compacted to %d", got, begin)
	}
	c, err = client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkKeys(t, c, want, "after restart")
}

func checkKeys(t *testing.T, c *client.Client, want map[string][]byte, when string) {
	t.Helper()
	for k, v := range want {
		got, found, err := c.Get(context.Background(), []byte(k))
		if err != nil || (v != nil) != found || !bytes.Equal(got, v) {
			t.Fatalf("%s: %s = %q %v %v, want %q (a deleted key came back: %v)", when, k, got, found, err, v, v == nil && found)
		}
	}
}

// post POSTs to an admin path and decodes the JSON answer into out.
func post(t *testing.T, s *Server, path string, out any) {
	t.Helper()
	resp, err := http.Post("http://"+s.AdminAddr()+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
}

// TestStartFailureDoesNotHang: a server whose admin listener cannot bind
// stops what it started (loops, checkpoints, compaction) and returns the
// error.
func TestStartFailureDoesNotHang(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	dev, err := ssd.OpenFile(ssd.FileConfig{Dir: dir + "/log", SegmentSize: 1 << 20, Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ck, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: "127.0.0.1:0", Admin: taken.Addr().String(), Loops: 1, NoPin: true, Checkpoints: ck}
	cfg.Store.Log = hlog.Config{PageBits: 14, MemoryBytes: 8 << 14, Device: dev}
	done := make(chan error, 1)
	go func() {
		s, err := Start(cfg, quietLog())
		if s != nil {
			s.Shutdown(context.Background())
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Start on a taken admin address succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start hung after the admin listener failed")
	}
}

// TestCompactionStaysBelowAcceptedSince: while the routing accepts a
// migration's records, compaction does not move the log's begin past the
// migration's Since, so the deletions written since then (which compaction
// would drop) keep hiding the records the migration sends later; once the
// routing accepts none, it compacts past it.
func TestCompactionStaysBelowAcceptedSince(t *testing.T) {
	s, dev := durableServerWith(t, t.TempDir(), func(c *Config) { c.ServerID = "me"; c.CompactInterval = Off })
	defer shutdown(t, s, dev)
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if err := c.Set(ctx, fmt.Appendf(nil, "k%d", i), make([]byte, 500)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, 200)
	since := s.st.Log().Tail()
	base := &cluster.Routing{View: 1, Serving: cluster.AllSlots()}
	var slot cluster.SlotSet
	slot.Add(cluster.Range{First: 0, Last: 0})
	accepting := cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &slot, Accept: []cluster.Accepting{{ID: 3, Slots: &slot, Since: since}}}
	if err := s.Install(ctx, base.WithHolds(&accepting)); err != nil {
		t.Fatal(err)
	}
	write(200, 2000)
	if head := s.st.Log().Head(); head <= since+2<<14 {
		t.Fatalf("the head %d is not past since %d: nothing to hold back", head, since)
	}
	cs, err := s.Compact(ctx, 0)
	if err != nil || cs.Until > since {
		t.Fatalf("compaction while accepting: %+v, %v; want it to stop at or below %d", cs, err, since)
	}
	if err := s.Install(ctx, base.WithHolds(&cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &cluster.SlotSet{}})); err != nil {
		t.Fatal(err)
	}
	if cs, err = s.Compact(ctx, 0); err != nil || cs.Until <= since {
		t.Fatalf("compaction once nothing is accepted: %+v, %v; want it past %d", cs, err, since)
	}
}
