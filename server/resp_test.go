package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func startRESP(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	return startTest(t, func(c *Config) {
		c.RESP = "127.0.0.1:0"
		if mod != nil {
			mod(c)
		}
	})
}

func goRedis(t *testing.T, s *Server, opt *redis.Options) *redis.Client {
	t.Helper()
	if opt == nil {
		opt = &redis.Options{}
	}
	opt.Addr = s.RESPAddr()
	rc := redis.NewClient(opt)
	t.Cleanup(func() { rc.Close() })
	return rc
}

// result holds a call's value and error until ok checks it.
type result[T any] struct {
	v   T
	err error
}

func res[T any](v T, err error) result[T] { return result[T]{v, err} }

// ok fails t on the error and returns the value.
func (r result[T]) ok(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func equal[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestRESPWithGoRedis(t *testing.T) {
	s := startRESP(t, nil)
	rc := goRedis(t, s, nil)
	ctx := context.Background()

	equal(t, "PING", res(rc.Ping(ctx).Result()).ok(t), "PONG")
	equal(t, "ECHO", res(rc.Echo(ctx, "a\r\nb").Result()).ok(t), "a\r\nb")
	equal(t, "SET", res(rc.Set(ctx, "k", "v", 0).Result()).ok(t), "OK")
	equal(t, "GET", res(rc.Get(ctx, "k").Result()).ok(t), "v")
	if _, err := rc.Get(ctx, "absent").Result(); err != redis.Nil {
		t.Errorf("GET absent: %v, want redis.Nil", err)
	}
	equal(t, "INCR", res(rc.Incr(ctx, "n").Result()).ok(t), 1)
	equal(t, "INCRBY", res(rc.IncrBy(ctx, "n", 41).Result()).ok(t), 42)
	equal(t, "DECRBY", res(rc.DecrBy(ctx, "n", 50).Result()).ok(t), -8)
	equal(t, "DECR", res(rc.Decr(ctx, "n").Result()).ok(t), -9)
	equal(t, "GET n", res(rc.Get(ctx, "n").Result()).ok(t), "-9")
	if err := rc.Incr(ctx, "k").Err(); err == nil || err.Error() != "ERR value is not an integer or out of range" {
		t.Errorf("INCR of a string: %v", err)
	}
	equal(t, "APPEND", res(rc.Append(ctx, "k", "123").Result()).ok(t), 4)
	equal(t, "STRLEN", res(rc.StrLen(ctx, "k").Result()).ok(t), 4)
	equal(t, "TYPE", res(rc.Type(ctx, "k").Result()).ok(t), "string")
	equal(t, "TYPE absent", res(rc.Type(ctx, "absent").Result()).ok(t), "none")
	equal(t, "MSET", res(rc.MSet(ctx, "a", "1", "b", "2").Result()).ok(t), "OK")
	got := res(rc.MGet(ctx, "a", "absent", "b").Result()).ok(t)
	equal(t, "MGET", fmt.Sprint(got), "[1 <nil> 2]")
	equal(t, "EXISTS", res(rc.Exists(ctx, "a", "b", "absent", "a").Result()).ok(t), 3)
	equal(t, "DEL", res(rc.Del(ctx, "a", "absent").Result()).ok(t), 1)
	equal(t, "UNLINK", res(rc.Unlink(ctx, "b").Result()).ok(t), 1)
	equal(t, "EXISTS after DEL", res(rc.Exists(ctx, "a", "b").Result()).ok(t), 0)
	equal(t, "SETNX new", res(rc.SetNX(ctx, "x", "1", 0).Result()).ok(t), true)
	equal(t, "SETNX old", res(rc.SetNX(ctx, "x", "2", 0).Result()).ok(t), false)
	equal(t, "SET XX GET", res(rc.SetArgs(ctx, "x", "3", redis.SetArgs{Mode: "XX", Get: true}).Result()).ok(t), "1")
	if err := rc.SetArgs(ctx, "y", "3", redis.SetArgs{Mode: "XX"}).Err(); err != redis.Nil {
		t.Errorf("SET XX of an absent key: %v, want redis.Nil", err)
	}
	equal(t, "GETDEL", res(rc.GetDel(ctx, "x").Result()).ok(t), "3")
	if err := rc.Get(ctx, "x").Err(); err != redis.Nil {
		t.Errorf("GET after GETDEL: %v", err)
	}
	equal(t, "SET EX", res(rc.Set(ctx, "e", "v", time.Minute).Result()).ok(t), "OK")
	if ttl := res(rc.TTL(ctx, "e").Result()).ok(t); ttl != time.Minute {
		t.Errorf("TTL after SET EX 60: %v", ttl)
	}
	if err := rc.Do(ctx, "NOSUCH", "a").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR unknown command 'NOSUCH'") {
		t.Errorf("unknown command: %v", err)
	}
	if err := rc.Do(ctx, "get").Err(); err == nil || err.Error() != "ERR wrong number of arguments for 'get' command" {
		t.Errorf("wrong arity: %v", err)
	}
	if id := res(rc.ClientID(ctx).Result()).ok(t); id <= 0 {
		t.Errorf("CLIENT ID = %d", id)
	}
	info := res(rc.Info(ctx).Result()).ok(t)
	for _, sec := range []string{"# Server", "# Clients", "# Stats", "# Memory", "# Persistence", "# Keyspace", "connected_clients:"} {
		if !strings.Contains(info, sec) {
			t.Errorf("INFO lacks %q", sec)
		}
	}
	if cfg := res(rc.ConfigGet(ctx, "save").Result()).ok(t); len(cfg) != 1 {
		t.Errorf("CONFIG GET save = %v", cfg)
	}
}

func TestRESPPipelines(t *testing.T) {
	s := startRESP(t, nil)
	rc := goRedis(t, s, nil)
	ctx := context.Background()
	const n = 5000
	for round := 0; round < 3; round++ {
		p := rc.Pipeline()
		for i := 0; i < n; i++ {
			p.Set(ctx, fmt.Sprintf("p%d", i), fmt.Sprintf("v%d.%d", i, round), 0)
			p.Incr(ctx, fmt.Sprintf("c%d", i%10))
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		p = rc.Pipeline()
		gets := make([]*redis.StringCmd, n)
		for i := range gets {
			gets[i] = p.Get(ctx, fmt.Sprintf("p%d", i))
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, g := range gets {
			if v := g.Val(); v != fmt.Sprintf("v%d.%d", i, round) {
				t.Fatalf("round %d: p%d = %q", round, i, v)
			}
		}
	}
	equal(t, "counter", res(rc.Get(ctx, "c3").Result()).ok(t), fmt.Sprint(3*n/10))
}

// TestRESPColdKeys runs commands on keys pushed out of memory: their store
// operations go pending, and replies must still come in command order.
func TestRESPColdKeys(t *testing.T) {
	s := startRESP(t, func(c *Config) {
		c.Loops = 1
		c.Store.Log = tinyLog(nil)
	})
	rc := goRedis(t, s, nil)
	ctx := context.Background()
	const keys = 50
	filler := setCold(t, rc, keys, func(k int) any { return k })
	before := s.Stats().Pending
	p := rc.Pipeline()
	var incrs []*redis.IntCmd
	var gets []*redis.StringCmd
	var mgets []*redis.SliceCmd
	for k := 0; k < keys; k++ {
		key := fmt.Sprintf("cold-%d", k)
		incrs = append(incrs, p.IncrBy(ctx, key, 1000))
		gets = append(gets, p.Get(ctx, key))
		mgets = append(mgets, p.MGet(ctx, key, "absent", fmt.Sprintf("filler-%d", k)))
	}
	res(p.Exec(ctx)).ok(t)
	for k := 0; k < keys; k++ {
		equal(t, fmt.Sprintf("INCRBY cold-%d", k), incrs[k].Val(), int64(k+1000))
		equal(t, fmt.Sprintf("GET cold-%d", k), gets[k].Val(), fmt.Sprint(k+1000))
		equal(t, fmt.Sprintf("MGET cold-%d", k), fmt.Sprint(mgets[k].Val()), fmt.Sprintf("[%d <nil> %s]", k+1000, filler))
	}
	if s.Stats().Pending == before {
		t.Fatal("no command went pending: the test did not reach the device")
	}
}

// setCold sets cold-0 .. cold-(keys-1) to value(k), then enough 200-byte
// filler-N keys behind them to push them out of a small test log's memory,
// and returns the filler value.
func setCold(t *testing.T, rc *redis.Client, keys int, value func(int) any) string {
	ctx := context.Background()
	p := rc.Pipeline()
	for k := range keys {
		p.Set(ctx, fmt.Sprintf("cold-%d", k), value(k), 0)
	}
	filler := strings.Repeat("f", 200)
	for i := range 400 {
		p.Set(ctx, fmt.Sprintf("filler-%d", i), filler, 0)
	}
	res(p.Exec(ctx)).ok(t)
	return filler
}

func TestRESPAuth(t *testing.T) {
	s := startRESP(t, func(c *Config) { c.RequirePass = "sesame" })
	ctx := context.Background()
	if err := goRedis(t, s, nil).Set(ctx, "k", "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("SET without AUTH: %v, want NOAUTH", err)
	}
	if err := goRedis(t, s, &redis.Options{Password: "wrong"}).Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Errorf("wrong password: %v, want WRONGPASS", err)
	}
	rc := goRedis(t, s, &redis.Options{Password: "sesame"})
	equal(t, "SET with AUTH", res(rc.Set(ctx, "k", "v", 0).Result()).ok(t), "OK")
}

// rawRESP sends in on a new connection and returns all the server answers
// until it closes the connection or goes quiet for a moment.
func rawRESP(t *testing.T, addr string, in string, chunk int) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for len(in) > 0 {
		n := min(chunk, len(in))
		if _, err := io.WriteString(c, in[:n]); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
	}
	var out strings.Builder
	r := bufio.NewReader(c)
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

func TestRESPSplitInputGivesSameReplies(t *testing.T) {
	s := startRESP(t, nil)
	stream := func(p string) string {
		return strings.ReplaceAll("*3\r\n$3\r\nSET\r\n$3\r\n@sk\r\n$5\r\na\r\nbc\r\n"+"GET @sk\r\n"+
			"*2\r\n$4\r\nINCR\r\n$3\r\n@sn\r\n"+"incrby @sn 5\n"+"*1\r\n$4\r\nPING\r\n"+"MGET @sk @sn nope\r\n", "@", p)
	}
	want := "+OK\r\n$5\r\na\r\nbc\r\n:1\r\n:6\r\n+PONG\r\n*3\r\n$5\r\na\r\nbc\r\n$1\r\n6\r\n$-1\r\n"
	for i, chunk := range []int{1000, 1, 2, 3, 7} {
		if got := rawRESP(t, s.RESPAddr(), stream(string(rune('a'+i))), chunk); got != want {
			t.Errorf("fed %d bytes at a time:\n%q\nwant\n%q", chunk, got, want)
		}
	}
}

// TestRESPProtocolErrorClosesOnlyThatConnection also checks that lengths
// are refused before anything is reserved for them.
func TestRESPProtocolErrorClosesOnlyThatConnection(t *testing.T) {
	s := startRESP(t, nil)
	rc := goRedis(t, s, nil)
	ctx := context.Background()
	res(rc.Set(ctx, "k", "v", 0).Result()).ok(t)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$2147483648\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*1000000000\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n"},
		{"PING\r\nGET \"k\r\nPING\r\n", "+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"GET k\r\nQUIT\r\nGET k\r\n", "$1\r\nv\r\n+OK\r\n"},
	} {
		if got := rawRESP(t, s.RESPAddr(), tc.in, len(tc.in)); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
	runtime.ReadMemStats(&m1)
	if grew := int64(m1.TotalAlloc) - int64(m0.TotalAlloc); grew > 64<<20 {
		t.Errorf("the server allocated %d bytes for refused lengths", grew)
	}
	equal(t, "GET on another connection", res(rc.Get(ctx, "k").Result()).ok(t), "v")
}

func TestRESPHello(t *testing.T) {
	s := startRESP(t, nil)
	got := rawRESP(t, s.RESPAddr(), "HELLO 3\r\nHELLO x\r\nHELLO 2 SETNAME me\r\nCLIENT GETNAME\r\n", 100)
	for _, want := range []string{"-NOPROTO", "-ERR Protocol version is not an integer or out of range", "*14\r\n$6\r\nserver\r\n$7\r\nfleetkv", "$2\r\nme\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("HELLO replies %q lack %q", got, want)
		}
	}
	// go-redis v9 opens with HELLO 3 and must fall back to RESP2.
	rc := goRedis(t, s, &redis.Options{Protocol: 3})
	if err := rc.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestRESPErrorTextsAreOneLine(t *testing.T) {
	s := startRESP(t, nil)
	got := rawRESP(t, s.RESPAddr(), "*2\r\n$5\r\nno\r\nx\r\n$3\r\na\nb\r\n", 100)
	if strings.Count(got, "\r\n") != 1 || !strings.HasPrefix(got, "-ERR unknown command 'no  x'") {
		t.Errorf("reply %q", got)
	}
}

// TestRESPColdReadsInParallel pipelines reads of cold keys (GET, MGET of
// several, STRLEN, TYPE) with writes of the same keys between them, then
// QUIT: the reads go to the device together without stopping the
// connection, every reply comes in command order with the value the key had
// when its command was sent, and QUIT closes only after the last reply.
func TestRESPColdReadsInParallel(t *testing.T) {
	s := startRESP(t, func(c *Config) {
		c.Loops = 1
		c.Store.Log = tinyLog(nil)
	})
	rc := goRedis(t, s, nil)
	const keys = 64
	filler := setCold(t, rc, keys, func(k int) any { return fmt.Sprint("v", k) })
	before := s.Stats().RESPParallel

	// One write of the whole pipeline, so the server sees every command
	// while the first reads are still on the device.
	var req bytes.Buffer
	var want bytes.Buffer
	cmd := func(reply string, args ...string) {
		fmt.Fprintf(&req, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
		}
		want.WriteString(reply)
	}
	bulk := func(v string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(v), v) }
	for k := range keys {
		key, v := fmt.Sprintf("cold-%d", k), fmt.Sprint("v", k)
		switch k % 4 {
		case 0:
			cmd(bulk(v), "GET", key)
			cmd("+OK\r\n", "SET", key, "new")
			cmd(bulk("new"), "GET", key)
		case 1:
			cmd("*3\r\n"+bulk(v)+"$-1\r\n"+bulk(filler), "MGET", key, "absent", fmt.Sprintf("filler-%d", k))
		case 2:
			cmd(fmt.Sprintf(":%d\r\n", len(v)), "STRLEN", key)
			cmd(":1\r\n", "DEL", key)
			cmd("+none\r\n", "TYPE", key)
		case 3:
			cmd("+string\r\n", "TYPE", key)
		}
	}
	cmd("+OK\r\n", "QUIT")
	nc, err := net.Dial("tcp", s.RESPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(nc) // QUIT closes the connection after its reply
	if err != nil {
		t.Fatalf("reading the replies: %v (got %d of %d bytes)", err, len(got), want.Len())
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("replies differ from the commands' order and values:\ngot  %q\nwant %q", got, want.Bytes())
	}
	if s.Stats().RESPParallel == before {
		t.Fatal("no read went to the device without stopping the connection")
	}
}
