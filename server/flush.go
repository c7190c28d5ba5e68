package server

import (
	"context"
	"strings"

	"github.com/fleetkv/fleetkv/resp"
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
