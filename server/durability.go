package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/checkpoint"
	"github.com/fleetkv/fleetkv/store"
)

// durability takes the server's checkpoints: every CheckpointInterval, on
// demand (admin API, RESP SAVE/BGSAVE/WAITAOF) and at shutdown, each
// recorded in the checkpoint directory once the store says it is durable.
// Checkpoints run on their own goroutines, never on a loop: a loop that
// waited for one would hold the epoch the checkpoint waits for.
type durability struct {
	s   *Server
	dir *checkpoint.Dir
	mu  sync.Mutex // one checkpoint at a time
	// queued is true from a request (wire CHECKPOINT) until the checkpoint
	// it started holds mu: requests meanwhile are covered by that one,
	// later ones start another.
	queued atomic.Bool
	// last is the newest recorded checkpoint. An atomic pointer, not under
	// mu: loops read it (INFO, /stats) and must never wait for a checkpoint,
	// which waits for them.
	last atomic.Pointer[checkpoint.Meta]
	// idle is changes() as the newest checkpoint read it when it started:
	// a periodic checkpoint that finds it unchanged is not taken.
	idle atomic.Uint64
	// recovered is what the recovery at start found; nil for a new store.
	recovered *store.RecoveryStats
	// stopped is set, under mu, once the loops have stopped (the final
	// checkpoint): take then reads their sessions directly instead of
	// through their task queues, and requests take none.
	stopped bool
	// ctx is the background checkpoints' (periodic, requested); halt
	// cancels it.
	ctx      context.Context
	cancel   context.CancelFunc
	haltOnce sync.Once
	done     chan struct{} // closed when the periodic goroutine ends (at once if none started)
}

// keepCheckpoints is how many checkpoint files the directory keeps.
const keepCheckpoints = 3

// openStore opens the server's store: recovered from the newest checkpoint
// when the directory has one, new otherwise.
func (s *Server) openStore() (*store.Store, error) {
	s.sessions = newSessionTable(nil)
	dir := s.cfg.Checkpoints
	if dir == nil {
		return store.Open(s.cfg.Store)
	}
	// Session ids carry this start's incarnation in their high bits: ids
	// given out by a run that crashed before any checkpoint recorded them
	// are never given out again.
	inc, err := dir.NextIncarnation()
	if err != nil {
		return nil, err
	}
	s.nextSession.Store(inc << 32)
	s.dur = &durability{s: s, dir: dir, done: closedChan()}
	s.dur.ctx, s.dur.cancel = context.WithCancel(context.Background())
	meta, ok, err := dir.Latest()
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return store.Open(s.cfg.Store)
	}
	t0 := time.Now()
	var open func() (io.ReadCloser, error)
	if meta.IndexSeq != 0 && !s.cfg.NoIndexSnapshots {
		open = dir.Opener(checkpoint.Index, meta.IndexSeq)
	}
	if err := store.RestoreSnapshot(s.cfg.Store.Log.Device, meta.Store, dir.Opener(checkpoint.LogSnapshot, meta.Seq)); err != nil {
		return nil, fmt.Errorf("server: recover checkpoint %d: %w", meta.Seq, err)
	}
	st, rs, err := store.RecoverWithIndex(s.cfg.Store, meta.Store, open)
	if err != nil {
		return nil, fmt.Errorf("server: recover checkpoint %d: %w", meta.Seq, err)
	}
	if rs.Cut || rs.IndexError != "" || s.cfg.NoIndexSnapshots {
		// The snapshot's entries may point past the cut, where the new log
		// goes on: the next checkpoint takes a new one.
		meta.IndexSeq, meta.Store.IndexStart = 0, 0
	}
	s.dur.last.Store(&meta)
	s.dur.recovered = &rs
	s.sessions = newSessionTable(meta.Sessions)
	// Ids given out after the checkpoint and before the crash are not in
	// it: start a whole id range above, so none is given out twice.
	s.nextSession.Store(max(meta.NextSession, s.nextSession.Load()))
	if err := st.Release(meta.Store.Begin); err != nil { // a crash came between a checkpoint and its release
		s.log.Warn("releasing the compacted log", "below", meta.Store.Begin, "err", err)
	}
	log := s.log.Info
	if rs.Cut {
		log = s.log.Error
	}
	log("recovered", "checkpoint", meta.Seq, "taken", meta.Time, "index_entries", rs.IndexEntries, "from", rs.From,
		"records", rs.Records, "end", rs.End, "checkpoint_end", meta.Store.End, "cut", rs.Cut, "cut_reason", rs.CutReason,
		"took", time.Since(t0))
	if rs.IndexError != "" {
		s.log.Warn("the index snapshot was not used: the whole log was replayed", "snapshot", meta.IndexSeq, "err", rs.IndexError)
	}
	return st, nil
}

// start runs the periodic checkpoints; one finds nothing to do when
// nothing changed since the last.
func (d *durability) start(every time.Duration) {
	d.done = periodically(d.ctx, every, func() {
		if d.idle.Load() == d.s.changes() {
			return
		}
		if _, err := d.take(d.ctx, false); err != nil && d.ctx.Err() == nil {
			d.s.log.Error("periodic checkpoint failed", "err", err)
		}
	})
}

// changes sums what moves when the store may have changed: the loops'
// operations but native reads (RESP commands all count), the log's tail
// (read copies, compaction's copies) and the store's begin (compaction,
// FLUSHALL).
func (s *Server) changes() uint64 {
	n := s.st.Log().Tail() + s.st.Begin()
	s.mu.Lock()
	for _, l := range s.mu.list {
		for i := 1; i < len(l.stats.ops); i++ {
			n += l.stats.ops[i].Load()
		}
	}
	s.mu.Unlock()
	return n
}

// request starts a checkpoint on its own goroutine, unless one that has
// not read the loops' CPR points yet is queued. Loops call it; it never
// waits.
func (d *durability) request() {
	if !d.queued.CompareAndSwap(false, true) {
		return
	}
	go func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.queued.Store(false)
		if d.stopped {
			return // the final checkpoint is taken (or being taken)
		}
		if _, err := d.takeLocked(d.ctx, false); err != nil && d.ctx.Err() == nil {
			d.s.log.Error("requested checkpoint failed", "err", err)
		}
	}()
}

// take makes everything the store holds durable and records it, as a
// fold-over whatever the configured mode when foldOver is set. Shutdown
// (halt) ends it too: it waits for the loops, which stop then.
func (d *durability) take(ctx context.Context, foldOver bool) (checkpoint.Meta, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.ctx, cancel)()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.takeLocked(ctx, foldOver)
}

func (d *durability) takeLocked(ctx context.Context, foldOver bool) (checkpoint.Meta, error) {
	t0 := time.Now()
	changes := d.s.changes() // before: what changes meanwhile makes the next one run
	last := d.latest()
	seq := last.Seq + 1
	c, indexSeq, err := d.checkpoint(ctx, seq, last, foldOver)
	if err != nil {
		return checkpoint.Meta{}, err
	}
	cprs := d.cprPoints()
	m := checkpoint.Meta{Seq: seq, Time: time.Now().UTC(), Store: c, IndexSeq: indexSeq,
		Sessions: d.s.sessions.points(cprs), NextSession: d.s.nextSession.Load()}
	if err := d.dir.Save(m, keepCheckpoints); err != nil {
		return checkpoint.Meta{}, err
	}
	d.s.sessions.recorded(m.Sessions)
	d.last.Store(&m)
	d.idle.Store(changes)
	_ = d.s.onEveryLoop(ctx, (*loop).commitCPR) // tell the sessions
	// The newest checkpoint is the one a restart recovers: the log below
	// its begin is not needed any more.
	if err := d.s.st.Release(c.Begin); err != nil {
		d.s.log.Warn("releasing the compacted log", "below", c.Begin, "err", err)
	}
	d.s.stats.checkpoints.Add(1)
	d.s.stats.checkpointNanos.Add(uint64(time.Since(t0)))
	d.s.log.Debug("checkpoint", "seq", m.Seq, "end", c.End, "took", time.Since(t0))
	return m, nil
}

// checkpoint takes the store's checkpoint seq, with an index snapshot when
// the log written since the start of the last one (what recovery would
// replay) has grown past snapshotEvery times the snapshot's size (what
// recovery would load); otherwise the checkpoint keeps using the last
// snapshot. It returns the checkpoint and the seq of the index snapshot it
// uses (0: none). With SnapshotCheckpoints it is a log snapshot unless
// foldOver asks for a fold-over (shutdown, a migration's drop).
func (d *durability) checkpoint(ctx context.Context, seq uint64, last checkpoint.Meta, foldOver bool) (store.Checkpoint, uint64, error) {
	o := store.CheckpointOptions{Pause: d.pause}
	if d.s.cfg.SnapshotCheckpoints && !foldOver {
		return d.sideFile(checkpoint.LogSnapshot, seq, &o.Snapshot, func() (store.Checkpoint, uint64, error) {
			return d.checkpointIndex(ctx, seq, last, o)
		})
	}
	return d.checkpointIndex(ctx, seq, last, o)
}

// checkpointIndex takes the checkpoint o describes, with an index snapshot
// or not (see checkpoint).
func (d *durability) checkpointIndex(ctx context.Context, seq uint64, last checkpoint.Meta, o store.CheckpointOptions) (store.Checkpoint, uint64, error) {
	st := d.s.st
	entries := uint64(max(st.Stats().Index.Entries, 0))
	from := max(last.Store.IndexStart, st.Log().Begin())
	if d.s.cfg.NoIndexSnapshots {
		c, err := st.CheckpointWith(ctx, o)
		return c, 0, err
	}
	// A snapshot started before a FLUSHALL holds flushed keys' entries; it
	// is checked again after the checkpoint, which a flush may precede. One
	// that started at the tail the flush cut at may be from either side.
	reusable := func() bool { return last.IndexSeq != 0 && last.Store.IndexStart > st.FlushedAt() }
	if entries == 0 || (reusable() && st.Log().Tail()-from < snapshotEvery*16*entries) {
		c, err := st.CheckpointWith(ctx, o)
		if !reusable() {
			return c, 0, err
		}
		c.IndexStart = last.Store.IndexStart
		return c, last.IndexSeq, err
	}
	return d.sideFile(checkpoint.Index, seq, &o.Index, func() (store.Checkpoint, uint64, error) {
		c, err := st.CheckpointWith(ctx, o)
		return c, seq, err
	})
}

// sideFile runs take with *w writing to a new side file of kind k of
// checkpoint seq, which it makes durable, or removes if take fails.
func (d *durability) sideFile(k checkpoint.Kind, seq uint64, w *io.Writer, take func() (store.Checkpoint, uint64, error)) (store.Checkpoint, uint64, error) {
	f, err := d.dir.Create(k, seq)
	if err != nil {
		return store.Checkpoint{}, 0, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	*w = bw
	c, indexSeq, err := take()
	if err == nil {
		err = bw.Flush()
	}
	if err := d.dir.Commit(f, k, seq, err); err != nil {
		return store.Checkpoint{}, 0, err
	}
	return c, indexSeq, nil
}

// snapshotEvery trades checkpoint cost for recovery time: a snapshot
// (16 bytes per index entry) is written when the log since the last one
// has grown to this many times its size, so recovery replays at most that
// much log after loading it. Measured (4 M keys, YCSB-A, a checkpoint a
// second): at 1, every checkpoint wrote one and took 0.34-0.55 s.
const snapshotEvery = 4

// cprPoints returns the CPR points the loops read in the last pause, by
// session id: those of their connections, and those of connections that
// closed since the last checkpoint.
func (d *durability) cprPoints() map[uint64]uint64 {
	cprs := map[uint64]uint64{}
	d.s.mu.Lock()
	for _, l := range d.s.mu.list {
		for _, p := range l.cprs { // the pause ordered the loop's write before this read
			cprs[p.id] = max(cprs[p.id], p.cpr)
		}
	}
	d.s.mu.Unlock()
	return cprs
}

// latest returns the newest recorded checkpoint (Seq 0: none). It never
// waits.
func (d *durability) latest() checkpoint.Meta {
	if m := d.last.Load(); m != nil {
		return *m
	}
	return checkpoint.Meta{}
}

// close stops the periodic checkpoints and takes the last one; the loops
// have stopped.
func (d *durability) close(ctx context.Context) error {
	d.halt()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	_, err := d.takeLocked(ctx, true)
	return err
}

// halt stops the periodic checkpoints and cancels the background ones
// (periodic, requested), which wait for the loops: a loop that stops
// meanwhile would never answer. Shutdown calls it before it stops the
// loops; close calls it again.
func (d *durability) halt() {
	d.haltOnce.Do(func() {
		d.cancel()
		<-d.done
	})
}

// Checkpoint takes a checkpoint now and returns its record. Without a
// checkpoint directory it fails.
func (s *Server) Checkpoint(ctx context.Context) (checkpoint.Meta, error) {
	if s.dur == nil {
		return checkpoint.Meta{}, errNoCheckpoints
	}
	return s.dur.take(ctx, false)
}

// FoldOver takes a fold-over checkpoint now, whatever the checkpoint mode,
// and returns its record: once it returns, no record below the log's tail
// as the checkpoint read it is updated in place again (a later snapshot
// checkpoint lowers its fence only back to this one's). A migration's
// drop relies on it: the target tells a record written since the drop by
// its address alone, so no later write may land in place below it.
func (s *Server) FoldOver(ctx context.Context) (checkpoint.Meta, error) {
	if s.dur == nil {
		return checkpoint.Meta{}, errNoCheckpoints
	}
	return s.dur.take(ctx, true)
}

var errNoCheckpoints = fmt.Errorf("server: checkpoints are off (no data directory)")

// onEveryLoop runs fn on every loop (through its task queue) and waits for
// all of them. A loop that no longer runs (shutdown) is skipped.
func (s *Server) onEveryLoop(ctx context.Context, fn func(*loop)) error {
	s.mu.Lock()
	loops := append([]*loop(nil), s.mu.list...)
	s.mu.Unlock()
	done := make(chan struct{}, len(loops))
	n := 0
	for _, l := range loops {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			fn(l)
			done <- struct{}{}
			return nil
		}))
		if err == nil {
			n++
		}
	}
	for ; n > 0; n-- {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// quiesce completes every pending write of the loop (RMWs), waiting for
// the device, and writes what they answer: every operation its sessions
// issued has then taken effect (pending reads change nothing).
func (l *loop) quiesce() {
	l.turn()
	l.ss.CompleteWrites()
	l.flushDirty()
	l.ss.Suspend()
	l.resumeStalled()
}

// markCPR reads every session's CPR point, and lists them in cprs with
// those of the sessions that closed since the last call. Only after
// quiesce: a session's CPR point is then the last operation it issued.
func (l *loop) markCPR() {
	// Closed sessions' points stay listed until a checkpoint that read them
	// is recorded (commitCPR drops them): one that fails must not lose them.
	l.cprs = append(l.cprs[:0], l.closedCPR...)
	l.closedRead = len(l.closedCPR)
	for cs := range l.conns {
		cs.cpr = cs.sess.Next() - 1
		if cs.sess.ID != 0 && cs.cpr > 0 {
			l.cprs = append(l.cprs, sessionCPR{cs.sess.ID, cs.cpr})
		}
	}
	// A closed connection whose reads are still pending (quiesce left no
	// write pending) is at its last operation too: were it left out until
	// they complete, a crash meanwhile would tell its resumed session an
	// older commit point, and the client would issue writes twice.
	for cs := range l.closing {
		if cs.sess.ID != 0 && cs.sess.Next() > 1 {
			l.cprs = append(l.cprs, sessionCPR{cs.sess.ID, cs.sess.Next() - 1})
		}
	}
}

// sessionCPR is a session's CPR point, read for a checkpoint.
type sessionCPR struct{ id, cpr uint64 }

// sessionGone records where a closed connection's session stands, once
// none of its operations is pending any more (until then its id stays
// busy: a resumed session must not re-issue an operation that is still
// going to take effect).
func (l *loop) sessionGone(cs *conn) {
	id := cs.sess.ID
	if id == 0 {
		return
	}
	executed := cs.sess.Next() - 1
	l.s.sessions.closedAt(id, executed)
	if executed > 0 && l.s.dur != nil {
		l.closedSession(id, executed)
	}
}

// closedSession lists a closed connection's CPR point for the next
// checkpoint; without checkpoints for long, the oldest are forgotten.
func (l *loop) closedSession(id, cpr uint64) {
	if len(l.closedCPR) >= maxSessionPoints {
		drop := len(l.closedCPR) / 2
		l.closedCPR = l.closedCPR[:copy(l.closedCPR, l.closedCPR[drop:])]
		l.closedRead = max(0, l.closedRead-drop)
	}
	l.closedCPR = append(l.closedCPR, sessionCPR{id, cpr})
}

// commitCPR tells every session that took part in the checkpoint how far
// it is durable.
func (l *loop) commitCPR() {
	l.closedCPR = l.closedCPR[:copy(l.closedCPR, l.closedCPR[l.closedRead:])]
	l.closedRead = 0
	l.turn()
	for cs := range l.conns {
		if cs.cpr > cs.committed && !cs.closed {
			cs.committed = cs.cpr
			cs.sess.Commit(l.rt.View, cs.cpr)
			l.write(cs)
		}
	}
}

// LastCheckpoint returns the newest recorded checkpoint: every log byte
// below its Store.End is final. Zero when there is none or checkpoints are
// off.
func (s *Server) LastCheckpoint() checkpoint.Meta {
	if s.dur == nil {
		return checkpoint.Meta{}
	}
	return s.dur.latest()
}
