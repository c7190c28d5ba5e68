package server

import (
	"net"
	"strings"
	"testing"
)

// A table in /proc/net/tcp's format on a little-endian host: a listener on 127.0.0.1:7400, one on
// every IPv4 address at 6380, a connection in TIME_WAIT (06) on 7500.
const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1CE8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:18EC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1D4C 0100007F:A0F2 06 00000000:00000000 03:00000F6B 00000000     0        0 0 3 0000000000000000
`

// The same in /proc/net/tcp6's: a listener on every IPv6 address at 9000,
// and one on ::1 at 9100.
const procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:238C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
`

func TestListenerIn(t *testing.T) {
	for _, tc := range []struct {
		table, addr string
		want        string // the listener found; "" for none
	}{
		{procTCP, "127.0.0.1:7400", "127.0.0.1:7400"},
		{procTCP, "0.0.0.0:7400", "127.0.0.1:7400"},
		{procTCP, ":7400", "127.0.0.1:7400"},
		{procTCP, "127.0.0.2:7400", ""},
		{procTCP, "127.0.0.2:6380", "0.0.0.0:6380"},
		{procTCP, "127.0.0.1:7500", ""}, // TIME_WAIT is no listener
		{procTCP, "127.0.0.1:7401", ""},
		{procTCP6, "[::1]:9000", "[::]:9000"},
		{procTCP6, "127.0.0.1:9000", "[::]:9000"},
		{procTCP6, "[::1]:9100", "[::1]:9100"},
		{procTCP6, "[::2]:9100", ""},
		{procTCP, "[::1]:6380", ""}, // the IPv4 wildcard takes no IPv6
		{procTCP, "[::]:6380", ""},  // bound IPv6-only
		{procTCP, ":6380", "0.0.0.0:6380"},
		{procTCP6, "127.0.0.1:9100", ""},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		found, ok, err := listenerIn(strings.NewReader(tc.table), addr)
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		got := ""
		if ok {
			got = found.String()
		}
		if got != tc.want {
			t.Errorf("%s: found %q, want %q", tc.addr, got, tc.want)
		}
	}
	if _, _, err := listenerIn(strings.NewReader("hdr\n 0: 7F:zz 0:0 0A\n"), &net.TCPAddr{Port: 1}); err == nil {
		t.Error("a malformed table was accepted")
	}
}

func TestCollide(t *testing.T) {
	for _, tc := range []struct {
		x, y string
		want bool
	}{
		{"127.0.0.1:7400", "127.0.0.1:7400", true},
		{"127.0.0.1:7400", "127.0.0.1:6380", false},
		{":7400", "127.0.0.1:7400", true},
		{"127.0.0.1:7400", ":7400", true},
		{"0.0.0.0:7400", "127.0.0.1:7400", true},
		{"127.0.0.1:7400", "127.0.0.2:7400", false},
		{"localhost:7400", "127.0.0.1:7400", true},
	} {
		if got := collide(tc.x, tc.y); got != tc.want {
			t.Errorf("collide(%s, %s) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
}
