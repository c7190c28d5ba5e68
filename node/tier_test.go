package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/tier"
)

// TestSealerUploadsFinalSegments: a standalone node with a shared tier
// uploads the segments of its log that a checkpoint made final, byte for
// byte as on its device, deletes those a compaction moved the log's begin
// past, and finds what the tier holds again after a restart.
func TestSealerUploadsFinalSegments(t *testing.T) {
	ctx := context.Background()
	dir, shared := t.TempDir(), t.TempDir()
	cfg := testConfig(dir, nil, "")
	cfg.Cluster = ClusterConfig{}
	cfg.Tier = TierConfig{URL: "dir://" + shared, SegmentSize: 1 << 20, Interval: 10 * time.Millisecond}
	n := startNode(t, cfg)
	write := func(round byte) {
		c, err := client.New(client.Config{Addr: n.Server().Addr()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := range 12000 { // 12000 x 2 KiB: 24 MiB, over the 16 MiB in memory
			v := bytes.Repeat([]byte{round}, 2048)
			if err := c.Set(ctx, fmt.Appendf(nil, "key-%d", i), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	write('a')
	m, err := n.Server().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(1 << 20)
	final := min(m.Store.End, n.Server().Store().Log().FlushedUntil()) / size
	if final < 4 {
		t.Fatalf("only %d final segments: the test wrote too little", final)
	}
	eventually(t, "the final segments uploaded", func() bool { return n.sealer.hi.Load() >= final })
	segs, err := tier.NewSegments(mustOpenDir(t, shared), n.logID, size)
	if err != nil {
		t.Fatal(err)
	}
	dev, page, want := n.dev, ssd.AlignedBuffer(int(size)), make([]byte, size)
	for s := n.sealer.lo.Load(); s < n.sealer.hi.Load(); s++ {
		if err := hlog.ReadPage(dev, page, s*size); err != nil {
			t.Fatal(err)
		}
		if err := segs.Store().ReadAt(ctx, segs.Name(s), want, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(page, want) {
			t.Fatalf("segment %d differs from the device", s)
		}
	}

	// Writing every key again leaves the first copies dead; compacting
	// them moves the log's begin, and the segments below it go.
	write('b')
	if _, err := n.Server().Compact(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Server().Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	begin := n.Server().Store().Begin()
	if begin < 2*size {
		t.Fatalf("compaction moved the begin to %d only", begin)
	}
	eventually(t, "the segments below the begin deleted", func() bool {
		ns, err := segs.List(ctx)
		return err == nil && len(ns) > 0 && ns[0] == begin/size && n.sealer.lo.Load() == begin/size
	})
	lo, hi := n.sealer.lo.Load(), n.sealer.hi.Load()
	id := n.logID

	stopNode(t, n)
	n = startNode(t, cfg)
	if n.logID != id {
		t.Fatalf("log id %s after a restart, was %s", n.logID, id)
	}
	if n.sealer.lo.Load() != lo || n.sealer.hi.Load() < hi {
		t.Fatalf("after a restart the tier holds [%d, %d), was [%d, %d)", n.sealer.lo.Load(), n.sealer.hi.Load(), lo, hi)
	}
}

// TestLogIdentityChangesWithTheLog: a log that starts over (no checkpoint
// to recover) gets a new id; a recovered one keeps its id.
func TestLogIdentityChangesWithTheLog(t *testing.T) {
	dir := t.TempDir()
	a, err := logIdentity(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := logIdentity(dir, true); b != a {
		t.Fatalf("a recovered log got id %s, was %s", b, a)
	}
	if c, _ := logIdentity(dir, false); c == a {
		t.Fatal("a log that started over kept its id")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "log-id"))
	if strings.TrimSpace(string(b)) == a {
		t.Fatal("the new id was not recorded")
	}
}

func mustOpenDir(t *testing.T, dir string) *tier.Dir {
	d, err := tier.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
