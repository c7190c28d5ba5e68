package server

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/fleetkv/fleetkv/client"
)

// TestMetrics scrapes /metrics after native and RESP traffic and checks
// that the counters moved and every family is there.
func TestMetrics(t *testing.T) {
	s := startRESP(t, func(c *Config) { c.Admin = "127.0.0.1:0" })
	cl, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < 10; i++ {
		if err := cl.Upsert([]byte("m"), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Wait(); err != nil {
		t.Fatal(err)
	}
	rc := goRedis(t, s, nil)
	for i := 0; i < 7; i++ {
		res(rc.Get(context.Background(), "m").Result()).ok(t)
	}
	resp, err := http.Get("http://" + s.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	value := func(series string) float64 {
		t.Helper()
		m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + " (\\S+)$").FindSubmatch(body)
		if m == nil {
			t.Fatalf("/metrics lacks %s", series)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	if v := value(`fleetkv_operations_total{op="upsert"}`); v < 10 {
		t.Errorf("upserts = %v, want >= 10", v)
	}
	if v := value(`fleetkv_operations_total{op="resp"}`); v < 7 {
		t.Errorf("RESP commands = %v, want >= 7", v)
	}
	if v := value(`fleetkv_parked_read_wait_seconds_count`); v != 0 {
		t.Errorf("parked read waits = %v outside any migration", v)
	}
	if v := value(`fleetkv_parked_read_wait_seconds_bucket{le="+Inf"}`); v != 0 {
		t.Errorf("parked read waits = %v in the +Inf bucket", v)
	}
	if v := value(`fleetkv_connections{protocol="resp"}`); v < 1 {
		t.Errorf("RESP connections = %v", v)
	}
	if v := value(`fleetkv_log_address_bytes{marker="tail"}`); v <= value(`fleetkv_log_address_bytes{marker="begin"}`) {
		t.Errorf("log tail %v not past begin", v)
	}
	for _, series := range []string{"fleetkv_view", "fleetkv_io_in_flight", "fleetkv_epoch_pending_actions",
		`fleetkv_epoch{which="safe"}`, "fleetkv_log_memory_bytes", "go_goroutines", "process_cpu_seconds_total",
		"fleetkv_background_share", "fleetkv_foreground_p999_seconds", "fleetkv_parked_reads_covered_total"} {
		value(series)
	}
}
