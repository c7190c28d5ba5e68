package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestFlushAllSurvivesKillNine: a server holding more keys than its memory
// runs FLUSHALL, takes writes after it, and is killed with SIGKILL, in each
// checkpoint mode. Killed after a SAVE that followed the flush, it
// recovers exactly the keys written after the flush. Killed at a random
// moment after the flush (periodic checkpoints running), it recovers
// either every key from before the flush and none written after it, or
// none from before: never part of the flushed set.
func TestFlushAllSurvivesKillNine(t *testing.T) {
	bin := buildServer(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	ctx := context.Background()
	const before, after = 4000, 200
	for round := 0; round < 4; round++ {
		saved := round%2 == 0
		dir := t.TempDir()
		srv := startServer(t, bin, dir, checkpointModes[round/2])
		rc := redis.NewClient(&redis.Options{Addr: srv.resp, ReadTimeout: time.Minute})
		value := strings.Repeat("v", 400) // 4000 keys: 1.6 MB, over the 1 MiB of memory
		setAll(t, rc, "a", before, value)
		if err := rc.Save(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.FlushAll(ctx).Err(); err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
		if n := count(t, rc, "a", before); n != 0 {
			t.Fatalf("round %d: %d of %d keys left after FLUSHALL", round, n, before)
		}
		if n, err := rc.DBSize(ctx).Result(); err != nil || n != 0 {
			t.Fatalf("round %d: DBSIZE after FLUSHALL = %d %v", round, n, err)
		}
		setAll(t, rc, "b", after, "w")
		if saved {
			if err := rc.Save(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		} else {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		}
		rc.Close()
		srv.kill()
		srv = startServer(t, bin, dir, checkpointModes[round/2])
		rc = redis.NewClient(&redis.Options{Addr: srv.resp, ReadTimeout: time.Minute})
		na, nb := count(t, rc, "a", before), count(t, rc, "b", after)
		t.Logf("round %d (saved %v): after the kill %d keys from before the flush, %d after", round, saved, na, nb)
		dbsize, err := rc.DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case saved && (na != 0 || nb != after || dbsize != after):
			t.Fatalf("round %d: a SAVE after FLUSHALL recovered %d flushed keys and %d of %d written after (DBSIZE %d; %s)", round, na, nb, after, dbsize, recovered(t, srv))
		case na != 0 && (na != before || nb != 0):
			t.Fatalf("round %d: recovered %d of %d flushed keys and %d written after the flush", round, na, before, nb)
		}
		rc.Close()
		srv.kill()
	}
}

// setAll sets keys p:0 .. p:n-1 to v, in pipelines.
func setAll(t *testing.T, rc *redis.Client, p string, n int, v string) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += 500 {
		pipe := rc.Pipeline()
		for j := i; j < min(n, i+500); j++ {
			pipe.Set(ctx, fmt.Sprintf("%s:%d", p, j), v, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// count returns how many of keys p:0 .. p:n-1 exist.
func count(t *testing.T, rc *redis.Client, p string, n int) int {
	t.Helper()
	found := 0
	for i := 0; i < n; i += 500 {
		keys := make([]string, 0, 500)
		for j := i; j < min(n, i+500); j++ {
			keys = append(keys, fmt.Sprintf("%s:%d", p, j))
		}
		vs, err := rc.MGet(context.Background(), keys...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v != nil {
				found++
			}
		}
	}
	return found
}

// recovered returns what the server's /stats says its recovery found.
func recovered(t *testing.T, srv *server) string {
	var st struct {
		Checkpoint struct{ Recovered json.RawMessage }
	}
	srv.stats(t, &st)
	return string(st.Checkpoint.Recovered)
}
