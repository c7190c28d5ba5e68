package wire

import (
	"bytes"
	"testing"
)

// TestMigrateValue: a MIGRATE value parses back to what was appended; a
// short value or an unknown kind does not parse.
func TestMigrateValue(t *testing.T) {
	v := AppendMigrateValue([]byte("prefix"), 1<<40+7, MigrateShipped, []byte("value"))[len("prefix"):]
	id, kind, value, ok := ParseMigrateValue(v)
	if !ok || id != 1<<40+7 || kind != MigrateShipped || !bytes.Equal(value, []byte("value")) {
		t.Fatalf("parsed %d %d %q %v", id, kind, value, ok)
	}
	if _, _, value, ok := ParseMigrateValue(AppendMigrateValue(nil, 1, MigrateMoved, nil)); !ok || len(value) != 0 {
		t.Fatalf("an empty value: %q %v", value, ok)
	}
	if _, _, _, ok := ParseMigrateValue(v[:8]); ok {
		t.Fatal("a short value parsed")
	}
	bad := AppendMigrateValue(nil, 1, MigrateAbsent+1, nil)
	if _, _, _, ok := ParseMigrateValue(bad); ok {
		t.Fatal("an unknown kind parsed")
	}
}
