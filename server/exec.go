package server

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/internal/invariants"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/session"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// runBatch executes one validated request batch, or rejects it whole.
func (l *loop) runBatch(cs *conn, h wire.RequestHeader, body []byte) gnet.Action {
	l.stats.batches.Add(1)
	switch cs.sess.Check(h, l.rt.View) {
	case session.ViewChanged:
		l.stats.rejected.Add(1)
		cs.sess.Reject(wire.BatchViewChanged, l.rt.View, h.Serial)
		return gnet.None
	case session.RetryLater:
		l.stats.rejected.Add(1)
		cs.sess.Reject(wire.BatchRetryLater, l.rt.View, h.Serial)
		return gnet.None
	case session.BadSerial:
		return l.fail(cs, &wire.Error{Code: wire.CodeBadSerial,
			Msg: fmt.Sprintf("batch starts at serial %d, expected %d", h.Serial, cs.sess.Next())}, h.Serial)
	case session.NeedsOpen:
		return l.fail(cs, &wire.Error{Code: wire.CodeAuth, Msg: "open the session with the auth token first"}, h.Serial)
	}
	if h.Flags&wire.FlagRerouted != 0 {
		cs.fence = nil // the client re-issued every refused operation first
	}
	cs.sess.BeginResponse(h.Serial)
	return l.runOps(cs, h, body, 0, 0)
}

// runOps runs a batch's operations from number from, which starts pos bytes
// into body, to its end; or, once the turn has sent turnReads operations to
// the device, holds the batch where it stands (hold) for a later turn.
func (l *loop) runOps(cs *conn, h wire.RequestHeader, body []byte, from, pos int) gnet.Action {
	l.batchLast = h.Serial + uint64(h.Count) - 1
	l.ops.ResetAt(body, pos)
	var counts opCounts
	// The batch was validated: it holds exactly h.Count operations.
	n := int(h.Count)
	for d := from; d < min(n, from+bucketAhead); d++ {
		l.decodeAhead(d)
	}
	for i := from; i < n; i++ {
		// Never true at i == from: a turn starts with what it held
		// (issued 0) and starts a batch only below turnReads
		// (runBatches), so each turn runs an operation at least. Nor
		// in a control batch: its operations never go to the device.
		if l.issued >= turnReads {
			l.hold(cs, h, i)
			l.countOps(&counts)
			return gnet.None
		}
		if d := i + bucketAhead; d < n {
			l.decodeAhead(d)
		}
		if j := i + recordAhead; j < n {
			if a := &l.win[j&(window-1)]; !a.op.Op.Control() {
				l.ss.PrefetchRecord(a.h)
			}
		}
		a := &l.win[i&(window-1)]
		counts[a.op.Op]++
		if a.op.Op == wire.OpOpen {
			if err := l.open(cs, a.op); err != nil {
				l.countOps(&counts)
				return l.fail(cs, err, h.Serial)
			}
			continue
		}
		l.exec(cs, &a.op, a.h, h.Serial+uint64(i))
	}
	if invariants.Enabled && !l.ops.Done() {
		invariants.Fail("a validated batch of %d operations has bytes after them", n)
	}
	if !h.Control() {
		cs.sess.Executed(h.Serial, h.Count)
	}
	cs.sess.EndResponse(l.rt.View)
	l.countOps(&counts)
	return gnet.None
}

// hold ends the turn before operation i of the batch h: the session has
// executed exactly the operations before it, and the response stays open.
func (l *loop) hold(cs *conn, h wire.RequestHeader, i int) {
	cs.part = partBatch{h: h, op: i, pos: l.win[i&(window-1)].pos}
	cs.sess.Hold(h.Serial + uint64(i))
	l.stats.heldBatches.Add(1)
}

// Prefetch distances, in operations. A batch is decoded bucketAhead
// operations ahead of execution; each decoded data operation's key is hashed
// once and its index bucket prefetched, and recordAhead operations before its
// turn the record its entry points to is prefetched. The cache misses of
// the next operations so overlap the work of the current one.
const (
	bucketAhead = 8
	recordAhead = 4
	window      = 16 // ring of decoded operations; a power of two > bucketAhead
)

// The window holds the operations from the one running to bucketAhead past
// it; this fails to compile if it could not.
var _ [window - bucketAhead - 1]struct{}

// ahead is one decoded operation waiting in the loop's window.
type ahead struct {
	op  wire.Operation // Key and Value point into the batch body
	h   uint64         // keyhash.Hash(op.Key) for data operations
	pos int            // where op starts in the body (hold)
}

// decodeAhead decodes operation n of the batch, which has one (runBatch
// validated it), into the window and prefetches its bucket.
func (l *loop) decodeAhead(n int) {
	a := &l.win[n&(window-1)]
	a.pos = l.ops.Pos()
	l.ops.NextInto(&a.op)
	a.h = 0
	if !a.op.Op.Control() {
		a.h = keyhash.Hash(a.op.Key)
		l.ss.PrefetchBucket(a.h)
	}
}

// opIndex is an operation's counter in loopStats.ops: READ..APPEND (an
// UPSERT_EXPIRING counts as an UPSERT), one for the rest (control
// operations and MIGRATE), and EXPIRE's.
func opIndex(o wire.Op) int {
	switch {
	case o == wire.OpUpsertExpiring:
		return int(wire.OpUpsert) - 1
	case o == wire.OpExpire:
		return expireOpIndex
	case o.Control() || o == wire.OpMigrate:
		return 5
	}
	return int(o) - 1
}

// opCounts counts a batch's operations by code, which is known
// (ValidateRequest): one increment per operation, sorted into opIndex's
// counters once per batch.
type opCounts [wire.MaxOp + 1]uint64

// countOps adds a batch's counts to loopStats.ops, by opIndex.
func (l *loop) countOps(counts *opCounts) {
	for op, n := range counts {
		if n != 0 {
			l.stats.ops[opIndex(wire.Op(op))].Add(n)
		}
	}
}

// open answers an OPEN: it checks the token and gives the session its id,
// or, when the OPEN's key is an 8-byte session id, resumes that session
// (once per connection, before any data batch). The answer is four
// 8-byte words: the session id, the view, the serial up to which the
// session's operations were executed (the connection's serials go on
// after it; 0 for a new session) and the one up to which they are durable.
func (l *loop) open(cs *conn, op wire.Operation) *wire.Error {
	token := l.s.cfg.AuthToken
	if token != "" && subtle.ConstantTimeCompare(op.Value, []byte(token)) != 1 {
		return &wire.Error{Code: wire.CodeAuth, Msg: "wrong auth token"}
	}
	var executed uint64
	switch {
	case len(op.Key) == 8:
		if err := l.resume(cs, binary.LittleEndian.Uint64(op.Key)); err != nil {
			return err
		}
		executed = cs.sess.Next() - 1
	case len(op.Key) != 0:
		return &wire.Error{Code: wire.CodeBadArgument, Msg: "OPEN's key is a session id to resume: 8 bytes"}
	case !cs.sess.IsOpen() || cs.sess.ID == 0:
		cs.sess.Opened(l.s.nextSession.Add(1))
		l.s.sessions.opened(cs.sess.ID)
	}
	binary.LittleEndian.PutUint64(l.scratch[:8], cs.sess.ID)
	binary.LittleEndian.PutUint64(l.scratch[8:], l.rt.View)
	binary.LittleEndian.PutUint64(l.scratch[16:], executed)
	binary.LittleEndian.PutUint64(l.scratch[24:], cs.committed)
	cs.sess.Result(wire.StatusOK, l.scratch[:32], 0)
	return nil
}

// resume gives the connection session id's place: its serials go on after
// the last operation the session executed.
func (l *loop) resume(cs *conn, id uint64) *wire.Error {
	if cs.sess.Next() != session.FirstSerial || id == 0 {
		return &wire.Error{Code: wire.CodeBadArgument, Msg: "resume a session before any data batch, with a non-zero id"}
	}
	executed, durable, err := l.s.sessions.resume(id)
	if err != nil {
		return &wire.Error{Code: wire.CodeBadArgument, Msg: err.Error()}
	}
	if old := cs.sess.ID; old != 0 && old != id {
		l.s.sessions.forget(old)
	}
	cs.sess.Resume(id, executed)
	cs.committed, cs.cpr = durable, durable
	return nil
}

// exec runs one data or control operation and appends its result. op is
// the loop's window slot (by pointer: an Operation does not fit in
// registers).
func (l *loop) exec(cs *conn, op *wire.Operation, h, serial uint64) {
	if cs.fence != nil && !op.Op.Control() && op.Op != wire.OpMigrate && cs.fence.Has(keyhash.SlotOf(h)) {
		l.stats.notOwner.Add(1)
		cs.sess.Result(wire.StatusError, nil, wire.CodeNotOwner)
		return
	}
	var st store.Status
	var err error
	var payload []byte
	switch op.Op {
	case wire.OpRead:
		st, payload, err = l.read(op.Key, h)
		if l.missRead && err == errNotOwner {
			l.missKey = nil // the op's key, in the connection's input
			answer := l.parkMiss(parkedRead{c: cs, serial: serial}, op.Key, h, l.missHead, l.missDead)
			switch answer {
			case missRefused:
				err = l.refuse(keyhash.SlotOf(h))
			case missParked:
				cs.sess.AddPending(serial)
				cs.sess.Result(wire.StatusPending, nil, 0)
				return
			case missAbsent:
				st, err = store.NotFound, nil
			}
		}
		if st == store.OK && err == nil && cs.sess.ResponseLen()+len(payload) > l.s.cfg.MaxResponse {
			cs.sess.Result(wire.StatusError, nil, wire.CodeTooLarge)
			return
		}
	case wire.OpUpsert:
		st, err = l.upsert(op.Key, h, op.Value)
	case wire.OpUpsertExpiring:
		at, ok := expiryArg(op.Value, 1)
		if !ok {
			cs.sess.Result(wire.StatusError, nil, wire.CodeBadArgument)
			return
		}
		st, err = l.upsertExpiring(op.Key, h, op.Value[8:], at)
	case wire.OpExpire:
		at, ok := expiryArg(op.Value, 0)
		if !ok || len(op.Value) != 8 {
			cs.sess.Result(wire.StatusError, nil, wire.CodeBadArgument)
			return
		}
		st, payload, err = l.update(op.Key, h, &store.Update{If: store.IfPresent, Merge: store.Keep{}, Expire: store.ExpiryOf(at), Want: store.WantOld, WithExpiry: true})
	case wire.OpDelete:
		st, _, err = l.update(op.Key, h, &store.Update{If: store.Remove})
	case wire.OpAdd:
		if len(op.Value) != 8 {
			cs.sess.Result(wire.StatusError, nil, wire.CodeBadArgument)
			return
		}
		st, payload, err = l.add(op.Key, h, op.Value)
	case wire.OpAppend:
		st, err = l.rmw(op.Key, h, op.Value, store.Append{})
	case wire.OpMigrate:
		cs.peer = true
		st, payload, err = l.migrate(op.Key, h, op.Value)
	default:
		l.control(cs, op, serial)
		return
	}
	switch {
	case err == nil && st == store.OK && op.Op != wire.OpExpire:
		cs.sess.Result(wire.StatusOK, payload, 0) // resultOf's common case, without the call
		return
	case err == nil && st == store.Pending:
		l.await(pendingRef{kind: pendingNative, c: cs, serial: serial, op: op.Op})
		cs.sess.AddPending(serial)
	case err == errNotOwner && op.Op != wire.OpMigrate: // a refused MIGRATE ends its task's session
		cs.fenceSlot(l.notOwned)
	}
	rs, p, code := resultOf(op.Op, st, err, payload)
	cs.sess.Result(rs, p, code)
}

// control answers a control operation other than OPEN.
func (l *loop) control(cs *conn, op *wire.Operation, serial uint64) {
	switch op.Op {
	case wire.OpPing:
		cs.sess.Result(wire.StatusOK, op.Value, 0)
	case wire.OpGetView:
		binary.LittleEndian.PutUint64(l.scratch[:8], l.rt.View)
		cs.sess.Result(wire.StatusOK, l.scratch[:8], 0)
	case wire.OpClusterMap:
		cs.sess.Result(wire.StatusOK, l.s.mapJSON(l.rt), 0)
	case wire.OpCheckpoint:
		if l.s.dur == nil {
			cs.sess.Result(wire.StatusError, nil, wire.CodeBadArgument)
			return
		}
		l.s.dur.request()
		cs.sess.Result(wire.StatusOK, nil, 0)
	case wire.OpMigrator:
		l.migrator(cs, op.Value)
	case wire.OpScan:
		l.scanNative(cs, serial, op.Value)
	case wire.OpFlush:
		if serial != l.batchLast {
			// Its batch's later operations could not wait for it.
			cs.sess.Result(wire.StatusError, nil, wire.CodeBadArgument)
			return
		}
		l.flushNative(cs, serial)
	default:
		cs.sess.Result(wire.StatusError, nil, wire.CodeUnknownOp)
	}
}

// migrator answers a MIGRATOR operation: it hands the message on to the
// node's migrator and answers the server's incarnation.
func (l *loop) migrator(cs *conn, msg []byte) {
	if len(msg) > 0 {
		if l.s.cfg.OnMigrator == nil {
			cs.sess.Result(wire.StatusError, nil, wire.CodeBadArgument) // not a cluster member
			return
		}
		l.s.cfg.OnMigrator(msg)
	}
	binary.LittleEndian.PutUint64(l.scratch[:8], l.s.cfg.Incarnation)
	cs.sess.Result(wire.StatusOK, l.scratch[:8], 0)
}

// resultOf maps the store outcome of a native operation to its wire result.
// DELETE's Update reports whether the key held a live value (OK) or not
// (NOT_FOUND); ADD's reports the same, but ADD answers OK with the value it
// produced either way.
func resultOf(op wire.Op, st store.Status, err error, value []byte) (wire.Status, []byte, wire.Code) {
	if err != nil {
		return wire.StatusError, nil, classify(err).code
	}
	switch {
	case st == store.Pending:
		return wire.StatusPending, nil, 0
	case st == store.NotFound && op != wire.OpAdd:
		return wire.StatusNotFound, nil, 0
	case op == wire.OpExpire:
		value = value[:min(len(value), 8)] // the old expiry, not the value behind it
	}
	return wire.StatusOK, value, 0
}

// expiryArg reads the expiry at the start of an operation's value; ok is
// false when the value is too short or the expiry below least.
func expiryArg(v []byte, least int64) (int64, bool) {
	if len(v) < 8 {
		return 0, false
	}
	at := int64(binary.LittleEndian.Uint64(v))
	return at, at >= least
}
