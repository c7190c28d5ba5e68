package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/wire"
)

// startFlushed starts a RESP server with a small log and sets keys keys
// (value(k)) that go to the device (setCold) for a flush test to drop.
func startFlushed(t *testing.T, keys int, value func(k int) any) (*Server, *redis.Client) {
	t.Helper()
	s := startRESP(t, func(c *Config) {
		c.Store.Log = tinyLog(nil)
	})
	rc := goRedis(t, s, nil)
	setCold(t, rc, keys, value)
	return s, rc
}

// TestRESPFlushAll: FLUSHALL and FLUSHDB drop keys in memory and on the
// device at once; a key written again starts from nothing (INCR of a key
// that held 41 answers 1); writes after the flush stay; the arguments are
// checked as Redis does.
func TestRESPFlushAll(t *testing.T) {
	const keys = 50
	s, rc := startFlushed(t, keys, func(k int) any { return 41 })
	ctx := context.Background()
	if s.Stats().Store.Log.Head <= hlog.FirstAddress {
		t.Fatal("nothing reached the device")
	}
	equal(t, "FLUSHALL", res(rc.FlushAll(ctx).Result()).ok(t), "OK")
	equal(t, "DBSIZE", res(rc.DBSize(ctx).Result()).ok(t), int64(0))
	for k := 0; k < keys; k++ {
		equal(t, "EXISTS", res(rc.Exists(ctx, fmt.Sprintf("cold-%d", k), fmt.Sprintf("filler-%d", k)).Result()).ok(t), int64(0))
	}
	equal(t, "INCR cold-0", res(rc.Incr(ctx, "cold-0").Result()).ok(t), int64(1))
	equal(t, "SET", res(rc.Set(ctx, "after", "x", 0).Result()).ok(t), "OK")
	equal(t, "GET after", res(rc.Get(ctx, "after").Result()).ok(t), "x")
	equal(t, "DBSIZE", res(rc.DBSize(ctx).Result()).ok(t), int64(2))
	if info := res(rc.Info(ctx, "keyspace").Result()).ok(t); !strings.Contains(info, "db0:keys=2,") {
		t.Errorf("INFO keyspace = %q, want db0:keys=2", info)
	}
	equal(t, "FLUSHDB ASYNC", res(rc.Do(ctx, "FLUSHDB", "ASYNC").Result()).ok(t), any("OK"))
	equal(t, "EXISTS after", res(rc.Exists(ctx, "after", "cold-0").Result()).ok(t), int64(0))
	if err := rc.Do(ctx, "FLUSHALL", "NOW").Err(); err == nil || err.Error() != "ERR syntax error" {
		t.Errorf("FLUSHALL NOW: %v, want ERR syntax error", err)
	}
	equal(t, "flushes", s.Stats().Flushes, uint64(2))
}

// TestNativeFlush: the native FLUSH control operation drops every key, in
// memory and on the device, and answers once they are gone; operations the
// session pipelined after it see the empty store; client.Client.FlushAll
// does the same for every server that owns slots.
func TestNativeFlush(t *testing.T) {
	const keys = 50
	s, rc := startFlushed(t, keys, func(k int) any { return k })
	ctx := context.Background()
	sess := dialSession(t, client.Config{Addr: s.Addr()})
	var got []client.Result
	keep := func(r client.Result) { got = append(got, r) }
	if err := sess.FlushAll(keep); err != nil {
		t.Fatal(err)
	}
	if err := sess.Upsert([]byte("after"), []byte("x"), keep); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Err != nil || got[1].Err != nil {
		t.Fatalf("FLUSH then UPSERT: %+v", got)
	}
	equal(t, "DBSIZE after FLUSH", res(rc.DBSize(ctx).Result()).ok(t), int64(1))
	equal(t, "EXISTS cold-0", res(rc.Exists(ctx, "cold-0").Result()).ok(t), int64(0))
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	equal(t, "DBSIZE after Client.FlushAll", res(rc.DBSize(ctx).Result()).ok(t), int64(0))
	if st := s.Stats(); st.Flushes != 2 {
		t.Errorf("%d flushes counted, want 2", st.Flushes)
	}
	// A FLUSH that is not the last operation of its batch is refused:
	// the batch's later operations could not wait for it.
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, start := wire.BeginBatch(nil)
	b = wire.AppendOp(b, wire.OpFlush, nil, nil)
	b = wire.AppendOp(b, wire.OpPing, nil, []byte("p"))
	wire.FinishRequest(b, start, wire.RequestHeader{Flags: wire.FlagControl, Count: 2, View: 1, Serial: 1})
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	h, body := readBatch(t, nc)
	var rr wire.ResultReader
	rr.Reset(h, body, wire.DefaultLimits)
	if r, ok, err := rr.Next(); err != nil || !ok || r.Status != wire.StatusError || r.Code != wire.CodeBadArgument {
		t.Fatalf("FLUSH before PING in one batch: %+v %v %v", r, ok, err)
	}
	if s.Stats().Flushes != 2 {
		t.Error("a refused FLUSH flushed")
	}
}
