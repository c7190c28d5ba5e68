package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
)

// TestRESPFlushAll: FLUSHALL and FLUSHDB drop keys in memory and on the
// device at once; a key written again starts from nothing (INCR of a key
// that held 41 answers 1); writes after the flush stay; the arguments are
// checked as Redis does.
func TestRESPFlushAll(t *testing.T) {
	s := startRESP(t, func(c *Config) {
		c.Store.Log = hlog.Config{PageBits: 12, MemoryBytes: 8 << 12}
	})
	rc := goRedis(t, s, nil)
	ctx := context.Background()
	const keys = 50
	setCold(t, rc, keys, func(k int) any { return 41 })
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
