package client

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestWaitScope: a connection added to a wait gets its deadline; when the
// wait's context ends every connection is broken, and one added after
// that (a redial during the wait) is broken at once.
func TestWaitScope(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	w := newWaitScope(ctx)
	a, peerA := net.Pipe()
	defer a.Close()
	defer peerA.Close()
	w.add(a)
	readFails := func(nc net.Conn, within time.Duration) bool {
		done := make(chan error, 1)
		go func() { _, err := nc.Read(make([]byte, 1)); done <- err }()
		select {
		case err := <-done:
			return errors.Is(err, os.ErrDeadlineExceeded)
		case <-time.After(within):
			return false
		}
	}
	if readFails(a, 50*time.Millisecond) {
		t.Fatal("a read failed before the wait's deadline")
	}
	stop := context.AfterFunc(ctx, w.breakAll)
	defer stop()
	cancel()
	if !readFails(a, 5*time.Second) {
		t.Fatal("the wait's end did not break its connection")
	}
	b, peerB := net.Pipe()
	defer b.Close()
	defer peerB.Close()
	w.add(b)
	if !readFails(b, 5*time.Second) {
		t.Fatal("a connection added after the wait ended was not broken")
	}
}
