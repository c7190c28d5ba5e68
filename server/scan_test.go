package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// globAlphabet makes keys and patterns that meet every glob rule: the
// special bytes as literals and as operators.
const globAlphabet = `abxy-^[]*?\`

func randomBytes(rng *rand.Rand, alphabet string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(alphabet[rng.IntN(len(alphabet))])
	}
	return b.String()
}

// TestGlobMatchesRedis compares globMatch with redis-server's KEYS over
// keys and patterns made of glob operators (escapes, classes, ranges,
// unclosed classes, stars).
func TestGlobMatchesRedis(t *testing.T) {
	rd := redis.NewClient(&redis.Options{Addr: startRedis(t)})
	defer rd.Close()
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	keys := map[string]bool{}
	for len(keys) < 300 {
		k := randomBytes(rng, globAlphabet, 1+rng.IntN(6))
		keys[k] = true
		res(rd.Set(ctx, k, "v", 0).Result()).ok(t)
	}
	for range 400 {
		p := randomBytes(rng, globAlphabet, 1+rng.IntN(7))
		want := res(rd.Keys(ctx, p).Result()).ok(t)
		var got []string
		for k := range keys {
			if globMatch([]byte(p), []byte(k)) {
				got = append(got, k)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("pattern %q:\nfleetkv %q\nredis   %q", p, got, want)
		}
	}
}

// TestRESPScanMatchesRedis loads the same keys into fleetkv (most of them
// on the device) and redis-server, deletes some, and compares: KEYS for
// random patterns, the set of keys a whole SCAN iteration (random COUNT
// and MATCH, TYPE) returns, RANDOMKEY, SCAN's errors, and all of them on
// an empty store after FLUSHALL.
func TestRESPScanMatchesRedis(t *testing.T) {
	rd := redis.NewClient(&redis.Options{Addr: startRedis(t)})
	defer rd.Close()
	s := startRESP(t, func(c *Config) {
		c.Store.IndexBits = 6 // grows while the keys load
		c.Store.Log = tinyLog(nil)
	})
	fk := goRedis(t, s, nil)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	both := func(cmd ...any) {
		t.Helper()
		want := fmt.Sprint(rd.Do(ctx, cmd...).Result())
		if got := fmt.Sprint(fk.Do(ctx, cmd...).Result()); got != want {
			t.Fatalf("%q: fleetkv %s, redis %s", cmd, got, want)
		}
	}
	for i := range 3000 {
		k := fmt.Sprintf("%s:%d", randomBytes(rng, globAlphabet, 1+rng.IntN(4)), i)
		both("SET", k, strings.Repeat("v", rng.IntN(60)))
		if rng.IntN(5) == 0 {
			both("DEL", k)
		}
	}
	if s.Stats().Store.Index.Bits == 6 {
		t.Fatal("the index did not grow")
	}
	both("DBSIZE")
	sorted := func(c *redis.Client, p string) []string {
		t.Helper()
		ks := res(c.Keys(ctx, p).Result()).ok(t)
		slices.Sort(ks)
		return ks
	}
	for range 50 {
		p := randomBytes(rng, globAlphabet+"*?**", 1+rng.IntN(5))
		if got, want := sorted(fk, p), sorted(rd, p); !slices.Equal(got, want) {
			t.Fatalf("KEYS %q: fleetkv %d keys, redis %d", p, len(got), len(want))
		}
	}
	all := sorted(rd, "*")
	for range 10 {
		p := "*"
		if rng.IntN(2) == 0 {
			p = randomBytes(rng, globAlphabet, 1) + "*"
		}
		args := []any{"MATCH", p, "COUNT", 1 + rng.IntN(200)}
		if rng.IntN(4) == 0 {
			args = append(args, "TYPE", []string{"string", "list"}[rng.IntN(2)])
		}
		if got, want := scanAll(t, fk, args), scanAll(t, rd, args); !slices.Equal(got, want) {
			t.Fatalf("SCAN %q: fleetkv %d keys, redis %d", args, len(got), len(want))
		}
	}
	for range 20 {
		k := res(fk.RandomKey(ctx).Result()).ok(t)
		if _, ok := slices.BinarySearch(all, k); !ok {
			t.Fatalf("RANDOMKEY %q is not a key", k)
		}
	}
	for _, cmd := range [][]any{{"SCAN", "x"}, {"SCAN", " 1"}, {"SCAN", "1 "}, {"SCAN", "0x1"}, {"SCAN", "0", "COUNT", "0"}, {"SCAN", "0", "COUNT", "x"},
		{"SCAN", "0", "MATCH"}, {"SCAN", "0", "BOGUS", "1"}, {"KEYS"}, {"RANDOMKEY", "x"}} {
		both(cmd...)
	}
	if err := fk.Do(ctx, "SCAN", "-1").Err(); err != nil {
		t.Fatalf("SCAN -1 (a cursor near the end, as for Redis): %v", err)
	}
	both("FLUSHALL")
	both("KEYS", "*")
	both("RANDOMKEY")
	both("SCAN", "0")
}

// scanAll runs a whole SCAN iteration with args and returns the keys met
// (sorted, each once).
func scanAll(t *testing.T, c *redis.Client, args []any) []string {
	t.Helper()
	set := map[string]bool{}
	for cursor, calls := "0", 0; ; calls++ {
		v := res(c.Do(context.Background(), append([]any{"SCAN", cursor}, args...)...).Result()).ok(t).([]any)
		for _, k := range v[1].([]any) {
			set[k.(string)] = true
		}
		if cursor = v[0].(string); cursor == "0" {
			break
		}
		if calls > 100000 {
			t.Fatal("SCAN does not end")
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
