package server

import (
	"bytes"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
)

// respConn is the state of one RESP connection; only its loop touches it.
//
// Commands run in order, on the loop's store session, as the native
// protocol's operations do; their replies are appended to out and written
// with one write per turn. A read whose record is on the device leaves a
// hole in the output and the connection goes on (resp_holes.go): the reads
// of a pipeline and the keys of an MGET go to the device together. A write
// whose store operation goes pending (a cold record) stops the connection:
// its arguments are copied into op, the rest of the input stays buffered,
// and the completion finishes the command and queues the connection to go
// on. Replies keep the order of the commands either way.
type respConn struct {
	c      gnet.Conn
	l      *loop
	id     uint64
	authed bool
	closed bool
	quit   bool // QUIT: close once the replies are written
	// waiting: the running command waits for a store operation (an entry
	// in l.pending names r), for a parked read of a key a migration has
	// not sent yet (an entry in l.parked names r with wait set:
	// parking.go) or for a job off the loop (respAside's goroutine);
	// exactly that completion clears it (respCompleted, respAside) and
	// queues r again. Its arguments were copied then (respHold).
	waiting bool
	queued  bool   // in its loop's bell's ready list
	name    []byte // CLIENT SETNAME
	op      respOp
	out     []byte
	argBuf  []byte // backing of op.args while it waits
	// holes are the read replies still to come, in order; ready is the
	// output before the first (resp_holes.go).
	holes []*respHole
	ready []byte
	dirty bool // in l.respDirty: holes filled since its last write
}

// respOp is the command running on a connection: which step of it is next,
// and what its steps have gathered.
type respOp struct {
	cmd   *command
	args  [][]byte
	h     uint64 // hash of args[1], computed while parsing
	i     int    // the step issued last (a key's index for multi-key commands)
	n     int64  // DEL and EXISTS count what they found
	set   setOptions
	exp   expireOptions // SET's, GETEX's and the EXPIRE family's expiry
	delta [8]byte       // INCR's delta, the decimalAdd input
	app   appendMerger
}

func (l *loop) openRESP(c gnet.Conn) {
	r := &respConn{c: c, l: l, id: l.s.nextSession.Add(1), authed: l.s.cfg.RequirePass == ""}
	c.SetContext(r)
	l.stats.conns.Add(1)
	l.stats.respConns.Add(1)
}

// respTraffic runs the complete commands r has buffered, up to a turn's
// worth, and writes their replies with one write. Commands are parsed a
// window at a time and their keys' index buckets prefetched while parsing
// goes on; each command's record is prefetched a few commands before it
// runs, as the native protocol's batches are.
func (l *loop) respTraffic(r *respConn) gnet.Action {
	if r.c.InboundBuffered() > l.s.cfg.MaxInput {
		// A client that keeps sending while its commands wait, or faster
		// than its turns run them: bound what it can make the server hold.
		l.s.log.Warn("closing a RESP client over the input limit", "remote", r.c.RemoteAddr(), "bytes", r.c.InboundBuffered())
		return gnet.Close
	}
	if r.waiting {
		l.respWrite(r)   // replies that holes' completions made ready
		return gnet.None // its completion queues it again
	}
	l.turn()
	in, _ := r.c.Peek(-1)
	used, ran, action := 0, 0, gnet.None
	l.issued = 0
	for ran < turnOps && l.issued < turnReads && !r.waiting && !r.quit && action == gnet.None {
		n, err := l.respParse(in[used:])
		if len(l.rwin) == 0 {
			if err != nil {
				r.out = resp.AppendError(r.out, "ERR "+err.Error())
				action = gnet.Close
			}
			if n == 0 {
				break
			}
		}
		done := l.respRunWindow(r)
		ran += done
		if done == len(l.rwin) {
			used += n // the whole window ran; n counts skipped empty commands too
		} else {
			used += l.rwin[done-1].end // stopped at a pending command, or at turnReads
		}
	}
	if used > 0 {
		_, _ = r.c.Discard(used)
		l.stats.bytesIn.Add(uint64(used))
	}
	l.stats.ops[respOpIndex].Add(uint64(ran))
	if action == gnet.None && !r.waiting && !r.quit && used < len(in) {
		switch {
		case l.issued >= turnReads:
			l.stats.respCut.Add(1)
			l.laterRESP(r) // after the next poll: the device's work is slow
		case ran >= turnOps:
			_ = r.c.Wake(nil) // the rest after the loop's other events
		}
	}
	l.respWrite(r)
	l.advancePending()
	l.flushDirty()
	l.ss.Suspend()
	l.schedulePoll()
	if r.quit && len(r.holes) == 0 {
		l.respWrite(r)    // what completions just made ready
		return gnet.Close // QUIT's reply and every one before it are written
	}
	if action == gnet.None && r.c.OutboundBuffered() > l.s.cfg.MaxResponse {
		return gnet.Close // the client sends but does not read
	}
	return action
}

// parsed is a command of the window: its arguments are l.rargs[first:last],
// it ends end bytes into the parsed input, h hashes its first key.
type parsed struct {
	cmd         *command
	first, last int
	end         int
	h           uint64
}

// respWindow is how many commands are parsed (and their buckets prefetched)
// before the first of them runs.
const respWindow = 32

// respParse parses up to respWindow commands from in into l.rwin and
// returns the bytes they took. An inline command ends the window, since its
// arguments live in the reader's buffer until the next Parse. A protocol
// error ends it too; the commands before it run.
func (l *loop) respParse(in []byte) (int, error) {
	l.rwin, l.rargs = l.rwin[:0], l.rargs[:0]
	used := 0
	for len(l.rwin) < respWindow {
		args, n, err := l.rd.Parse(in[used:])
		if err != nil || n == 0 {
			return used, err
		}
		inline := in[used] != '*'
		used += n
		if len(args) == 0 {
			continue
		}
		p := parsed{cmd: lookup(args[0]), first: len(l.rargs), end: used}
		l.rargs = append(l.rargs, args...)
		p.last = len(l.rargs)
		if p.cmd != nil && p.cmd.issue != nil && len(args) > 1 {
			p.h = keyhash.Hash(args[1])
			l.ss.PrefetchBucket(p.h)
		}
		l.rwin = append(l.rwin, p)
		if inline {
			break
		}
	}
	return used, nil
}

// respRunWindow runs the window's commands until one waits for the device,
// or until the turn has sent turnReads reads to it, and returns how many
// ran (the last one included). A command is never cut: an MGET's keys all
// go in one turn.
func (l *loop) respRunWindow(r *respConn) int {
	for i := range l.rwin {
		if j := i + recordAhead; j < len(l.rwin) && l.rwin[j].h != 0 {
			l.ss.PrefetchRecord(l.rwin[j].h)
		}
		p := &l.rwin[i]
		l.respCommand(r, p.cmd, l.rargs[p.first:p.last], p.h)
		if r.waiting || r.quit || l.issued >= turnReads {
			return i + 1
		}
	}
	return len(l.rwin)
}

// respWrite sends the replies r has ready: up to its first hole.
func (l *loop) respWrite(r *respConn) {
	out := r.pendingOutput()
	if len(*out) == 0 || r.closed {
		*out = (*out)[:0]
		return
	}
	if _, err := r.c.Write(*out); err != nil {
		l.s.log.Debug("write failed", "remote", r.c.RemoteAddr(), "err", err)
	}
	l.stats.bytesOut.Add(uint64(len(*out)))
	if cap(*out) > maxKeptOut {
		*out = nil // a large reply does not pin its buffer
	} else {
		*out = (*out)[:0]
	}
}

// maxKeptOut is the largest reply buffer a connection keeps between turns.
const maxKeptOut = 1 << 20

// reset makes op cmd's, keeping the buffers it grew.
// Each command's prepare or merger sets the fields it reads of set, incr
// and app.
func (op *respOp) reset(cmd *command, args [][]byte, h uint64) {
	op.cmd, op.args, op.h, op.i, op.n = cmd, args, h, 0, 0
}

// hash returns the hash of argument k.
func (op *respOp) hash(k int) uint64 {
	if k == 1 && op.h != 0 {
		return op.h
	}
	return keyhash.Hash(op.args[k])
}

// respCommand runs cmd (nil when args[0] names no command); h is the hash
// of args[1] for commands with store steps.
func (l *loop) respCommand(r *respConn, cmd *command, args [][]byte, h uint64) {
	switch {
	case cmd == nil:
		r.out = appendUnknown(r.out, args)
		return
	case !cmd.arityOK(len(args)):
		r.out = resp.AppendError(r.out, "ERR wrong number of arguments for '"+cmd.name+"' command")
		return
	case !r.authed && !cmd.noAuth:
		r.out = resp.AppendError(r.out, "NOAUTH Authentication required.")
		return
	}
	if cmd.keyStep != 0 && !l.sameSlot(args, cmd.keyStep) {
		r.out = resp.AppendError(r.out, "CROSSSLOT Keys in request don't hash to the same slot")
		return
	}
	if cmd.reply != nil {
		r.out = cmd.reply(l, r, args)
		return
	}
	if len(args) > 1 && !l.serves(h) {
		// Refused whole before any reply is begun (MGET's array); the
		// gateway checks every operation again.
		r.out = l.respNotOwner(r.out)
		return
	}
	r.op.reset(cmd, args, h)
	if cmd.prepare != nil && !cmd.prepare(l, r) {
		return
	}
	l.respSteps(r)
}

// respSteps issues the running command's store operations until one goes
// pending in a way that stops the connection, or the command is done. A
// read step that goes pending leaves a hole for its reply and the command
// goes on with its next key (resp_holes.go).
func (l *loop) respSteps(r *respConn) {
	op := &r.op
	for {
		l.missRead = false // set by this step's read alone
		st, v, err := op.cmd.issue(l, op)
		if err == nil && st == store.Pending {
			if !l.canHole(r) {
				l.respWait(r)
				return
			}
			l.openHole(r)
			if op.i++; 1+op.i < len(op.args) {
				continue
			}
			return
		}
		if err == errNotOwner && l.missRead { // a read of a key that may not have arrived yet
			switch l.parkRESP(r) {
			case missParked:
				l.missRead, l.missKey = false, nil
				if r.waiting { // until the answer: respCompleted goes on
					return
				}
				if op.i++; 1+op.i < len(op.args) {
					continue
				}
				return
			case missAbsent:
				st, err = store.NotFound, nil
			default:
				l.fetchMissing(l.missKey, l.missH)
				err = l.refuse(keyhash.SlotOf(l.missH))
			}
		}
		l.missRead, l.missKey = false, nil
		if !op.cmd.take(l, r, st, v, err) {
			return
		}
	}
}

// parkRESP decides r's read step that found no live record of its key
// in a slot of Routing.Misses (l.missKey: parking.go): parked as a hole
// when the command fills holes and the connection may open one more,
// parked with the connection waiting otherwise. A read that wants the
// expiry too (TTL and its kin) is answered with it (parkedRead.withAt).
func (l *loop) parkRESP(r *respConn) missAnswer {
	pr := parkedRead{r: r, withAt: l.missWithAt}
	pr.wait = r.op.cmd.fill == nil || len(r.holes) >= maxHoles
	return l.parkMiss(pr, l.missKey, l.missH, l.missHead, l.missDead)
}

// respWait parks r behind its command's pending store operation.
func (l *loop) respWait(r *respConn) {
	l.await(pendingRef{kind: pendingRESP, r: r})
	l.respHold(r)
}

// respHold makes r wait: its command goes on when respCompleted is
// called. The arguments are copied: the input buffer they point into may
// move while the connection waits.
func (l *loop) respHold(r *respConn) {
	r.waiting = true
	size := 0
	for _, a := range r.op.args {
		size += len(a)
	}
	buf := r.argBuf[:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	for i, a := range r.op.args {
		buf = append(buf, a...)
		r.op.args[i] = buf[len(buf)-len(a) : len(buf) : len(buf)]
	}
	r.argBuf = buf
	// op.args itself is the reader's slice, reused by the next Parse.
	r.op.args = append([][]byte(nil), r.op.args...)
}

// respCompleted finishes the step that waited and runs the command's other
// steps, then queues the connection to go on with its input after the
// loop's next poll (laterRESP).
func (l *loop) respCompleted(r *respConn, c store.Completion) {
	r.waiting = false
	if r.closed {
		return
	}
	if r.op.cmd.take(l, r, c.Status, c.Value, c.Err) {
		l.respSteps(r)
	}
	if !r.waiting {
		r.op.reset(nil, nil, 0)
		l.laterRESP(r) // write the replies and go on with the input
	}
}

// appendUnknown appends Redis's reply to an unknown command.
func appendUnknown(b []byte, args [][]byte) []byte {
	var msg bytes.Buffer
	msg.WriteString("ERR unknown command '")
	msg.Write(clip(args[0], 128))
	msg.WriteString("', with args beginning with: ")
	for _, a := range args[1:] {
		if msg.Len() > 256 {
			break
		}
		msg.WriteByte('\'')
		msg.Write(clip(a, 128))
		msg.WriteString("' ")
	}
	return resp.AppendError(b, sanitize(msg.String()))
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// sanitize keeps an error line on one line, as Redis does.
func sanitize(s string) string {
	if !bytes.ContainsAny([]byte(s), "\r\n") {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}
