package client

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// blockingPair dials a TransportBlocking connection to a listener on
// loopback and returns it with the accepted end.
func blockingPair(t *testing.T) (*blockingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, _ := ln.Accept()
		accepted <- nc
	}()
	nc, err := dial(TransportBlocking, ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { nc.Close(); peer.Close() })
	return nc.(*blockingConn), peer
}

// nonblocking reports the socket's O_NONBLOCK flag.
func nonblocking(t *testing.T, c *blockingConn) bool {
	t.Helper()
	var flags int
	var ferr error
	if err := c.rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || ferr != nil {
		t.Fatal(err, ferr)
	}
	return flags&unix.O_NONBLOCK != 0
}

// readAsync starts a one-byte read and returns where its outcome arrives.
func readAsync(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	return done
}

// waitFor returns the outcome of a read started by readAsync, failing the
// test when none comes within d.
func waitFor(t *testing.T, done <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("no outcome within %v", d)
		return nil
	}
}

// asleep waits until a call of c is in progress, and then a little longer
// for it to be asleep in the kernel.
func asleep(t *testing.T, c *blockingConn) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		n := c.calls
		c.mu.Unlock()
		if n > 0 {
			time.Sleep(20 * time.Millisecond)
			return
		}
	}
	t.Fatal("the read never started")
}

// TestBlockingConnModes: without a deadline the socket is in blocking mode
// and data flows both ways; a deadline puts it in non-blocking mode, where
// the netpoller honours it, and clearing it returns to blocking mode with
// the connection usable; the peer's close reads as the end of the stream.
func TestBlockingConnModes(t *testing.T) {
	c, peer := blockingPair(t)
	if nonblocking(t, c) {
		t.Fatal("a new connection's socket is non-blocking")
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	done := readAsync(c)
	asleep(t, c)
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, 5*time.Second); err != nil {
		t.Fatalf("a sleeping read: %v", err)
	}

	noErr(t, c.SetReadDeadline(time.Now().Add(30*time.Millisecond)))
	if !nonblocking(t, c) {
		t.Fatal("a deadline left the socket in blocking mode")
	}
	start := time.Now()
	if err := waitFor(t, readAsync(c), 5*time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read past its deadline: %v", err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatalf("the read failed after %v, before its deadline", time.Since(start))
	}
	noErr(t, c.SetDeadline(time.Unix(1, 0))) // passed, with nothing asleep: no shutdown
	if err := waitFor(t, readAsync(c), 5*time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read after a passed deadline: %v", err)
	}
	noErr(t, c.SetDeadline(time.Time{}))
	if nonblocking(t, c) {
		t.Fatal("clearing the deadlines left the socket non-blocking")
	}
	done = readAsync(c)
	asleep(t, c)
	if _, err := peer.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, 5*time.Second); err != nil {
		t.Fatalf("a read after the deadlines were cleared: %v", err)
	}
	peer.Close()
	if err := waitFor(t, readAsync(c), 5*time.Second); err != io.EOF {
		t.Fatalf("a read after the peer closed: %v, want io.EOF", err)
	}
}

// TestBlockingConnSevered: a deadline that has passed, set from another
// goroutine while a read sleeps in the kernel, wakes it with the deadline's
// error, and every later call fails the same way, deadlines cleared or not.
func TestBlockingConnSevered(t *testing.T) {
	c, _ := blockingPair(t)
	done := readAsync(c)
	asleep(t, c)
	noErr(t, c.SetReadDeadline(time.Unix(1, 0)))
	if err := waitFor(t, done, 5*time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the sleeping read: %v, want the deadline's error", err)
	}
	noErr(t, c.SetDeadline(time.Time{}))
	if _, err := c.Write([]byte("z")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write after the connection was severed: %v", err)
	}
	if err := waitFor(t, readAsync(c), 5*time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read after the connection was severed: %v", err)
	}
}

// TestBlockingConnDeadlineWhileAsleep: a deadline in the future, set
// while a read sleeps in the kernel, ends the read when it passes.
func TestBlockingConnDeadlineWhileAsleep(t *testing.T) {
	c, _ := blockingPair(t)
	done := readAsync(c)
	asleep(t, c)
	start := time.Now()
	noErr(t, c.SetReadDeadline(start.Add(50*time.Millisecond)))
	if err := waitFor(t, done, 5*time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the sleeping read: %v, want the deadline's error", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("the read ended after %v, before its deadline", d)
	}
}

// TestBlockingConnCloseWakes: Close returns while a read sleeps in the
// kernel, and the read fails with net.ErrClosed, not as the stream's end.
func TestBlockingConnCloseWakes(t *testing.T) {
	c, _ := blockingPair(t)
	done := readAsync(c)
	asleep(t, c)
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the sleeping read")
	}
	if err := waitFor(t, done, 5*time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the sleeping read after Close: %v, want net.ErrClosed", err)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
