package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// needTool skips t when a Redis tool is not installed; .ci/run installs
// them (Debian's redis-server and redis-tools), so CI runs these tests.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (apt-get install redis-server redis-tools)", name)
	}
	return p
}

// startRedis runs a redis-server without persistence on a free loopback
// port and stops it (by its PID) when t ends.
func startRedis(t *testing.T) string {
	t.Helper()
	bin := needTool(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--logfile", "", "--enable-debug-command", "local")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if i == 100 {
			t.Fatalf("redis-server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// randomCommand draws one command of the supported set over a few keys and
// values chosen to meet every branch: integers and not, overflow, absent
// keys, conditional sets, wrong arity, unknown commands, flushes.
func randomCommand(rng *rand.Rand) []any {
	key := func() string { return "k" + strconv.Itoa(rng.IntN(6)) }
	vals := []string{"1", "-5", "abc", "9223372036854775806", "", "x y", "007", " 3"}
	val := func() string { return vals[rng.IntN(len(vals))] }
	keys := func(cmd string) []any {
		a := []any{cmd}
		for n := 1 + rng.IntN(3); n > 0; n-- {
			a = append(a, key())
		}
		return a
	}
	if rng.IntN(40) == 0 {
		return []any{"DBSIZE"}
	}
	if rng.IntN(200) == 0 {
		// Rare: a flush empties the few keys the stream uses.
		return [][]any{{"FLUSHALL"}, {"FLUSHDB"}, {"FLUSHALL", "ASYNC"}, {"FLUSHDB", "sync"}, {"FLUSHALL", "x"}}[rng.IntN(5)]
	}
	if rng.IntN(3) == 0 {
		return expiryCommand(rng, key, val)
	}
	switch rng.IntN(20) {
	case 0, 1:
		a := []any{"SET", key(), val()}
		for _, opt := range []string{"NX", "XX", "GET"} {
			if rng.IntN(3) == 0 {
				a = append(a, opt)
			}
		}
		return a
	case 2, 3:
		return []any{"GET", key()}
	case 4:
		return []any{"SETNX", key(), val()}
	case 5:
		return []any{"GETDEL", key()}
	case 6:
		return keys("DEL")
	case 7:
		return keys("UNLINK")
	case 8:
		return keys("EXISTS")
	case 9:
		return keys("MGET")
	case 10:
		return []any{"MSET", key(), val(), key(), val()}
	case 11:
		return []any{"INCR", key()}
	case 12:
		return []any{"DECR", key()}
	case 13:
		by := []string{"1", "-3", "9223372036854775807", "-9223372036854775808", "x", "2"}
		return []any{[]string{"INCRBY", "DECRBY"}[rng.IntN(2)], key(), by[rng.IntN(len(by))]}
	case 14:
		return []any{"APPEND", key(), val()}
	case 15:
		return []any{"STRLEN", key()}
	case 16:
		return []any{"TYPE", key()}
	case 17:
		return []any{"ECHO", val()}
	case 18:
		return []any{"GET"}
	}
	return []any{"NOSUCHCMD", key()}
}

// expiryCommand draws a command that sets, reads or clears expiries. Its
// times are far ahead (or already past, which deletes), so that nothing
// expires while the stream runs and redis-server's active expiry changes
// nothing; conditions that compare two times (GT, LT) get absolute times,
// so that both servers compare the same numbers. Its relative times make
// the servers' expiries differ by the milliseconds between them:
// sameReply allows for that in TTL and the like.
func expiryCommand(rng *rand.Rand, key, val func() string) []any {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	abs := func(ms bool) string {
		if ms {
			return pick("4102444800000", "4102444800500", "4200000000000", "1")
		}
		return pick("4102444800", "4102444801", "4200000000", "1")
	}
	rel := func() string { return pick("100000", "200000", "-1", "0", "abc", "9223372036854775807") }
	switch rng.IntN(14) {
	case 0, 1:
		a := []any{"SET", key(), val()}
		for _, opt := range []string{"NX", "XX", "GET"} {
			if rng.IntN(4) == 0 {
				a = append(a, opt)
			}
		}
		switch rng.IntN(7) {
		case 0:
			a = append(a, "EX", pick("100000", "0", "-1", "x", "9223372036854775807"))
		case 1:
			a = append(a, "PX", pick("100000000", "0"))
		case 2:
			a = append(a, "EXAT", pick("4102444800", "4200000000", "0"))
		case 3:
			a = append(a, "PXAT", "4102444800500")
		case 4:
			a = append(a, "KEEPTTL")
		case 5:
			a = append(a, pick("EX", "KEEPTTL"), "100000", pick("PX", "EX", "KEEPTTL", "GET"))
		}
		return a
	case 2:
		return []any{pick("SETEX", "PSETEX"), key(), pick("100000", "0", "-3", "x"), val()}
	case 3:
		a := []any{"GETEX", key()}
		switch rng.IntN(6) {
		case 0:
			a = append(a, "EX", "100000")
		case 1:
			a = append(a, pick("EXAT", "PXAT"), pick("4102444800", "4102444800500", "1"))
		case 2:
			a = append(a, "PERSIST")
		case 3:
			a = append(a, [][]any{{"KEEPTTL"}, {"PERSIST", "EX", "10"}, {"EX"}, {"FOO"}, {"PERSIST", "PERSIST"}}[rng.IntN(5)]...)
		}
		return a
	case 4, 5:
		a := []any{pick("EXPIRE", "PEXPIRE"), key(), rel()}
		if rng.IntN(3) == 0 {
			a = append(a, pick("NX", "XX", "nx", "FOO"))
		}
		return a
	case 6, 7:
		ms := rng.IntN(2) == 0
		a := []any{[]string{"EXPIREAT", "PEXPIREAT"}[btoi(ms)], key(), abs(ms)}
		for n := rng.IntN(3); n > 0; n-- {
			a = append(a, pick("NX", "XX", "GT", "LT", "gt"))
		}
		return a
	case 8, 9:
		return []any{pick("TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"), key()}
	case 10:
		return []any{"PERSIST", key()}
	case 11:
		return []any{pick("TTL", "EXPIRE", "PERSIST", "SETEX")}
	}
	return []any{"GET", key()}
}

// sameReply compares two servers' replies to cmd: exactly, except the
// times left or set of TTL, PTTL, EXPIRETIME and PEXPIRETIME, which may
// differ by the time between the two servers' runs of the commands that
// set them (a second, rounded, or a quarter of one).
func sameReply(cmd []any, got, want any, gotErr, wantErr error) bool {
	g, gok := got.(int64)
	w, wok := want.(int64)
	name, _ := cmd[0].(string)
	if gotErr == nil && wantErr == nil && gok && wok && g >= 0 && w >= 0 {
		switch strings.ToUpper(name) {
		case "TTL", "EXPIRETIME":
			return g-w <= 1 && w-g <= 1
		case "PTTL", "PEXPIRETIME":
			return g-w <= 250 && w-g <= 250
		}
	}
	return false
}

// redisPair starts fleetkv and redis-server, both without active expiry
// (the differential tests' times are far ahead or already past), and
// returns a client of each.
func redisPair(t *testing.T) (fk, rd *redis.Client) {
	t.Helper()
	raddr := startRedis(t)
	s := startRESP(t, func(c *Config) { c.ActiveExpireInterval = Off })
	fk = goRedis(t, s, nil)
	rd = redis.NewClient(&redis.Options{Addr: raddr})
	t.Cleanup(func() { rd.Close() })
	if err := rd.Do(context.Background(), "DEBUG", "SET-ACTIVE-EXPIRE", "0").Err(); err != nil {
		t.Fatal(err)
	}
	return fk, rd
}

// TestRESPMatchesRedis sends the same seeded stream of commands to fleetkv
// and to redis-server and compares every reply (errors by their full text).
func TestRESPMatchesRedis(t *testing.T) {
	ctx := context.Background()
	fk, rd := redisPair(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	show := func(v any, err error) string {
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprintf("%#v", v)
	}
	for i := 0; i < 3000; i++ {
		cmd := randomCommand(rng)
		wv, werr := rd.Do(ctx, cmd...).Result()
		gv, gerr := fk.Do(ctx, cmd...).Result()
		if got, want := show(gv, gerr), show(wv, werr); got != want && !sameReply(cmd, gv, wv, gerr, werr) {
			t.Fatalf("command %d %q:\nfleetkv: %s\nredis:   %s", i, cmd, got, want)
		}
	}
}

// TestExpiryRepliesMatchRedis sends a fixed list of expiry commands whose
// replies depend on no clock to both servers and compares them exactly:
// the orders of checks (GETEX looks the key up before it judges its time),
// the rounding of EXPIRETIME, past times.
func TestExpiryRepliesMatchRedis(t *testing.T) {
	ctx := context.Background()
	fk, rd := redisPair(t)
	for _, cmd := range [][]any{
		{"GETEX", "missing", "EX", "-1"}, {"GETEX", "missing", "EX", "abc"}, {"GETEX", "missing", "EX"},
		{"SET", "k", "v"}, {"GETEX", "k", "EX", "-1"}, {"GETEX", "k", "PX", "x"}, {"TTL", "k"},
		{"PEXPIREAT", "k", "4102444800500"}, {"EXPIRETIME", "k"}, {"PEXPIRETIME", "k"},
		{"PEXPIREAT", "k", "4102444800499"}, {"EXPIRETIME", "k"}, {"EXPIREAT", "k", "4102444800", "GT"},
		{"EXPIREAT", "k", "4102444800", "LT"}, {"PEXPIRETIME", "k"}, {"EXPIREAT", "k", "4102444801", "XX", "GT"},
		{"EXPIREAT", "k", "4102444802", "NX"}, {"PERSIST", "k"}, {"PERSIST", "k"}, {"EXPIREAT", "k", "4102444802", "LT"},
		{"TTL", "k"}, {"EXPIRE", "k", "0"}, {"EXISTS", "k"}, {"DBSIZE"},
		{"SET", "n", "1", "PXAT", "4102444800000"}, {"INCR", "n"}, {"PEXPIRETIME", "n"}, {"APPEND", "n", "0"},
		{"PEXPIRETIME", "n"}, {"SET", "n", "5", "KEEPTTL", "GET"}, {"PEXPIRETIME", "n"}, {"SET", "n", "6"}, {"TTL", "n"},
		{"GETEX", "n", "PXAT", "4102444800000"}, {"GETEX", "n", "PERSIST"}, {"TTL", "n"}, {"GETEX", "n", "EXAT", "1"},
		{"GET", "n"}, {"DBSIZE"}, {"SETEX", "s", "100", "v"}, {"PSETEX", "s", "0", "v"}, {"SETEX", "s", "1e3", "v"},
		{"SET", "s", "v", "EX", "10", "EX", "20"}, {"SET", "s", "v", "EX", "10", "PX", "20"}, {"SET", "s", "v", "KEEPTTL", "KEEPTTL"},
		{"SET", "s", "v", "PERSIST"}, {"GETEX", "s", "KEEPTTL"}, {"GETEX", "s", "PERSIST", "PERSIST"},
		{"EXPIRE", "s", "10", "NX", "XX"}, {"EXPIRE", "s", "10", "GT", "LT"}, {"EXPIRE", "s", "10", "XX", "LT", "GT"},
		{"EXPIRE", "s", "10", "BAD"}, {"EXPIRE", "s", "9223372036854775807"}, {"PEXPIRE", "s", "9223372036854775807"},
		{"EXPIREAT", "s", "-9223372036854775808"}, {"EXISTS", "s"}, {"TTL", "s"}, {"EXPIRE", "s", "x"},
	} {
		wv, werr := rd.Do(ctx, cmd...).Result()
		gv, gerr := fk.Do(ctx, cmd...).Result()
		if got, want := fmt.Sprintf("%#v %v", gv, gerr), fmt.Sprintf("%#v %v", wv, werr); got != want {
			t.Errorf("%q:\nfleetkv: %s\nredis:   %s", cmd, got, want)
		}
	}
}

// TestRedisCLI drives fleetkv with redis-cli: commands as arguments, and an
// interactive-style session on standard input.
func TestRedisCLI(t *testing.T) {
	cli := needTool(t, "redis-cli")
	s := startRESP(t, nil)
	_, port, _ := net.SplitHostPort(s.RESPAddr())
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"-p", port}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "REDISCLI_HISTFILE=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "cli", "hello world"}, "OK"},
		{[]string{"GET", "cli"}, "hello world"},
		{[]string{"INCR", "clicount"}, "1"},
		{[]string{"INCRBY", "clicount", "41"}, "42"},
		{[]string{"MGET", "cli", "nope", "clicount"}, "hello world\n\n42"},
		{[]string{"GET", "nope"}, ""},
	} {
		if got := run("", tc.args...); got != tc.want {
			t.Errorf("redis-cli %q = %q, want %q", tc.args, got, tc.want)
		}
	}
	if info := run("", "INFO", "server"); !strings.Contains(info, "redis_version:") || !strings.Contains(info, "fleetkv_version:") {
		t.Errorf("INFO server = %q", info)
	}
	session := "SET a 1\nINCR a\nGET a\nDEL a\nEXISTS a\nNOSUCH\n"
	want := "OK\n2\n2\n1\n0\nERR unknown command 'NOSUCH', with args beginning with:"
	if got := run(session); got != want {
		t.Errorf("session:\n%s\nwant:\n%s", got, want)
	}
}
