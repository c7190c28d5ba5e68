package tier

import (
	"bytes"
	"context"
	"os"
	"syscall"
	"testing"
)

// TestDirLeavesZerosAHole: a Dir puts runs of zeros as holes. The object
// reads back byte for byte (data between and after holes, a hole at the
// end), and the file holds the blocks of its data, not of its size.
func TestDirLeavesZerosAHole(t *testing.T) {
	ctx := context.Background()
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	obj := make([]byte, 64*holeChunk+100)
	copy(obj[holeChunk+5:], "data in the second chunk")
	copy(obj[40*holeChunk:], bytes.Repeat([]byte{7}, 3*holeChunk))
	obj[len(obj)-1] = 1 // in the short last chunk
	for _, tc := range []struct {
		name string
		obj  []byte
	}{{"data at the end", obj}, {"zeros at the end", obj[:60*holeChunk]}} {
		if err := d.Put(ctx, "seg", bytes.NewReader(tc.obj), int64(len(tc.obj))); err != nil {
			t.Fatal(err)
		}
		got, err := d.Get(ctx, "seg")
		if err != nil || !bytes.Equal(got, tc.obj) {
			t.Fatalf("%s: read back %d bytes (equal: %v), %v", tc.name, len(got), bytes.Equal(got, tc.obj), err)
		}
		fi, err := os.Stat(d.path("seg"))
		if err != nil {
			t.Fatal(err)
		}
		if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 8*holeChunk {
			t.Fatalf("%s: the file of %d bytes holds %d bytes of blocks; its data is 5 chunks", tc.name, len(tc.obj), used)
		}
	}
}
