package server

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
)

// TestSlotsNotServedAreRefused: under a routing that gives one key's slot
// to another server, that key's operations fail alone, NOT_OWNER on the
// native protocol and MOVED on RESP, and reach no store; the other keys of
// the same batch and pipeline are served.
func TestSlotsNotServedAreRefused(t *testing.T) {
	s := startRESP(t, func(c *Config) { c.ServerID = "me" })
	ctx := context.Background()
	mine, theirs := []byte("served-key"), []byte("moved-key")
	slot := keyhash.Slot(theirs)
	if keyhash.Slot(mine) == slot {
		t.Fatal("pick keys of two slots")
	}
	m, err := cluster.NewMap("test", []cluster.Server{{ID: "me", Native: s.Addr(), RESP: s.RESPAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	m.Servers["other"] = cluster.Server{ID: "other", Native: "127.0.0.1:1", RESP: "127.0.0.1:2"}
	m.Views["other"] = 1
	m, err = m.Assign([]cluster.Range{{First: slot, Last: slot}}, "other", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &cluster.Routing{View: m.Views["me"], Serving: m.Serving("me", nil), Map: m}
	if err := s.Install(ctx, r); err != nil {
		t.Fatal(err)
	}

	sess, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var errMine, errTheirs error
	_ = sess.Upsert(mine, []byte("v"), func(r client.Result) { errMine = r.Err })
	_ = sess.Upsert(theirs, []byte("v"), func(r client.Result) { errTheirs = r.Err })
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	if errMine != nil || !errors.Is(errTheirs, client.ErrNotOwner) {
		t.Fatalf("served key: %v; moved key: %v (want %v)", errMine, errTheirs, client.ErrNotOwner)
	}

	rc := goRedis(t, s, nil)
	if err := rc.Set(ctx, string(mine), "w", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err = rc.Set(ctx, string(theirs), "w", 0).Err()
	if want := "MOVED " + strconv.Itoa(int(slot)) + " 127.0.0.1:2"; err == nil || err.Error() != want {
		t.Fatalf("SET of a moved key: %v, want %q", err, want)
	}
	if err := rc.Get(ctx, string(theirs)).Err(); err == nil || !strings.HasPrefix(err.Error(), "MOVED ") {
		t.Fatalf("GET of a moved key: %v", err)
	}
	// Nothing reached the store for the moved key.
	r2 := &cluster.Routing{View: r.View + 1, Serving: cluster.AllSlots(), Map: m}
	if err := s.Install(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Get(ctx, string(theirs)).Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the moved key was written: GET = %v", err)
	}
	if s.Stats().NotOwner < 3 {
		t.Fatalf("not-owner count %d, want 3", s.Stats().NotOwner)
	}
}
