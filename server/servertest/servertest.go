// Package servertest starts fleetkv servers for other packages' tests: on
// 127.0.0.1 with a free port, two unpinned loops, a small in-memory log and
// a silent logger, shut down (and checked) when the test ends.
package servertest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/store"
)

// Config returns the test configuration; callers change what they need.
func Config() server.Config {
	return server.Config{Listen: "127.0.0.1:0", Loops: 2, NoPin: true,
		Store: store.Config{IndexBits: 12, Log: hlog.Config{PageBits: 20, MemoryBytes: 64 << 20}}}
}

// Start starts a server with cfg and stops it when t ends, failing t if the
// shutdown fails.
func Start(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	s, err := server.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}
