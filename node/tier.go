package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/tier"
)

// TierConfig configures the shared tier (package tier): where the node's
// sealed log segments go for other servers to read.
type TierConfig struct {
	// URL is dir:///path or s3://bucket/prefix?endpoint=host:port; empty:
	// no shared tier.
	URL string
	// SegmentSize is the bytes per segment in the tier: a power of two, at
	// least 1 MiB and the log's page size; default 64 MiB (or the page
	// size, when larger).
	SegmentSize uint64
	// Interval is how often the sealer looks for segments to upload and
	// delete; default 1 s.
	Interval time.Duration
}

// sealer uploads the log's segments to the shared tier as they become
// final, and deletes those the log no longer reaches.
//
// Invariant: the tier holds every segment of [lo, hi) of this log (as
// uploaded by this sealer or an earlier start with the same log id), and
// every byte below hi*size was final when it was uploaded (below the newest
// checkpoint's end and the log's flushed point: tier's package invariant).
// Only a round (under rounds) writes lo and hi.
type sealer struct {
	segs *tier.Segments
	dev  ssd.Device
	srv  *server.Server
	cfg  TierConfig
	log  *slog.Logger

	lo, hi atomic.Uint64

	// mu orders pins against deletions: release lists the pins and
	// deletes under it, pin writes one under it.
	mu sync.Mutex
	// rounds serialises rounds: the sealer's goroutine and seal.
	rounds sync.Mutex

	stop context.CancelFunc
	done chan struct{}
}

// openSealer opens the tier and learns which of the log's segments it
// holds; run starts the uploads.
func openSealer(cfg TierConfig, page uint64, logID string, dev ssd.Device, log *slog.Logger) (*sealer, error) {
	if cfg.SegmentSize == 0 {
		cfg.SegmentSize = max(64<<20, page)
	}
	if cfg.SegmentSize < page {
		return nil, fmt.Errorf("node: tier segment size %d is below the log's page size %d", cfg.SegmentSize, page)
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := tier.Open(ctx, cfg.URL)
	if err != nil {
		return nil, err
	}
	segs, err := tier.NewSegments(st, logID, cfg.SegmentSize)
	if err != nil {
		return nil, err
	}
	ns, err := segs.List(ctx)
	if err != nil {
		return nil, err
	}
	s := &sealer{segs: segs, dev: dev, cfg: cfg, log: log.With("tier", st.String(), "log_id", logID), done: make(chan struct{})}
	if k := len(ns); k > 0 { // the last contiguous run
		lo := k - 1
		for lo > 0 && ns[lo-1] == ns[lo]-1 {
			lo--
		}
		s.lo.Store(ns[lo])
		s.hi.Store(ns[k-1] + 1)
	}
	return s, nil
}

// run starts the sealer's goroutine over srv's log.
func (s *sealer) run(srv *server.Server) {
	s.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			if err := s.round(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("shared tier", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// close stops the sealer; an upload in progress is abandoned.
func (s *sealer) close() {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
}

// seal makes the log final up to its tail and uploads the segments that
// made whole: a checkpoint, then a round. A move calls it first, so that
// what it must read from the device above the tier's cut is at most the
// last, partial segment and what was written since.
func (s *sealer) seal(ctx context.Context) error {
	if _, err := s.srv.Checkpoint(ctx); err != nil {
		return err
	}
	return s.round(ctx)
}

// round uploads every segment that became final and deletes those below
// the log's begin.
func (s *sealer) round(ctx context.Context) error {
	s.rounds.Lock()
	defer s.rounds.Unlock()
	st := s.srv.Store()
	size := s.segs.Size()
	begin := st.Begin()
	end := min(s.srv.LastCheckpoint().Store.End, st.Log().FlushedUntil())
	if first := begin / size; s.hi.Load() < first {
		// The log moved past what the tier holds: an empty run starts
		// at the segment where the log begins (release deletes the old
		// one).
		s.lo.Store(first)
		s.hi.Store(first)
	}
	// The device may have released the log below its begin's page (the
	// store's Release): those bytes go up as zeros.
	from := begin &^ (st.Log().PageSize() - 1)
	for n := s.hi.Load(); (n+1)*size <= end; n++ {
		if err := s.segs.Upload(ctx, s.dev, n, max(from, n*size)); err != nil {
			return err
		}
		s.hi.Store(n + 1)
		s.log.Debug("segment uploaded", "segment", n)
	}
	return s.release(ctx, begin)
}

// release deletes the segments wholly below begin and below every pin: no
// record there is reachable from this log's index, nor from another
// server's indirections (a pin holds the segments from the address it
// names on until the server that resolves them deletes it).
func (s *sealer) release(ctx context.Context, begin uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pins, err := s.pins(ctx)
	if err != nil {
		return err
	}
	for _, p := range pins {
		begin = min(begin, p)
	}
	size := s.segs.Size()
	ns, err := s.segs.List(ctx)
	if err != nil {
		return err
	}
	for _, n := range ns {
		if (n+1)*size > begin {
			break
		}
		if err := s.segs.Delete(ctx, n); err != nil {
			return err
		}
	}
	if lo := begin / size; s.lo.Load() < lo {
		s.lo.Store(min(lo, s.hi.Load()))
	}
	return nil
}

// pinDir is where the pins of log logID live in the tier.
func pinDir(logID string) string { return "pins/" + logID + "/" }

// pinPrefix begins the names of the pins of migration id of cluster name
// on log logID, one per run of its move.
func pinPrefix(logID, name string, id cluster.MigrationID) string {
	return fmt.Sprintf("%s%s-%d-", pinDir(logID), name, id)
}

// pinName names the pin of run (the target's incarnation) of migration
// id's move.
func pinName(logID, name string, id cluster.MigrationID, run uint64) string {
	return fmt.Sprintf("%s%d", pinPrefix(logID, name, id), run)
}

// pins returns the addresses the log's pins hold the tier from.
func (s *sealer) pins(ctx context.Context) ([]uint64, error) {
	st := s.segs.Store()
	names, err := st.List(ctx, pinDir(s.segs.LogID()))
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, name := range names {
		b, err := st.Get(ctx, name)
		if errors.Is(err, tier.ErrNotFound) {
			continue // unpinned meanwhile
		}
		if err != nil {
			return nil, err
		}
		a, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("node: pin %s: %q is not an address", name, b)
		}
		out = append(out, a)
	}
	return out, nil
}

// pin holds the tier's copy of the log from its begin on for run (the
// target's incarnation) of migration id's move (the pin is recorded in
// the tier, so it outlives this process; the target's resolver deletes
// the pins of every run once the newest run's table is resolved) and
// returns that begin and the cut: the end of what the tier holds of the
// log from there, every byte below it final. A cut of 0: the tier does
// not hold the log from its begin (it was turned on later); nothing is
// pinned then.
func (s *sealer) pin(ctx context.Context, name string, id cluster.MigrationID, run uint64) (begin, cut uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	size := s.segs.Size()
	begin = s.srv.Store().Begin()
	if s.lo.Load()*size > begin || s.hi.Load()*size <= begin {
		return begin, 0, nil
	}
	b := strconv.AppendUint(nil, begin, 10)
	if err := s.segs.Store().Put(ctx, pinName(s.segs.LogID(), name, id, run), bytes.NewReader(b), int64(len(b))); err != nil {
		return 0, 0, err
	}
	return begin, s.hi.Load() * size, nil
}

// held returns the end of what the tier holds of the log (every byte
// below it final).
func (s *sealer) held() uint64 { return s.hi.Load() * s.segs.Size() }

// logName names the log in the tier for a migration's target
// (server.LendBelow): the segment size, a slash, the log's id.
func (s *sealer) logName() []byte {
	return fmt.Appendf(nil, "%d/%s", s.segs.Size(), s.segs.LogID())
}

// parseLogName splits a log's name in the tier (sealer.logName).
func parseLogName(b []byte) (size uint64, logID string, err error) {
	sz, id, ok := strings.Cut(string(b), "/")
	if ok {
		size, err = strconv.ParseUint(sz, 10, 64)
	}
	if !ok || err != nil || id == "" {
		return 0, "", fmt.Errorf("node: %q names no log in the tier", b)
	}
	return size, id, nil
}

// logIdentity returns the id of the log under dir: the one recorded in
// DIR/log-id when the log is recovered, else a new one (a log that starts
// over reuses addresses, and the tier must never mix two logs' bytes under
// one name).
func logIdentity(dir string, recovering bool) (string, error) {
	name := filepath.Join(dir, "log-id")
	if recovering {
		b, err := os.ReadFile(name)
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("node: %w", err)
		}
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(r[:])
	return id, writeSynced(name, []byte(id+"\n"))
}
