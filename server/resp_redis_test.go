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
		"--dir", t.TempDir(), "--logfile", "")
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

// TestRESPMatchesRedis sends the same seeded stream of commands to fleetkv
// and to redis-server and compares every reply (errors by their full text).
func TestRESPMatchesRedis(t *testing.T) {
	raddr := startRedis(t)
	s := startRESP(t, nil)
	ctx := context.Background()
	fk := goRedis(t, s, nil)
	rd := redis.NewClient(&redis.Options{Addr: raddr})
	defer rd.Close()
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
		want := show(rd.Do(ctx, cmd...).Result())
		got := show(fk.Do(ctx, cmd...).Result())
		if got != want {
			t.Fatalf("command %d %q:\nfleetkv: %s\nredis:   %s", i, cmd, got, want)
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
