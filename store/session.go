package store

import (
	"runtime"

	"golang.org/x/sys/cpu"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/internal/invariants"
	"github.com/fleetkv/fleetkv/keyhash"
)

// Status is the outcome of an operation that did not fail.
type Status uint8

const (
	// OK: the operation completed (a Read found its key).
	OK Status = iota
	// NotFound: the key has no live value (or, for Delete, was known absent).
	NotFound
	// Pending: the operation continues asynchronously and its outcome
	// arrives through the session's completion callback.
	Pending
)

func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case NotFound:
		return "NOT_FOUND"
	case Pending:
		return "PENDING"
	}
	return "Status(?)"
}

// Completion is the outcome of an operation that returned Pending.
type Completion struct {
	Serial uint64 // the serial number the operation got when it was issued
	Kind   OpKind
	Status Status // OK or NotFound when Err is nil
	Err    error
	// Value is a Read's value, or the value an Update wanted. It aliases
	// session memory and is valid only during the callback.
	Value []byte
	// Found is a Read's that found no live record: the address of the
	// key's newest record, deleted or expired, in this store's log; 0 when
	// the chain held none, or the read did not learn it.
	Found uint64
}

// OpKind names an operation.
type OpKind uint8

// Operation kinds.
const (
	OpRead OpKind = iota + 1
	OpUpsert
	OpRMW
	OpDelete
)

// Session is one worker's handle on the store. Every method must be called
// only by the goroutine that owns the session.
//
// Operations take effect in the order they are issued, except that one which
// returned Pending takes effect when it completes: a caller that issues a
// write to a key while an earlier operation on that key is pending, and needs
// the two ordered, calls CompletePending in between.
//
// A session enters epoch protection on its first operation and stays in it
// until Suspend or Close. A protected session that stops issuing operations
// holds back flushing, eviction and index growth for every session, so a
// worker must Suspend before it blocks (an event loop does so before it waits
// for the network).
//
// The fields an operation writes (serial, sinceRefresh, the pending set,
// the key count) must not share a cache line with another session's:
// sessions are allocated one after another, and Session's size is not a
// multiple of a cache line, so without the pads one session's closed flag
// (read per operation) and the next one's serial (written per operation)
// could share a line, and two workers then missed on it at every operation
// (TestSessionIsPadded keeps the pads).
type Session struct {
	_            cpu.CacheLinePad
	st           *Store
	g            *epoch.Guard
	protected    bool // in epoch protection; set only by protect, dropped by Close and Suspend
	serial       uint64
	sinceRefresh int
	refreshEvery int // st.cfg.RefreshEvery (fixed at Open), read per operation without the hop
	maxKeyLen    int // st.cfg.MaxKeyLen, likewise
	version      uint8
	onComplete   func(Completion)
	pend         pendingSet
	res          result // the running RMW's report (update.go)
	newEntries   int64  // index entries created since the last refresh
	met          uint64 // ReadMet: the dead record the last read that answered NotFound at once met
	entriesGen   uint64 // the index's Resets when newEntries began
	keys         sessionKeys
	closed       bool
	_            cpu.CacheLinePad
}

// NewSession acquires an epoch slot for a new session.
func (st *Store) NewSession() (*Session, error) {
	if st.closed.Load() {
		return nil, ErrClosed
	}
	g, err := st.epochs.Acquire()
	if err != nil {
		return nil, err
	}
	s := &Session{st: st, g: g, refreshEvery: st.cfg.RefreshEvery, maxKeyLen: st.cfg.MaxKeyLen}
	s.pend.init(s)
	st.keys.register(s)
	return s, nil
}

// SetCompletion sets the callback that receives the outcome of every
// operation that returned Pending. It runs inside CompletePending, on the
// session's goroutine. Without one, those outcomes are dropped.
func (s *Session) SetCompletion(fn func(Completion)) { s.onComplete = fn }

// SetWake sets fn to be called when a device read of the session completes
// and finds no other completed read waiting: on the device's goroutine, so
// fn must only wake the session's owner (an event loop's trigger), which
// then calls CompletePending. Set it before the first operation.
func (s *Session) SetWake(fn func()) { s.pend.wake = fn }

// Serial returns the serial number of the session's latest operation.
func (s *Session) Serial() uint64 { return s.serial }

// PendingCount returns how many operations of the session are still pending.
func (s *Session) PendingCount() int { return s.pend.count }

// Retrying returns how many of the session's pending operations wait for the
// other sessions' epochs (RMWs in the fuzzy region) rather than for the
// device. No completion wakes the owner for them (SetWake): it must call
// CompletePending again on its own while there are any.
func (s *Session) Retrying() int { return len(s.pend.retry) }

// Suspend leaves epoch protection; the next operation re-enters it.
func (s *Session) Suspend() {
	if s.protected {
		s.protected = false
		s.g.Unprotect()
	}
}

// Close completes every pending operation, then releases the session's slot.
func (s *Session) Close() error {
	if s.closed {
		return ErrClosed
	}
	s.CompletePending(true)
	s.st.index.CountEntries(s.newEntries, s.entriesGen)
	s.newEntries = 0
	s.st.keys.unregister(s)
	s.closed = true
	s.protected = false
	s.g.Release()
	return nil
}

// begin starts an operation: protection, serial number. A protected
// session is open (Close drops protection), so the common case tests one
// field.
func (s *Session) begin() error {
	if !s.protected {
		if err := s.protect(); err != nil {
			return err
		}
	}
	s.serial++
	return nil
}

// protect enters epoch protection, refusing a closed session. It and Close
// are the only writers of protected, which keeps begin's one-field test
// sound: a protected session is never a closed one.
func (s *Session) protect() error {
	if s.closed {
		return ErrClosed
	}
	s.g.Protect()
	s.protected = true
	return nil
}

// end finishes an operation: every RefreshEvery operations the session
// refreshes its epoch, which lets deferred actions run, and checks whether
// the index should grow. The count inlines; the refresh does not.
func (s *Session) end() {
	s.sinceRefresh++
	if s.sinceRefresh >= s.refreshEvery {
		s.refresh()
	}
}

// refresh is end's every-RefreshEvery part, out of line.
func (s *Session) refresh() {
	s.sinceRefresh = 0
	s.g.Refresh()
	if s.newEntries != 0 {
		s.st.index.CountEntries(s.newEntries, s.entriesGen)
		s.newEntries = 0
		s.st.maybeGrow()
	}
}

// findOrCreate finds or creates key's index entry, counting creations.
func (s *Session) findOrCreate(h uint64) (index.Slot, index.Entry) {
	slot, e, created := s.st.index.FindOrCreate(s.g, h)
	if created {
		if g := s.st.index.Resets(); g != s.entriesGen {
			s.entriesGen, s.newEntries = g, 0 // counted in a table a flush dropped
		}
		s.newEntries++
	}
	return slot, e
}

// waitForTail is called when the log tail waits for a frame: the operation
// has dropped its record views; refresh so the flush and eviction actions can
// run, and yield now and then so a descheduled worker can reach its refresh.
func (s *Session) waitForTail(spins int) {
	s.g.Refresh()
	if spins > 4 {
		runtime.Gosched()
	}
}

// checkKey refuses an empty key and one over MaxKeyLen: one unsigned
// compare covers both, and the error is chosen out of line.
func (s *Session) checkKey(key []byte) error {
	if uint(len(key))-1 < uint(s.maxKeyLen) {
		return nil
	}
	return keyError(key)
}

// keyError is checkKey's error for a key it refused.
func keyError(key []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	return ErrKeyTooLarge
}

// checkKeyHash is checkKey for the *Hashed operations, which also trust the
// caller's hash: a wrong one would file the key under another bucket, so
// the invariants build checks it.
func (s *Session) checkKeyHash(key []byte, h uint64) error {
	if invariants.Enabled && len(key) > 0 && h != keyhash.Hash(key) {
		invariants.Fail("hash %#x passed for key %q, which hashes to %#x", h, key, keyhash.Hash(key))
	}
	return s.checkKey(key)
}

// touch starts the miss on h's index bucket the moment a one-op entry point
// (Read, Upsert, RMW, Delete) has hashed its key. An operation that waits
// for memory twice (bucket, then record) overlaps with the next one only if
// the next one's first miss starts while the CPU still holds this one's
// instructions; the checks, protection and calls between the hash and Find
// pushed it out of that window, and one-op reads ran at one miss after the
// other (BENCHMARKS.md, issue 18). A session that is not protected yet
// (its first operation, or after Suspend) skips it: the table may only be
// read under protection. The *Hashed operations leave it to their callers,
// which prefetch (PrefetchBucket) a batch ahead.
func (s *Session) touch(h uint64) {
	if s.protected {
		s.st.index.Touch(h)
	}
}

// PrefetchBucket asks the CPU to bring the index bucket of hash h into
// cache: the first stage of a batched executor, a few operations ahead.
func (s *Session) PrefetchBucket(h uint64) { s.st.index.Prefetch(h) }

// PrefetchRecord reads h's entry from its bucket (which PrefetchBucket has
// brought in) and asks for the first line of the record it points to: the
// second stage, fewer operations ahead. Both are hints; they change nothing.
func (s *Session) PrefetchRecord(h uint64) {
	if !s.protected && s.protect() != nil { // Peek reads the table, which protection keeps alive
		return
	}
	if addr, ok := s.st.index.Peek(h); ok {
		s.st.log.Prefetch(addr)
	}
}
