package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/server/servertest"
)

func startServer(t *testing.T) *server.Server {
	t.Helper()
	return servertest.Start(t, servertest.Config())
}

// TestSessionOverEachTransport drives a pipelined session over every
// transport: many small batches in flight, callbacks in issue order, every
// result what the operations before it imply.
func TestSessionOverEachTransport(t *testing.T) {
	srv := startServer(t)
	for _, tr := range []string{client.TransportStd, client.TransportNetpoll, client.TransportBlocking} {
		t.Run(tr, func(t *testing.T) {
			s, err := client.Dial(client.Config{Addr: srv.Addr(), Transport: tr, BatchBytes: 512, InFlight: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const n = 2000
			next := 0 // index of the next callback expected
			order := func(i int, check func(client.Result) error) client.Callback {
				return func(r client.Result) {
					if i != next {
						t.Fatalf("callback %d ran when %d was due", i, next)
					}
					next++
					if err := check(r); err != nil {
						t.Errorf("op %d: %v", i, err)
					}
				}
			}
			ok := func(r client.Result) error {
				if r.Err != nil || r.Status != client.OK {
					return fmt.Errorf("got %+v, want OK", r)
				}
				return nil
			}
			i := 0
			for k := 0; k < n; k++ {
				key := []byte(fmt.Sprintf("%s-key-%d", tr, k))
				val := bytes.Repeat([]byte{byte(k)}, 1+k%100)
				must(t, s.Upsert(key, val, order(i, ok)))
				must(t, s.Read(key, order(i+1, func(r client.Result) error {
					if r.Status != client.OK || !bytes.Equal(r.Value, val) {
						return fmt.Errorf("read %q = %v %x, want %x", key, r.Status, r.Value, val)
					}
					return nil
				})))
				must(t, s.Append(key, []byte("!"), order(i+2, ok)))
				must(t, s.Delete(key, order(i+3, ok)))
				must(t, s.Read(key, order(i+4, func(r client.Result) error {
					if r.Err != nil || r.Status != client.NotFound {
						return fmt.Errorf("read after delete = %+v, want NotFound", r)
					}
					return nil
				})))
				i += 5
			}
			must(t, s.Wait())
			if next != i || s.Outstanding() != 0 {
				t.Fatalf("%d of %d callbacks ran, %d outstanding", next, i, s.Outstanding())
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestConfigAndLimitErrors(t *testing.T) {
	if _, err := client.Dial(client.Config{}); err == nil {
		t.Error("Dial without an address succeeded")
	}
	if _, err := client.New(client.Config{Addr: "127.0.0.1:1", Transport: "carrier-pigeon"}); err == nil {
		t.Error("unknown transport accepted")
	}
	if _, err := client.Dial(client.Config{Addr: "127.0.0.1:1", DialTimeout: time.Second}); err == nil {
		t.Error("Dial to a closed port succeeded")
	}
	srv := startServer(t)
	s, err := client.Dial(client.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Upsert(make([]byte, 64<<10+1), nil, nil); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("oversized key: %v, want ErrTooLarge", err)
	}
	if err := s.Upsert([]byte("k"), make([]byte, 16<<20+1), nil); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("oversized value: %v, want ErrTooLarge", err)
	}
	must(t, s.Close())
	if err := s.Read([]byte("k"), nil); !errors.Is(err, client.ErrClosed) {
		t.Errorf("read on a closed session: %v, want ErrClosed", err)
	}
}

// proxy forwards TCP connections to a server and can cut them all or stall
// them, to see what the client does when the network misbehaves.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	stall  atomic.Bool // drop what the server sends
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go io.Copy(u, c)
		go p.down(c, u)
	}
}

// down forwards the server's bytes to the client unless stalled.
func (p *proxy) down(c, u net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := u.Read(buf)
		if err != nil {
			c.Close()
			return
		}
		if p.stall.Load() {
			continue
		}
		if _, err := c.Write(buf[:n]); err != nil {
			u.Close()
			return
		}
	}
}

// cut closes every proxied connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestConnectionLossFailsOnlyWhatWasInFlight cuts the connection while
// batches are in flight: those operations fail with ErrUnknownOutcome, the
// session reconnects by itself, and operations queued afterwards succeed.
func TestConnectionLossFailsOnlyWhatWasInFlight(t *testing.T) {
	srv := startServer(t)
	p := newProxy(t, srv.Addr())
	s, err := client.Dial(client.Config{Addr: p.ln.Addr().String(), BatchBytes: 256, InFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var unknown, okCount, other int
	count := func(r client.Result) {
		switch {
		case errors.Is(r.Err, client.ErrUnknownOutcome):
			unknown++
		case r.Err == nil:
			okCount++
		default:
			other++
			t.Errorf("unexpected result %+v", r)
		}
	}
	must(t, s.Upsert([]byte("before"), []byte("v"), count))
	must(t, s.Wait())
	// Queue enough to put batches in flight, then cut before reading answers.
	for i := 0; i < 40; i++ {
		must(t, s.Upsert([]byte(fmt.Sprintf("k%d", i)), []byte("v"), count))
	}
	if s.Outstanding() == 0 {
		t.Fatal("nothing outstanding before the cut")
	}
	p.cut()
	_ = s.Wait() // the lost batches' callbacks run here
	if unknown == 0 {
		t.Fatalf("after the cut: %d unknown, %d ok; want some unknown outcomes", unknown, okCount)
	}
	before := okCount
	must(t, s.Upsert([]byte("after"), []byte("v2"), count))
	must(t, s.Read([]byte("after"), func(r client.Result) {
		if r.Err != nil || string(r.Value) != "v2" {
			t.Errorf("read after reconnect = %+v", r)
		}
	}))
	must(t, s.Wait())
	if okCount != before+1 || other != 0 {
		t.Fatalf("after reconnect: ok %d (want %d), other %d", okCount, before+1, other)
	}
}

// TestClientDeadline: a synchronous call whose answer never comes returns
// once its context expires or is cancelled, with the context's error, over
// the standard transport and the blocking one. Over the blocking one, the
// first case's read sleeps in the kernel when the cancellation comes; the
// other two wait in the netpoller (a context with a deadline).
func TestClientDeadline(t *testing.T) {
	for _, tr := range []string{client.TransportStd, client.TransportBlocking} {
		t.Run(tr, func(t *testing.T) { testClientDeadline(t, tr) })
	}
}

func testClientDeadline(t *testing.T, transport string) {
	srv := startServer(t)
	p := newProxy(t, srv.Addr())
	c, err := client.New(client.Config{Addr: p.ln.Addr().String(), Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	must(t, c.Set(ctx, []byte("k"), []byte("v")))
	if v, found, err := c.Get(ctx, []byte("k")); err != nil || !found || string(v) != "v" {
		t.Fatalf("Get = %q %v %v", v, found, err)
	}
	if n, err := c.Incr(ctx, []byte("n"), 5); err != nil || n != 5 {
		t.Fatalf("Incr = %d %v", n, err)
	}
	if existed, err := c.Delete(ctx, []byte("k")); err != nil || !existed {
		t.Fatalf("Delete = %v %v", existed, err)
	}

	p.stall.Store(true) // answers are dropped from now on
	// The first case finds the session's connection open (then lost).
	for _, how := range []string{"cancel without a deadline", "deadline", "cancel before the deadline"} {
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		if how == "cancel without a deadline" {
			cancel()
			dctx, cancel = context.WithCancel(ctx)
		}
		if how != "deadline" {
			time.AfterFunc(20*time.Millisecond, cancel)
		}
		start := time.Now()
		_, _, err = c.Get(dctx, []byte("k"))
		cancel()
		if err == nil || ctx.Err() != nil || dctx.Err() == nil || time.Since(start) > 5*time.Second {
			t.Fatalf("Get through a stalled connection (%s): %v after %v; want the context's error",
				how, err, time.Since(start))
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not wrap the context's error", err)
		}
	}
}

// TestClientExpiry: SetTTL writes a value that reads as absent once its
// TTL passed; Expire sets, reports and removes an expiry.
func TestClientExpiry(t *testing.T) {
	s := startServer(t)
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.SetTTL(ctx, []byte("short"), []byte("v"), 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, []byte("long"), []byte("w")); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if existed, old, err := c.Expire(ctx, []byte("long"), at); err != nil || !existed || !old.IsZero() {
		t.Fatalf("Expire long: %v %v %v", existed, old, err)
	}
	if existed, old, err := c.Expire(ctx, []byte("long"), time.Time{}); err != nil || !existed || !old.Equal(at) {
		t.Fatalf("Expire long again: %v %v (want %v) %v", existed, old, at, err)
	}
	if existed, _, err := c.Expire(ctx, []byte("none"), at); err != nil || existed {
		t.Fatalf("Expire of a missing key: %v %v", existed, err)
	}
	if _, found, err := c.Get(ctx, []byte("short")); err != nil || !found {
		t.Fatalf("short before its TTL: %v %v", found, err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, found, err := c.Get(ctx, []byte("short")); err != nil || found {
		t.Fatalf("short after its TTL: %v %v", found, err)
	}
	if v, found, err := c.Get(ctx, []byte("long")); err != nil || !found || string(v) != "w" {
		t.Fatalf("long: %q %v %v", v, found, err)
	}
}
