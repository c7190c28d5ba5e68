package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fleetkv/fleetkv/checkpoint"
	"github.com/fleetkv/fleetkv/store"
)

// durability takes the server's checkpoints: every CheckpointInterval, on
// demand (admin API, RESP SAVE/BGSAVE/WAITAOF) and at shutdown, each
// recorded in the checkpoint directory once the store says it is durable.
// Checkpoints run on their own goroutines, never on a loop: a loop that
// waited for one would hold the epoch the checkpoint waits for.
type durability struct {
	s    *Server
	dir  *checkpoint.Dir
	mu   sync.Mutex // one checkpoint at a time; guards last
	last checkpoint.Meta
	// recovered is what the recovery at start found; nil for a new store.
	recovered *store.RecoveryStats
	stop      chan struct{}
	done      chan struct{}
}

// keepCheckpoints is how many checkpoint files the directory keeps.
const keepCheckpoints = 3

// openStore opens the server's store: recovered from the newest checkpoint
// when the directory has one, new otherwise.
func (s *Server) openStore() (*store.Store, error) {
	dir := s.cfg.Checkpoints
	if dir == nil {
		return store.Open(s.cfg.Store)
	}
	s.dur = &durability{s: s, dir: dir, stop: make(chan struct{}), done: make(chan struct{})}
	meta, ok, err := dir.Latest()
	if err != nil || !ok {
		if err != nil {
			return nil, err
		}
		return store.Open(s.cfg.Store)
	}
	t0 := time.Now()
	st, rs, err := store.Recover(s.cfg.Store, meta.Store)
	if err != nil {
		return nil, fmt.Errorf("server: recover checkpoint %d: %w", meta.Seq, err)
	}
	s.dur.last = meta
	s.dur.recovered = &rs
	log := s.log.Info
	if rs.Cut {
		log = s.log.Error
	}
	log("recovered", "checkpoint", meta.Seq, "taken", meta.Time, "records", rs.Records, "end", rs.End,
		"checkpoint_end", meta.Store.End, "cut", rs.Cut, "cut_reason", rs.CutReason, "took", time.Since(t0))
	return st, nil
}

// start runs the periodic checkpoints.
func (d *durability) start(every time.Duration) {
	if every <= 0 {
		close(d.done)
		return
	}
	go func() {
		defer close(d.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case <-t.C:
				if _, err := d.take(context.Background()); err != nil {
					d.s.log.Error("periodic checkpoint failed", "err", err)
				}
			}
		}
	}()
}

// take makes everything the store holds durable and records it.
func (d *durability) take(ctx context.Context) (checkpoint.Meta, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t0 := time.Now()
	c, err := d.s.st.Checkpoint(ctx)
	if err != nil {
		return checkpoint.Meta{}, err
	}
	m := checkpoint.Meta{Seq: d.last.Seq + 1, Time: time.Now().UTC(), Store: c}
	if err := d.dir.Save(m, keepCheckpoints); err != nil {
		return checkpoint.Meta{}, err
	}
	d.last = m
	d.s.stats.checkpoints.Add(1)
	d.s.stats.checkpointNanos.Add(uint64(time.Since(t0)))
	d.s.log.Debug("checkpoint", "seq", m.Seq, "end", c.End, "took", time.Since(t0))
	return m, nil
}

// latest returns the newest recorded checkpoint.
func (d *durability) latest() checkpoint.Meta {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// close stops the periodic checkpoints and takes the last one; the loops
// have stopped.
func (d *durability) close(ctx context.Context) error {
	close(d.stop)
	<-d.done
	_, err := d.take(ctx)
	return err
}

// Checkpoint takes a checkpoint now and returns its record. Without a
// checkpoint directory it fails.
func (s *Server) Checkpoint(ctx context.Context) (checkpoint.Meta, error) {
	if s.dur == nil {
		return checkpoint.Meta{}, errNoCheckpoints
	}
	return s.dur.take(ctx)
}

var errNoCheckpoints = fmt.Errorf("server: checkpoints are off (no data directory)")
