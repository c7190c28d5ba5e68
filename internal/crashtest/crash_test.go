// Package crashtest kills a real fleetkv server process with SIGKILL at
// random moments while several sessions write to it, restarts it on the same
// data directory, and checks what came back: every write acknowledged
// before a checkpoint that completed is there, every session's state is the
// result of a prefix of its operations (no holes), and no deleted key is
// back. CYCLES (default 3) sets the number of kill/restart cycles; `make
// crash-test CYCLES=200` runs many.
package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// op is one session operation: set writes key "s<session>:<i>" (a new key
// each time), del deletes the key of an earlier set.
type op struct {
	del bool
	i   int // the set this op writes or deletes
}

// opsPerCycle bounds what a session writes between two kills, so that a
// long run's verification (every key, every cycle) stays fast.
const opsPerCycle = 3000

// session is one writer's history across the cycles.
type session struct {
	id        int
	ops       []op
	acked     int // ops acknowledged so far
	committed int // ops acknowledged before a checkpoint that completed
}

func (s *session) key(i int) string   { return fmt.Sprintf("s%d:%d", s.id, i) }
func (s *session) value(i int) string { return fmt.Sprintf("v%d.%d", s.id, i) }

func TestKillNineKeepsCommittedPrefixes(t *testing.T) {
	cycles := 3
	if v := os.Getenv("CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CYCLES=%q", v)
		}
		cycles = n
	}
	bin := filepath.Join(t.TempDir(), "fleetkv")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fleetkv/fleetkv/cmd/fleetkv").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d cycles", seed, cycles)
	rng := rand.New(rand.NewPCG(seed, 3))
	sessions := make([]*session, 4)
	for i := range sessions {
		sessions[i] = &session{id: i}
	}
	for c := 0; c < cycles; c++ {
		srv := startServer(t, bin, dir)
		verify(t, c, srv, sessions)
		runUntilKilled(t, srv, sessions, time.Duration(50+rng.IntN(400))*time.Millisecond, rng.Uint64())
	}
	srv := startServer(t, bin, dir)
	verify(t, cycles, srv, sessions)
	srv.kill()
}

type server struct {
	cmd         *exec.Cmd
	resp, admin string
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill() // SIGKILL, by PID: this process started it
	_ = s.cmd.Wait()
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startServer(t *testing.T, bin, dir string) *server {
	t.Helper()
	s := &server{resp: freePort(t), admin: freePort(t)}
	s.cmd = exec.Command(bin, "server", "--listen", "127.0.0.1:0", "--resp", s.resp, "--admin", s.admin,
		"--dir", dir, "--memory", "16MiB", "--page-size", "256KiB", "--segment-size", "4MiB",
		"--checkpoint-interval", "150ms", "--loops", "2", "--pin=false", "--log-level", "warn")
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
func runUntilKilled(t *testing.T, srv *server, sessions []*session, d time.Duration, seed uint64) {
	var mu sync.Mutex // guards acked and committed
	stop := make(chan struct{})
	var wg sync.WaitGroup
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
				o := op{i: n}
				if n > 0 && rng.IntN(5) == 0 {
					o = op{del: true, i: rng.IntN(n)}
				}
				s.ops = append(s.ops[:n], o)
				var err error
				if o.del {
					err = rc.Del(ctx, s.key(o.i)).Err()
				} else {
					err = rc.Set(ctx, s.key(o.i), s.value(o.i), 0).Err()
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
	srv.kill()
	close(stop)
	wg.Wait()
}

// verify reads every key each session ever wrote and checks that the
// state is that of a prefix of the session's ops at least as long as its
// committed ops, then makes that prefix the session's history.
func verify(t *testing.T, cycle int, srv *server, sessions []*session) {
	t.Helper()
	// Most keys are on the device by now, and a RESP connection has one
	// device read in flight at a time: a long pipeline takes seconds.
	rc := redis.NewClient(&redis.Options{Addr: srv.resp, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer rc.Close()
	ctx := context.Background()
	for _, s := range sessions {
		sets := len(s.ops) // keys are named by op index: del ops name keys too
		present := make([]bool, sets)
		p := rc.Pipeline()
		cmds := make([]*redis.StringCmd, sets)
		for i := range cmds {
			cmds[i] = p.Get(ctx, s.key(i))
		}
		if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
			t.Fatalf("cycle %d: reading session %d: %v", cycle, s.id, err)
		}
		for i, c := range cmds {
			switch v, err := c.Result(); {
			case err == redis.Nil:
			case err != nil:
				t.Fatalf("cycle %d: %s: %v", cycle, s.key(i), err)
			case v != s.value(i):
				t.Fatalf("cycle %d: %s = %q, want %q", cycle, s.key(i), v, s.value(i))
			default:
				present[i] = true
			}
		}
		n := prefixLength(s, present)
		if n < 0 {
			t.Fatalf("cycle %d: session %d: the recovered keys %v match no prefix of its %d ops of which %d were committed",
				cycle, s.id, summary(present), len(s.ops), s.committed)
		}
		if s.id == 0 {
			t.Logf("cycle %d: session 0 recovered %d of %d ops (%d committed)", cycle, n, len(s.ops), s.committed)
		}
		s.ops, s.acked, s.committed = s.ops[:n], n, n
	}
}

// prefixLength returns the longest n >= committed such that applying
// ops[:n] gives present, or -1. It counts the keys where the state after
// ops[:n] differs from present while n grows, so it is linear.
func prefixLength(s *session, present []bool) int {
	state := make([]bool, len(present))
	for _, o := range s.ops[:s.committed] {
		state[o.i] = !o.del
	}
	diff := 0
	for i := range state {
		if state[i] != present[i] {
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
		before := state[o.i] != present[o.i]
		state[o.i] = !o.del
		if after := state[o.i] != present[o.i]; after != before {
			if after {
				diff++
			} else {
				diff--
			}
		}
	}
}

func summary(present []bool) string {
	n := 0
	for _, p := range present {
		if p {
			n++
		}
	}
	return fmt.Sprintf("%d of %d", n, len(present))
}
