package wire

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven decodes the annotated hex frames in testdata/ and compares
// the decoded form with the expected output beside them. Run with -rewrite
// to regenerate the expectations, then review the diff.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			b, err := parseHex(d.Input)
			if err != nil {
				d.Fatalf(t, "bad hex: %v", err)
			}
			lim := Limits{MaxBatch: 1 << 10, MaxKey: 64, MaxValue: 256}
			switch d.Cmd {
			case "request":
				return describeRequest(b, lim)
			case "response":
				return describeResponse(b, lim)
			}
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		})
	})
}

// parseHex reads hex digits, ignoring white space and '#' comments.
func parseHex(s string) ([]byte, error) {
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	return hex.DecodeString(digits.String())
}

func describeRequest(b []byte, lim Limits) string {
	var out strings.Builder
	h, err := ParseRequestHeader(b, lim)
	if err != nil {
		return fmt.Sprintf("error: %v\n", err)
	}
	fmt.Fprintf(&out, "header flags=%d count=%d length=%d view=%d serial=%d\n", h.Flags, h.Count, h.Length, h.View, h.Serial)
	if len(b) < HeaderSize+int(h.Length) {
		return out.String() + "incomplete: waiting for more bytes\n"
	}
	var r OpReader
	r.Reset(h, b[HeaderSize:], lim)
	for {
		o, ok, err := r.Next()
		if err != nil {
			return out.String() + fmt.Sprintf("error: %v\n", err)
		}
		if !ok {
			return out.String()
		}
		fmt.Fprintf(&out, "op %v key=%q value=%q\n", o.Op, o.Key, o.Value)
	}
}

func describeResponse(b []byte, lim Limits) string {
	var out strings.Builder
	h, err := ParseResponseHeader(b, lim)
	if err != nil {
		return fmt.Sprintf("error: %v\n", err)
	}
	fmt.Fprintf(&out, "header status=%d code=%v count=%d length=%d view=%d serial=%d\n", h.Status, h.Code, h.Count, h.Length, h.View, h.Serial)
	if h.Status == BatchError {
		return out.String() + fmt.Sprintf("message %q\n", b[HeaderSize:HeaderSize+int(h.Length)])
	}
	var r ResultReader
	r.Reset(h, b[HeaderSize:], lim)
	for {
		res, ok, err := r.Next()
		if err != nil {
			return out.String() + fmt.Sprintf("error: %v\n", err)
		}
		if !ok {
			return out.String()
		}
		if res.Completion {
			fmt.Fprintf(&out, "completion serial=%d ", res.Serial)
		} else {
			out.WriteString("result ")
		}
		fmt.Fprintf(&out, "status=%d value=%q code=%v\n", res.Status, res.Value, res.Code)
	}
}
