// Package checkpoint keeps the metadata of a store's checkpoints in a data
// directory: one small JSON file per checkpoint, written so that a crash at
// any moment leaves either the complete new file or none (temporary file,
// fsync, rename, fsync of the directory). At start, Latest finds the newest
// complete checkpoint, so a restart needs no token: the server recovers
// whatever the directory says is durable.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/store"
)

// Meta is one checkpoint's file.
type Meta struct {
	Seq uint64 `json:"seq"` // 1, 2, ... in the order they were taken
	// Format is the key-hash format the store's index and log were filed
	// under (keyhash.Format); Save records the running one. A checkpoint
	// without it was written before slots (format 0).
	Format int              `json:"format"`
	Time   time.Time        `json:"time"`
	Store  store.Checkpoint `json:"store"`
	// Sessions maps a native session's id to its commit point: its
	// operations up to that serial are in this checkpoint. A client that
	// resumes the session after a restart is told it.
	Sessions map[uint64]uint64 `json:"sessions,omitempty"`
	// NextSession is the highest session id given out when the checkpoint
	// was taken. (Ids carry the server's incarnation in their high 32 bits,
	// so those given out after the checkpoint are not given again.)
	NextSession uint64 `json:"next_session,omitempty"`
	// IndexSeq is the checkpoint whose index snapshot recovery loads
	// (Store.IndexStart says where it began); 0: none.
	IndexSeq uint64 `json:"index_seq,omitempty"`
}

// ErrFormat is returned by Latest for a directory written with another
// key-hash format: its index and log file keys under other hashes.
var ErrFormat = errors.New("checkpoint: data directory in another format")

// formatName describes key-hash format f.
func formatName(f int) string {
	switch f {
	case 0:
		return "go-metro hash, before slots"
	case 1:
		return "Redis Cluster slot in the top 14 bits, go-metro below"
	}
	return "unknown"
}

// Dir is a directory of checkpoint files.
type Dir struct{ path string }

// Open returns the checkpoint directory under dataDir, creating it.
func Open(dataDir string) (*Dir, error) {
	p := filepath.Join(dataDir, "checkpoints")
	if err := os.MkdirAll(p, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &Dir{path: p}, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

const prefix, suffix = "ckpt-", ".json"

func (d *Dir) file(seq uint64) string {
	return filepath.Join(d.path, fmt.Sprintf("%s%016d%s", prefix, seq, suffix))
}

// Kind names a checkpoint's side file: an index snapshot, or a log
// snapshot (the in-memory log of a snapshot checkpoint).
type Kind string

// The side files' kinds, also their names' prefixes.
const (
	Index       Kind = "index-"
	LogSnapshot Kind = "log-"
)

func (d *Dir) sideFile(k Kind, seq uint64) string {
	return filepath.Join(d.path, fmt.Sprintf("%s%016d.bin", k, seq))
}

// Create creates the side file of kind k of checkpoint seq, under a
// temporary name.
func (d *Dir) Create(k Kind, seq uint64) (*os.File, error) {
	f, err := os.OpenFile(d.sideFile(k, seq)+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return f, nil
}

// Commit syncs and closes f, the side file of kind k of checkpoint seq,
// and gives it its final name; the Save that records the checkpoint syncs
// the directory. With a non-nil failed (the file could not be written) it
// removes the file instead and returns failed.
func (d *Dir) Commit(f *os.File, k Kind, seq uint64, failed error) error {
	if failed == nil {
		failed = f.Sync()
	}
	if err := f.Close(); failed == nil {
		failed = err
	}
	if failed != nil {
		os.Remove(f.Name())
		return failed
	}
	if err := os.Rename(f.Name(), d.sideFile(k, seq)); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// Opener returns an opener of the side file of kind k of checkpoint seq.
func (d *Dir) Opener(k Kind, seq uint64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return os.Open(d.sideFile(k, seq)) }
}

// NextIncarnation counts this start of the server in the directory (the
// file "incarnation", replaced durably) and returns the new count: a number
// no earlier start got, crashed or not, for ids that must never repeat.
func (d *Dir) NextIncarnation() (uint64, error) {
	name := filepath.Join(d.path, "incarnation")
	var n uint64
	switch b, err := os.ReadFile(name); {
	case err == nil:
		if _, err := fmt.Sscanf(string(b), "%d", &n); err != nil {
			return 0, fmt.Errorf("checkpoint: %s: %q is not a count", name, b)
		}
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	n++
	if err := writeSynced(name+".tmp", fmt.Appendf(nil, "%d\n", n)); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	return n, syncDir(d.path)
}

// Save writes m durably, then deletes all but the keep newest files, the
// index snapshots older than the one m uses and the log snapshots older
// than m: recovery only ever uses the newest checkpoint's.
func (d *Dir) Save(m Meta, keep int) error {
	m.Format = keyhash.Format
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	final := d.file(m.Seq)
	tmp := final + ".tmp"
	if err := writeSynced(tmp, b); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := syncDir(d.path); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return errors.Join(d.prune(keep), d.pruneSide(Index, m.IndexSeq), d.pruneSide(LogSnapshot, m.Seq))
}

// pruneSide deletes the side files of kind k (and their temporary files)
// of checkpoints before seq.
func (d *Dir) pruneSide(k Kind, seq uint64) error {
	ents, err := os.ReadDir(d.path)
	if err != nil || seq == 0 {
		return err
	}
	var errs []error
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), string(k))
		if !ok {
			continue
		}
		var s uint64
		if _, err := fmt.Sscanf(n[:min(len(n), 16)], "%d", &s); err == nil && s < seq {
			errs = append(errs, os.Remove(filepath.Join(d.path, e.Name())))
		}
	}
	return errors.Join(errs...)
}

func writeSynced(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// seqs lists the sequence numbers of the complete files, oldest first.
func (d *Dir) seqs() ([]uint64, error) { // checkpoint files only
	ents, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, suffix) {
			continue // temporary files of an interrupted Save among them
		}
		var seq uint64
		if _, err := fmt.Sscanf(strings.TrimSuffix(strings.TrimPrefix(n, prefix), suffix), "%d", &seq); err == nil {
			out = append(out, seq)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// Latest returns the newest checkpoint; ok is false when there is none. A
// file that does not parse is an error, not skipped: it was renamed into
// place complete, so damage there is damage to the data directory.
func (d *Dir) Latest() (m Meta, ok bool, err error) {
	seqs, err := d.seqs()
	if err != nil || len(seqs) == 0 {
		return Meta{}, false, err
	}
	b, err := os.ReadFile(d.file(seqs[len(seqs)-1]))
	if err != nil {
		return Meta{}, false, fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, false, fmt.Errorf("checkpoint: %s: %w", d.file(seqs[len(seqs)-1]), err)
	}
	if m.Seq != seqs[len(seqs)-1] || m.Store.End == 0 {
		return Meta{}, false, fmt.Errorf("checkpoint: %s: inconsistent content", d.file(m.Seq))
	}
	if m.Format != keyhash.Format {
		return Meta{}, false, fmt.Errorf("%w: %s was written with key-hash format %d (%s); this build reads format %d (%s): "+
			"start on an empty directory and load the data again", ErrFormat, d.file(m.Seq),
			m.Format, formatName(m.Format), keyhash.Format, formatName(keyhash.Format))
	}
	return m, true, nil
}

// Clear deletes every checkpoint file (a data directory whose log is being
// discarded).
func (d *Dir) Clear() error {
	ents, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.Remove(filepath.Join(d.path, e.Name())))
	}
	return errors.Join(append(errs, syncDir(d.path))...)
}

func (d *Dir) prune(keep int) error {
	seqs, err := d.seqs()
	if err != nil {
		return err
	}
	var errs []error
	for i := 0; i+keep < len(seqs); i++ {
		errs = append(errs, os.Remove(d.file(seqs[i])))
	}
	return errors.Join(errs...)
}
