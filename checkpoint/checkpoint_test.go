package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/keyhash"
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

// TestSideFiles: a side file is readable under its final name only once
// committed; a failed one is removed; Save keeps the index snapshot the
// checkpoint uses and its own log snapshot, and deletes older ones.
func TestSideFiles(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(k Kind, seq uint64, failed error) {
		t.Helper()
		f, err := d.Create(k, seq)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(string(k)); err != nil {
			t.Fatal(err)
		}
		if err := d.Commit(f, k, seq, failed); err != failed {
			t.Fatalf("commit: %v, want %v", err, failed)
		}
	}
	exists := func(k Kind, seq uint64) bool {
		f, err := d.Opener(k, seq)()
		if err == nil {
			f.Close()
		}
		return err == nil
	}
	write(Index, 1, nil)
	write(LogSnapshot, 1, nil)
	write(LogSnapshot, 2, nil)
	write(LogSnapshot, 3, os.ErrDeadlineExceeded)
	if !exists(Index, 1) || !exists(LogSnapshot, 2) || exists(LogSnapshot, 3) {
		t.Fatal("committed side files missing, or a failed one kept")
	}
	if ents, _ := os.ReadDir(d.Path()); len(ents) != 3 {
		t.Fatalf("%d files after a failed side file, want 3", len(ents))
	}
	if err := d.Save(Meta{Seq: 2, IndexSeq: 1}, 3); err != nil {
		t.Fatal(err)
	}
	if !exists(Index, 1) || exists(LogSnapshot, 1) || !exists(LogSnapshot, 2) {
		t.Fatal("Save pruned the side files checkpoint 2 uses, or kept an older log snapshot")
	}
	if err := d.Save(Meta{Seq: 3, IndexSeq: 3}, 3); err != nil {
		t.Fatal(err)
	}
	if exists(Index, 1) || exists(LogSnapshot, 2) {
		t.Fatal("side files older than checkpoint 3's kept")
	}
}

// TestOldFormatRefused: a checkpoint written before slots (no format) is
// refused with a message that names both formats; one Save wrote is read.
func TestOldFormatRefused(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old := `{"seq": 3, "time": "2026-11-01T00:00:00Z", "store": {"begin": 64, "end": 1048576}}`
	if err := os.WriteFile(d.file(3), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = d.Latest()
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "format 0") || !strings.Contains(err.Error(), "format 1") {
		t.Fatalf("Latest of a format-0 directory: %v", err)
	}
	if err := d.Save(Meta{Seq: 4, Store: store.Checkpoint{Begin: 64, End: 2 << 20}}, 2); err != nil {
		t.Fatal(err)
	}
	if m, ok, err := d.Latest(); !ok || err != nil || m.Format != keyhash.Format {
		t.Fatalf("Latest after Save = %+v %v %v", m, ok, err)
	}
}
