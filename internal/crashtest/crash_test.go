// Package crashtest kills a real fleetkv server process with SIGKILL at
// random moments while several sessions overwrite and delete their keys
// and checkpoints and compactions run (automatic ones, and POST /compact
// racing the writers), restarts it on the same data directory, and checks
// what came back: every write acknowledged before a checkpoint that
// completed is there, every session's state is the result of a prefix of
// its operations (no holes), and no deleted key is back. Native sessions
// beside them check commit points exactly (native_test.go). Checkpoints are
// fold-overs in one cycle, log snapshots in the next. CYCLES (default 3)
// sets the number of kill/restart cycles; `make crash-test CYCLES=200` runs
// many.
package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// op is one session operation on key k of its session: a set to the value
// numbered val, or a delete (val -1).
type op struct {
	k, val int
}

// keysPerSession is each session's key space: keys are overwritten and
// deleted again and again, so the log fills with dead records for
// compaction, and verification reads a bounded number of keys.
const keysPerSession = 1000

// opsPerCycle bounds what a session writes between two kills.
const opsPerCycle = 3000

// session is one writer's history since the last verification: base is
// the state it verified (the value number per key, -1: absent), ops what
// it issued since.
type session struct {
	id        int
	base      []int
	next      int // the next value number
	ops       []op
	acked     int // ops acknowledged so far
	committed int // ops acknowledged before a checkpoint that completed
}

func newSession(id int) *session {
	s := &session{id: id, base: make([]int, keysPerSession)}
	for i := range s.base {
		s.base[i] = -1
	}
	return s
}

func (s *session) key(k int) string { return fmt.Sprintf("s%d:%d", s.id, k) }

// value is value number v of the session: its own name and number, padded
// to a size that varies, so that some updates fit in place and others
// append.
func (s *session) value(v int) string {
	return fmt.Sprintf("v%d.%d.%s", s.id, v, strings.Repeat("p", v%200))
}

// parse returns the value number of a value the session wrote, or false.
func (s *session) parse(v string) (int, bool) {
	var id, n int
	if _, err := fmt.Sscanf(v, "v%d.%d.", &id, &n); err != nil || id != s.id || s.value(n) != v {
		return 0, false
	}
	return n, true
}

func TestKillNineKeepsCommittedPrefixes(t *testing.T) {
	cycles := 3
	if v := os.Getenv("CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CYCLES=%q", v)
		}
		cycles = n
	}
	bin := buildServer(t)
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d cycles", seed, cycles)
	rng := rand.New(rand.NewPCG(seed, 3))
	sessions := make([]*session, 4)
	for i := range sessions {
		sessions[i] = newSession(i)
	}
	natives := []*nativeSession{newNativeSession(0), newNativeSession(1)}
	for c := 0; c < cycles; c++ {
		srv := startServer(t, bin, dir, checkpointModes[c%2])
		verify(t, c, srv, sessions)
		verifyNative(t, c, srv, natives)
		d := time.Duration(50+rng.IntN(400)) * time.Millisecond
		var ready func() bool
		if c == cycles-1 {
			ready = compactedAndCheckpointed(t, srv) // the begin checked below has moved
		}
		runUntilKilled(t, srv, sessions, natives, d, ready, rng.Uint64())
	}
	srv := startServer(t, bin, dir, checkpointModes[0])
	verify(t, cycles, srv, sessions)
	verifyNative(t, cycles, srv, natives)
	// The log's begin survives restarts through the checkpoints: past its
	// first address, compactions moved it and recoveries started there.
	begin := logBegin(t, srv)
	t.Logf("log begin after %d cycles: %d", cycles, begin)
	if cycles >= 3 && begin <= 64 {
		t.Errorf("no compaction moved the log's begin in %d cycles", cycles)
	}
	srv.kill()
}

// buildServer builds the fleetkv binary into a temporary directory.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fleetkv")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fleetkv/fleetkv/cmd/fleetkv").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// checkpointModes alternate from one cycle to the next: a recovery mostly
// starts from a checkpoint of the other mode (of its own when the cycle
// before was killed before its first checkpoint).
var checkpointModes = [2]string{"fold-over", "snapshot"}

// logBegin reads the log's begin address from the server's /stats.
func logBegin(t *testing.T, srv *server) uint64 {
	var st struct {
		Store struct{ Log struct{ Begin uint64 } }
	}
	srv.stats(t, &st)
	return st.Store.Log.Begin
}

// stats decodes the server's /stats into v.
func (s *server) stats(t *testing.T, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + s.admin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

type server struct {
	cmd                 *exec.Cmd
	native, resp, admin string
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill() // SIGKILL, by PID: this process started it
	_ = s.cmd.Wait()
}

// freePorts returns n distinct loopback addresses free now: each listener
// is held until all are chosen, so two calls cannot get the same port
// (the server refuses a RESP listener on its data port).
func freePorts(t *testing.T, n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs
}

func startServer(t *testing.T, bin, dir, mode string) *server {
	t.Helper()
	ports := freePorts(t, 3)
	s := &server{native: ports[0], resp: ports[1], admin: ports[2]}
	s.cmd = exec.Command(bin, "server", "--listen", s.native, "--resp", s.resp, "--admin", s.admin,
		"--dir", dir, "--memory", "1MiB", "--page-size", "256KiB", "--segment-size", "1MiB",
		"--checkpoint-interval", "150ms", "--checkpoint-mode", mode, "--compact-interval", "100ms", "--compact-threshold", "0.2",
		"--compact-chunk", "1MiB", "--loops", "2", "--pin=false", "--log-level", "warn")
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", s.resp); err == nil {
			c.Close()
			return s
		}
		if i == 300 {
			t.Fatal("server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runUntilKilled writes from every session and checkpoints now and then
// until the server is killed after d.
func runUntilKilled(t *testing.T, srv *server, sessions []*session, natives []*nativeSession, d time.Duration, ready func() bool, seed uint64) {
	var mu sync.Mutex // guards acked and committed
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range natives {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(rand.New(rand.NewPCG(seed, 100+uint64(s.id))), nativeOpsPerCycle)
		}()
	}
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(s.id)))
			rc := redis.NewClient(&redis.Options{Addr: srv.resp, MaxRetries: -1, PoolSize: 1})
			defer rc.Close()
			ctx := context.Background()
			for k := 0; k < opsPerCycle; k++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				n := s.acked
				mu.Unlock()
				o := op{k: rng.IntN(keysPerSession), val: s.next}
				if rng.IntN(5) == 0 {
					o.val = -1
				} else {
					s.next++
				}
				s.ops = append(s.ops[:n], o)
				var err error
				if o.val < 0 {
					err = rc.Del(ctx, s.key(o.k)).Err()
				} else {
					err = rc.Set(ctx, s.key(o.k), s.value(o.val), 0).Err()
				}
				if err != nil {
					return // killed: the op's outcome is unknown, and it is the last one
				}
				mu.Lock()
				s.acked++
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() { // checkpoints: what was acked before one starts is committed when it ends
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			mu.Lock()
			acked := make([]int, len(sessions))
			for i, s := range sessions {
				acked[i] = s.acked
			}
			mu.Unlock()
			if rng.IntN(4) == 0 { // and compactions, racing the writers
				if resp, err := http.Post("http://"+srv.admin+"/compact", "", nil); err == nil {
					resp.Body.Close()
				}
			}
			resp, err := http.Post("http://"+srv.admin+"/checkpoint", "", nil)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				continue
			}
			mu.Lock()
			for i, s := range sessions {
				s.committed = max(s.committed, acked[i])
			}
			mu.Unlock()
		}
	}()
	time.Sleep(d)
	for deadline := time.Now().Add(30 * time.Second); ready != nil && !ready() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	srv.kill()
	close(stop)
	wg.Wait()
}

// compactedAndCheckpointed returns a test of whether srv's log begin is
// past the log's first address (a compaction moved it, in this cycle or an
// earlier one) and a checkpoint that started after that was seen has
// ended, so a restart recovers that begin: on a loaded machine a fixed run
// time may see neither.
func compactedAndCheckpointed(t *testing.T, srv *server) func() bool {
	var need uint64 // checkpoints taken, to include one started after the moved begin was seen; 0 before
	return func() bool {
		var st struct {
			Store      struct{ Log struct{ Begin uint64 } }
			Checkpoint struct{ Taken uint64 }
		}
		srv.stats(t, &st)
		switch {
		case st.Store.Log.Begin <= 64:
			return false
		case need == 0:
			need = st.Checkpoint.Taken + 2 // one may be running: the next one starts after
			return false
		}
		return st.Checkpoint.Taken >= need
	}
}

// verify reads every key of every session (one connection per session,
// in parallel) and checks that each session's state is that of a prefix of
// its ops at least as long as its committed ops; that state becomes its
// base, and its ops start over.
func verify(t *testing.T, cycle int, srv *server, sessions []*session) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(sessions))
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = verifySession(t, cycle, srv, s)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// verifyNative checks every native session (see native_test.go).
func verifyNative(t *testing.T, cycle int, srv *server, natives []*nativeSession) {
	t.Helper()
	for _, s := range natives {
		line, err := s.check(cycle, srv.native)
		if err != nil {
			t.Fatal(err)
		}
		if s.id == 0 {
			t.Logf("cycle %d: %s", cycle, line)
		}
	}
}

func verifySession(t *testing.T, cycle int, srv *server, s *session) error {
	// A RESP connection has one device read in flight at a time: a
	// pipeline of cold reads takes a while.
	rc := redis.NewClient(&redis.Options{Addr: srv.resp, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer rc.Close()
	ctx := context.Background()
	p := rc.Pipeline()
	cmds := make([]*redis.StringCmd, keysPerSession)
	for k := range cmds {
		cmds[k] = p.Get(ctx, s.key(k))
	}
	if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
		return fmt.Errorf("cycle %d: reading session %d: %v", cycle, s.id, err)
	}
	seen := make([]int, keysPerSession)
	for k, c := range cmds {
		v, err := c.Result()
		switch {
		case err == redis.Nil:
			seen[k] = -1
		case err != nil:
			return fmt.Errorf("cycle %d: %s: %v", cycle, s.key(k), err)
		default:
			n, ok := s.parse(v)
			if !ok {
				return fmt.Errorf("cycle %d: %s = %q: not a value this session wrote", cycle, s.key(k), v)
			}
			seen[k] = n
		}
	}
	n := prefixLength(s, seen)
	if n < 0 {
		return fmt.Errorf("cycle %d: session %d: the recovered keys match no prefix of its %d ops of which %d were committed (a lost write or a deleted key back)",
			cycle, s.id, len(s.ops), s.committed)
	}
	if s.id == 0 {
		t.Logf("cycle %d: session 0 recovered %d of %d ops (%d committed)", cycle, n, len(s.ops), s.committed)
	}
	s.base, s.ops, s.acked, s.committed = seen, nil, 0, 0
	return nil
}

// prefixLength returns the longest n >= committed such that applying
// ops[:n] to base gives seen, or -1. It counts the keys where the state
// differs from seen while n grows, so it is linear.
func prefixLength(s *session, seen []int) int {
	state := append([]int(nil), s.base...)
	for _, o := range s.ops[:s.committed] {
		state[o.k] = o.val
	}
	diff := 0
	for k := range state {
		if state[k] != seen[k] {
			diff++
		}
	}
	best := -1
	for n := s.committed; ; n++ {
		if diff == 0 {
			best = n
		}
		if n == len(s.ops) {
			return best
		}
		o := s.ops[n]
		before := state[o.k] != seen[o.k]
		state[o.k] = o.val
		if after := state[o.k] != seen[o.k]; after != before {
			if after {
				diff++
			} else {
				diff--
			}
		}
	}
}
