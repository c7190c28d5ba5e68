package node

import (
	"bytes"
	"context"
	"testing"

	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/tier"
)

// ioFunc is an ssd.Callback.
type ioFunc func(n int, err error)

func (f ioFunc) IODone(n int, err error) { f(n, err) }

// heldDevice delivers each read's outcome once release is closed.
type heldDevice struct {
	ssd.Device
	release chan struct{}
}

func (d heldDevice) ReadAsync(p []byte, off uint64, cb ssd.Callback) {
	d.Device.ReadAsync(p, off, ioFunc(func(n int, err error) {
		go func() { <-d.release; cb.IODone(n, err) }()
	}))
}

// TestGatedDeviceGivesTheTokenUpWhileItWaits: a worker holding the gate's
// one token gives it up while its read waits for the tier (another worker
// can take it), and has it back when its callback runs; a read of a block
// the reader keeps completes at once and never lets it go.
func TestGatedDeviceGivesTheTokenUpWhileItWaits(t *testing.T) {
	ctx := context.Background()
	store, err := tier.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const size = tier.MinSegmentSize
	page := make([]byte, size) // segment 0 of a log, put as the object it is
	for i := range page {
		page[i] = byte(i * 3)
	}
	segs, err := tier.NewSegments(store, "0123abcd", size)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, segs.Name(0), bytes.NewReader(page), size); err != nil {
		t.Fatal(err)
	}
	br := segs.BlockReader(2, 4)
	defer br.Close()

	g := make(cpuGate, 1)
	release := make(chan struct{})
	held := gatedDevice{heldDevice{br, release}, g}
	g.acquire() // the worker's token
	seen := make(chan int, 1)
	p := make([]byte, 64)
	held.ReadAsync(p, 4096, ioFunc(func(n int, err error) {
		if err != nil || n != len(p) {
			t.Errorf("read: %d bytes, %v", n, err)
		}
		seen <- len(g)
	}))
	select {
	case g <- struct{}{}: // another worker runs meanwhile
		<-g
	default:
		t.Fatal("the token was kept while the read waited")
	}
	close(release)
	if n := <-seen; n != 1 {
		t.Fatalf("the callback ran with %d tokens taken, want the worker's one back", n)
	}
	if !bytes.Equal(p, page[4096:4096+64]) {
		t.Fatal("wrong bytes")
	}

	kept := gatedDevice{br, g} // the block is kept now: read at once
	var ranWith = -1
	kept.ReadAsync(p, 100, ioFunc(func(int, error) { ranWith = len(g) }))
	if ranWith != 1 || len(g) != 1 || !bytes.Equal(p, page[100:164]) {
		t.Fatalf("a kept block's read: callback ran with %d tokens taken (-1: not at once), %d after; want 1 and 1", ranWith, len(g))
	}
}
