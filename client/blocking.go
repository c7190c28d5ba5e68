package client

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// blockingConn is TransportBlocking's connection: a TCP connection whose
// socket is in blocking mode while no deadline is set, so that a session
// waiting for a response sleeps in read(2) on its own OS thread and the
// kernel wakes that thread directly when the response arrives. Go's
// netpoller would instead park the goroutine, and an arriving response
// then goes through epoll_wait and the scheduler before the goroutine
// runs (BENCHMARKS "One operation in flight").
//
// Deadlines keep net.Conn's meaning, with one difference:
//   - with a deadline set the socket is non-blocking, and calls wait in
//     the netpoller, which honours it (so a call with a deadline gains
//     nothing over TransportStd);
//   - clearing the deadlines returns the socket to blocking mode;
//   - nothing but a shutdown wakes a system call asleep in the kernel, so
//     a deadline that passes while a call is in progress (set passed from
//     another goroutine, or passing on its timer) shuts the connection
//     down: the call and every later one fail with
//     os.ErrDeadlineExceeded. This is the difference: TransportStd fails
//     only the call, and the connection stays usable. The session drops
//     a connection on any error anyway.
//
// Close shuts the connection down first, so a call asleep in the kernel
// returns (with net.ErrClosed) and Go's Close does not wait for it.
type blockingConn struct {
	tc *net.TCPConn
	rc syscall.RawConn

	mu      sync.Mutex // guards the fields below and the socket's mode
	polled  bool       // a deadline is set: the socket is non-blocking
	rd, wd  time.Time  // the read and write deadlines
	calls   int        // reads and writes in progress
	sever   *time.Timer
	severed bool // shut down by a deadline
	closed  bool
}

func newBlockingConn(tc *net.TCPConn) (*blockingConn, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &blockingConn{tc: tc, rc: rc, polled: true}
	if err := c.setPolled(false); err != nil {
		return nil, err
	}
	return c, nil
}

// setPolled switches the socket's mode; the caller holds mu.
func (c *blockingConn) setPolled(polled bool) error {
	if c.polled == polled {
		return nil
	}
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), polled) }); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("fcntl", serr)
	}
	c.polled = polled
	return nil
}

// Read reads like a net.Conn, asleep in read(2) when no deadline is set.
func (c *blockingConn) Read(p []byte) (int, error) {
	if err := c.enter("read"); err != nil {
		return 0, err
	}
	n, err := c.tc.Read(p)
	return n, c.leave(err, "read")
}

// Write writes like a net.Conn, asleep in write(2) when no deadline is set
// and the socket's buffer is full.
func (c *blockingConn) Write(p []byte) (int, error) {
	if err := c.enter("write"); err != nil {
		return 0, err
	}
	n, err := c.tc.Write(p)
	return n, c.leave(err, "write")
}

// enter counts a call about to start, or fails it when the connection was
// severed or closed.
func (c *blockingConn) enter(op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ended(op); err != nil {
		return err
	}
	c.calls++
	return nil
}

// leave ends a call: one that a shutdown ended fails with the reason of
// the shutdown rather than as the end of the stream.
func (c *blockingConn) leave(err error, op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls--
	if end := c.ended(op); end != nil {
		return end
	}
	return err
}

// ended returns the error of every call once the connection was severed or
// closed; the caller holds mu.
func (c *blockingConn) ended(op string) error {
	var err error
	switch {
	case c.closed:
		err = net.ErrClosed
	case c.severed:
		err = os.ErrDeadlineExceeded
	default:
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.tc.LocalAddr(), Addr: c.tc.RemoteAddr(), Err: err}
}

// SetDeadline sets both deadlines (see blockingConn).
func (c *blockingConn) SetDeadline(t time.Time) error {
	return c.deadline(t, true, true, c.tc.SetDeadline)
}

// SetReadDeadline sets the read deadline (see blockingConn).
func (c *blockingConn) SetReadDeadline(t time.Time) error {
	return c.deadline(t, true, false, c.tc.SetReadDeadline)
}

// SetWriteDeadline sets the write deadline (see blockingConn).
func (c *blockingConn) SetWriteDeadline(t time.Time) error {
	return c.deadline(t, false, true, c.tc.SetWriteDeadline)
}

func (c *blockingConn) deadline(t time.Time, read, write bool, set func(time.Time) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := set(t); err != nil {
		return err
	}
	if read {
		c.rd = t
	}
	if write {
		c.wd = t
	}
	if err := c.setPolled(!c.rd.IsZero() || !c.wd.IsZero()); err != nil {
		return err
	}
	if c.sever != nil {
		c.sever.Stop()
		c.sever = nil
	}
	if c.calls == 0 || t.IsZero() {
		return nil
	}
	if !t.After(time.Now()) {
		return c.shutdown()
	}
	// A call in progress may sleep in the kernel past t.
	c.sever = time.AfterFunc(time.Until(t), func() { c.expire(t) })
	return nil
}

// expire severs the connection when a call is still in progress as
// deadline t, still set, passes.
func (c *blockingConn) expire(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls > 0 && (c.rd.Equal(t) || c.wd.Equal(t)) && !c.severed && !c.closed {
		_ = c.shutdown()
	}
}

// shutdown severs the connection, waking every call asleep on the socket;
// the caller holds mu.
func (c *blockingConn) shutdown() error {
	c.severed = true
	return c.shutdownSocket()
}

func (c *blockingConn) shutdownSocket() error {
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_RDWR) }); err != nil {
		return err
	}
	if serr != nil && !errors.Is(serr, unix.ENOTCONN) {
		return os.NewSyscallError("shutdown", serr)
	}
	return nil
}

// Close shuts the connection down and closes it.
func (c *blockingConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		_ = c.shutdownSocket()
		if c.sever != nil {
			c.sever.Stop()
		}
	}
	c.mu.Unlock()
	return c.tc.Close()
}

// LocalAddr returns the local address.
func (c *blockingConn) LocalAddr() net.Addr { return c.tc.LocalAddr() }

// RemoteAddr returns the server's address.
func (c *blockingConn) RemoteAddr() net.Addr { return c.tc.RemoteAddr() }

var _ net.Conn = (*blockingConn)(nil)
