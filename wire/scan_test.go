package wire

import (
	"bytes"
	"testing"
)

// TestScanEncoding: a SCAN value and result parse back to what was
// appended; short or torn ones and a zero count do not parse.
func TestScanEncoding(t *testing.T) {
	c, n, m, ok := ParseScan(AppendScan(nil, 1<<60+3, 500, []byte("user:*")))
	if !ok || c != 1<<60+3 || n != 500 || string(m) != "user:*" {
		t.Fatalf("scan value parsed to %d %d %q %v", c, n, m, ok)
	}
	if _, _, _, ok := ParseScan(AppendScan(nil, 0, 0, nil)); ok {
		t.Fatal("a count of 0 parsed")
	}
	if _, _, _, ok := ParseScan(make([]byte, 11)); ok {
		t.Fatal("a short value parsed")
	}
	keys := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("k"), 300)}
	p := AppendScanResult(nil, 42, keys)
	if len(p) != ScanResultSize(keys) {
		t.Fatalf("size %d, appended %d", ScanResultSize(keys), len(p))
	}
	next, got, ok := ParseScanResult(p)
	if !ok || next != 42 || len(got) != 3 || !bytes.Equal(got[2], keys[2]) || len(got[1]) != 0 {
		t.Fatalf("result parsed to %d %q %v", next, got, ok)
	}
	for cut := 1; cut < len(p); cut++ {
		if _, _, ok := ParseScanResult(p[:cut]); ok && cut != 8 && cut != 13 && cut != 17 {
			t.Fatalf("a result cut at %d parsed", cut)
		}
	}
}
