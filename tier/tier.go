package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
)

// Store holds named immutable objects. Its methods are safe from any
// goroutine.
type Store interface {
	// Put stores size bytes from r as name, replacing any object of that
	// name. The object is readable only once Put returned nil.
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// ReadAt fills p from the object's bytes at off. Reading past the
	// object's end is an error (io.ErrUnexpectedEOF); a missing object is
	// ErrNotFound.
	ReadAt(ctx context.Context, name string, p []byte, off int64) error
	// Get returns a whole object (a small one: a table, a pin); a
	// missing object is ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// Delete removes name; a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// List returns the names under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// String names the store as Open's URL did.
	String() string
}

// ErrNotFound is returned for an object the store does not hold.
var ErrNotFound = errors.New("tier: no such object")

// Open returns the store a URL names: dir:///absolute/path or
// s3://bucket/prefix?endpoint=host:port[&secure=true][&region=R].
func Open(ctx context.Context, raw string) (Store, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("tier: %q: %w", raw, err)
	}
	switch u.Scheme {
	case "dir":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("tier: %q: want dir:///absolute/path", raw)
		}
		return OpenDir(u.Path)
	case "s3":
		return openS3(ctx, u)
	default:
		return nil, fmt.Errorf("tier: %q: unknown scheme %q (want dir:// or s3://)", raw, u.Scheme)
	}
}

// checkName refuses names a directory store could not hold safely.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") || strings.Contains(name, "\\") {
		return fmt.Errorf("tier: bad object name %q", name)
	}
	return nil
}
