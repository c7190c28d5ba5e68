package server

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// The loops' listeners set SO_REUSEPORT, and the kernel lets another
// process of the same user join a port whose listeners all set it. A second
// server started on an address in use would then take a share of the first
// one's new connections, each server with its own data, and neither would
// report an error. Start refuses an address that a socket of this network
// namespace already listens on, as read from /proc/net/tcp and tcp6.
//
// A trial bind cannot tell: connections a stopped or killed server
// accepted on the port linger (FIN_WAIT, TIME_WAIT) without SO_REUSEADDR,
// and a plain bind fails on them where the loops' own binds succeed.

// procNetTCP are the kernel's tables of TCP sockets, IPv4 then IPv6.
var procNetTCP = []string{"/proc/net/tcp", "/proc/net/tcp6"}

// tcpListen is the LISTEN state in /proc/net/tcp's st column.
const tcpListen = "0A"

// listenedOn returns the local address of a socket that listens on addr's
// port at an address overlapping addr's (the same, or either unspecified);
// ok is false when there is none. A table the kernel does not have (no
// IPv6) is skipped.
func listenedOn(addr *net.TCPAddr) (found *net.TCPAddr, ok bool, err error) {
	for _, name := range procNetTCP {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		found, ok, err = listenerIn(f, addr)
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", name, err)
		}
		if ok {
			return found, true, nil
		}
	}
	return nil, false, nil
}

// listenerIn scans one table in /proc/net/tcp's format for a listener
// overlapping addr.
func listenerIn(r io.Reader, addr *net.TCPAddr) (*net.TCPAddr, bool, error) {
	sc := bufio.NewScanner(r)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != tcpListen {
			continue
		}
		local, err := parseProcAddr(fields[1])
		if err != nil {
			return nil, false, err
		}
		if local.Port == addr.Port && overlap(local.IP, addr.IP) {
			return local, true, nil
		}
	}
	return nil, false, sc.Err()
}

// overlap reports whether a listener at a takes connections meant for b, or
// the other way round (nil b: every address, dual-stack). Across families
// only an IPv6 wildcard listener may take IPv4 connections (unless it set
// IPV6_V6ONLY, which /proc does not show); an explicit [::] of ours is
// bound IPv6-only by gnet.
func overlap(a, b net.IP) bool {
	if b == nil {
		return true
	}
	if (a.To4() != nil) != (b.To4() != nil) {
		return a.Equal(net.IPv6unspecified)
	}
	return a.IsUnspecified() || b.IsUnspecified() || a.Equal(b)
}

// parseProcAddr parses /proc/net/tcp's "ADDR:PORT": the address's bytes as
// 32-bit words in the host's byte order, the port in hex.
func parseProcAddr(s string) (*net.TCPAddr, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(hexIP)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, fmt.Errorf("bad local address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return nil, fmt.Errorf("bad local address %q", s)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(ip[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	return &net.TCPAddr{IP: ip, Port: int(port)}, nil
}

// refuseInUse fails when a socket already listens on listen (host:port, a
// port other than 0).
func refuseInUse(listen string) error {
	addr, err := net.ResolveTCPAddr("tcp", listen)
	if err != nil {
		return fmt.Errorf("server: listen address %q: %w", listen, err)
	}
	found, ok, err := listenedOn(addr)
	if err != nil {
		return fmt.Errorf("server: checking that %s is free: %w", listen, err)
	}
	if ok {
		return fmt.Errorf("server: listen on %s: %s is in use by another listener (is another server running there?)", listen, found)
	}
	return nil
}

// collide reports whether listeners on x and y (host:port) would share a
// port: the same port at overlapping addresses, an empty host being every
// address. Addresses that do not resolve collide when they are equal.
func collide(x, y string) bool {
	a, errA := net.ResolveTCPAddr("tcp", x)
	b, errB := net.ResolveTCPAddr("tcp", y)
	if errA != nil || errB != nil {
		return x == y
	}
	if a.Port != b.Port {
		return false
	}
	return a.IP == nil || overlap(a.IP, b.IP)
}
