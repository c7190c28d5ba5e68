package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/ssd"
)

// TestColdBatchTurnsEndInsideIt: a batch of reads on a stalled device ends
// its connection's turn after turnReads of them go to the device, inside
// the batch (before, one turn sent the whole batch), and the connection,
// then held back by MaxPendingIO, is resumed through the loop's doorbell
// once the device answers: every result arrives, and right. A client of
// in-memory keys is served while the batch is held.
func TestColdBatchTurnsEndInsideIt(t *testing.T) {
	fd := ssd.NewFaultyDevice(ssd.NewMemDevice())
	s := startTest(t, func(c *Config) { oneLoopOver(c, fd, 4) })
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const n, reads = 500, 200
	key := func(i int) []byte { return fmt.Appendf(nil, "k%d", i) }
	val := func(i int) []byte { return fmt.Appendf(make([]byte, 0, 100), "%0100d", i) }
	for i := range n {
		if err := c.Set(ctx, key(i), val(i)); err != nil {
			t.Fatal(err)
		}
	}
	cold, err := client.Dial(client.Config{Addr: s.Addr(), BatchBytes: 16 << 10, InFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cold.Close()
	fd.HoldReads()
	defer fd.ReleaseReads()
	before := s.Stats()
	got := 0 // results; a read's completion may come before an earlier one's
	for i := range reads {
		if err := cold.Read(key(i), func(r client.Result) {
			if r.Err != nil || !bytes.Equal(r.Value, val(i)) {
				t.Errorf("k%d = %.12q… %v", i, r.Value, r.Err)
			}
			got++
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cold.Flush(); err != nil {
		t.Fatal(err)
	}
	sent := func() uint64 { return s.Stats().Pending - before.Pending }
	for deadline := time.Now().Add(10 * time.Second); sent() < turnReads; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads went to the device in 10 s, want %d", sent(), turnReads)
		}
	}
	time.Sleep(100 * time.Millisecond) // the loop's turns settle
	if d := sent(); d != turnReads {
		t.Fatalf("%d of the batch's reads went to the stalled device, want one turn's %d: the turn did not end inside the batch", d, turnReads)
	}
	if s.Stats().HeldBatches == before.HeldBatches {
		t.Fatal("no turn ended inside a batch")
	}
	if v, found, err := c.Get(ctx, key(n-1)); err != nil || !found || !bytes.Equal(v, val(n-1)) {
		t.Fatalf("an in-memory key beside the held batch: %.12q %v %v", v, found, err)
	}
	fd.ReleaseReads()
	done := make(chan error, 1)
	go func() { done <- cold.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		_ = s.Shutdown(ctx) // closes the connection: cold.Close would wait for its results
		t.Fatalf("%d of %d results in 20 s: the held connection was not resumed", got, reads)
	}
	if got != reads {
		t.Fatalf("%d results, want %d", got, reads)
	}
	if d := sent(); d < 2*turnReads {
		t.Fatalf("%d reads went to the device: the test did not reach it", d)
	}
}

// TestRESPColdTurnsEndAtTurnReads: a pipeline of GETs of cold keys on a
// stalled device ends its connection's turn each time turnReads reads went
// to the device (before, one turn sent them all), the turns go on through
// the loop's doorbell until every read is on the device, another client is
// served meanwhile, and once the device answers every reply arrives, in
// order and right.
func TestRESPColdTurnsEndAtTurnReads(t *testing.T) {
	fd := ssd.NewFaultyDevice(ssd.NewMemDevice())
	s := startRESP(t, func(c *Config) { oneLoopOver(c, fd, 1024) })
	rc := goRedis(t, s, nil)
	ctx := context.Background()
	const reads = 200
	setCold(t, rc, reads, func(k int) any { return fmt.Sprint("v", k) })
	var req, want bytes.Buffer
	for k := range reads {
		key, v := fmt.Sprint("cold-", k), fmt.Sprint("v", k)
		fmt.Fprintf(&req, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
		fmt.Fprintf(&want, "$%d\r\n%s\r\n", len(v), v)
	}
	fd.HoldReads()
	defer fd.ReleaseReads()
	before := s.Stats()
	nc, err := net.Dial("tcp", s.RESPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(req.Bytes()); err != nil { // one write: one turn could take all
		t.Fatal(err)
	}
	sent := func() uint64 { return s.Stats().Pending - before.Pending }
	for deadline := time.Now().Add(10 * time.Second); sent() < reads; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d reads went to the device in 10 s: the cut turns were not resumed", sent(), reads)
		}
	}
	if cut := s.Stats().RESPCutTurns - before.RESPCutTurns; cut < reads/turnReads-1 {
		t.Fatalf("%d turns ended at turnReads, want %d: a turn sent more than %d reads", cut, reads/turnReads, turnReads)
	}
	if err := rc.Set(ctx, "hot", "h", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rc.Get(ctx, "hot").Result(); err != nil || v != "h" {
		t.Fatalf("another client beside the stalled reads: %q %v", v, err)
	}
	fd.ReleaseReads()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatalf("reading the replies: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("replies differ from the commands' order and values:\ngot  %q\nwant %q", got, want.Bytes())
	}
}
