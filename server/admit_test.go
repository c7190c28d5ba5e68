package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/admit"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/wire"
)

// TestAdmissionFollowsTheTurns runs a client one operation at a time and
// checks the glue of admission control: the loops' turns reach the
// controller each interval, it learns a level while no background work
// runs, a running worker makes the intervals busy and moves the share away
// from where work starts, and the share goes back there once it ends.
func TestAdmissionFollowsTheTurns(t *testing.T) {
	s := startTest(t, func(c *Config) { c.AdmitInterval = 20 * time.Millisecond })
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		ctx := context.Background()
		for i := 0; !stop.Load(); i++ {
			if err := c.Set(ctx, []byte{byte(i)}, []byte("v")); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	defer func() {
		stop.Store(true)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	b := s.Background()
	waitFor(t, "a learnt level", func() bool {
		a := s.Stats().Admission
		return a.On && a.Samples > 0 && a.LevelUs > 0 && a.Share == admit.Default.Start
	})
	end := b.Begin()
	waitFor(t, "the share to move while a worker runs", func() bool {
		a := s.Stats().Admission
		return a.Workers == 1 && a.Share != admit.Default.Start
	})
	end()
	waitFor(t, "the share back at the start once the work ended", func() bool {
		a := s.Stats().Admission
		return a.Workers == 0 && a.Share == admit.Default.Start
	})
}

// TestAdmissionOff: with AdmitInterval off there is no budget (a share of
// 1) and the loops record nothing.
func TestAdmissionOff(t *testing.T) {
	s := startTest(t, func(c *Config) { c.AdmitInterval = Off })
	if s.Background() != nil || s.Background().Share() != 1 {
		t.Fatal("admission off: want a nil budget, a share of 1")
	}
	if a := s.Stats().Admission; a.On || a.Share != 1 {
		t.Fatalf("stats %+v", a)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMigrationsEndpoint: /cluster/migrations serves Config.Progress as
// JSON, and an empty list without it.
func TestMigrationsEndpoint(t *testing.T) {
	get := func(s *Server) string {
		t.Helper()
		resp, err := http.Get("http://" + s.AdminAddr() + "/cluster/migrations")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	if got := get(startTest(t, func(c *Config) { c.Admin = "127.0.0.1:0" })); got != "[]" {
		t.Fatalf("without progress: %s", got)
	}
	s := startTest(t, func(c *Config) {
		c.Admin = "127.0.0.1:0"
		c.Progress = func() any { return []map[string]int{{"migration": 3}} }
	})
	if got := get(s); got != `[{"migration":3}]` {
		t.Fatalf("with progress: %s", got)
	}
}

// TestPeerWaitsAreNotTheForegrounds: a connection that sends MIGRATE
// operations is another server's migration task; its batches are not
// counted among the foreground's waits (admission control would slow the
// migration for the time its own records take to insert), while a
// client's batches are.
func TestPeerWaitsAreNotTheForegrounds(t *testing.T) {
	s := startTest(t, func(c *Config) { c.AdmitInterval = time.Hour; c.ServerID = "me" }) // nothing takes the waits
	ctx := context.Background()
	m, err := cluster.NewMap("test", []cluster.Server{{ID: "me", Native: s.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	all := cluster.AllSlots()
	holds := cluster.Holds{Hold: &cluster.SlotSet{}, Misses: &cluster.SlotSet{}, Accept: []cluster.Accepting{{ID: 7, Slots: all, Since: s.Store().Log().Tail()}}}
	if err := s.Install(ctx, (&cluster.Routing{View: 1, Serving: all, Map: m}).WithHolds(&holds)); err != nil {
		t.Fatal(err)
	}
	waits := func() int64 {
		var n atomic.Int64 // the loops run the function at once
		_ = s.onEveryLoop(ctx, func(l *loop) { n.Add(l.waits.TotalCount()) })
		return n.Load()
	}
	peer, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	opened := waits() // the session's OPEN, before it is known as a peer
	for i := range 200 {
		if err := peer.Migrate(7, wire.MigrateMoved, []byte(fmt.Sprint("k", i)), 0, []byte("v"), func(r client.Result) {
			if r.Err != nil {
				t.Error(r.Err)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			if err := peer.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := peer.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := waits() - opened; n != 0 {
		t.Fatalf("%d waits recorded for a peer's MIGRATE batches", n)
	}
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 20 {
		if _, _, err := c.Get(ctx, []byte(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := waits() - opened; n < 20 {
		t.Fatalf("%d waits recorded for 20 client reads", n)
	}
}
