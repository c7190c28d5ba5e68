package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// tinyLog is a store log of eight 4 KiB pages in memory over dev (nil: a
// memory device): a few hundred records push the older ones to the device.
func tinyLog(dev ssd.Device) hlog.Config {
	return hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, Device: dev}
}

// oneLoopOver sets c up for the tests of cold turns: one loop whose log
// (tinyLog) lies over dev, with at most maxPending device reads waiting.
func oneLoopOver(c *Config, dev ssd.Device, maxPending int) {
	c.Loops, c.MaxPendingIO, c.Store.Log = 1, maxPending, tinyLog(dev)
}

func startTest(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", Loops: 2, NoPin: true,
		Store: store.Config{IndexBits: 14, Log: hlog.Config{PageBits: 20, MemoryBytes: 64 << 20}}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Start(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func TestSyncAPI(t *testing.T) {
	s := startTest(t, nil)
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, found, err := c.Get(ctx, []byte("k")); err != nil || found {
		t.Fatalf("get of an absent key: %v %v", found, err)
	}
	if err := c.Set(ctx, []byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if v, found, err := c.Get(ctx, []byte("k")); err != nil || !found || string(v) != "v1" {
		t.Fatalf("get: %q %v %v", v, found, err)
	}
	if n, err := c.Incr(ctx, []byte("n"), 5); err != nil || n != 5 {
		t.Fatalf("incr: %d %v", n, err)
	}
	if n, err := c.Incr(ctx, []byte("n"), -2); err != nil || n != 3 {
		t.Fatalf("incr: %d %v", n, err)
	}
	if _, err := c.Incr(ctx, []byte("k"), 1); err != client.ErrNotInt64 {
		t.Fatalf("incr of a 2-byte value: %v", err)
	}
	if existed, err := c.Delete(ctx, []byte("k")); err != nil || !existed {
		t.Fatalf("delete: %v %v", existed, err)
	}
	if _, found, _ := c.Get(ctx, []byte("k")); found {
		t.Fatal("deleted key found")
	}
	if err := c.Set(ctx, make([]byte, 70<<10), nil); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("oversized key: %v", err)
	}
}

// verifier drives one pipelined session over its own keys and checks every
// read against what it wrote.
type verifier struct {
	t       *testing.T
	s       *client.Session
	id      int
	model   map[uint64]uint64
	mu      sync.Mutex
	bad     []string
	applied int
}

func (v *verifier) key(k uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte(fmt.Sprintf("s%d-", v.id)), k)
}

func (v *verifier) run(ops int) {
	var val [8]byte
	for i := 0; i < ops; i++ {
		k := uint64(i*7919) % 500
		if i%3 == 0 {
			want, had := v.model[k]
			err := v.s.Read(v.key(k), func(r client.Result) {
				got := uint64(0)
				if len(r.Value) == 8 {
					got = binary.LittleEndian.Uint64(r.Value)
				}
				if r.Err != nil || (r.Status == client.OK) != had || got != want {
					v.bad = append(v.bad, fmt.Sprintf("key %d: got %v %d %v, want %v %d", k, r.Status, got, r.Err, had, want))
				}
			})
			if err != nil {
				v.t.Error(err)
				return
			}
			continue
		}
		binary.LittleEndian.PutUint64(val[:], uint64(i))
		v.model[k] = uint64(i)
		if err := v.s.Upsert(v.key(k), val[:], func(r client.Result) {
			if r.Err != nil {
				v.bad = append(v.bad, r.Err.Error())
			}
			v.applied++
		}); err != nil {
			v.t.Error(err)
			return
		}
	}
	if err := v.s.Wait(); err != nil {
		v.t.Error(err)
	}
}

func TestPipelinedSessions(t *testing.T) {
	s := startTest(t, nil)
	const sessions, ops = 8, 20000
	var wg sync.WaitGroup
	vs := make([]*verifier, sessions)
	for i := range vs {
		cs, err := client.Dial(client.Config{Addr: s.Addr(), BatchBytes: 4 << 10, InFlight: 3})
		if err != nil {
			t.Fatal(err)
		}
		vs[i] = &verifier{t: t, s: cs, id: i, model: map[uint64]uint64{}}
		wg.Add(1)
		go func(v *verifier) { defer wg.Done(); v.run(ops) }(vs[i])
	}
	wg.Wait()
	for _, v := range vs {
		if len(v.bad) > 0 {
			t.Fatalf("session %d: %d wrong results, first: %s", v.id, len(v.bad), v.bad[0])
		}
		v.s.Close()
	}
	st := s.Stats()
	if st.Ops["read"]+st.Ops["upsert"] != sessions*ops {
		t.Fatalf("server counted %v operations, want %d", st.Ops, sessions*ops)
	}
}

// TestViewBumpsApplyEveryOperationOnce bumps the view while sessions pipeline
// ADDs: every rejected batch is re-issued, and every counter ends at exactly
// the number of ADDs sent to it.
func TestViewBumpsApplyEveryOperationOnce(t *testing.T) {
	s := startTest(t, nil)
	const sessions, adds, counters = 4, 20000, 10
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				s.BumpView()
			}
		}
	}()
	for i := 0; i < sessions; i++ {
		cs, err := client.Dial(client.Config{Addr: s.Addr(), BatchBytes: 1 << 10, InFlight: 4})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cs.Close()
			for j := 0; j < adds; j++ {
				if err := cs.Add([]byte(fmt.Sprint("counter", j%counters)), 1, func(r client.Result) {
					if r.Err != nil {
						t.Error(r.Err)
					}
				}); err != nil {
					t.Error(err)
					return
				}
			}
			if err := cs.Wait(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	if s.Stats().Rejected == 0 {
		t.Fatal("no batch was rejected: the view never changed under the sessions")
	}
	c, _ := client.New(client.Config{Addr: s.Addr()})
	defer c.Close()
	for i := 0; i < counters; i++ {
		n, err := c.Incr(context.Background(), []byte(fmt.Sprint("counter", i)), 0)
		if err != nil || n != sessions*adds/counters {
			t.Fatalf("counter%d = %d (%v), want %d", i, n, err, sessions*adds/counters)
		}
	}
}

// readBatch reads one response batch from a raw connection.
func readBatch(t *testing.T, nc net.Conn) (wire.ResponseHeader, []byte) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	hb := make([]byte, wire.HeaderSize)
	if _, err := io.ReadFull(nc, hb); err != nil {
		t.Fatalf("read header: %v", err)
	}
	h, err := wire.ParseResponseHeader(hb, wire.Limits{MaxBatch: 1 << 30, MaxKey: 1 << 20, MaxValue: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return h, body
}

func expectClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("connection still open after an error batch (read %d, %v)", n, err)
	}
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	s := startTest(t, func(c *Config) { c.Limits = wire.Limits{MaxBatch: 64 << 10, MaxKey: 1 << 10, MaxValue: 32 << 10} })
	good, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	oversized, start := wire.BeginBatch(nil)
	wire.FinishRequest(oversized, start, wire.RequestHeader{Count: 1})
	oversized[8], oversized[9], oversized[10] = 0, 0, 0x10 // body length 1 MiB
	badOp, start := wire.BeginBatch(nil)
	badOp = append(badOp, 99, 0)
	wire.FinishRequest(badOp, start, wire.RequestHeader{Count: 1, View: 1, Serial: 1})
	bigKey, start := wire.BeginBatch(nil)
	bigKey = wire.AppendOp(bigKey, wire.OpRead, make([]byte, 2<<10), nil)
	wire.FinishRequest(bigKey, start, wire.RequestHeader{Count: 1, View: 1, Serial: 1})
	for name, c := range map[string]struct {
		b    []byte
		code wire.Code
	}{
		"garbage":    {[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n1234567890"), wire.CodeBadVersion},
		"oversized":  {oversized, wire.CodeTooLarge},
		"unknown op": {badOp, wire.CodeUnknownOp},
		"big key":    {bigKey, wire.CodeTooLarge},
	} {
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(c.b); err != nil {
			t.Fatal(err)
		}
		h, body := readBatch(t, nc)
		if h.Status != wire.BatchError || h.Code != c.code || len(body) == 0 {
			t.Fatalf("%s: got status %d code %v %q", name, h.Status, h.Code, body)
		}
		expectClosed(t, nc)
		nc.Close()
		var done bool
		if err := good.Upsert([]byte(name), []byte("still here"), func(r client.Result) { done = r.Err == nil }); err != nil {
			t.Fatal(err)
		}
		if err := good.Wait(); err != nil || !done {
			t.Fatalf("after %s the good session failed: %v", name, err)
		}
	}
}

func TestAuthToken(t *testing.T) {
	s := startTest(t, func(c *Config) { c.AuthToken = "sesame" })
	if _, err := client.Dial(client.Config{Addr: s.Addr(), AuthToken: "wrong"}); err == nil {
		t.Fatal("a session with a wrong token was opened")
	} else if se := (*client.ServerError)(nil); !errors.As(err, &se) || se.Code != wire.CodeAuth {
		t.Fatalf("wrong token: %v", err)
	}
	// Data before OPEN is refused too.
	nc, _ := net.Dial("tcp", s.Addr())
	b, start := wire.BeginBatch(nil)
	b = wire.AppendOp(b, wire.OpRead, []byte("k"), nil)
	wire.FinishRequest(b, start, wire.RequestHeader{Count: 1, View: 1, Serial: 1})
	nc.Write(b)
	if h, _ := readBatch(t, nc); h.Status != wire.BatchError || h.Code != wire.CodeAuth {
		t.Fatalf("data before OPEN: %+v", h)
	}
	nc.Close()
	cs, err := client.Dial(client.Config{Addr: s.Addr(), AuthToken: "sesame"})
	if err != nil {
		t.Fatal(err)
	}
	cs.Close()
}

// TestKilledClientLeaksNothing: clients that vanish mid-batch leave no
// goroutine, connection or memory behind.
func TestKilledClientLeaksNothing(t *testing.T) {
	s := startTest(t, nil)
	half, start := wire.BeginBatch(nil)
	for i := 0; i < 100; i++ {
		half = wire.AppendOp(half, wire.OpUpsert, []byte(fmt.Sprint("k", i)), make([]byte, 100))
	}
	wire.FinishRequest(half, start, wire.RequestHeader{Count: 100, View: 1, Serial: 1})
	half = half[:len(half)/2]
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	for i := 0; i < 200; i++ {
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(half)
		nc.Close()
	}
	// The loops may accept the last connections after a first look finds
	// none open: wait until none has been open for 100 ms.
	deadline := time.Now().Add(5 * time.Second)
	for quiet := 0; quiet < 20 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if s.Stats().Connections == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	if n := s.Stats().Connections; n != 0 {
		t.Fatalf("%d connections left open", n)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Fatalf("goroutines %d -> %d", goroutines, g)
	}
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 8<<20 {
		t.Fatalf("heap grew by %d bytes after 200 killed clients", grow)
	}
}

// TestColdKeyOperationsKeepTheirOrder: an APPEND on a key whose record is on
// the device goes pending; the UPSERT and APPEND after it in the same
// pipeline must take effect after it, as they were sent.
func TestColdKeyOperationsKeepTheirOrder(t *testing.T) {
	s := startTest(t, func(c *Config) {
		c.Loops = 1
		c.Store.Log = tinyLog(nil)
	})
	cs, err := client.Dial(client.Config{Addr: s.Addr(), BatchBytes: 1 << 10, InFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	keys := 20
	for k := 0; k < keys; k++ {
		if err := cs.Upsert(fmt.Appendf(nil, "cold-%d", k), []byte("old"), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Push the keys out of memory: 64 KiB of log into 32 KiB of frames.
	filler := make([]byte, 200)
	for i := 0; i < 400; i++ {
		if err := cs.Upsert(fmt.Appendf(nil, "filler-%d", i), filler, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.Wait(); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().Pending
	for k := 0; k < keys; k++ {
		key := fmt.Appendf(nil, "cold-%d", k)
		for _, err := range []error{
			cs.Append(key, []byte("+a"), nil),
			cs.Upsert(key, []byte("new"), nil),
			cs.Append(key, []byte("+b"), nil),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// Read in the same pipeline, and again once everything has completed:
	// the pending APPEND must not land after the operations behind it.
	for round := 0; round < 2; round++ {
		for k := 0; k < keys; k++ {
			if err := cs.Read(fmt.Appendf(nil, "cold-%d", k), func(r client.Result) {
				if r.Err != nil || string(r.Value) != "new+b" {
					t.Errorf("round %d: cold-%d = %q %v, want \"new+b\"", round, k, r.Value, r.Err)
				}
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := cs.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if s.Stats().Pending == before {
		t.Fatal("no operation went pending: the test did not reach the device")
	}
}

// TestDeviceErrorFailsOnlyThatOperation: reads that hit a failing device get
// a DEVICE I/O error result; the session, the connection and every other
// key keep working.
func TestDeviceErrorFailsOnlyThatOperation(t *testing.T) {
	fd := ssd.NewFaultyDevice(ssd.NewMemDevice())
	s := startTest(t, func(c *Config) {
		c.Loops = 1
		c.Store.Log = tinyLog(fd)
	})
	cs, err := client.Dial(client.Config{Addr: s.Addr(), BatchBytes: 1 << 10, InFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	const n = 500
	val := func(i int) []byte { return fmt.Appendf(make([]byte, 0, 100), "%0100d", i) }
	for i := 0; i < n; i++ {
		if err := cs.Upsert(fmt.Appendf(nil, "k%d", i), val(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.Wait(); err != nil {
		t.Fatal(err)
	}
	fd.FailReads(ssd.FaultRule{})
	var ioErrs, ok int
	for i := 0; i < n; i++ {
		i := i
		if err := cs.Read(fmt.Appendf(nil, "k%d", i), func(r client.Result) {
			var oe *client.OpError
			switch {
			case errors.As(r.Err, &oe) && oe.Code == wire.CodeIO:
				ioErrs++
			case r.Err == nil && bytes.Equal(r.Value, val(i)):
				ok++
			default:
				t.Errorf("k%d: %+v", i, r)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.Wait(); err != nil {
		t.Fatal(err)
	}
	if ioErrs == 0 || ok == 0 {
		t.Fatalf("%d I/O errors, %d good reads: want both (cold keys fail, hot ones do not)", ioErrs, ok)
	}
	fd.Clear()
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, i := range []int{0, n / 2, n - 1} {
		if v, found, err := c.Get(context.Background(), fmt.Appendf(nil, "k%d", i)); err != nil || !found || !bytes.Equal(v, val(i)) {
			t.Fatalf("after the fault: k%d = %q %v %v", i, v, found, err)
		}
	}
}

// TestHeldBackClientInputIsBounded: a native client held back by
// MaxPendingIO (its reads wait on a stalled device) that keeps sending is
// told its input is over the limit and closed, instead of making the server
// buffer whatever it sends; other clients are served throughout.
func TestHeldBackClientInputIsBounded(t *testing.T) {
	fd := ssd.NewFaultyDevice(ssd.NewMemDevice())
	const maxInput = 256 << 10
	s := startTest(t, func(c *Config) {
		oneLoopOver(c, fd, 1)
		c.Limits = wire.DefaultLimits
		c.Limits.MaxBatch = 64 << 10
		c.MaxInput = maxInput
	})
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := range 500 {
		if err := c.Set(ctx, fmt.Appendf(nil, "k%d", i), make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	fd.HoldReads()
	errorsBefore := s.Stats().Errors
	flood, err := client.Dial(client.Config{Addr: s.Addr(), BatchBytes: 16 << 10, InFlight: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	defer fd.ReleaseReads() // first: Close waits for the redialled session's reads
	// Flood until an operation fails: the server's ERROR batch when the
	// client reads it, or ErrUnknownOutcome when a write finds the
	// connection closed first (the client then redials; the test stops).
	var floodErr error
	record := func(r client.Result) {
		if r.Err != nil && floodErr == nil {
			floodErr = r.Err
		}
	}
	for sent := 0; floodErr == nil; sent += 4 { // code, key length, key
		if sent > 64*maxInput {
			t.Fatalf("%d bytes sent and no error: the input is not bounded", sent)
		}
		if err := flood.Read([]byte("k0"), record); err != nil && floodErr == nil { // k0 is on the device: held
			floodErr = err
		}
	}
	t.Logf("the flooding client got: %v", floodErr)
	var se *client.ServerError
	switch {
	case errors.As(floodErr, &se) && se.Code == wire.CodeTooLarge && strings.Contains(se.Msg, "over the server's limit"):
	case errors.Is(floodErr, client.ErrUnknownOutcome):
	default:
		t.Fatalf("flooding client got %v, want a TOO_LARGE error about its input, or its connection closed", floodErr)
	}
	if s.Stats().Errors == errorsBefore {
		t.Fatal("the server counted no client error: the connection was not closed for its input")
	}
	if err := c.Set(ctx, []byte("after"), []byte("v")); err != nil {
		t.Fatalf("another client after the flood: %v", err)
	}
}

// TestAddressInUseIsRefused: a server started on a data or RESP address
// that another server listens on fails to start, where SO_REUSEPORT would
// have let it share the first one's connections; the first goes on
// serving. Once it stopped, a server starts on its address although the
// connections it accepted there linger.
func TestAddressInUseIsRefused(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0", RESP: "127.0.0.1:0", Loops: 2, NoPin: true,
		Store: store.Config{IndexBits: 12, Log: hlog.Config{PageBits: 20, MemoryBytes: 8 << 20}}}
	first, err := Start(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, listen, resp string }{
		{"data", first.Addr(), ""},
		{"resp", "127.0.0.1:0", first.RESPAddr()},
	} {
		c := cfg
		c.Listen, c.RESP = tc.listen, tc.resp
		s, err := Start(c, quietLog())
		if err == nil {
			_ = s.Shutdown(context.Background())
			t.Fatalf("%s: a second server started on an address in use", tc.name)
		}
		if !strings.Contains(err.Error(), "in use by another listener") {
			t.Errorf("%s: error %q does not say the address is in use", tc.name, err)
		}
	}
	cl, err := client.New(client.Config{Addr: first.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Set(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatalf("the first server after the refusals: %v", err)
	}
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	cfg.Listen, cfg.RESP = first.Addr(), first.RESPAddr()
	startTest(t, func(c *Config) { *c = cfg })
}

// TestListenersMustNotShareAPort: a RESP listener on the data listener's
// port is refused, also where one of the two is on every address.
func TestListenersMustNotShareAPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := Config{Listen: fmt.Sprintf("127.0.0.1:%d", port), RESP: fmt.Sprintf(":%d", port), Loops: 1, NoPin: true,
		Store: store.Config{IndexBits: 12, Log: hlog.Config{PageBits: 20, MemoryBytes: 8 << 20}}}
	s, err := Start(cfg, quietLog())
	if err == nil {
		_ = s.Shutdown(context.Background())
		t.Fatal("a RESP listener on the data listener's port was accepted")
	}
	if !strings.Contains(err.Error(), "would share the data listener") {
		t.Errorf("error %q does not say the listeners share a port", err)
	}
}

// TestReadsBoundTheResponse: values read into one batch's response stop
// at MaxResponse: the read that would pass it fails TOO_LARGE alone, and
// the reads before and after it are answered.
func TestReadsBoundTheResponse(t *testing.T) {
	s := startTest(t, func(c *Config) { c.MaxResponse = 5 << 10 })
	ctx := context.Background()
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big, small := bytes.Repeat([]byte("b"), 2<<10), []byte("s")
	for _, k := range []string{"big1", "big2", "big3"} {
		if err := c.Set(ctx, []byte(k), big); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set(ctx, []byte("small"), small); err != nil {
		t.Fatal(err)
	}
	sess := dialSession(t, client.Config{Addr: s.Addr()})
	got := map[string]client.Result{}
	for _, k := range []string{"big1", "big2", "big3", "small"} {
		if err := sess.Read([]byte(k), func(r client.Result) {
			r.Value = bytes.Clone(r.Value)
			got[k] = r
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string][]byte{"big1": big, "big2": big, "small": small} {
		if r := got[k]; r.Err != nil || !bytes.Equal(r.Value, want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", k, len(r.Value), r.Err, len(want))
		}
	}
	var oe *client.OpError
	if r := got["big3"]; !errors.As(r.Err, &oe) || oe.Code != wire.CodeTooLarge {
		t.Errorf("the read past the response limit: %d bytes, %v; want TOO_LARGE", len(r.Value), r.Err)
	}
}
