package server

import (
	"context"
	"strings"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/wire"
)

// Flush drops every key the store holds, served here or not (FLUSHALL):
// each loop's operations are entirely before it or entirely after it
// (store.Flush, under a pause of the loops). A checkpoint is requested at
// once; the flush is durable when one taken after it is recorded. It must
// not run on a loop.
func (s *Server) Flush(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	err := s.st.Flush(ctx, func(ctx context.Context, atStop func()) error {
		return s.pauseLoops(ctx, false, atStop)
	})
	if err != nil {
		return err
	}
	s.stats.flushes.Add(1)
	s.log.Info("flushed every key", "log_cut_at", s.st.FlushedAt())
	if s.dur != nil {
		s.dur.request()
	}
	return nil
}

// cmdFlushAll answers FLUSHALL and FLUSHDB [ASYNC|SYNC]: both drop every
// key (there is one database) and answer once they are gone; ASYNC does
// the same, as the flush itself is a swap of the index (the memory of the
// old records is reclaimed as the log moves on).
func cmdFlushAll(l *loop, r *respConn, a [][]byte) []byte {
	if len(a) > 2 || (len(a) == 2 && !strings.EqualFold(string(a[1]), "async") && !strings.EqualFold(string(a[1]), "sync")) {
		return resp.AppendError(r.out, "ERR syntax error")
	}
	l.respAside(r, 0, l.s.Flush, func(b []byte, err error) []byte {
		if err != nil {
			return resp.AppendError(b, sanitize("ERR flush failed: "+err.Error()))
		}
		return resp.AppendSimple(b, "OK")
	})
	return r.out
}

// flushNative answers an OpFlush, the last operation of its batch: it
// goes pending, the flush runs aside (it pauses every loop, this one too),
// and its outcome completes the operation on the loop. Meanwhile the
// connection's later batches wait (conn.barrier), so its operations after
// the flush come after it.
func (l *loop) flushNative(cs *conn, serial uint64) {
	cs.sess.AddPending(serial)
	cs.sess.Result(wire.StatusPending, nil, 0)
	cs.barrier = true
	l.s.aside.Add(1)
	go func() {
		defer l.s.aside.Done()
		err := l.s.Flush(l.s.life)
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			st, code := wire.StatusOK, wire.Code(0)
			if err != nil {
				st, code = wire.StatusError, classify(err).code
			}
			l.completeAside(cs, serial, st, nil, code)
			l.flushDirty()
			if cs.barrier = false; !cs.closed {
				_ = cs.c.Wake(nil) // its input waited: run it now
			}
			return nil
		}))
	}()
}
