package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/loadgen"
)

// chromium returns the path of Debian's chromium (or Google's build), or
// skips the test: .ci/run installs it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
	return ""
}

// headless runs chromium headless on url with args, for at most a minute,
// and returns its stdout. The page's timers run on virtual time
// (budget), which stands still while a fetch is outstanding: the page
// polls budget/1s times whatever the machine's speed.
func headless(t *testing.T, bin, url string, budget time.Duration, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds())}, args...)
	cmd := exec.CommandContext(ctx, bin, append(full, url)...)
	// Chromium's own children (zygote, renderer) hold its output open:
	// a timeout kills its whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left behind
	if err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, tail(errb.Bytes(), 2000))
	}
	return out.Bytes()
}

// TestDashboardInChromium: three servers under a load while half of s1's
// slots move to s2 slowly (--migration-rate); headless Chromium loads s3's dashboard
// and the rendered DOM shows the slot strip coloured by all three owners
// and the migrating ranges, a row and a chart line per server with a
// rate, and the migration in a running phase with its move's progress. A
// screenshot goes to the test's artifact directory (go test -artifacts).
func TestDashboardInChromium(t *testing.T) {
	bin := chromium(t)
	tc := startCluster(t, 1, 3, "--migration-rate", "30")
	cfg := loadgen.Config{Servers: []string{tc.Servers[0].Native}, Keys: 30000, ValueSize: 32, Threads: 1, Seed: 9,
		Dist: "uniform", Warmup: time.Millisecond, Duration: 5 * time.Minute}
	loadAll(t, cfg)
	cfg.Workload = "ycsb-b"
	stop := background(t, cfg)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := tc.owned(t, "s1")[0]
	half := []cluster.Range{{First: r.First, Last: r.First + uint16(r.Len()/2)}} // s1 keeps a colour on the strip
	rec, err := tc.admin.Migrate(ctx, half, "s2")
	if err != nil {
		t.Fatal(err)
	}
	tc.waitPhase(t, rec.ID, cluster.PhaseMove)
	url := "http://" + tc.Servers[2].Admin + "/"
	doc, err := html.Parse(bytes.NewReader(headless(t, bin, url, 5*time.Second, "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	checkDashboard(t, doc, rec.ID)

	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	headless(t, bin, url, 5*time.Second, "--window-size=1280,1150", "--screenshot="+shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}

// waitPhase waits until migration id reaches phase (or a later one).
func (tc *testCluster) waitPhase(t *testing.T, id cluster.MigrationID, phase cluster.Phase) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := tc.md.Load(ctx)
		cancel()
		if err == nil {
			for _, m := range st.Migrations {
				if m.ID == id && m.Phase >= phase {
					if m.Phase.Final() {
						t.Fatalf("migration %d ended (%s, %s) before the page was loaded", id, m.Phase, m.Reason)
					}
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("migration %d did not reach %s", id, phase)
}

// checkDashboard checks the rendered page of a 3-server cluster during
// migration id.
func checkDashboard(t *testing.T, doc *html.Node, id cluster.MigrationID) {
	t.Helper()
	body := find(doc, func(n *html.Node) bool { return n.Data == "body" })
	if len(body) != 1 {
		t.Fatal("no body")
	}
	if polls, _ := strconv.Atoi(attr(body[0], "data-polls")); polls < 2 {
		t.Fatalf("the page polled %d times; status: %q", polls, text(byID(t, doc, "status")))
	}
	if s := text(byID(t, doc, "status")); !strings.HasPrefix(s, "updated") {
		t.Fatalf("status %q", s)
	}
	owners := map[string]bool{}
	for _, r := range find(doc, hasClass("range")) {
		owners[attr(r, "data-owner")] = true
	}
	if len(owners) != 3 || !owners["s1"] || !owners["s2"] || !owners["s3"] {
		t.Fatalf("the slot strip's owners: %v", owners)
	}
	if len(find(doc, func(n *html.Node) bool {
		return hasClass("migrating")(n) && attr(n, "data-migration") == fmt.Sprint(id)
	})) == 0 {
		t.Fatalf("no migrating range of migration %d on the strip", id)
	}
	for _, s := range []string{"s1", "s2", "s3"} {
		row := find(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-server") == s })
		if len(row) != 1 {
			t.Fatalf("%d rows for %s", len(row), s)
		}
		if ops := text(find(row[0], hasClass("ops"))...); ops == "" || ops == "–" {
			t.Fatalf("%s: ops/s %q", s, ops)
		}
		for _, chart := range []string{"ops-chart", "p999-chart"} {
			line := find(byID(t, doc, chart), func(n *html.Node) bool { return n.Data == "polyline" && attr(n, "data-server") == s })
			if len(line) != 1 {
				t.Fatalf("%s: %d lines for %s", chart, len(line), s)
			}
		}
	}
	row := find(byID(t, doc, "migrations"), func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-migration") == fmt.Sprint(id) })
	if len(row) != 1 {
		t.Fatalf("migration %d: %d rows", id, len(row))
	}
	running := []string{"sample", "prepare", "transfer", "move"}
	if phase := attr(row[0], "data-phase"); !slices.Contains(running, phase) {
		t.Fatalf("migration %d shown in phase %q, want one of %v", id, phase, running)
	}
	if p := text(find(row[0], hasClass("progress"))...); !strings.Contains(p, "move:") || !strings.Contains(p, "records") {
		t.Fatalf("migration %d's progress %q", id, p)
	}
}

// find returns the element nodes under n (n included) for which match holds.
func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && match(d) {
			out = append(out, d)
		}
	}
	if n.Type == html.ElementNode && match(n) {
		out = append([]*html.Node{n}, out...)
	}
	return out
}

func byID(t *testing.T, doc *html.Node, id string) *html.Node {
	t.Helper()
	ns := find(doc, func(n *html.Node) bool { return attr(n, "id") == id })
	if len(ns) != 1 {
		t.Fatalf("%d elements with id %q", len(ns), id)
	}
	return ns[0]
}

func hasClass(c string) func(*html.Node) bool {
	return func(n *html.Node) bool { return slices.Contains(strings.Fields(attr(n, "class")), c) }
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is the text under ns, trimmed.
func text(ns ...*html.Node) string {
	var b strings.Builder
	for _, n := range ns {
		for d := range n.Descendants() {
			if d.Type == html.TextNode {
				b.WriteString(d.Data)
			}
		}
	}
	return strings.TrimSpace(b.String())
}
