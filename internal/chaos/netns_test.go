package chaos

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

// TestCleanStale: a namespace named for a process that is gone is deleted;
// one named for a live process (this one) is left alone.
func TestCleanStale(t *testing.T) {
	if why := Available(); why != "" {
		t.Skip("chaos: " + why)
	}
	dead, alive := "fkv4194304999-x", fmt.Sprintf("fkv%d-x", os.Getpid()) // beyond any pid_max
	for _, ns := range []string{dead, alive} {
		if err := run("ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { _ = run("ip", "netns", "del", alive) }()
	gone, err := CleanStale()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(gone, dead) || slices.Contains(gone, alive) {
		t.Fatalf("deleted %v", gone)
	}
	for ns, want := range map[string]bool{dead: false, alive: true} {
		if _, err := os.Stat("/run/netns/" + ns); (err == nil) != want {
			t.Fatalf("%s present: %v, want %v", ns, err == nil, want)
		}
	}
}
