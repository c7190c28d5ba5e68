package server

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/session"
)

// handler connects gnet's callbacks to the loops. Every callback but OnBoot
// and OnShutdown runs on the event loop that owns the connection.
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.s.eng = eng
	close(h.s.booted)
	return gnet.None
}

// conn is the server's state of one connection; only its loop touches it.
type conn struct {
	c       gnet.Conn
	l       *loop
	sess    *session.Session
	closed  bool
	dirty   bool // completions appended while another connection ran
	stalled bool // in its loop's stalled list
	queued  bool // in its loop's bell's ready list
	more    bool // input left over when its turn ended
	// part is the request batch a turn ended inside, while cs.sess.Held().
	part partBatch
	// barrier is set while an operation that the connection's later ones
	// must follow runs aside (FLUSH): its input waits until that ends.
	barrier bool
	// cpr is the session's CPR point read for the checkpoint being taken;
	// committed the last serial the client was told is durable.
	cpr, committed uint64
	// fence holds the slots of operations refused NOT_OWNER since the
	// client last re-routed (wire.FlagRerouted); nil: none. Later
	// operations on them are refused too (exec), so that none runs before
	// an earlier one the client re-issues.
	fence *cluster.SlotSet
	// peer is set once the connection sent a MIGRATE: another server's
	// migration task (a move, a ship-back, a target's fetches), not a
	// client. Its waits are not the foreground's: neither its turns
	// (OnTraffic) nor its pending operations (await) are recorded, or
	// admission control would slow a migration for the time its own
	// records take to insert. Counting a target's fetches stalled the
	// load in the cold-migration runs (BENCHMARKS.md).
	peer bool
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if _, ok := c.Context().(*bell); ok {
		return nil, gnet.None // a loop's doorbell, enrolled by newBell
	}
	l, err := h.s.loopFor(c.EventLoop())
	if err != nil {
		h.s.log.Error("cannot serve connection", "remote", c.RemoteAddr(), "err", err)
		return nil, gnet.Close
	}
	if h.s.respPort != 0 && localPort(c) == h.s.respPort {
		l.openRESP(c)
		return nil, gnet.None
	}
	sess := session.New(h.s.cfg.AuthToken != "")
	if h.s.cfg.AuthToken == "" {
		sess.Opened(h.s.nextSession.Add(1))
		h.s.sessions.opened(sess.ID)
	}
	cs := &conn{c: c, l: l, sess: sess}
	c.SetContext(cs)
	l.conns[cs] = struct{}{}
	l.stats.conns.Add(1)
	return nil, gnet.None
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *conn:
		x.closed = true // pending completions for it are dropped
		delete(x.l.conns, x)
		if x.sess.Pending() == 0 {
			x.l.sessionGone(x)
		} else {
			x.l.closing[x] = struct{}{} // sessionGone once its last pending operation completes
		}
		x.l.stats.conns.Add(-1)
	case *respConn:
		x.closed = true
		x.l.stats.conns.Add(-1)
		x.l.stats.respConns.Add(-1)
	case *bell: // the engine stops
	}
	if err != nil {
		h.s.log.Debug("connection closed", "remote", c.RemoteAddr(), "err", err)
	}
	return gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *conn:
		n := x.l.beginTurn()
		a := x.l.traffic(x)
		if !x.peer {
			x.l.endTurn(n)
		}
		return a
	case *respConn:
		n := x.l.beginTurn()
		a := x.l.respTraffic(x)
		x.l.endTurn(n)
		return a
	case *bell:
		return x.answer(c)
	}
	return gnet.Close
}

// localPort is the port c was accepted on.
func localPort(c gnet.Conn) int {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// gnetLogger sends gnet's log lines to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
