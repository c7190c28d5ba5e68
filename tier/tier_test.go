package tier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestStores(t *testing.T) {
	ctx := context.Background()
	for kind, s := range openTest(t) {
		t.Run(kind, func(t *testing.T) {
			obj := make([]byte, 3<<20+17) // more than one multipart part
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range obj {
				obj[i] = byte(rng.Uint32())
			}
			if err := s.Put(ctx, "logs/a/000000000001", bytes.NewReader(obj), int64(len(obj))); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(ctx, "logs/b/x", strings.NewReader("xy"), 2); err != nil {
				t.Fatal(err)
			}
			for _, r := range [][2]int{{0, 1}, {0, len(obj)}, {4095, 4097}, {len(obj) - 9, 9}, {1 << 20, 5}} {
				p := make([]byte, r[1])
				if err := s.ReadAt(ctx, "logs/a/000000000001", p, int64(r[0])); err != nil {
					t.Fatalf("read %v: %v", r, err)
				}
				if !bytes.Equal(p, obj[r[0]:r[0]+r[1]]) {
					t.Fatalf("read %v: wrong bytes", r)
				}
			}
			if b, err := s.Get(ctx, "logs/b/x"); err != nil || string(b) != "xy" {
				t.Fatalf("get: %q, %v", b, err)
			}
			if _, err := s.Get(ctx, "logs/b/y"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get of a missing object: %v, want ErrNotFound", err)
			}
			p := make([]byte, 10)
			if err := s.ReadAt(ctx, "logs/a/000000000001", p, int64(len(obj)-5)); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("read past the end: %v, want ErrUnexpectedEOF", err)
			}
			if err := s.ReadAt(ctx, "logs/a/000000000002", p, 0); !errors.Is(err, ErrNotFound) {
				t.Fatalf("read of a missing object: %v, want ErrNotFound", err)
			}
			names, err := s.List(ctx, "logs/a/")
			if err != nil || !reflect.DeepEqual(names, []string{"logs/a/000000000001"}) {
				t.Fatalf("list logs/a/: %q, %v", names, err)
			}
			if names, err := s.List(ctx, "logs/"); err != nil || len(names) != 2 {
				t.Fatalf("list logs/: %q, %v", names, err)
			}
			// A Put that fails leaves nothing under the name.
			if err := s.Put(ctx, "logs/a/000000000003", io.LimitReader(bytes.NewReader(obj), 10), 100); err == nil {
				t.Fatal("a put of a short reader succeeded")
			}
			if names, _ := s.List(ctx, "logs/a/"); len(names) != 1 {
				t.Fatalf("a failed put left %q", names)
			}
			for range 2 { // deleting twice is not an error
				if err := s.Delete(ctx, "logs/a/000000000001"); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.ReadAt(ctx, "logs/a/000000000001", p, 0); !errors.Is(err, ErrNotFound) {
				t.Fatalf("read of a deleted object: %v, want ErrNotFound", err)
			}
			if err := s.Put(ctx, "../escape", strings.NewReader(""), 0); err == nil {
				t.Fatal("a name with .. was accepted")
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"dir://relative/path", "dir:relative", "ftp://x/y", "s3:///prefix?endpoint=127.0.0.1:1", "::"} {
		if _, err := Open(ctx, u); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		}
	}
	s := startS3(t)
	if _, err := Open(ctx, strings.Replace(s, "s3://fleetkv/", "s3://nobucket/", 1)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing bucket: %v", err)
	}
}
