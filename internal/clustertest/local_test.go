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
	cmd := exec.Command(bin, "cluster", "local", "3", "--dir", t.TempDir(), "--memory", "32MiB")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	native, resp := "", ""
	loadRe := regexp.MustCompile(`loadgen --servers (\S+) `)
	respRe := regexp.MustCompile(`redis-cli -c -p (\d+) `)
	var seen strings.Builder
	deadline := time.After(60 * time.Second)
	for native == "" || resp == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("fleetkv cluster local exited:\n%s", seen.String())
			}
			seen.WriteString(l + "\n")
			if m := loadRe.FindStringSubmatch(l); m != nil {
				native = m[1]
			}
			if m := respRe.FindStringSubmatch(l); m != nil {
				resp = m[1]
			}
		case <-deadline:
			t.Fatalf("fleetkv cluster local printed no addresses:\n%s", seen.String())
		}
	}
	go func() { // keep draining
		for range lines {
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
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("fleetkv cluster local after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("fleetkv cluster local did not stop")
	}
}
