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
