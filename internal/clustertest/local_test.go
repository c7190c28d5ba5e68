package clustertest

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/loadgen"
)

// TestClusterLocal runs the demo as a user would: `fleetkv cluster local
// 3`, then a verified YCSB-B Zipf load through the routed client at the
// address it prints and redis-benchmark --cluster at its RESP port; SIGTERM
// stops every process it started.
func TestClusterLocal(t *testing.T) {
	lc := startLocalCmd(t, "3")
	native, resp := lc.native, lc.resp
	go func() { // keep draining
		for range lc.lines {
		}
	}()
	cfg := loadgen.Config{Servers: []string{native}, Workload: "load", Keys: 20000, ValueSize: 16, Verify: true, Seed: 5}
	if rep, err := loadgen.Run(context.Background(), cfg, nil); err != nil || rep.Errors != 0 {
		t.Fatalf("load: %+v %v", rep, err)
	}
	cfg.Workload, cfg.Dist, cfg.Duration, cfg.Warmup = "ycsb-b", "zipf", 2*time.Second, 100*time.Millisecond
	rep, err := loadgen.Run(context.Background(), cfg, nil)
	if err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 || rep.Ops == 0 || rep.Rerouted != 0 {
		t.Fatalf("YCSB-B through the routed client: %+v %v", rep, err)
	}
	bench := exec.Command("redis-benchmark", "--cluster", "-p", resp, "-t", "set,get", "-n", "20000", "-P", "16", "-q")
	b, err := bench.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "SET:") || !strings.Contains(string(b), "GET:") {
		t.Fatalf("redis-benchmark --cluster: %v\n%s", err, b)
	}
	lc.stop(t)
}

// localCmd is a running `fleetkv cluster local` and the addresses it
// printed; lines carries the rest of its output.
type localCmd struct {
	cmd          *exec.Cmd
	lines        chan string
	exited       chan error
	native, resp string
	seen         strings.Builder
}

// startLocalCmd runs `fleetkv cluster local ARGS` and returns once it
// printed the addresses to try; the process is killed at the test's end.
func startLocalCmd(t *testing.T, args ...string) *localCmd {
	t.Helper()
	lc := &localCmd{lines: make(chan string, 1000), exited: make(chan error, 1)}
	lc.cmd = exec.Command(bin, append([]string{"cluster", "local", "--dir", t.TempDir(), "--memory", "32MiB"}, args...)...)
	out, err := lc.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	lc.cmd.Stderr = lc.cmd.Stdout
	if err := lc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = lc.cmd.Process.Kill()
		err := <-lc.exited
		lc.exited <- err
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lc.lines <- sc.Text()
		}
		close(lc.lines)
		lc.exited <- lc.cmd.Wait()
	}()
	loadRe := regexp.MustCompile(`loadgen --servers (\S+) `)
	respRe := regexp.MustCompile(`redis-cli -c -p (\d+) `)
	deadline := time.After(60 * time.Second)
	for lc.native == "" || lc.resp == "" {
		select {
		case l, ok := <-lc.lines:
			if !ok {
				t.Fatalf("fleetkv cluster local exited:\n%s", lc.seen.String())
			}
			lc.seen.WriteString(l + "\n")
			if m := loadRe.FindStringSubmatch(l); m != nil {
				lc.native = m[1]
			}
			if m := respRe.FindStringSubmatch(l); m != nil {
				lc.resp = m[1]
			}
		case <-deadline:
			t.Fatalf("fleetkv cluster local printed no addresses:\n%s", lc.seen.String())
		}
	}
	return lc
}

// waitLine waits for a line of output matching re.
func (lc *localCmd) waitLine(t *testing.T, re *regexp.Regexp, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-lc.lines:
			if !ok {
				t.Fatalf("fleetkv cluster local exited before %q:\n%s", re, lc.seen.String())
			}
			lc.seen.WriteString(l + "\n")
			if re.MatchString(l) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q within %v:\n%s", re, within, lc.seen.String())
		}
	}
}

// stop sends SIGTERM and checks that the command stops cleanly.
func (lc *localCmd) stop(t *testing.T) {
	t.Helper()
	if err := lc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lc.exited:
		lc.exited <- err
		if err != nil {
			t.Fatalf("fleetkv cluster local after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("fleetkv cluster local did not stop")
	}
}

// TestClusterLocalAddDrain runs the elasticity demo: `fleetkv cluster local
// 2 --add 1 --drain s1`, with a verified YCSB-B load started in its
// --plan-delay and running until s1 was drained and stopped: the plans end
// done, the load sees no failed operation and no stale read, and every
// loaded key reads back through the address it printed (not s1's).
func TestClusterLocalAddDrain(t *testing.T) {
	lc := startLocalCmd(t, "2", "--add", "1", "--drain", "s1", "--plan-delay", "2s")
	cfg := loadgen.Config{Servers: []string{lc.native}, Workload: "load", Keys: 20000, ValueSize: 16, Verify: true,
		VerifyLoaded: true, Seed: 6}
	if rep, err := loadgen.Run(context.Background(), cfg, nil); err != nil || rep.Errors != 0 {
		t.Fatalf("load: %+v %v", rep, err)
	}
	cfg.Workload, cfg.Dist, cfg.Duration, cfg.Warmup = "ycsb-b", "zipf", 5*time.Minute, time.Millisecond
	stopLoad := background(t, cfg)
	lc.waitLine(t, regexp.MustCompile(`plan 1 \(add s3\) ended: 5461 of 5461 slots moved`), 90*time.Second)
	lc.waitLine(t, regexp.MustCompile(`plan 2 \(drain s1\) ended: 5462 of 5462 slots moved`), 90*time.Second)
	lc.waitLine(t, regexp.MustCompile(`^stopped s1 `), 60*time.Second)
	rep := stopLoad()
	if rep.Ops == 0 || rep.Errors != 0 || rep.VerifyFailures != 0 {
		t.Fatalf("load during the plans: %d ops, %d errors, %d verify failures (%s)", rep.Ops, rep.Errors, rep.VerifyFailures, rep.FirstProblem)
	}
	cfg.Workload, cfg.Dist, cfg.Duration, cfg.Ops = "ycsb-c", "uniform", 0, 60000
	if rep, err := loadgen.Run(context.Background(), cfg, nil); err != nil || rep.Errors != 0 || rep.VerifyFailures != 0 {
		t.Fatalf("reading back: %+v %v", rep, err)
	}
	go func() {
		for range lc.lines {
		}
	}()
	lc.stop(t)
}

// TestClusterLocalStopsDuringPlans: a signal while `cluster local` waits
// to carry out its plans stops the cluster cleanly (exit status 0).
func TestClusterLocalStopsDuringPlans(t *testing.T) {
	lc := startLocalCmd(t, "1", "--add", "1", "--plan-delay", "1m")
	go func() {
		for range lc.lines {
		}
	}()
	lc.stop(t)
}
