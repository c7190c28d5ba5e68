package server

import (
	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
)

// Cold reads in parallel on a RESP connection. A read step (GET, each key
// of MGET, STRLEN, TYPE) whose record is on the device does not stop its
// connection: its reply becomes a hole in the connection's output, the
// command (and the commands after it) go on, and the completion fills the
// hole. Output is written up to the first open hole, so replies keep the
// commands' order. A step that writes still stops the connection (respWait),
// as does any step once the loop has MaxPendingIO operations in flight.
//
// Order per key is the store's: a pending read returns the key's value as
// it was when the read was issued, so a write the connection sends after
// it (which runs at once) is ordered after it, as its reply is.
//
// Invariant: with no hole open, r.out is everything not yet written and
// r.ready is nil. With holes open, r.ready is what precedes the first,
// holes[i].after what follows hole i up to hole i+1, and r.out what
// follows the last; only r.ready may be written.

// respHole is one open (or filled, not yet written) read reply.
type respHole struct {
	filled bool
	fill   func(l *loop, b []byte, st store.Status, v []byte, err error) []byte
	reply  []byte // the reply, once filled
	after  []byte
}

// maxHoles bounds the open holes of one connection, whatever the loop's
// MaxPendingIO.
const maxHoles = 4096

// canHole reports whether the step that just went pending may become a hole.
func (l *loop) canHole(r *respConn) bool {
	return r.op.cmd.fill != nil && len(r.holes) < maxHoles && l.ss.PendingCount() <= l.s.cfg.MaxPendingIO
}

// openHole makes the pending step's reply a hole that its store
// completion fills.
func (l *loop) openHole(r *respConn) {
	l.await(pendingRef{kind: pendingRESPHole, r: r, hole: l.addHole(r)})
}

// addHole makes the running step's reply a hole and sends what follows to
// a new buffer; the caller arranges for it to be filled (openHole, or a
// parked read: parking.go).
func (l *loop) addHole(r *respConn) *respHole {
	h := l.newHole()
	h.fill = r.op.cmd.fill
	if len(r.holes) == 0 {
		r.ready = r.out
	} else {
		r.holes[len(r.holes)-1].after = r.out
	}
	r.out = l.newOut()
	r.holes = append(r.holes, h)
	l.stats.respHoles.Add(1)
	return h
}

// fillHole answers h and moves every filled hole at the front to r.ready;
// when none stays open, the output is one buffer again. It reports whether
// there is more to write.
func (l *loop) fillHole(r *respConn, h *respHole, c store.Completion) bool {
	h.reply = h.fill(l, h.reply[:0], c.Status, c.Value, c.Err)
	h.filled = true
	moved := false
	for len(r.holes) > 0 && r.holes[0].filled {
		f := r.holes[0]
		r.ready = append(r.ready, f.reply...)
		if len(r.holes) == 1 {
			r.ready = append(r.ready, r.out...)
			l.freeOut(r.out)
			r.out, r.ready = r.ready, nil
		} else {
			r.ready = append(r.ready, f.after...)
			l.freeOut(f.after)
		}
		r.holes[0] = nil
		r.holes = r.holes[1:]
		l.freeHole(f)
		moved = true
	}
	if len(r.holes) == 0 {
		r.holes = r.holes[:0:0] // let the slice's old front go
	}
	return moved
}

// pendingOutput is what r may write now.
func (r *respConn) pendingOutput() *[]byte {
	if len(r.holes) > 0 {
		return &r.ready
	}
	return &r.out
}

func (l *loop) newHole() *respHole {
	if n := len(l.holePool); n > 0 {
		h := l.holePool[n-1]
		l.holePool = l.holePool[:n-1]
		return h
	}
	return &respHole{}
}

// Pooled holes and buffers: at most maxPooled of each, buffers of at most
// maxPooledBuf bytes, so a burst of large replies pins no memory after it.
const (
	maxPooled    = 256
	maxPooledBuf = 64 << 10
)

func (l *loop) freeHole(h *respHole) {
	h.filled, h.fill, h.after = false, nil, nil
	if cap(h.reply) > maxPooledBuf {
		h.reply = nil
	}
	h.reply = h.reply[:0]
	if len(l.holePool) < maxPooled {
		l.holePool = append(l.holePool, h)
	}
}

func (l *loop) newOut() []byte {
	if n := len(l.outPool); n > 0 {
		b := l.outPool[n-1]
		l.outPool = l.outPool[:n-1]
		return b
	}
	return nil
}

func (l *loop) freeOut(b []byte) {
	if b != nil && cap(b) <= maxPooledBuf && len(l.outPool) < maxPooled {
		l.outPool = append(l.outPool, b[:0])
	}
}

// respHoleCompleted fills a hole of r with its read's outcome. When the
// fill answers the connection's last open hole, its replies are written by
// flushDirty, which follows every advancePending: in the turn they
// completed in, with those of every other connection the same completions
// answered. While holes stay open, the connection's next turn comes after
// the loop's next poll (laterRESP), so that a pipeline's partial fills
// make one write per pass (writing every turn's fills cost pipelined
// throughput; BENCHMARKS.md) and its further input waits behind the other
// sockets, as a cut turn's does; so does a connection that quit, whose
// turn closes it once the last reply is out.
func (l *loop) respHoleCompleted(r *respConn, h *respHole, c store.Completion) {
	if r.closed || !l.fillHole(r, h, c) {
		return
	}
	if r.quit || len(r.holes) > 0 {
		l.laterRESP(r)
		return
	}
	if !r.dirty {
		r.dirty = true
		l.respDirty = append(l.respDirty, r)
	}
}

// The fills of the read commands: what their take appends for one step.

func fillBulk(l *loop, b []byte, st store.Status, v []byte, err error) []byte {
	switch {
	case err != nil:
		return l.appendFailure(b, err)
	case st == store.NotFound:
		return resp.AppendNull(b)
	}
	return resp.AppendBulk(b, v)
}

func fillStrlen(l *loop, b []byte, st store.Status, v []byte, err error) []byte {
	if err != nil {
		return l.appendFailure(b, err)
	}
	return resp.AppendInt(b, int64(len(v)*btoi(st == store.OK)))
}

func fillType(l *loop, b []byte, st store.Status, _ []byte, err error) []byte {
	switch {
	case err != nil:
		return l.appendFailure(b, err)
	case st == store.NotFound:
		return resp.AppendSimple(b, "none")
	}
	return resp.AppendSimple(b, "string")
}
