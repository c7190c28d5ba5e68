package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/cpu"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/internal/invariants"
	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// loop is one event loop's state: its store session (its epoch slot), the
// routing it serves by this turn, and the map from its store session's pending serials to
// the client operations waiting for them. Everything but stats is touched
// only by the loop's goroutine. The pads keep what a loop writes per batch
// (its window, its stats) off the cache lines of another loop's fields, as
// store.Session's do. They are defensive: without them loop's size class
// (1792 bytes) happened to be a multiple of a cache line.
type loop struct {
	_   cpu.CacheLinePad
	s   *Server
	el  gnet.EventLoop
	idx int
	ss  *store.Session
	// rt is the routing of the turn running, read once at its start
	// (turn): the view and the owned slots never change within a turn.
	rt      *cluster.Routing
	pending map[uint64]pendingRef
	conns   map[*conn]struct{} // the loop's native connections
	// closing holds the closed native connections with operations still
	// pending. Invariant: cs is in closing iff cs.closed and
	// cs.sess.Pending() > 0; OnClose adds it, completed drops it with its
	// last operation (and calls sessionGone).
	closing map[*conn]struct{}
	dirty   []*conn // connections with completions to write
	// respDirty are the RESP connections whose last open hole a
	// completion filled, for flushDirty to write (respHoleCompleted).
	respDirty []*respConn
	polling   bool    // a poll of pending operations is scheduled
	stalled   []*conn // connections with unread input held back by MaxPendingIO
	// bell wakes connections after the loop's next poll (bell.go); nil
	// for a loop without gnet (benchmarks).
	bell *bell
	// issued counts the operations that went to the device in the
	// turn running (await); a turn ends at turnReads of them.
	issued int
	pollFn gnet.RunnableFunc
	ops    wire.ValidOps
	win    [window]ahead // decoded operations of the batch running
	// batchLast is the serial of the last operation of the batch running.
	batchLast uint64
	value     []byte // read buffer, reused
	// addUpdate is ADD's store.Update where a migration may hold the key
	// (add sets Input per operation, updateAdmitted Held), built once: a
	// literal per operation cost 27 instructions.
	addUpdate store.Update
	rd        *resp.Reader // parses the RESP connections' commands
	rwin      []parsed     // the RESP commands parsed and not yet run
	rargs     [][]byte     // their arguments
	// holePool and outPool keep the RESP connections' reply holes and
	// output buffers for reuse (resp_holes.go).
	holePool []*respHole
	outPool  [][]byte
	scratch  [32]byte
	// notOwned is the slot of the last operation the gateway refused.
	notOwned uint16
	// awaitMiss: the read, or held operation, the gateway just answered
	// Pending is in a slot of Routing.Misses (await takes it); nil
	// otherwise.
	awaitMiss *missedRead
	// missRead: the last read the gateway refused did not find its key
	// in a slot of Routing.Misses, and is not counted refused yet (exec
	// parks, answers or refuses it; so does the RESP front); missHead is
	// its chain's head before that read, missDead the dead record of the
	// key it met, missKey and missH the key (in a connection's input:
	// cleared once used) and its hash, missWithAt whether it wanted the
	// expiry too (readExpiring).
	missRead, missWithAt bool
	missHead, missDead   uint64
	missKey              []byte
	missH                uint64
	// fetched holds when each key hash was last asked of the node to
	// fetch (fetchMissing), so that retries of a refused operation do not
	// ask again within a second; it is emptied when it grows large.
	fetched map[uint64]time.Time
	parked  parking                            // parked reads (parking.go)
	samples map[cluster.MigrationID]*sampleSet // keys sampled for migrations (sampling.go)
	slotOps slotLoad                           // operations per slot since SlotLoad took them (slotload.go)
	stats   loopStats
	// waits holds how long the batches and commands the loop answered
	// waited, since admission control last took them (admit.go); nil when
	// it is off.
	waits *hdrhistogram.Histogram
	// turnAt is when the turn running started (Server.clock), kept only
	// with waits.
	turnAt time.Duration
	// cprs are the CPR points markCPR read for the checkpoint being taken;
	// closedCPR those of connections closed since the last recorded
	// checkpoint, of which the first closedRead were read into cprs.
	cprs, closedCPR []sessionCPR
	closedRead      int
	_               cpu.CacheLinePad
}

// respOpIndex is the RESP commands' slot in loopStats.ops.
const respOpIndex = 6

// expireOpIndex is native EXPIRE's slot in loopStats.ops.
const expireOpIndex = 7

// loopStats are counters the admin page reads; the loop adds once per batch.
type loopStats struct {
	ops      [len(opNames)]atomic.Uint64 // by opIndex: READ..APPEND, control, RESP commands, EXPIRE
	batches  atomic.Uint64
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	errors   atomic.Uint64
	rejected atomic.Uint64 // VIEW_CHANGED and RETRY_LATER batches
	notOwner atomic.Uint64 // operations refused for a slot not served here
	pending  atomic.Uint64
	held     atomic.Uint64 // turns a connection was held back by MaxPendingIO
	// heldBatches counts native turns that ended inside a batch (hold).
	heldBatches atomic.Uint64
	respCut     atomic.Uint64 // RESP turns that ended at turnReads with commands left
	respHoles   atomic.Uint64 // RESP reads that went to the device without stopping their connection
	parked      atomic.Uint64 // reads parked now (parking.go)
	parks       atomic.Uint64 // reads ever parked
	reparks     atomic.Uint64 // of them, reads parked after the device did not find their key (repark)
	// parkedCovered counts parked reads answered through an indirection
	// table once their slot left Misses (parking.go).
	parkedCovered atomic.Uint64
	// parkWaits are how long the parked reads waited (parking.go).
	parkWaits waitCounts
	// fetchesBelow counts fetches answered with where the tier has the
	// key (lend.go).
	fetchesBelow atomic.Uint64
	conns        atomic.Int64
	respConns    atomic.Int64
	_            [64]byte
}

func newLoop(s *Server, el gnet.EventLoop, idx int) (*loop, error) {
	ss, err := s.st.NewSession()
	if err != nil {
		return nil, err
	}
	l := &loop{s: s, el: el, idx: idx, ss: ss, rt: s.route.Load(), pending: make(map[uint64]pendingRef), conns: make(map[*conn]struct{}),
		closing:   make(map[*conn]struct{}),
		value:     make([]byte, 0, 4096),
		addUpdate: store.Update{Want: store.WantNew, Merge: store.Int64Add{}},
		rd:        resp.NewReader(s.respLimits())}
	if s.adm != nil && s.adm.ctl != nil {
		l.waits = newWaitHistogram()
	}
	if el != nil {
		if l.bell, err = newBell(el); err != nil {
			_ = ss.Close()
			return nil, err
		}
	}
	ss.SetCompletion(l.completed)
	l.pollFn = l.poll
	ss.SetWake(l.wake)
	if !s.cfg.NoPin {
		if err := pinThread(idx); err != nil {
			s.log.Warn("cannot pin loop to a core", "loop", idx, "err", err)
		}
	}
	return l, nil
}

// turn takes the server's routing for the turn that starts. Every entry
// from gnet (traffic, a queued task) calls it first.
func (l *loop) turn() {
	l.rt = l.s.route.Load()
	if l.waits != nil {
		l.turnAt = l.s.clock()
	}
}

// close releases the loop's store session and its doorbell. Only after
// the loops stopped.
func (l *loop) close() error {
	if l.bell != nil {
		_ = l.bell.close()
	}
	return l.ss.Close()
}

// later wakes cs after the loop's next poll of its sockets (bell).
func (l *loop) later(cs *conn) { l.ring(belled{c: cs.c, queued: &cs.queued, closed: &cs.closed}) }

// laterRESP wakes r after the loop's next poll of its sockets (bell).
func (l *loop) laterRESP(r *respConn) {
	l.ring(belled{c: r.c, queued: &r.queued, closed: &r.closed})
}

func (l *loop) ring(x belled) {
	if l.bell == nil {
		_ = x.c.Wake(nil)
		return
	}
	l.bell.later(x)
}

// traffic runs every complete batch the connection has buffered and writes
// all their responses with one write. While the loop has MaxPendingIO
// operations waiting for the device, a connection that has operations among
// them is held back: its input stays where it is (the socket's buffers then
// push back on its client) and poll resumes it. Connections with nothing
// pending go on being served, so clients of in-memory keys do not queue
// behind clients of cold ones.
func (l *loop) traffic(cs *conn) gnet.Action {
	l.turn()
	if l.parked.n > 0 {
		l.sweepParked()
	}
	if n := cs.c.InboundBuffered(); n > l.s.cfg.MaxInput {
		// Held back, or sending faster than its turns run: bound what it
		// makes the server hold.
		l.s.log.Warn("closing a client over the input limit", "remote", cs.c.RemoteAddr(), "bytes", n)
		l.stats.errors.Add(1)
		cs.sess.Fail(wire.CodeTooLarge, l.rt.View, cs.sess.Next(),
			fmt.Sprintf("%d bytes of input buffered unanswered, over the server's limit of %d", n, l.s.cfg.MaxInput))
		l.write(cs)
		return gnet.Close
	}
	if cs.barrier || l.holdBack(cs) {
		return gnet.None
	}
	in, _ := cs.c.Peek(-1)
	cs.more = false
	l.issued = 0
	used, action := l.runBatches(cs, in)
	if used > 0 {
		cs.c.Discard(used)
		l.stats.bytesIn.Add(uint64(used))
	}
	switch {
	case !cs.more || action != gnet.None:
	case l.issued >= turnReads:
		l.later(cs) // after the next poll: the device's work is slow
	default:
		_ = cs.c.Wake(nil) // runs traffic again before gnet next polls its sockets (turnOps)
	}
	l.advancePending()
	l.write(cs)
	l.flushDirty()
	l.ss.Suspend()
	l.schedulePoll()
	if action == gnet.None && cs.c.OutboundBuffered() > l.s.cfg.MaxResponse {
		// The client sends but does not read: stop before its responses
		// exhaust memory.
		cs.sess.Fail(wire.CodeTooLarge, l.rt.View, cs.sess.Next(), "client does not read its responses")
		l.write(cs)
		return gnet.Close
	}
	return action
}

// runBatches executes the complete batches at the start of in, the one a
// turn held first, and returns how many bytes they took. A malformed batch
// gets an ERROR response and closes the connection; the batches before it
// stand. A batch held again (partBatch) takes no bytes: it stays the first
// of the input.
func (l *loop) runBatches(cs *conn, in []byte) (int, gnet.Action) {
	lim := l.s.cfg.Limits
	used, ran := 0, 0
	if cs.sess.Held() {
		p := &cs.part
		end := wire.HeaderSize + int(p.h.Length)
		if invariants.Enabled && len(in) < end {
			invariants.Fail("a held batch of %d bytes has %d left in its input", end, len(in))
		}
		ran = int(p.h.Count) - p.op
		if action := l.runOps(cs, p.h, in[wire.HeaderSize:end], p.op, p.pos); action != gnet.None {
			return end, action
		}
		if cs.sess.Held() {
			cs.more = true
			return 0, gnet.None
		}
		used = end
	}
	for len(in)-used >= wire.HeaderSize {
		if ran >= turnOps || l.issued >= turnReads {
			// Let the loop's other connections have their turn; traffic
			// asks gnet to come back for the rest. (runOps relies on a
			// batch starting below turnReads.)
			cs.more = true
			break
		}
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
		ran += int(h.Count)
		if action := l.runBatch(cs, h, b[wire.HeaderSize:end]); action != gnet.None {
			return used + end, action
		}
		if cs.sess.Held() {
			cs.more = true
			break // its bytes stay in the input for the next turn
		}
		used += end
		if cs.barrier {
			break // the rest waits for what runs aside (flushNative)
		}
	}
	return used, gnet.None
}

// turnOps is how many operations a connection runs in one turn of its loop
// (whole batches: the last one may pass it). What this bounds is weaker than
// it looks: traffic asks for the rest through gnet's Wake, and gnet runs
// its queued tasks until the queue is empty, tasks queued meanwhile
// included, before it polls its sockets again. So a connection with several
// batches of in-memory operations buffered runs them all, turn after turn,
// before a socket that became readable meanwhile is read. turnReads, not
// this, bounds the turns of connections whose operations go to the device.
const turnOps = 1024

// turnReads is how many operations that went to the device (await) end a
// connection's turn: a native one's inside a batch if need be (partBatch),
// a RESP one's after the command that reached it (respRunWindow). Sending
// one to the device costs the loop's core microseconds (the ring's
// submission and the block layer share it), a thousand times an in-memory
// operation: a turn of whole cold batches took 10+ ms on the 2-vCPU VM,
// and a probe's request waited behind several (BENCHMARKS.md, issue 16).
// Such a turn resumes after the loop's next poll (bell), so a request on
// another socket waits for at most one such turn per connection.
const turnReads = 16

// partBatch is where a request batch stands that a turn ended inside. Its
// bytes stay the first of the connection's input (runBatches takes a
// batch's bytes only once it ran whole; gnet's buffer may move them, so
// they are found again by offset), its response stays open
// (session.Hold), and the next turn runs it from operation op, which
// starts pos bytes into its body. It stands for as long as the session
// holds the response (Session.Held): runOps' end closes both.
type partBatch struct {
	h   wire.RequestHeader
	op  int
	pos int
}

// fail answers a malformed batch and closes the connection.
func (l *loop) fail(cs *conn, err error, serial uint64) gnet.Action {
	code := wire.CodeMalformed
	if we, ok := err.(*wire.Error); ok {
		code = we.Code
	}
	cs.sess.Fail(code, l.rt.View, serial, err.Error())
	l.stats.errors.Add(1)
	l.write(cs)
	return gnet.Close
}

// write sends the connection's finished responses.
func (l *loop) write(cs *conn) {
	out := cs.sess.TakeOutput(l.rt.View)
	if len(out) == 0 || cs.closed {
		return
	}
	if _, err := cs.c.Write(out); err != nil {
		l.s.log.Debug("write failed", "remote", cs.c.RemoteAddr(), "err", err)
	}
	l.stats.bytesOut.Add(uint64(len(out)))
}

// advancePending lets the store finish what it can of the loop's pending
// operations; their completions go to their connections' output. Every
// caller follows it with flushDirty: the connections completions queued
// (l.dirty, native ones; l.respDirty, RESP ones whose last open hole was
// filled) are written there, and nothing wakes them otherwise.
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
	if ref.at != 0 {
		l.record(ref.at, 1)
	}
	if m := ref.miss; m != nil && m.held && c.Err == store.ErrNotHeld {
		c.Err = l.notHeld(m.key, m.h) // its record may not have arrived yet
	}
	if ref.miss != nil && !ref.miss.held && c.Err == nil && c.Status == store.NotFound && !l.deletedHere(ref.miss.slot, c.Found) {
		switch l.repark(ref, c.Found) { // a read parks, and parkMiss fetches
		case missParked:
			return
		case missRefused:
			if ref.kind != pendingNative {
				l.fetchMissing(ref.miss.key, ref.miss.h) // for the RESP client's retry
			}
			c.Err = l.refuse(ref.miss.slot) // the key may not have arrived yet
		}
	}
	switch ref.kind {
	case pendingRESP:
		l.respCompleted(ref.r, c)
		return
	case pendingRESPHole:
		l.respHoleCompleted(ref.r, ref.hole, c)
		return
	}
	if ref.c.closed {
		if ref.c.sess.Forget(ref.serial) == 0 {
			delete(l.closing, ref.c)
			l.sessionGone(ref.c)
		}
		return
	}
	if c.Err == errNotOwner {
		ref.c.fenceSlot(ref.miss.slot) // later operations may have run already: see docs/cluster.md
	}
	st, payload, code := resultOf(ref.op, c.Status, c.Err, c.Value)
	ref.c.sess.Complete(ref.serial, st, payload, code)
	if !ref.c.dirty {
		ref.c.dirty = true
		l.dirty = append(l.dirty, ref.c)
	}
}

// flushDirty writes completions that arrived for other connections: the
// native ones' responses and the RESP ones' replies they made ready.
func (l *loop) flushDirty() {
	for i, cs := range l.dirty {
		cs.dirty = false
		l.write(cs)
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
	for i, r := range l.respDirty {
		r.dirty = false
		l.respWrite(r)
		l.respDirty[i] = nil
	}
	l.respDirty = l.respDirty[:0]
}

// schedulePoll arranges for the loop to advance its pending operations again
// soon when neither traffic nor the device would wake it: only operations
// that wait for the other loops' epochs need the timer. A device read's
// completion wakes the loop itself (wake).
func (l *loop) schedulePoll() {
	if l.polling || l.ss.Retrying() == 0 {
		return
	}
	l.polling = true
	time.AfterFunc(pollDelay, func() {
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(l.poll))
	})
}

// poll runs on the loop: woken by a device completion (wake) or a timer.
func (l *loop) poll(context.Context) error {
	l.polling = false
	l.turn()
	l.advancePending()
	l.flushDirty()
	l.ss.Suspend()
	l.resumeStalled()
	l.schedulePoll()
	return nil
}

// wake is the store session's wake-up: called on a device goroutine when a
// read completes, it queues poll on the loop (gnet's trigger), so the
// completion is handled by the loop that issued the read.
func (l *loop) wake() {
	if l.el != nil {
		_ = l.el.Execute(context.Background(), l.pollFn)
	}
}

// holdBack reports whether cs must wait: it has operations pending and the
// loop is at MaxPendingIO even after taking in what has completed. A held
// back connection is resumed by poll.
func (l *loop) holdBack(cs *conn) bool {
	if cs.sess.Pending() == 0 || l.ss.PendingCount() < l.s.cfg.MaxPendingIO {
		return false
	}
	l.advancePending()
	l.flushDirty()
	if cs.sess.Pending() == 0 || l.ss.PendingCount() < l.s.cfg.MaxPendingIO {
		return false
	}
	l.stall(cs)
	l.stats.held.Add(1)
	l.ss.Suspend()
	l.schedulePoll()
	return true
}

// stall holds cs back until the loop's pending operations drop below the
// bound.
func (l *loop) stall(cs *conn) {
	if !cs.stalled {
		cs.stalled = true
		l.stalled = append(l.stalled, cs)
	}
}

// resumeStalled asks for traffic to run again, after the loop's next poll
// (later), for every held-back connection once the loop is below its
// bound: their turns send more to the device.
func (l *loop) resumeStalled() {
	if len(l.stalled) == 0 || l.ss.PendingCount() >= l.s.cfg.MaxPendingIO {
		return
	}
	for i, cs := range l.stalled {
		cs.stalled = false
		if !cs.closed {
			l.later(cs)
		}
		l.stalled[i] = nil
	}
	l.stalled = l.stalled[:0]
}
