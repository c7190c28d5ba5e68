package tier

import (
	"context"
	"testing"

	"github.com/fleetkv/fleetkv/internal/s3test"
)

// startS3 runs a real S3 server (versitygw) for t and returns a store URL.
func startS3(t *testing.T) string { return s3test.Start(t) }

// openTest opens a store of each kind: a directory, and S3 on versitygw.
func openTest(t *testing.T) map[string]Store {
	ctx := context.Background()
	d, err := Open(ctx, "dir://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, startS3(t))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Store{"dir": d, "s3": s}
}
