package resp

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// parseAll runs Parse over in until it needs more input, as a connection
// does, and renders what it saw: one line per command, arguments quoted, or
// the error that ended the stream.
func parseAll(r *Reader, in []byte) (out string, used int) {
	var sb strings.Builder
	for {
		args, n, err := r.Parse(in[used:])
		if err != nil {
			fmt.Fprintf(&sb, "error: %v\n", err)
			return sb.String(), used
		}
		if n == 0 {
			return sb.String(), used
		}
		used += n
		if len(args) == 0 {
			continue
		}
		for i, a := range args {
			if i > 0 {
				sb.WriteByte(' ')
			}
			fmt.Fprintf(&sb, "%q", a)
		}
		sb.WriteByte('\n')
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$4\r\nPING\r\n", `"PING"` + "\n"},
		{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", `"SET" "k" ""` + "\n"},
		{"*2\r\n$3\r\nGET\r\n$3\r\na\r\n\r\n", `"GET" "a\r\n"` + "\n"}, // binary-safe
		{"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", `"PING"` + "\n"},
		{"PING\r\n", `"PING"` + "\n"},
		{"set k v\n", `"set" "k" "v"` + "\n"},
		{"  get   k  \r\n\r\n\n", `"get" "k"` + "\n"},
		{`set "a b" 'c d'` + "\r\n", `"set" "a b" "c d"` + "\n"},
		{`echo "x\n\t\x41\"y" 'it\'s'` + "\n", `"echo" "x\n\tA\"y" "it's"` + "\n"},
		{`echo "abc"def` + "\n", "error: Protocol error: unbalanced quotes in request\n"},
		{`echo "abc` + "\n", "error: Protocol error: unbalanced quotes in request\n"},
		{"*1\r\n:4\r\nPING\r\n", "error: Protocol error: expected '$', got ':'\n"},
		{"*x\r\n", "error: Protocol error: invalid multibulk length\n"},
		{"*01\r\n", "error: Protocol error: invalid multibulk length\n"},
		{"*1\r\n$-1\r\n", "error: Protocol error: invalid bulk length\n"},
		{"*1\r\n$+1\r\nx\r\n", "error: Protocol error: invalid bulk length\n"},
		{"*1\r\n$2147483648\r\n", "error: Protocol error: invalid bulk length\n"},
		{"*1000000000\r\n", "error: Protocol error: invalid multibulk length\n"},
		{"*99999999999999999999\r\n", "error: Protocol error: invalid multibulk length\n"},
		{"*2\r\n$4\r\nPING\r\n", ""}, // incomplete
		{"*1\r\n$4\r\nPIN", ""},      // incomplete
		{"*1\r\n$4\r", ""},           // incomplete
		{"GET k", ""},                // incomplete inline
	} {
		got, _ := parseAll(NewReader(DefaultLimits), []byte(tc.in))
		if got != tc.want {
			t.Errorf("Parse(%q):\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestLimitsBeforeAllocation(t *testing.T) {
	lim := Limits{MaxBulk: 1024, MaxArgs: 8, MaxInline: 256}
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$1025\r\n", "invalid bulk length"},
		{"*9\r\n", "invalid multibulk length"},
		{"*1\r\n$" + strings.Repeat("1", 300), "too big bulk count string"},
		{"*" + strings.Repeat("1", 300), "too big mbulk count string"},
		{strings.Repeat("a", 300), "too big inline request"},
		{strings.Repeat("a ", 9) + "\n", "invalid multibulk length"},
	} {
		r := NewReader(lim)
		var err error
		allocs := testing.AllocsPerRun(10, func() { _, _, err = r.Parse([]byte(tc.in)) })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%.40q) = %v, want %q", tc.in, err, tc.want)
		}
		if allocs > 1 { // the ProtocolError of "expected '$'" is the only allocating one
			t.Errorf("Parse(%.40q) allocated %.0f times", tc.in, allocs)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	in := []byte("*3\r\n$3\r\nSET\r\n$8\r\nkey:0001\r\n$16\r\n0123456789abcdef\r\nGET \"key:0001\"\r\n")
	r := NewReader(DefaultLimits)
	parseAll(r, in) // grows the reader's buffers once
	allocs := testing.AllocsPerRun(100, func() {
		for used := 0; used < len(in); {
			_, n, err := r.Parse(in[used:])
			if err != nil || n == 0 {
				t.Fatalf("Parse: n=%d err=%v", n, err)
			}
			used += n
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per two commands", allocs)
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "-1": -1, "9223372036854775807": 1<<63 - 1, "-9223372036854775808": -1 << 63} {
		if v, ok := ParseInt([]byte(in)); !ok || v != want {
			t.Errorf("ParseInt(%q) = %d, %v", in, v, ok)
		}
	}
	for _, in := range []string{"", "-", "+1", "01", " 1", "1 ", "9223372036854775808", "-9223372036854775809", "1e3", "99999999999999999999"} {
		if v, ok := ParseInt([]byte(in)); ok {
			t.Errorf("ParseInt(%q) = %d, want an error", in, v)
		}
	}
}

// checkSplit asserts the split-input invariant for one stream: fed in two
// pieces, the reader sees what it sees when fed the whole.
func checkSplit(t *testing.T, in []byte, at int) {
	t.Helper()
	whole, _ := parseAll(NewReader(DefaultLimits), in)
	r := NewReader(DefaultLimits)
	first, used := parseAll(r, in[:at])
	if strings.Contains(first, "error:") {
		if !strings.HasPrefix(whole, first) {
			t.Fatalf("split at %d of %q: error early:\n%q\nwhole:\n%q", at, in, first, whole)
		}
		return
	}
	rest, _ := parseAll(r, in[used:])
	if got := first + rest; got != whole {
		t.Fatalf("split at %d of %q:\n got %q\nwant %q", at, in, got, whole)
	}
}

func TestSplitInput(t *testing.T) {
	in := []byte("*2\r\n$4\r\nECHO\r\n$5\r\nhe\r\no\r\nset 'a' \"b\\x41\"\r\n*0\r\n\nPING\r\n*1\r\n$4\r\nPING\r\n")
	for at := 0; at <= len(in); at++ {
		checkSplit(t, in, at)
	}
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte("*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\nPING\r\n"), 7)
	f.Add([]byte("set \"a\\x4\" 'b\\'c'\r\nget a\n"), 3)
	f.Add([]byte("*1\r\n$-1\r\n"), 2)
	f.Fuzz(func(t *testing.T, in []byte, at int) {
		if at < 0 || at > len(in) {
			return
		}
		checkSplit(t, in, at)
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"))
	f.Add([]byte("GET \"k\"\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(Limits{MaxBulk: 64, MaxArgs: 16, MaxInline: 64})
		for used := 0; used < len(in); {
			args, n, err := r.Parse(in[used:])
			if err != nil || n == 0 {
				return
			}
			if n < 0 || used+n > len(in) || len(args) > 16 {
				t.Fatalf("n=%d args=%d", n, len(args))
			}
			for _, a := range args {
				if len(a) > 64 || (len(a) > 0 && !bytes.Contains(in, a) && in[used] == '*') {
					t.Fatalf("argument %q is not from the input", a)
				}
			}
			used += n
		}
	})
}

// FuzzShortLength: where the one-pass length parser answers, it answers as
// the general one does.
func FuzzShortLength(f *testing.F) {
	for _, s := range []string{"*3\r\n", "$0\r\n", "$01\r\n", "$12\rx", "$123456789012345678\r\n", "$-1\r\n", "$1"} {
		f.Add([]byte(s))
	}
	r := NewReader(DefaultLimits)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		v, next, ok := shortLength(in, 0)
		if !ok {
			return
		}
		lv, lnext, err := r.longLength(in, 0, errBigBulk)
		if err != nil || lv != v || lnext != next {
			t.Fatalf("%q: short %d,%d; long %d,%d,%v", in, v, next, lv, lnext, err)
		}
	})
}
