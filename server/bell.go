package server

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// bell is a loop's doorbell: a socket pair whose reading end is one of the
// loop's gnet connections. It orders deferred turns behind the sockets.
// gnet runs queued tasks (Wake, Execute) until its queue is empty, tasks
// queued meanwhile included, before it polls its sockets again, so turns
// that queue their successors can keep a readable socket unread for as
// long as they go on. A connection whose turn ended for the device
// (turnReads) or that was held back by MaxPendingIO waits in the loop's
// ready list instead, a connection of either front; ringing makes the
// bell's socket readable, and epoll reports it beside the other sockets on
// the loop's next poll, which reads them too. The bell's traffic wakes the
// listed connections then: each waits for at most one round of the
// others' turns.
//
// Invariant: rung is true from a ring until the bell's traffic (one byte
// in flight at most); ready holds each connection at most once (its
// queued flag).
type bell struct {
	w     int // the writing end (the reading end is gnet's)
	rung  bool
	ready []belled
	spare []belled
}

// belled is a connection in the ready list. queued and closed point to its
// own flags (conn's or respConn's), which only the loop touches.
type belled struct {
	c      gnet.Conn
	queued *bool // in the ready list; set by later, cleared by answer
	closed *bool
}

// newBell opens l's doorbell and enrolls its reading end in l's event loop.
// The enrolment completes on the loop (OnOpen); a ring before then waits in
// the socket.
func newBell(el gnet.EventLoop) (*bell, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("doorbell: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "doorbell")
	nc, err := net.FileConn(f) // a copy of the descriptor
	_ = f.Close()
	if err != nil {
		_ = unix.Close(fds[1])
		return nil, fmt.Errorf("doorbell: %w", err)
	}
	b := &bell{w: fds[1]}
	// Enroll copies the descriptor again and closes nc; its result
	// channel is buffered, so nothing need wait for it.
	if _, err := el.Enroll(gnet.NewContext(context.Background(), b), nc); err != nil {
		_ = nc.Close()
		_ = unix.Close(fds[1])
		return nil, fmt.Errorf("doorbell: %w", err)
	}
	return b, nil
}

// later lists x to be woken after the loop's next poll.
func (b *bell) later(x belled) {
	if !*x.queued {
		*x.queued = true
		b.ready = append(b.ready, x)
	}
	if !b.rung {
		b.rung = true
		// One byte at a time cannot fill the socket; once the engine
		// closed the reading end (shutdown) the send fails, unsignalled.
		var one = [1]byte{1}
		_ = unix.Sendto(b.w, one[:], unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
	}
}

// answer is the bell's traffic: it wakes every connection listed before
// it, each through gnet's Wake (the next turn runs from gnet's task queue,
// after this poll's sockets); those that list themselves again wait for the
// next ring.
func (b *bell) answer(c gnet.Conn) gnet.Action {
	_, _ = c.Discard(-1)
	b.rung = false
	woken := b.ready
	b.ready, b.spare = b.spare[:0], nil
	for i, x := range woken {
		*x.queued = false
		if !*x.closed {
			_ = x.c.Wake(nil)
		}
		woken[i] = belled{}
	}
	b.spare = woken[:0]
	return gnet.None
}

// close releases the writing end; gnet closes the reading end with the
// engine.
func (b *bell) close() error { return unix.Close(b.w) }
