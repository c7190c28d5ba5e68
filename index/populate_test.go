package index

import (
	"os"
	"testing"

	"github.com/fleetkv/fleetkv/internal/manual"
)

// A new table's buckets are faulted in beside its first users, all of them,
// without a bucket's contents changing.
func TestNewTableIsPopulated(t *testing.T) {
	if !manual.CanPopulate() {
		t.Skip("MADV_POPULATE_WRITE refused on this kernel")
	}
	tb, err := newTable(18) // 16 MiB of buckets
	if err != nil {
		t.Fatal(err)
	}
	tb.buckets[12345][0].Store(42) // a user writing at once
	tb.populating.Wait()
	r, err := manual.Resident(tb.mem)
	if err != nil {
		t.Fatal(err)
	}
	if pages := len(tb.mem) / os.Getpagesize(); r != pages {
		t.Fatalf("%d of %d pages of the table in memory, want all", r, pages)
	}
	if got := tb.buckets[12345][0].Load(); got != 42 {
		t.Fatalf("bucket entry %d after populating, want 42", got)
	}
	tb.free()
}
