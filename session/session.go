package session

import (
	"github.com/fleetkv/fleetkv/wire"
)

// Invariant: next is the serial of the first operation the session has not
// executed; a data batch runs only if it starts exactly there, and nothing of
// a rejected batch (VIEW_CHANGED, RETRY_LATER) runs, so re-issuing from the
// reported serial can neither skip nor repeat an operation.
// Invariant: rejecting is true from a rejection until the next batch runs;
// meanwhile a batch that does not start at next was sent before the client
// learned of the rejection and is rejected too (RETRY_LATER), not treated as
// a protocol error: the client re-issues every rejected batch in order.
// Invariant: pending holds exactly the serials answered PENDING whose
// completion has not been appended to a response yet.
// Invariant: held is true from Hold until the held response is closed
// (EndResponse, Fail); meanwhile out[batchStart:] is that response, which
// TakeOutput leaves in place (the client reads exactly one response per
// request batch). What the session owes the client for operations before
// the held response's goes to side, which TakeOutput writes at once:
// their completions (their PENDING results were written before) and
// COMMITs up to the operation before it. The held batch's own completions
// go into the held response, after their results, and a COMMIT past its
// first operation waits in commitAt to follow it.

// Verdict is what the session says about a request batch before it runs.
type Verdict uint8

// Verdicts.
const (
	Run         Verdict = iota // execute the batch
	ViewChanged                // the batch's view is older than the loop's
	RetryLater                 // the batch's view is newer than the loop's
	BadSerial                  // the batch does not start at the next serial
	NeedsOpen                  // authentication required before data
)

// Session is one client session on one connection.
type Session struct {
	ID        uint64
	open      bool   // an OPEN succeeded (or none is required)
	next      uint64 // serial of the next operation to execute; serials start at 1
	rejecting bool   // a batch was rejected and next has not run since
	pending   map[uint64]struct{}

	out        []byte // response bytes; those before sent were taken already
	sent       int
	batchStart int // where the open response batch starts in out, or -1
	entries    uint32
	serial     uint64 // first serial the open response answers
	held       bool   // the open response's request batch goes on in a later turn
	commitAt   uint64 // a COMMIT for after the held response; 0: none
	// side holds the batches written beside a held response: COMMITs, and
	// the completion batch being built at sideStart (or -1); spare joins
	// side to out for one write.
	side, spare []byte
	sideStart   int
	sideEntries uint32
}

// New returns a session; requireOpen says whether data batches need a
// successful OPEN first.
func New(requireOpen bool) *Session {
	return &Session{open: !requireOpen, next: FirstSerial, pending: make(map[uint64]struct{}), batchStart: -1, sideStart: -1}
}

// Opened marks the session as authenticated under id.
func (s *Session) Opened(id uint64) { s.ID, s.open = id, true }

// Resume marks the session as authenticated under id, an existing
// session whose operations up to serial executed were executed: the next
// batch starts after it.
func (s *Session) Resume(id, executed uint64) { s.ID, s.open, s.next = id, true, executed+1 }

// IsOpen reports whether data batches may run.
func (s *Session) IsOpen() bool { return s.open }

// Check decides whether a request batch may run on a loop whose view is
// loopView. Control batches always run.
func (s *Session) Check(h wire.RequestHeader, loopView uint64) Verdict {
	switch {
	case h.Control():
		return Run
	case !s.open:
		return NeedsOpen
	case h.View < loopView:
		return ViewChanged
	case h.View > loopView:
		return RetryLater
	case h.Serial != s.next && s.rejecting:
		return RetryLater
	case h.Serial != s.next:
		return BadSerial
	}
	return Run
}

// Executed records that a data batch of n operations starting at serial
// has run.
func (s *Session) Executed(serial uint64, n uint32) {
	s.next, s.rejecting = serial+uint64(n), false
}

// Hold records that the request batch being answered has run up to, not
// including, serial next and goes on in a later turn of the loop: next is
// exact (a checkpoint's CPR point reads it), and the open response stays
// open across TakeOutput until EndResponse closes it at the batch's end.
func (s *Session) Hold(next uint64) {
	s.next, s.rejecting, s.held = next, false, true
}

// Held reports whether a response is held (Hold) and not yet closed.
func (s *Session) Held() bool { return s.held }

// FirstSerial is the serial of a connection's first operation. It is fixed,
// not taken from the first batch: were it taken, a batch overtaking a
// rejected first batch (one re-sent with a newer view) would set it, and the
// first batch's operations would be skipped.
const FirstSerial = 1

// Next returns the serial the next data batch must start at.
func (s *Session) Next() uint64 { return s.next }

// Forget drops the pending operation serial without answering it (its
// connection is gone) and returns how many are still pending.
func (s *Session) Forget(serial uint64) int {
	delete(s.pending, serial)
	return len(s.pending)
}

// AddPending records that the operation with serial went pending.
func (s *Session) AddPending(serial uint64) { s.pending[serial] = struct{}{} }

// Pending returns how many operations are pending.
func (s *Session) Pending() int { return len(s.pending) }

// BeginResponse opens a response batch answering the batch whose first
// serial is serial. Completions may be appended to it too.
func (s *Session) BeginResponse(serial uint64) {
	s.out, s.batchStart = wire.BeginBatch(s.out)
	s.entries, s.serial = 0, serial
}

// Result appends the result of the next request operation.
func (s *Session) Result(st wire.Status, payload []byte, code wire.Code) {
	s.out = wire.AppendResult(s.out, st, payload, code)
	s.entries++
}

// Complete appends the completion of a pending operation, opening a
// response batch if none is open. It reports false for a serial that is not
// pending (a completion is never delivered twice).
func (s *Session) Complete(serial uint64, st wire.Status, payload []byte, code wire.Code) bool {
	if _, ok := s.pending[serial]; !ok {
		return false
	}
	delete(s.pending, serial)
	if s.held && serial < s.serial {
		if s.sideStart < 0 {
			s.side, s.sideStart = wire.BeginBatch(s.side)
			s.sideEntries = 0
		}
		s.side = wire.AppendCompletion(s.side, serial, st, payload, code)
		s.sideEntries++
		return true
	}
	if s.batchStart < 0 {
		s.BeginResponse(0)
	}
	s.out = wire.AppendCompletion(s.out, serial, st, payload, code)
	s.entries++
	return true
}

// EndResponse closes the open response batch (if any) with the loop's view.
func (s *Session) EndResponse(view uint64) {
	if s.batchStart < 0 {
		return
	}
	wire.FinishResponse(s.out, s.batchStart, wire.ResponseHeader{Status: wire.BatchOK, Count: s.entries, View: view, Serial: s.serial})
	s.batchStart, s.held = -1, false
	if len(s.side) > 0 {
		s.out = append(s.out, s.takeSide(view)...)
	}
	if s.commitAt != 0 {
		s.out = wire.AppendCommit(s.out, view, s.commitAt)
		s.commitAt = 0
	}
}

// Reject appends an empty VIEW_CHANGED or RETRY_LATER response telling the
// client to re-issue from the batch's first serial.
func (s *Session) Reject(st wire.BatchStatus, view, serial uint64) {
	s.rejecting = true
	s.EndResponse(view)
	out, start := wire.BeginBatch(s.out)
	wire.FinishResponse(out, start, wire.ResponseHeader{Status: st, View: view, Serial: serial})
	s.out = out
}

// Fail appends an ERROR response; the server closes the connection after
// writing it. A response batch still open is dropped: the batch it answers
// failed.
func (s *Session) Fail(code wire.Code, view, serial uint64, msg string) {
	if s.batchStart >= 0 {
		s.out = s.out[:s.batchStart]
		s.batchStart, s.held = -1, false
	}
	s.side, s.sideStart = s.side[:0], -1
	s.out = wire.AppendErrorBatch(s.out, code, view, serial, msg)
}

// Commit appends a COMMIT batch: the operations up to serial are durable.
// While a response is held, the part before it goes to side and the rest
// follows it (EndResponse).
func (s *Session) Commit(view, serial uint64) {
	if s.held {
		if serial >= s.serial {
			s.commitAt = max(s.commitAt, serial)
			serial = s.serial - 1
		}
		if serial > 0 {
			s.closeSide(view)
			s.side = wire.AppendCommit(s.side, view, serial)
		}
		return
	}
	s.EndResponse(view)
	s.out = wire.AppendCommit(s.out, view, serial)
}

// ResponseLen returns how many response bytes wait to be written; the server
// uses it to bound a connection's memory.
func (s *Session) ResponseLen() int { return len(s.out) - s.sent + len(s.side) }

// TakeOutput closes any open response batch with view, returns the response
// bytes and empties the buffer, keeping its memory. A held response is
// neither closed nor taken: the bytes before it are. The slice is valid
// until the next call that appends.
func (s *Session) TakeOutput(view uint64) []byte {
	if s.held {
		b := s.out[s.sent:s.batchStart]
		s.sent = s.batchStart
		switch {
		case len(s.side) == 0:
		case len(b) == 0:
			b = s.takeSide(view)
		default:
			s.spare = append(append(s.spare[:0], b...), s.takeSide(view)...)
			b = s.spare
		}
		return b
	}
	s.EndResponse(view)
	b := s.out[s.sent:]
	s.out, s.sent = s.out[:0], 0
	return b
}

// closeSide closes the side completion batch being built, if any, with
// view.
func (s *Session) closeSide(view uint64) {
	if s.sideStart >= 0 {
		wire.FinishResponse(s.side, s.sideStart, wire.ResponseHeader{Status: wire.BatchOK, Count: s.sideEntries, View: view})
		s.sideStart = -1
	}
}

// takeSide closes side's batches with view and returns them, emptying side
// (the bytes are valid until the next completion or COMMIT).
func (s *Session) takeSide(view uint64) []byte {
	s.closeSide(view)
	b := s.side
	s.side = s.side[:0]
	return b
}
