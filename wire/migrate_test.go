package wire

import (
	"bytes"
	"testing"
)

// TestMigrateValue: a MIGRATE value parses back to what was appended; a
// short value or an unknown kind does not parse.
func TestMigrateValue(t *testing.T) {
	v := AppendMigrateValue([]byte("prefix"), 1<<40+7, MigrateShipped, 0, []byte("value"))[len("prefix"):]
	id, kind, at, value, ok := ParseMigrateValue(v)
	if !ok || id != 1<<40+7 || kind != MigrateShipped || at != 0 || !bytes.Equal(value, []byte("value")) {
		t.Fatalf("parsed %d %d %d %q %v", id, kind, at, value, ok)
	}
	if _, _, _, value, ok := ParseMigrateValue(AppendMigrateValue(nil, 1, MigrateMoved, 0, nil)); !ok || len(value) != 0 {
		t.Fatalf("an empty value: %q %v", value, ok)
	}
	e := AppendMigrateValue(nil, 3, MigrateMoved, 1_700_000_000_123, []byte("v"))
	if id, kind, at, value, ok := ParseMigrateValue(e); !ok || id != 3 || kind != MigrateMoved || at != 1_700_000_000_123 || string(value) != "v" {
		t.Fatalf("a value with an expiry: %d %d %d %q %v", id, kind, at, value, ok)
	}
	for _, short := range [][]byte{v[:8], e[:12]} {
		if _, _, _, _, ok := ParseMigrateValue(short); ok {
			t.Fatalf("a short value %x parsed", short)
		}
	}
	bad := AppendMigrateValue(nil, 1, MigrateAbsent+1, 0, nil)
	if _, _, _, _, ok := ParseMigrateValue(bad); ok {
		t.Fatal("an unknown kind parsed")
	}
}

// TestFetchBelow: a below answer parses back; a value with its expiry in
// front (the other answer), even one whose value is long, does not.
func TestFetchBelow(t *testing.T) {
	b := AppendFetchBelow([]byte("x"), 1<<33+5, 64, []byte("8388608/abcd"))[1:]
	addr, begin, log, ok := ParseFetchBelow(b)
	if !ok || addr != 1<<33+5 || begin != 64 || string(log) != "8388608/abcd" {
		t.Fatalf("parsed %d %d %q %v", addr, begin, log, ok)
	}
	for _, other := range [][]byte{
		b[:fetchBelowHeader-1],
		append(make([]byte, 8), bytes.Repeat([]byte{0xff}, 40)...), // no expiry, a value of 0xff
		append([]byte{1, 2, 3, 4, 5, 6, 7, 0}, bytes.Repeat([]byte{0xff}, 40)...),
	} {
		if _, _, _, ok := ParseFetchBelow(other); ok {
			t.Fatalf("%x parsed as a below answer", other)
		}
	}
}
