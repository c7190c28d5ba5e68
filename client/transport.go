package client

import (
	"fmt"
	"net"
	"time"

	"github.com/cloudwego/netpoll"
)

// Transports a session can use. Each gives the session a net.Conn it reads
// and writes on its own goroutine; BENCHMARKS.md records the measurements
// that made the standard library the default and TransportBlocking the
// choice for one operation in flight.
const (
	TransportStd     = "std"     // the standard library's net package
	TransportNetpoll = "netpoll" // cloudwego/netpoll's connections (epoll, linked buffers)
	// TransportBlocking is the standard library's net package with the
	// socket in blocking mode: a session waiting for its response sleeps in
	// read(2) on its own OS thread, which the kernel wakes directly, rather
	// than in Go's netpoller. It lowers the latency of a round trip and
	// costs an OS thread per waiting session; for a few sessions with few
	// operations in flight, waiting without a deadline (see blockingConn).
	TransportBlocking = "blocking"
)

// transports lists the valid Config.Transport values, for errors.
const transports = TransportStd + ", " + TransportNetpoll + " or " + TransportBlocking

func dial(transport, addr string, timeout time.Duration) (net.Conn, error) {
	switch transport {
	case TransportStd:
		nc, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		return nc, nil
	case TransportBlocking:
		nc, err := dial(TransportStd, addr, timeout)
		if err != nil {
			return nil, err
		}
		bc, err := newBlockingConn(nc.(*net.TCPConn))
		if err != nil {
			nc.Close()
			return nil, err
		}
		return bc, nil
	case TransportNetpoll:
		return netpoll.DialConnection("tcp", addr, timeout)
	}
	return nil, fmt.Errorf("client: unknown transport %q (want %s)", transport, transports)
}
