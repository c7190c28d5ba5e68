package checkpoint

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/store"
)

func TestSaveLatestPrune(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.Latest(); ok || err != nil {
		t.Fatalf("empty directory: ok %v err %v", ok, err)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		m := Meta{Seq: seq, Time: time.Now().UTC(), Store: store.Checkpoint{Begin: 64, End: seq << 20, IndexBits: 20, PageBits: 12}}
		if err := d.Save(m, 2); err != nil {
			t.Fatal(err)
		}
	}
	// An interrupted Save leaves only a temporary file: not a checkpoint.
	if err := os.WriteFile(filepath.Join(d.Path(), "ckpt-0000000000000009.json.tmp"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, ok, err := d.Latest()
	if !ok || err != nil || m.Seq != 5 || m.Store.End != 5<<20 || m.Store.PageBits != 12 {
		t.Fatalf("Latest = %+v %v %v", m, ok, err)
	}
	seqs, _ := d.seqs()
	if len(seqs) != 2 || seqs[0] != 4 {
		t.Fatalf("kept %v, want [4 5]", seqs)
	}
	if err := os.WriteFile(d.file(6), []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Latest(); err == nil {
		t.Fatal("a damaged newest file was accepted")
	}
	if err := d.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.Latest(); ok {
		t.Fatal("Clear left a checkpoint")
	}
}
