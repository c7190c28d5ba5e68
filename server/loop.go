package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// loop is one event loop's state: its store session (its epoch slot), its
// copy of the view, and the map from its store session's pending serials to
// the client operations waiting for them. Everything but stats is touched
// only by the loop's goroutine.
type loop struct {
	s       *Server
	el      gnet.EventLoop
	idx     int
	ss      *store.Session
	view    uint64
	pending map[uint64]pendingRef
	dirty   []*conn // connections with completions to write
	polling bool    // a poll of pending operations is scheduled
	ops     wire.OpReader
	win     [window]ahead // decoded operations of the batch running
	value   []byte        // read buffer, reused
	scratch [16]byte
	stats   loopStats
}

// pendingRef names the client operation a store operation answers.
type pendingRef struct {
	c      *conn
	serial uint64
}

// loopStats are counters the admin page reads; the loop adds once per batch.
type loopStats struct {
	ops      [6]atomic.Uint64 // by wire.Op: READ..APPEND, then control
	batches  atomic.Uint64
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	errors   atomic.Uint64
	rejected atomic.Uint64 // VIEW_CHANGED and RETRY_LATER batches
	pending  atomic.Uint64
	conns    atomic.Int64
	_        [64]byte
}

func newLoop(s *Server, el gnet.EventLoop, idx int) (*loop, error) {
	ss, err := s.st.NewSession()
	if err != nil {
		return nil, err
	}
	l := &loop{s: s, el: el, idx: idx, ss: ss, pending: make(map[uint64]pendingRef), value: make([]byte, 0, 4096)}
	ss.SetCompletion(l.completed)
	if !s.cfg.NoPin {
		if err := pinThread(idx); err != nil {
			s.log.Warn("cannot pin loop to a core", "loop", idx, "err", err)
		}
	}
	return l, nil
}

// close releases the loop's store session. Only after the loops stopped.
func (l *loop) close() error { return l.ss.Close() }

// traffic runs every complete batch the connection has buffered and writes
// all their responses with one write.
func (l *loop) traffic(cs *conn) gnet.Action {
	l.view = l.s.view.Load()
	in, _ := cs.c.Peek(-1)
	used, action := l.runBatches(cs, in)
	if used > 0 {
		cs.c.Discard(used)
		l.stats.bytesIn.Add(uint64(used))
	}
	l.advancePending()
	l.write(cs)
	l.flushDirty()
	l.ss.Suspend()
	l.schedulePoll()
	if action == gnet.None && cs.c.OutboundBuffered() > l.s.cfg.MaxResponse {
		// The client sends but does not read: stop before its responses
		// exhaust memory.
		cs.sess.Fail(wire.CodeTooLarge, l.view, cs.sess.Next(), "client does not read its responses")
		l.write(cs)
		return gnet.Close
	}
	return action
}

// runBatches executes the complete batches at the start of in and returns
// how many bytes they took. A malformed batch gets an ERROR response and
// closes the connection; the batches before it stand.
func (l *loop) runBatches(cs *conn, in []byte) (int, gnet.Action) {
	lim := l.s.cfg.Limits
	used := 0
	for len(in)-used >= wire.HeaderSize {
		b := in[used:]
		h, err := wire.ParseRequestHeader(b, lim)
		if err != nil {
			return used, l.fail(cs, err, h.Serial)
		}
		end := wire.HeaderSize + int(h.Length)
		if len(b) < end {
			break
		}
		if err := wire.ValidateRequest(h, b[wire.HeaderSize:end], lim); err != nil {
			return used, l.fail(cs, err, h.Serial)
		}
		used += end
		if action := l.runBatch(cs, h, b[wire.HeaderSize:end]); action != gnet.None {
			return used, action
		}
	}
	return used, gnet.None
}

// fail answers a malformed batch and closes the connection.
func (l *loop) fail(cs *conn, err error, serial uint64) gnet.Action {
	code := wire.CodeMalformed
	if we, ok := err.(*wire.Error); ok {
		code = we.Code
	}
	cs.sess.Fail(code, l.view, serial, err.Error())
	l.stats.errors.Add(1)
	l.write(cs)
	return gnet.Close
}

// write sends the connection's finished responses.
func (l *loop) write(cs *conn) {
	out := cs.sess.TakeOutput(l.view)
	if len(out) == 0 || cs.closed {
		return
	}
	if _, err := cs.c.Write(out); err != nil {
		l.s.log.Debug("write failed", "remote", cs.c.RemoteAddr(), "err", err)
	}
	l.stats.bytesOut.Add(uint64(len(out)))
}

// advancePending lets the store finish what it can of the loop's pending
// operations; their completions go to their connections' output.
func (l *loop) advancePending() {
	if l.ss.PendingCount() > 0 {
		l.ss.CompletePending(false)
	}
}

// completed is the store session's completion callback.
func (l *loop) completed(c store.Completion) {
	ref, ok := l.pending[c.Serial]
	if !ok {
		return
	}
	delete(l.pending, c.Serial)
	if ref.c.closed {
		return
	}
	st, payload, code := resultOf(c.Status, c.Err, c.Value)
	ref.c.sess.Complete(ref.serial, st, payload, code)
	if !ref.c.dirty {
		ref.c.dirty = true
		l.dirty = append(l.dirty, ref.c)
	}
}

// flushDirty writes completions that arrived for other connections.
func (l *loop) flushDirty() {
	for i, cs := range l.dirty {
		cs.dirty = false
		l.write(cs)
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
}

// schedulePoll arranges for the loop to advance its pending operations again
// soon when no traffic would wake it.
func (l *loop) schedulePoll() {
	if l.polling || l.ss.PendingCount() == 0 {
		return
	}
	l.polling = true
	time.AfterFunc(pollDelay, func() {
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(l.poll))
	})
}

// poll runs on the loop.
func (l *loop) poll(context.Context) error {
	l.polling = false
	l.view = l.s.view.Load()
	l.advancePending()
	l.flushDirty()
	l.ss.Suspend()
	l.schedulePoll()
	return nil
}
