package server

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetkv/fleetkv/client"
)

// TestKeysExpire: keys set with an expiry read as absent once it passes,
// on both fronts; TTL and PTTL count down; active expiry deletes them
// without any read, so DBSIZE and INFO follow.
func TestKeysExpire(t *testing.T) {
	s := startRESP(t, func(c *Config) { c.ActiveExpireInterval = 20 * time.Millisecond })
	ctx := context.Background()
	rc := goRedis(t, s, nil)
	// Generous against a loaded machine: everything up to DBSIZE below
	// must run before the short keys expire.
	const short = 1500 * time.Millisecond
	for i := range 50 {
		res(rc.Set(ctx, fmt.Sprint("short", i), "v", short).Result()).ok(t)
		res(rc.Set(ctx, fmt.Sprint("long", i), "v", time.Hour).Result()).ok(t)
	}
	sess := dialSession(t, client.Config{Addr: s.Addr()})
	var results []client.Result
	keep := func(r client.Result) { r.Value = bytes.Clone(r.Value); results = append(results, r) }
	at := time.Now().Add(short).UnixMilli()
	if err := sess.UpsertExpiring([]byte("native"), []byte("n"), at, keep); err != nil {
		t.Fatal(err)
	}
	if err := sess.Expire([]byte("long0"), at+2*3600_000, keep); err != nil {
		t.Fatal(err)
	}
	if err := sess.Read([]byte("native"), keep); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 || results[0].Err != nil || results[1].Status != client.OK || client.ExpiryOf(results[1]) == 0 ||
		string(results[2].Value) != "n" {
		t.Fatalf("native results %+v", results)
	}
	if ttl := res(rc.PTTL(ctx, "short0").Result()).ok(t); ttl <= 0 || ttl > short {
		t.Fatalf("PTTL = %v", ttl)
	}
	if n := res(rc.DBSize(ctx).Result()).ok(t); n != 101 {
		t.Fatalf("DBSIZE = %d before expiry", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for res(rc.DBSize(ctx).Result()).ok(t) != 50 {
		if time.Now().After(deadline) {
			t.Fatalf("DBSIZE = %d long after the short keys expired; stats %+v", res(rc.DBSize(ctx).Result()).ok(t), s.Stats().Expiry)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := s.Stats().Expiry; st.Reaped != 51 {
		t.Errorf("expiry stats %+v, want 51 reaped", st)
	}
	equal(t, "GET short0", fmt.Sprint(rc.Get(ctx, "short0").Err()), fmt.Sprint(redis.Nil))
	equal(t, "TTL short0", res(rc.TTL(ctx, "short0").Result()).ok(t), time.Duration(-2))
	if ttl := res(rc.TTL(ctx, "long0").Result()).ok(t); ttl < 2*time.Hour-time.Minute {
		t.Errorf("TTL long0 = %v after a native EXPIRE two hours on", ttl)
	}
	results = results[:0]
	if err := sess.Read([]byte("native"), keep); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil || results[0].Status != client.NotFound {
		t.Fatalf("native read after expiry: %+v %v", results, err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(res(rc.Info(ctx, "keyspace").Result()).ok(t), "keys=50,expires=50,") {
		if time.Now().After(deadline) {
			t.Fatalf("INFO keyspace: %q", res(rc.Info(ctx, "keyspace").Result()).ok(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// 49 keys with an hour left, one with two hours.
	if avg := time.Duration(s.Stats().Expiry.AvgTTLMillis) * time.Millisecond; avg < time.Hour-time.Minute || avg > time.Hour+3*time.Minute {
		t.Errorf("average TTL %v, want about 1h01m", avg)
	}
}

// TestExpiredKeysStayGoneAfterRestart: keys that expire while the server
// is down read as absent after it restarts on its directory; keys that
// have not expired keep their expiry (wall-clock based).
func TestExpiredKeysStayGoneAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, dev := durableServer(t, dir)
	rc := goRedis(t, s, nil)
	for i := range 20 {
		res(rc.Set(ctx, fmt.Sprint("short", i), "v", 200*time.Millisecond).Result()).ok(t)
		res(rc.Set(ctx, fmt.Sprint("long", i), "v", time.Hour).Result()).ok(t)
	}
	exp := res(rc.Do(ctx, "PEXPIRETIME", "long0").Int64()).ok(t)
	equal(t, "SAVE", res(rc.Save(ctx).Result()).ok(t), "OK")
	rc.Close()
	shutdown(t, s, dev)
	time.Sleep(300 * time.Millisecond)

	s, dev = durableServer(t, dir)
	defer shutdown(t, s, dev)
	rc = goRedis(t, s, nil)
	for i := range 20 {
		if err := rc.Get(ctx, fmt.Sprint("short", i)).Err(); err != redis.Nil {
			t.Fatalf("short%d after the restart: %v", i, err)
		}
		equal(t, "GET long", res(rc.Get(ctx, fmt.Sprint("long", i)).Result()).ok(t), "v")
	}
	equal(t, "PEXPIRETIME long0", res(rc.Do(ctx, "PEXPIRETIME", "long0").Int64()).ok(t), exp)
}

// TestActiveExpiryIdlesWithoutExpiries: once a pass met no key with an
// expiry, no pass runs until a value with one is written; then passes
// resume and delete it when it expires.
func TestActiveExpiryIdlesWithoutExpiries(t *testing.T) {
	s := startRESP(t, func(c *Config) {
		c.ActiveExpireInterval = 5 * time.Millisecond
		c.Store.IndexBits = 8
	})
	ctx := context.Background()
	rc := goRedis(t, s, nil)
	res(rc.Set(ctx, "plain", "v", 0).Result()).ok(t)
	passes := func() uint64 { return s.Stats().Expiry.Passes }
	deadline := time.Now().Add(5 * time.Second)
	for passes() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no active expiry pass completed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	idle := passes()
	time.Sleep(100 * time.Millisecond) // 20 intervals
	res(rc.Set(ctx, "plain2", "v", 0).Result()).ok(t)
	time.Sleep(50 * time.Millisecond)
	if p := passes(); p > idle+1 { // one may have been running
		t.Fatalf("%d passes ran without a key with an expiry (%d before)", p, idle)
	}
	res(rc.Set(ctx, "short", "v", 50*time.Millisecond).Result()).ok(t)
	for res(rc.DBSize(ctx).Result()).ok(t) != 2 {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("the expiring key was not reaped; stats %+v", s.Stats().Expiry)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p := passes(); p <= idle+1 {
		t.Fatalf("no pass after a key with an expiry was written (%d, idle at %d)", p, idle)
	}
}
