package client

import (
	"fmt"
	"net"
	"time"

	"github.com/cloudwego/netpoll"
)

// Transports a session can use. Both give the session a net.Conn it reads and
// writes on its own goroutine; BENCHMARKS.md records the measurement that
// made the standard library the default.
const (
	TransportStd     = "std"     // the standard library's net package
	TransportNetpoll = "netpoll" // cloudwego/netpoll's connections (epoll, linked buffers)
)

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
	case TransportNetpoll:
		return netpoll.DialConnection("tcp", addr, timeout)
	}
	return nil, fmt.Errorf("client: unknown transport %q (want %s or %s)", transport, TransportStd, TransportNetpoll)
}
