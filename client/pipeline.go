package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fleetkv/fleetkv/wire"
)

// Read queues a read of key. The key is copied; cb gets the value.
func (s *Session) Read(key []byte, cb Callback) error {
	return s.add(wire.OpRead, key, nil, cb)
}

// Upsert queues setting key to value (both copied).
func (s *Session) Upsert(key, value []byte, cb Callback) error {
	return s.add(wire.OpUpsert, key, value, cb)
}

// UpsertExpiring queues setting key to value with an expiry, expireAt in
// Unix milliseconds (> 0): after it the key reads as absent. An expiry
// already past deletes the key.
func (s *Session) UpsertExpiring(key, value []byte, expireAt int64, cb Callback) error {
	s.expBuf = expiringValue(s.expBuf, expireAt, value)
	return s.add(wire.OpUpsertExpiring, key, s.expBuf, cb)
}

// expiringValue lays out UPSERT_EXPIRING's value in dst: the expiry, then
// the value.
func expiringValue(dst []byte, expireAt int64, value []byte) []byte {
	return append(binary.LittleEndian.AppendUint64(dst[:0], uint64(expireAt)), value...)
}

// expiryValue is EXPIRE's value: the expiry.
func expiryValue(expireAt int64) [8]byte {
	var v [8]byte
	binary.LittleEndian.PutUint64(v[:], uint64(expireAt))
	return v
}

// Expire queues setting the expiry of key's value to expireAt (Unix
// milliseconds; 0 removes it). The Result is NotFound when the key has no
// live value, otherwise OK with the expiry it had (ExpiryOf; 0: none).
func (s *Session) Expire(key []byte, expireAt int64, cb Callback) error {
	v := expiryValue(expireAt)
	return s.add(wire.OpExpire, key, v[:], cb)
}

// FlushAll queues dropping every key of the server (a FLUSH control
// operation; FLUSHALL on the RESP front): every other operation of every
// client is entirely before or after it. The Result comes once the keys
// are gone; they stay gone after a crash once a checkpoint after it is
// recorded.
func (s *Session) FlushAll(cb Callback) error { return s.sendControl(wire.OpFlush, cb) }

// ExpiryOf reads the expiry an Expire's Result carries (Unix
// milliseconds; 0: none).
func ExpiryOf(r Result) int64 {
	if len(r.Value) < 8 {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(r.Value))
}

// Delete queues deleting key; the Result is OK when it held a value,
// NotFound when it had none.
func (s *Session) Delete(key []byte, cb Callback) error {
	return s.add(wire.OpDelete, key, nil, cb)
}

// Add queues adding delta to the little-endian int64 at key (an absent key
// starts at 0). The callback's Result carries the value this addition
// produced (8 bytes, little-endian).
func (s *Session) Add(key []byte, delta int64, cb Callback) error {
	var d [8]byte
	putInt64(d[:], delta)
	return s.add(wire.OpAdd, key, d[:], cb)
}

func putInt64(b []byte, v int64) { binary.LittleEndian.PutUint64(b, uint64(v)) }

// Append queues appending value to key's value.
func (s *Session) Append(key, value []byte, cb Callback) error {
	return s.add(wire.OpAppend, key, value, cb)
}

// Migrate queues storing a record that live migration id sends to this
// server (wire.OpMigrate): moved to a target, or shipped back to a source,
// with its expiry (Unix milliseconds, 0: none). A server that does not
// take the migration's records for the key's slot answers ErrNotOwner. A
// fetch's answer is the value with its expiry in front of it (8 bytes,
// little-endian).
func (s *Session) Migrate(id uint64, kind wire.MigrateKind, key []byte, expireAt int64, value []byte, cb Callback) error {
	s.migBuf = wire.AppendMigrateValue(s.migBuf[:0], id, kind, expireAt, value)
	return s.add(wire.OpMigrate, key, s.migBuf, cb)
}

func (s *Session) add(op wire.Op, key, value []byte, cb Callback) error {
	return s.addRefused(op, key, value, cb, 0, 0)
}

// addRefused is add for an operation a Cluster sends: first refused at
// since (opRec.since; 0: never), after writes writes on its slot
// (opRec.writes).
func (s *Session) addRefused(op wire.Op, key, value []byte, cb Callback, since, writes uint32) error {
	if s.err != nil {
		return s.err
	}
	if len(key) > s.cfg.Limits.MaxKey || len(value) > s.cfg.Limits.MaxValue {
		return ErrTooLarge
	}
	if s.cur != nil && len(s.cur.ops) > 0 && len(s.cur.buf)+len(key)+len(value)+11 > s.cfg.BatchBytes {
		if err := s.Flush(); err != nil {
			return err
		}
	}
	if s.cur == nil {
		s.cur = s.newBatch()
	}
	off := uint32(len(s.cur.buf))
	s.cur.buf = wire.AppendOp(s.cur.buf, op, key, value)
	s.cur.ops = append(s.cur.ops, opRec{serial: s.serial, off: off, since: since, writes: writes, cb: cb})
	s.serial++
	return nil
}

func (s *Session) newBatch() *batch {
	var b *batch
	if n := len(s.free); n > 0 {
		b, s.free = s.free[n-1], s.free[:n-1]
	} else {
		b = &batch{}
	}
	b.buf, _ = wire.BeginBatch(b.buf[:0])
	b.ops = b.ops[:0]
	b.first, b.control, b.rerouted = s.serial, false, false
	return b
}

func (s *Session) recycle(b *batch) {
	for i := range b.ops {
		b.ops[i].cb = nil
	}
	s.free = append(s.free, b)
}

// Flush sends the batch being built, first waiting (and running callbacks)
// while InFlight batches are unanswered.
func (s *Session) Flush() error {
	if s.err != nil {
		return s.err
	}
	if s.cur == nil || len(s.cur.ops) == 0 {
		return nil
	}
	for len(s.inflight) >= s.cfg.InFlight {
		if err := s.receive(); err != nil {
			return err
		}
	}
	if err := s.ensureConn(context.Background()); err != nil { // after receive, which may have lost it
		return err
	}
	b := s.cur
	s.cur = nil
	return s.send(b)
}

// send writes b with the session's view and puts it in flight.
func (s *Session) send(b *batch) error {
	var flags uint8
	if b.control {
		flags = wire.FlagControl
	} else {
		if s.refused && (s.rerouted || s.misrouted == nil && len(s.inflight) == 0) {
			// A Cluster re-routed what was refused, or a plain session's
			// caller had every answer. Kept when the batch is sent
			// again. Only after a refusal: servers before the flag
			// reject it.
			b.rerouted, s.refused = true, false
		}
		s.rerouted = false // a Cluster's mark is for the first data batch after it
	}
	if b.rerouted {
		flags |= wire.FlagRerouted
	}
	wire.FinishRequest(b.buf, 0, wire.RequestHeader{Flags: flags, Count: uint32(len(b.ops)), View: s.view, Serial: b.first})
	s.inflight = append(s.inflight, b)
	if _, err := s.nc.Write(b.buf); err != nil {
		return s.lost(err)
	}
	return nil
}

// Wait flushes and returns once every queued operation has its result.
func (s *Session) Wait() error {
	if err := s.Flush(); err != nil {
		return err
	}
	for len(s.inflight) > 0 || len(s.pending) > 0 {
		if err := s.receive(); err != nil {
			return err
		}
	}
	return nil
}

// Durable returns the session's commit point: every operation with a serial
// up to it is durable (a checkpoint covers it), none after it is promised.
// It moves when the session reads responses (Wait, WaitDurable, flushes).
// Serials start again at 1 on each new connection, and so does the commit
// point; a resumed session (Config.Resume) goes on from where the server
// says it stood.
func (s *Session) Durable() uint64 { return s.durable }

// LastSerial returns the serial of the last operation queued (0: none on
// this connection).
func (s *Session) LastSerial() uint64 { return s.serial - 1 }

// WaitDurable flushes, waits for every result, asks the server for a
// checkpoint (a CHECKPOINT control operation, which joins one that is about
// to start) and returns once the server reports every operation queued so
// far durable. Cancelling ctx interrupts the wait by dropping the
// connection (the std transport; see Config.Transport); the error then
// joins ctx's with ErrUnknownOutcome, as the commit point of that
// connection is lost with it.
func (s *Session) WaitDurable(ctx context.Context) error {
	if err := s.Wait(); err != nil {
		return err
	}
	target := s.serial - 1
	if s.durable >= target {
		return nil
	}
	var asked error
	if err := s.sendControl(wire.OpCheckpoint, func(r Result) { asked = r.Err }); err != nil {
		return err
	}
	nc := s.nc
	stop := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for s.durable < target {
		if asked != nil {
			return fmt.Errorf("client: asking for a checkpoint: %w", asked)
		}
		err := s.receive()
		if s.nc == nil { // lost: the commit point of that connection is gone
			err = errors.Join(ctxErr(ctx), ErrUnknownOutcome)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// StopOn breaks the session's connection when ctx ends: a call blocked on
// it returns, its operations failing with ErrUnknownOutcome. It covers the
// connection of the moment (a session reconnects only on a later send) and
// may be called from the session's goroutine only; stop undoes it.
func (s *Session) StopOn(ctx context.Context) (stop func() bool) {
	nc := s.nc
	if nc == nil {
		return func() bool { return false }
	}
	return context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
}

// Migrator sends msg to the server's migrator (wire.OpMigrator; an empty
// msg only asks) and answers the server's incarnation to cb (Result.Value,
// 8 bytes little-endian). Like every control operation it is not sent on a
// connection opened after one was lost: it fails with ErrUnknownOutcome.
func (s *Session) Migrator(msg []byte, cb Callback) error {
	return s.sendControlValue(wire.OpMigrator, msg, cb)
}

// sendControl sends a control batch of one operation, answered to cb.
func (s *Session) sendControl(op wire.Op, cb Callback) error {
	return s.sendControlValue(op, nil, cb)
}

func (s *Session) sendControlValue(op wire.Op, value []byte, cb Callback) error {
	if s.nc == nil { // lost: what it had done is unknown
		return ErrUnknownOutcome
	}
	b := s.newBatch()
	b.control = true
	b.buf = wire.AppendOp(b.buf, op, nil, value)
	b.ops = append(b.ops, opRec{serial: s.serial, cb: cb})
	return s.send(b)
}

// Outstanding returns how many operations are queued, in flight or pending.
func (s *Session) Outstanding() int {
	n := len(s.pending)
	for _, b := range s.inflight {
		n += len(b.ops)
	}
	if s.cur != nil {
		n += len(s.cur.ops)
	}
	return n
}

// receive reads one response batch and dispatches it.
func (s *Session) receive() error {
	h, body, err := s.readBatch()
	if err != nil {
		return s.lost(err)
	}
	switch h.Status {
	case wire.BatchOK:
		return s.results(h, body)
	case wire.BatchViewChanged, wire.BatchRetryLater:
		return s.reissue(h)
	case wire.BatchCommit:
		s.durable = max(s.durable, h.Serial)
		return nil
	}
	return s.failed(&ServerError{Code: h.Code, Msg: string(body)})
}

// results dispatches an OK batch: results of the oldest in-flight batch,
// when the batch answers one, and completions of pending operations.
func (s *Session) results(h wire.ResponseHeader, body []byte) error {
	var b *batch
	if h.Serial != 0 {
		if len(s.inflight) == 0 || s.inflight[0].first != h.Serial {
			return s.failed(&ServerError{Code: wire.CodeBadSerial, Msg: "response for a batch that is not in flight"})
		}
		b = s.inflight[0]
	}
	var r wire.ResultReader
	r.Reset(h, body, s.cfg.Limits)
	next := 0
	for {
		res, ok, err := r.Next()
		if err != nil {
			return s.failed(err)
		}
		if !ok {
			break
		}
		if res.Status == wire.StatusError && res.Code == wire.CodeNotOwner {
			s.refused = true // the server fences the slot (wire.FlagRerouted)
		}
		if res.Completion {
			s.complete(res)
			continue
		}
		if b == nil || next >= len(b.ops) {
			return s.failed(&ServerError{Code: wire.CodeMalformed, Msg: "more results than operations"})
		}
		op := b.ops[next]
		next++
		if res.Status == wire.StatusPending {
			s.pending[op.serial] = op.cb
			s.keepPending(b, op)
			continue
		}
		if res.Status == wire.StatusError && res.Code == wire.CodeNotOwner && s.misrouted != nil {
			s.reroute(b, op)
			continue
		}
		deliver(op.cb, res)
	}
	if b != nil {
		if next != len(b.ops) {
			return s.failed(&ServerError{Code: wire.CodeMalformed, Msg: "fewer results than operations"})
		}
		s.popInflight()
		s.recycle(b)
	}
	return nil
}

// reroute hands an operation the server refused with NOT_OWNER to
// misrouted, decoded from its batch.
func (s *Session) reroute(b *batch, op opRec) {
	o, ok := s.decode(b, op)
	if !ok { // the session encoded it: cannot happen
		deliver(op.cb, wire.Result{Status: wire.StatusError, Code: wire.CodeNotOwner})
		return
	}
	s.misrouted(o.Op, o.Key, o.Value, op.cb, op.since)
}

// decode returns op of batch b (valid until b is recycled).
func (s *Session) decode(b *batch, op opRec) (wire.Operation, bool) {
	var r wire.OpReader
	rest := b.buf[op.off:]
	r.Reset(wire.RequestHeader{Count: 1, Length: uint32(len(rest))}, rest, s.cfg.Limits)
	o, ok, err := r.Next()
	return o, ok && err == nil
}

// keepPending keeps a copy of an operation answered PENDING when the
// session's late refusals are re-routed (refusedLate): a server may still
// refuse it with NOT_OWNER in its completion (a read a migration's target
// parked, server/parking.go; an operation that decides from a key's value
// whose device read found no record the target may use, server/gateway.go
// heldFrom).
func (s *Session) keepPending(b *batch, op opRec) {
	if s.refusedLate == nil {
		return
	}
	if o, ok := s.decode(b, op); ok {
		kv := append(append(make([]byte, 0, len(o.Key)+len(o.Value)), o.Key...), o.Value...)
		s.pendingOps[op.serial] = pendingOp{op: o.Op, kv: kv, keyLen: len(o.Key), writes: op.writes}
	}
}

// popInflight drops the oldest in-flight batch, keeping the slice's memory.
func (s *Session) popInflight() {
	n := copy(s.inflight, s.inflight[1:])
	s.inflight[n] = nil
	s.inflight = s.inflight[:n]
}

func (s *Session) complete(res wire.Result) {
	cb, ok := s.pending[res.Serial]
	if !ok {
		return
	}
	delete(s.pending, res.Serial)
	po, kept := s.pendingOps[res.Serial]
	if kept {
		delete(s.pendingOps, res.Serial)
	}
	if kept && res.Status == wire.StatusError && res.Code == wire.CodeNotOwner &&
		s.refusedLate(po.op, po.kv[:po.keyLen], po.kv[po.keyLen:], cb, res.Serial, po.writes) {
		return
	}
	deliver(cb, res)
}

func deliver(cb Callback, res wire.Result) {
	if cb == nil {
		return
	}
	switch res.Status {
	case wire.StatusOK:
		cb(Result{Status: OK, Value: res.Value})
	case wire.StatusNotFound:
		cb(Result{Status: NotFound})
	default:
		cb(Result{Err: opErrors[res.Code&0xff]})
	}
}

// reissue handles a rejected batch: nothing of it ran. It takes the
// server's view (VIEW_CHANGED) or waits (RETRY_LATER) and sends the same
// operations again, behind the batches still in flight, which the server
// rejects too, so the order of serials is kept.
func (s *Session) reissue(h wire.ResponseHeader) error {
	if len(s.inflight) == 0 || s.inflight[0].first != h.Serial {
		return s.failed(&ServerError{Code: wire.CodeBadSerial, Msg: "rejection for a batch that is not in flight"})
	}
	b := s.inflight[0]
	s.popInflight()
	if h.Status == wire.BatchViewChanged {
		s.view = max(s.view, h.View)
		s.backoff = 0
		if s.viewChanged != nil {
			s.viewChanged()
		}
	} else {
		s.backoff = min(max(2*s.backoff, time.Millisecond), 100*time.Millisecond)
		time.Sleep(s.backoff)
	}
	return s.send(b)
}

// readBatch reads one whole response batch into the receive buffer.
func (s *Session) readBatch() (wire.ResponseHeader, []byte, error) {
	if err := s.fill(wire.HeaderSize); err != nil {
		return wire.ResponseHeader{}, nil, err
	}
	h, err := wire.ParseResponseHeader(s.rbuf[s.rpos:s.rend], s.cfg.Limits)
	if err != nil {
		return h, nil, err
	}
	n := wire.HeaderSize + int(h.Length)
	if err := s.fill(n); err != nil {
		return h, nil, err
	}
	body := s.rbuf[s.rpos+wire.HeaderSize : s.rpos+n]
	s.rpos += n
	return h, body, nil
}

// fill makes at least n unparsed bytes available, reading as much as the
// socket has. Bytes handed out by the previous readBatch stay valid until
// this call moves them.
func (s *Session) fill(n int) error {
	if s.rend-s.rpos >= n {
		return nil
	}
	if s.rpos+n > len(s.rbuf) {
		if n > len(s.rbuf) {
			nb := make([]byte, max(n, 2*len(s.rbuf)))
			s.rend = copy(nb, s.rbuf[s.rpos:s.rend])
			s.rbuf = nb
		} else {
			s.rend = copy(s.rbuf, s.rbuf[s.rpos:s.rend])
		}
		s.rpos = 0
	}
	for s.rend-s.rpos < n {
		m, err := s.nc.Read(s.rbuf[s.rend:])
		s.rend += m
		if err != nil && s.rend-s.rpos < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// lost handles a broken connection: every operation sent and not answered
// fails with ErrUnknownOutcome at once. The session keeps the operations it
// has not sent and reconnects when it next sends (ensureConn), so a caller
// whose deadline broke the connection is not held up by a redial.
func (s *Session) lost(error) error {
	s.failOutstanding(ErrUnknownOutcome)
	s.nc.Close()
	s.nc = nil
	return nil
}

// ensureConn reconnects a session whose connection was lost. Serial numbers
// restart with the new connection, so the unsent operations are renumbered.
// A failed redial stops the session.
func (s *Session) ensureConn(ctx context.Context) error {
	if s.nc != nil {
		return nil
	}
	if err := s.connect(ctx); err != nil {
		s.nc = nil
		if s.cur != nil {
			s.failBatch(s.cur, err)
			s.cur = nil
		}
		s.err = err
		return err
	}
	if cur := s.cur; cur != nil && len(cur.ops) > 0 {
		for i := range cur.ops {
			cur.ops[i].serial = s.serial
			s.serial++
		}
		cur.first = cur.ops[0].serial // send writes the header; the body has no serials
	}
	return nil
}

// failed handles a protocol failure: the session stops.
func (s *Session) failed(err error) error {
	s.failOutstanding(err)
	if s.cur != nil {
		s.failBatch(s.cur, err)
		s.cur = nil
	}
	if s.nc != nil {
		s.nc.Close()
		s.nc = nil
	}
	s.err = err
	return err
}

func (s *Session) failOutstanding(err error) {
	for _, b := range s.inflight {
		s.failBatch(b, err)
	}
	s.inflight = s.inflight[:0]
	clear(s.pendingOps)
	for serial, cb := range s.pending {
		delete(s.pending, serial)
		if cb != nil {
			cb(Result{Err: err})
		}
	}
}

func (s *Session) failBatch(b *batch, err error) {
	for _, op := range b.ops {
		if op.cb != nil {
			op.cb(Result{Err: err})
		}
	}
	s.recycle(b)
}
