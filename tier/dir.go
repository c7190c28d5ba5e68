package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Dir is a Store of files under a directory.
//
// Invariant: a file under its final name is complete: Put writes a
// temporary name (tmpSuffix), syncs it and renames it, then syncs the
// directory. List never shows temporary files.
type Dir struct{ root string }

const tmpSuffix = ".part"

// OpenDir opens (creating if needed) a directory store at root.
func OpenDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("tier: %w", err)
	}
	return &Dir{root: root}, nil
}

func (d *Dir) String() string { return "dir://" + d.root }

func (d *Dir) path(name string) string { return filepath.Join(d.root, filepath.FromSlash(name)) }

func (d *Dir) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	final := d.path(name)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return fmt.Errorf("tier: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(final), filepath.Base(final)+".*"+tmpSuffix)
	if err != nil {
		return fmt.Errorf("tier: %w", err)
	}
	err = writeAll(ctx, f, r, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), final)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("tier: put %s: %w", name, err)
	}
	return syncDir(filepath.Dir(final))
}

// writeAll copies exactly size bytes of r to f, a new empty file, and
// syncs f. A run of holeChunk zero bytes (at a multiple of holeChunk) is
// left a hole, which reads as zeros: what a log segment never had written
// (a page's end past a filler, the log's holes) costs a comparison, not a
// copy into the page cache and a write.
func writeAll(ctx context.Context, f *os.File, r io.Reader, size int64) error {
	buf := make([]byte, holeChunk)
	var off int64
	for off < size {
		n, err := io.ReadFull(ctxReader{ctx, r}, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%d of %d bytes: %w", off+int64(n), size, io.ErrUnexpectedEOF)
			}
			return err
		}
		if !isZero(buf[:n]) {
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
		off += int64(n)
	}
	if err := f.Truncate(size); err != nil { // the length, where the end is a hole
		return err
	}
	return f.Sync()
}

// holeChunk is the unit writeAll copies, and leaves a hole where it is zero.
const holeChunk = 64 << 10

var zeroChunk [holeChunk]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeroChunk[:len(b)]) }

// ctxReader ends a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("tier: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("tier: sync %s: %w", dir, err)
	}
	return nil
}

// ReadAt opens the file for each call, so that no open file keeps a
// deleted segment's space; a Reader keeps its segments' files open
// instead (open, openFiles).
func (d *Dir) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	f, err := d.open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return readFileAt(f, name, p, off)
}

// open opens object name for reading; a missing one is ErrNotFound.
func (d *Dir) open(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(d.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, d)
	}
	if err != nil {
		return nil, fmt.Errorf("tier: %w", err)
	}
	return f, nil
}

// readFileAt fills p from f, object name, at off.
func readFileAt(f *os.File, name string, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("tier: read %s at %d: %d of %d bytes: %w", name, off, n, len(p), err)
}

func (d *Dir) Get(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, d)
	}
	if err != nil {
		return nil, fmt.Errorf("tier: %w", err)
	}
	return b, nil
}

func (d *Dir) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.Remove(d.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tier: %w", err)
	}
	return nil
}

func (d *Dir) List(ctx context.Context, prefix string) ([]string, error) {
	// Walk only the deepest directory the prefix names whole.
	start := path.Dir(prefix + "x")
	var names []string
	err := filepath.WalkDir(d.path(start), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || strings.HasSuffix(p, tmpSuffix) {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tier: list %s: %w", prefix, err)
	}
	sort.Strings(names)
	return names, nil
}
