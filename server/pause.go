package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// pause is the store's Pause for a checkpoint: every loop completes its
// pending writes (reads may stay pending), reads its sessions' CPR points
// (markCPR) and stops, suspended; the last loop to stop calls atStop (the
// checkpoint reads its end) and lets them all go on. The loops' sessions
// thereby pass their CPR points together: no operation after one runs
// before the end is read. The last loop reading the end itself spares the
// others a wake-up of the checkpoint's goroutine and back (on a busy core,
// milliseconds). After the loops stopped (shutdown) the points are read
// from here.
func (d *durability) pause(ctx context.Context, atStop func()) error {
	if d.stopped {
		d.s.mu.Lock()
		for _, l := range d.s.mu.list {
			l.quiesce() // the loop's goroutine is gone: its session is ours
			l.markCPR()
		}
		d.s.mu.Unlock()
		atStop()
		return nil
	}
	return d.s.pauseLoops(ctx, true, atStop)
}

// pauseLoops stops every loop between two operations with its writes
// complete (and, with mark, its CPR points read), runs atStop on the last
// one to stop, and lets them go on; a loop created meanwhile waits too. It
// returns an error, without atStop, when ctx ends first. It must not run
// on a loop (it waits for every loop), and one runs at a time (the store
// serializes its checkpoints and flushes).
func (s *Server) pauseLoops(ctx context.Context, mark bool, atStop func()) error {
	p := &loopPause{atStop: atStop, mark: mark, release: make(chan struct{})}
	s.mu.Lock()
	loops := append([]*loop(nil), s.mu.list...)
	s.mu.hold = p.release // loops created from now on wait too (loopFor)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.mu.hold = nil
		s.mu.Unlock()
	}()
	p.left.Store(int32(len(loops)) + 1) // and this goroutine, until every task is queued
	for _, l := range loops {
		task := gnet.RunnableFunc(func(context.Context) error { p.stop(l); return nil })
		if err := l.el.Execute(context.Background(), task); err != nil {
			p.arrive() // a loop that stopped running: it runs nothing
		}
	}
	p.arrive()
	select {
	case <-p.release:
		return nil
	case <-ctx.Done():
		if p.state.CompareAndSwap(pauseStopping, pauseCanceled) {
			close(p.release)
			return ctx.Err()
		}
		<-p.release // the last loop is running atStop
		return nil
	}
}

// loopPause is one pause of the loops.
//
// Invariant: release is closed exactly once, by whoever moves state from
// pauseStopping: the last to arrive (after atStop) or a cancellation
// (without atStop). atStop runs only while every loop that runs is stopped.
type loopPause struct {
	left    atomic.Int32 // loops (and the pausing goroutine) not arrived yet
	state   atomic.Int32
	atStop  func()
	mark    bool // a checkpoint's: read the CPR points
	release chan struct{}
}

const (
	pauseStopping int32 = iota
	pauseStopped
	pauseCanceled
)

// stop runs on loop l: it completes l's pending writes, reads its CPR
// points (with mark) and waits for the pause to end (or ends it, when
// last).
func (p *loopPause) stop(l *loop) {
	t0 := time.Now()
	l.quiesce()
	if p.mark {
		l.markCPR()
	}
	if !p.arrive() {
		<-p.release
	}
	l.s.stats.pauseNanos.Add(uint64(time.Since(t0)))
}

// arrive counts one arrival; the last one, unless the pause was cancelled,
// calls atStop and releases the loops. It reports whether it did.
func (p *loopPause) arrive() bool {
	if p.left.Add(-1) != 0 || !p.state.CompareAndSwap(pauseStopping, pauseStopped) {
		return false
	}
	p.atStop()
	close(p.release)
	return true
}
