package server

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/hlog"
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
	s := startTest(t, func(c *Config) {
		c.Loops = 1
		c.MaxPendingIO = 4
		c.Store.Log = hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, Device: fd}
	})
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
