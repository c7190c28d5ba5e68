package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/internal/invariants"
	"github.com/fleetkv/fleetkv/keyhash"
)

// Internal outcomes that make an operation start over from the index.
var (
	errRetryTail = errors.New("store: tail waits for a frame")
	errCASLost   = errors.New("store: index entry changed")
)

// Read appends key's value to dst and returns it with OK, or returns dst and
// NotFound. When the record has left memory it returns Pending and the value
// arrives through the completion callback.
func (s *Session) Read(key, dst []byte) ([]byte, Status, error) {
	h := keyhash.Hash(key)
	s.touch(h)
	return s.ReadHashed(key, h, dst)
}

// ReadHashed is Read with key's hash, h == keyhash.Hash(key), already computed.
func (s *Session) ReadHashed(key []byte, h uint64, dst []byte) ([]byte, Status, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return dst, 0, err
	}
	s.awaitRMW(h)
	if err := s.begin(); err != nil {
		return dst, 0, err
	}
	v, st, err := s.read(key, h, dst, nil, false)
	s.end()
	return v, st, err
}

// ReadExpiring is ReadHashed returning the value with its expiry in front
// of it (SplitExpiring), 8 bytes of 0 when it has none.
func (s *Session) ReadExpiring(key []byte, h uint64, dst []byte) ([]byte, Status, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return dst, 0, err
	}
	s.awaitRMW(h)
	if err := s.begin(); err != nil {
		return dst, 0, err
	}
	v, st, err := s.read(key, h, dst, nil, true)
	s.end()
	return v, st, err
}

// ReadAbove is ReadExpiring for a log that can be read elsewhere below
// bound (a migration's source, whose shared tier holds it): where key's
// chain leaves memory below bound before it reaches a record of the key,
// it returns NotFound with where the chain goes on (below.Addr != 0): the
// key's newest record is the first one of the key from there down to
// below.Begin, the log's begin the address was checked against. It reads
// nothing from the device then. below is zero otherwise, and so is it in
// a chain an indirection covers.
func (s *Session) ReadAbove(key []byte, h, bound uint64, dst []byte) (v []byte, st Status, below ChainBelow, err error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return dst, 0, ChainBelow{}, err
	}
	s.awaitRMW(h)
	if err := s.begin(); err != nil {
		return dst, 0, ChainBelow{}, err
	}
	defer s.end()
	if below = s.chainBelow(key, h, bound); below.Addr != 0 {
		return dst, NotFound, below, nil
	}
	v, st, err = s.read(key, h, dst, nil, true)
	return v, st, ChainBelow{}, err
}

// ReadCovered reads key (hash h) where the installed indirection table
// covering it leads, in its source's log: the key's value when the source
// sent its slot. A migration's target answers a read it parked with it
// (server/parking.go). It reads there only when this store holds no record
// of the key since the table's Since (neither one the migration sent nor a
// write here): it is Pending then, completed like any read, and never
// copies what it finds to the tail. Otherwise, or when no table has an
// indirection for the key's chain, it answers NotFound at once and reads
// nothing: the caller must not take that as the key's absence. withAt:
// the completion's value comes with its expiry in front (ReadExpiring).
func (s *Session) ReadCovered(key []byte, h uint64, withAt bool) (Status, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return 0, err
	}
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.end()
	ind, raddr := s.st.covered(h)
	if ind == nil || s.heldSince(key, h, ind.Since) {
		return NotFound, nil
	}
	p := s.pend.newOp(OpRead, h, key, nil, nil)
	p.upd.withAt = withAt
	p.entryAddr, p.begin = 0, s.st.log.Begin()
	p.cover(ind, raddr)
	p.noCopy = true
	s.pend.goRemote(p)
	return Pending, nil
}

// ReadMet tells, right after a read that answered NotFound at once, the
// address of the deleted or expired record of the key it met (0: it met
// none). Otherwise it means nothing.
func (s *Session) ReadMet() uint64 { return s.met }

// ChainHead returns the address the index gives for hash h's chain (0:
// the index has no entry). A chain links records in address order (a
// record whose link lost a race is marked invalid and written again
// higher), so a read that starts after this call walks every record at
// or below it, and any record linked later is above it.
func (s *Session) ChainHead(h uint64) (uint64, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.end()
	_, e, ok := s.st.index.Find(s.g, h)
	if !ok {
		return 0, nil
	}
	return e.Address(), nil
}

// Newest returns the address of key's (hash h) newest record when memory
// holds it, or else where its chain leaves memory: an address below the
// log's head where the device part goes on, or one below the log's begin
// (0 included) where the chain ends. Either way, nothing of the key's
// chain lies above it. It reads nothing from the device.
func (s *Session) Newest(key []byte, h uint64) (uint64, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return 0, err
	}
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.end()
	_, e, ok := s.st.index.Find(s.g, h)
	if !ok {
		return 0, nil
	}
	addr, _, _ := s.trace(key, e.Address(), s.st.log.Head())
	return addr, nil
}

// MayHoldSince reports whether key's (hash h) newest record, live or
// deleted, may be at or above since: it is in memory there, or the key's
// chain goes on to the device above since (not read). False means the
// key has no record at or above since.
func (s *Session) MayHoldSince(key []byte, h, since uint64) (bool, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return false, err
	}
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.end()
	return s.heldSince(key, h, since), nil
}

// heldSince reports whether the store may hold a record of key (hash h)
// at or above since: one in memory, or a chain that goes on to the device
// above since without a record of the key in memory (not read: it may).
func (s *Session) heldSince(key []byte, h, since uint64) bool {
	_, e, ok := s.st.index.Find(s.g, h)
	if !ok {
		return false
	}
	addr, _, found := s.trace(key, e.Address(), s.st.log.Head())
	return s.mayHold(addr, found, since)
}

// mayHold reports whether a key whose chain, traced through memory, ended
// at addr (found: at the key's newest record) may have a record at or
// above since (heldSince).
func (s *Session) mayHold(addr uint64, found bool, since uint64) bool {
	if found {
		return addr >= since
	}
	return addr >= max(s.st.log.Begin(), since, hlog.FirstAddress)
}

// ChainBelow is where a key's chain goes on in a log (ReadAbove): from
// Addr down to Begin.
type ChainBelow struct{ Addr, Begin uint64 }

// chainBelow returns where key's chain goes on below bound once it
// leaves memory without a record of the key, when that is in the log
// (zero otherwise).
func (s *Session) chainBelow(key []byte, h, bound uint64) ChainBelow {
	if bound == 0 {
		return ChainBelow{}
	}
	if ind, _ := s.st.covered(h); ind != nil {
		return ChainBelow{}
	}
	_, e, ok := s.st.index.Find(s.g, h)
	if !ok {
		return ChainBelow{}
	}
	addr, _, found := s.trace(key, e.Address(), s.st.log.Head())
	begin := s.st.Begin()
	if found || addr >= bound || addr < max(begin, hlog.FirstAddress) {
		return ChainBelow{}
	}
	return ChainBelow{Addr: addr, Begin: begin}
}

// Upsert sets key to value.
func (s *Session) Upsert(key, value []byte) (Status, error) {
	h := keyhash.Hash(key)
	s.touch(h)
	return s.UpsertHashed(key, h, value)
}

// UpsertHashed is Upsert with key's hash, h == keyhash.Hash(key), already computed.
func (s *Session) UpsertHashed(key []byte, h uint64, value []byte) (Status, error) {
	return s.UpsertExpiring(key, h, value, 0)
}

// UpsertExpiring is UpsertHashed giving the value an expiry, expireAt in
// Unix milliseconds (0: none). A value whose expiry is already past is
// written all the same and reads as absent at once (it counts in the key
// count until reaped), as Redis's SET with a past PXAT: a blind write, it
// wins over a record a migration sends later.
func (s *Session) UpsertExpiring(key []byte, h uint64, value []byte, expireAt int64) (Status, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return 0, err
	}
	_, off := layout(expireAt)
	if hlog.RecordSize(len(key), off+len(value)) > s.st.log.PageSize() {
		return 0, ErrRecordTooLarge
	}
	if expireAt < 0 {
		return 0, ErrBadExpiry
	}
	s.awaitRMW(h)
	if err := s.begin(); err != nil {
		return 0, err
	}
	if expireAt == 0 && !s.st.anyIndirections() && s.upsertNewest(key, value, h) {
		s.end()
		return OK, nil
	}
	st, err := s.upsert(key, value, h, expireAt)
	s.end()
	return st, err
}

// upsertNewest is the common case of an upsert without an expiry, tried
// before the general path and decided as upsertOnce decides it: key's
// newest record is the first of its index chain, in the mutable region,
// and the value fits it. It reports whether it is done; otherwise nothing
// changed and upsertOnce decides. The caller has checked that no
// indirection is installed (upsertOnce's belowSince).
//
// Its steps up to the lock are rmwNewest's, repeated on purpose: the two
// sharing a function (measured, not kept) cost 8 instructions per YCSB-A
// operation and 16 per RMW, the call not inlining. A change to which
// records the fast paths may decide alone is a change to both.
func (s *Session) upsertNewest(key, value []byte, h uint64) bool {
	_, e := s.findOrCreate(h)
	l := s.st.log
	addr := e.Address()
	if addr < l.MutableFrom() {
		return false // a new entry, or read-only or on the device
	}
	r := l.Record(addr)
	if invariants.Enabled {
		s.checkRecord(addr, r)
	}
	if !bytes.Equal(r.Key(), key) {
		return false // another key's record first: upsertOnce traces the chain
	}
	hdr, ok := r.Lock()
	if !ok {
		return false // sealed: a newer copy exists
	}
	if r.ValueCap() < len(value) {
		r.Unlock(hdr, r.ValueLen()) // as it was: upsertOnce appends
		return false
	}
	copy(r.Value()[:len(value)], value)
	r.Unlock(hdr&^(hlog.FlagTombstone|hlog.FlagExpires), len(value))
	s.countKeys(revived(hdr))
	return true
}

// RMW merges input into key's value with m (creating the value when the key
// is absent). It returns Pending when the current value must be read from the
// device or the record sits in the fuzzy region.
func (s *Session) RMW(key, input []byte, m Merger) (Status, error) {
	h := keyhash.Hash(key)
	s.touch(h)
	return s.RMWHashed(key, h, input, m)
}

// RMWHashed is RMW with key's hash, h == keyhash.Hash(key), already computed.
func (s *Session) RMWHashed(key []byte, h uint64, input []byte, m Merger) (Status, error) {
	return s.RMWHeld(key, h, input, m, 0)
}

// RMWHeld is RMWHashed that runs only where key's newest record is in this
// store's log at or above held (0: anywhere), as Update.Held says; it
// fails with ErrNotHeld otherwise.
func (s *Session) RMWHeld(key []byte, h uint64, input []byte, m Merger, held uint64) (Status, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return 0, err
	}
	s.awaitRMW(h)
	if err := s.begin(); err != nil {
		return 0, err
	}
	if invariants.Enabled && (s.res.update || s.res.dst != nil || s.res.held != 0) {
		invariants.Fail("a plain RMW runs with an Update's result %+v", s.res)
	}
	if held == 0 && !s.st.anyIndirections() { // mergesLive of the zero result
		if done, err := s.rmwNewest(key, h, input, m); done {
			s.end()
			return OK, err
		}
	}
	s.res.held = held
	st, err := s.rmw(key, input, m, h, nil)
	s.res.held = 0
	s.end()
	return st, err
}

// Delete removes key. It returns NotFound when the key is known to be absent
// without reading the device; a key whose newest record is on the device is
// deleted blindly and reported OK.
func (s *Session) Delete(key []byte) (Status, error) {
	h := keyhash.Hash(key)
	s.touch(h)
	return s.DeleteHashed(key, h)
}

// DeleteHashed is Delete with key's hash, h == keyhash.Hash(key), already computed.
func (s *Session) DeleteHashed(key []byte, h uint64) (Status, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return 0, err
	}
	s.awaitRMW(h)
	if err := s.begin(); err != nil {
		return 0, err
	}
	st, err := s.delete(key, h)
	s.end()
	return st, err
}

// awaitRMW completes the session's pending operations while an RMW of hash
// h is among them, so that the session's operations on one key take effect
// in the order they were issued: a pending RMW must not be overtaken by a
// later operation on its key (it would merge into that operation's value).
// Pending reads need no such wait: one issued first reads the chain as it
// was then. It blocks for the device, and only in that case. Inside a
// completion callback it cannot wait (CompletePending is not reentrant), and
// order is then the callback's business.
//
// It is split so that the check inlines: an operation of a session with
// nothing pending pays one field test, not a call (BENCHMARKS.md, issue
// 18). The test is on the pending count rather than on the RMW map: an
// unfinished RMW is a pending operation (pendingSet's invariants).
func (s *Session) awaitRMW(h uint64) {
	if s.pend.count > 0 {
		s.awaitPendingRMW(h)
	}
}

// awaitPendingRMW is awaitRMW's loop, out of line.
func (s *Session) awaitPendingRMW(h uint64) {
	for len(s.pend.rmws) > 0 && s.pend.rmws[h] > 0 && !s.pend.running {
		s.CompletePending(true)
	}
}

// trace follows the chain from addr while it stays at or above floor (which
// must be at or above head) and returns key's record if it is there;
// otherwise the first address below floor, where the chain goes on.
func (s *Session) trace(key []byte, addr, floor uint64) (uint64, hlog.Record, bool) {
	l := s.st.log
	for addr >= floor {
		r := l.Record(addr)
		if invariants.Enabled {
			s.checkRecord(addr, r)
		}
		if bytes.Equal(r.Key(), key) {
			return addr, r, true
		}
		addr = r.Header().Prev()
	}
	return addr, hlog.Record{}, false
}

// checkRecord verifies, under -tags invariants, that a chain only reaches
// complete records inside the log.
func (s *Session) checkRecord(addr uint64, r hlog.Record) {
	h := r.Header()
	tail := s.st.log.Tail()
	switch {
	case addr >= tail || addr < hlog.FirstAddress:
		invariants.Fail("chain reaches address %d, tail %d", addr, tail)
	case !h.Final() || h.Filler() || h.Invalid():
		invariants.Fail("chain reaches header %#x at %d", uint64(h), addr)
	case h.Prev() >= addr:
		invariants.Fail("record at %d links forward to %d", addr, h.Prev())
	}
}

// read runs one read; withAt: the value comes with its expiry in front.
// p is the pending record when a pending read starts over
// (pendingSet.restart), nil for a new operation.
func (s *Session) read(key []byte, h uint64, dst []byte, p *pendingOp, withAt bool) ([]byte, Status, error) {
	cov := s.st.coveringTable(h) // its chain is looked up when h's own records do not decide
	_, e, ok := s.st.index.Find(s.g, h)
	if !ok {
		if ind, raddr := cov.chain(h); ind != nil {
			return dst, s.readRemote(key, h, p, withAt, 0, ind, raddr), nil
		}
		s.met = 0
		return dst, NotFound, nil
	}
	l := s.st.log
	addr, r, found := s.trace(key, e.Address(), l.Head())
	if found && (cov == nil || addr >= cov.Since || !cov.has(h)) {
		v, hdr := r.ReadValue(dst)
		switch {
		case hdr.Tombstone():
			s.met = addr
			return dst, NotFound, nil
		case hdr.Expires() || withAt:
			s.met = addr // read only after NotFound
			return s.splitRead(v, len(dst), hdr, withAt)
		}
		return v, OK, nil
	}
	ind, raddr := cov.chain(h)
	begin := l.Begin()
	switch {
	case ind != nil && (found || addr < max(begin, ind.Since)):
		return dst, s.readRemote(key, h, p, withAt, e.Address(), ind, raddr), nil
	case addr < begin:
		s.met = 0
		return dst, NotFound, nil
	}
	p = s.pend.reuse(p, OpRead, h, key, nil, nil)
	p.upd.withAt = withAt
	p.entryAddr, p.begin = e.Address(), begin
	p.cover(ind, raddr)
	s.pend.startRead(p, addr)
	return dst, Pending, nil
}

// readRemote starts a read of key through the indirection ind, whose
// chain goes on at raddr in the remote log; entry is the key's local chain
// head (0: none).
func (s *Session) readRemote(key []byte, h uint64, p *pendingOp, withAt bool, entry uint64, ind *Indirections, raddr uint64) Status {
	p = s.pend.reuse(p, OpRead, h, key, nil, nil)
	p.upd.withAt = withAt
	p.entryAddr, p.begin = entry, s.st.log.Begin()
	p.cover(ind, raddr)
	s.pend.goRemote(p)
	return Pending
}

// splitRead finishes a read whose value area went to full[base:] (full is
// the caller's buffer up to base): absent when expired, otherwise the
// value alone, or with its expiry in front when withAt.
func (s *Session) splitRead(full []byte, base int, hdr hlog.Header, withAt bool) ([]byte, Status, error) {
	raw := full[base:]
	v, at := hlog.SplitValue(hdr, raw)
	switch {
	case s.st.expired(at):
		return full[:base], NotFound, nil
	case !withAt:
		return append(full[:base], v...), OK, nil // v overlaps: append copies forward
	case hdr.Expires():
		return full, OK, nil // raw is in that form already
	}
	// No expiry: the value moves 8 bytes on to make room for a zero one.
	var none [hlog.ExpirySize]byte
	out := append(full, none[:]...)
	copy(out[base+hlog.ExpirySize:], out[base:base+len(raw)])
	copy(out[base:], none[:])
	return out, OK, nil
}

// copyToTail appends a copy of the key's record that p's read found on the
// device (old, live), when the key's chain is still what it was when the
// read was issued (no newer record of the key can exist then: a record
// below head is never updated in place). Failing to copy changes nothing:
// it is an optimisation.
func (s *Session) copyToTail(p *pendingOp, old prior) {
	// A full tail or a lost CAS (someone wrote the key meanwhile) skips it.
	// A record found through an indirection is not counted yet.
	_ = s.appendIfChainIs(p.key(), p.hash, old.value, old.at, p.entryAddr, revivedIf(!old.counted))
}

// appendIfChainIs appends value with expiry at as key's newest record,
// linked in front of the chain head entry, if h's index entry still points
// to entry (0: h has no entry, or one without a chain): the chain is then
// what the caller judged it to be. delta is the key count's change.
// errCASLost when it is not (or stops being so before the record is
// installed).
func (s *Session) appendIfChainIs(key []byte, h uint64, value []byte, at int64, entry uint64, delta int64) error {
	var slot index.Slot
	var e index.Entry
	if entry == 0 {
		slot, e = s.findOrCreate(h)
	} else {
		var ok bool
		if slot, e, ok = s.st.index.Find(s.g, h); !ok {
			return errCASLost
		}
	}
	if e.Address() != entry {
		return errCASLost
	}
	addr, r, err := s.allocValue(key, value, at)
	if err != nil {
		return err
	}
	flags, _ := layout(at)
	return s.installCounted(slot, e, addr, r, flags, delta, false)
}

// reapIfChainIs appends a tombstone for key, whose newest record is an
// expired value (delta -1: the key count loses the key) or a tombstone
// (delta 0), if h's index entry still points to entry (see
// appendIfChainIs).
func (s *Session) reapIfChainIs(key []byte, h uint64, entry uint64, delta int64) error {
	slot, e, ok := s.st.index.Find(s.g, h)
	if !ok || e.Address() != entry {
		return errCASLost
	}
	_, err := s.appendTombstone(slot, e, key, delta, false)
	return err
}

func (s *Session) upsert(key, value []byte, h uint64, at int64) (Status, error) {
	for spins := 0; ; spins++ {
		if st, err := s.upsertOnce(key, value, h, at); !s.again(err, spins) {
			return st, err
		}
	}
}

// upsertOnce updates key's mutable record in place when the value (and its
// expiry at) fits, and otherwise appends a new record. UpsertExpiring tries
// upsertNewest first, which repeats the in-place case for a record first in
// its chain: a change to that case here is a change there too. A mutable record is
// locked while the upsert decides, and sealed when it appends past it, so
// that the key count sees the state it replaces (keycount.go); past a
// record in the fuzzy region, which it must not touch, the new one is a
// doubt.
func (s *Session) upsertOnce(key, value []byte, h uint64, at int64) (Status, error) {
	l := s.st.log
	slot, e := s.findOrCreate(h)
	head, safeRO, ro := l.Head(), l.SafeReadOnly(), l.MutableFrom()
	addr, r, found := s.trace(key, e.Address(), head)
	switch {
	case !found && (addr == 0 || addr < l.Begin()):
		return s.appendValue(slot, e, key, value, at, 1, false)
	case found && s.belowSince(h, addr):
		// An older owner's copy (indirect.go): the new record goes in
		// front of it, never into it.
		return s.appendValue(slot, e, key, value, at, revived(r.Header()), false)
	case !found, addr >= safeRO && addr < ro:
		// On the device, or in the fuzzy region (a writer that has not
		// seen it turn read-only may still change it in place): a doubt.
		return s.appendValue(slot, e, key, value, at, 1, true)
	case addr < safeRO:
		return s.appendValue(slot, e, key, value, at, revived(r.Header()), false)
	}
	hdr, ok := r.Lock()
	if !ok {
		return 0, errCASLost // sealed: a newer copy exists
	}
	flags, off := layout(at)
	if r.ValueCap() >= off+len(value) { // mutable, and it fits
		raw := r.Value()[:off+len(value)]
		if off > 0 {
			hlog.PutExpiry(raw, at)
			s.st.noteExpiry()
		}
		copy(raw[off:], value)
		r.Unlock(hdr&^(hlog.FlagTombstone|hlog.FlagExpires)|flags, off+len(value))
		s.countKeys(revived(hdr))
		return OK, nil
	}
	st, err := s.appendValue(slot, e, key, value, at, revived(hdr), false)
	if err == nil {
		hdr |= hlog.FlagSealed
	}
	r.Unlock(hdr, r.ValueLen())
	return st, err
}

// revived is the key count's change when a write makes live the key whose
// newest record has header h (an expired record is still counted).
func revived(h hlog.Header) int64 {
	if h.Tombstone() {
		return 1
	}
	return 0
}

// appendValue appends value with expiry at as key's newest record in front
// of e's chain and counts delta; doubt marks and lists it (keycount.go).
func (s *Session) appendValue(slot index.Slot, e index.Entry, key, value []byte, at int64, delta int64, doubt bool) (Status, error) {
	addr, r, err := s.allocValue(key, value, at)
	if err != nil {
		return 0, err
	}
	flags, _ := layout(at)
	return OK, s.installCounted(slot, e, addr, r, flags, delta, doubt)
}

// allocValue reserves a record at the tail and writes key, value and its
// expiry at into it; installCounted publishes it.
func (s *Session) allocValue(key, value []byte, at int64) (uint64, hlog.Record, error) {
	_, off := layout(at)
	addr, r, err := s.allocRecord(key, off+len(value))
	if err != nil {
		return 0, r, err
	}
	raw := r.Init(key, off+len(value), off+len(value))
	if off > 0 {
		hlog.PutExpiry(raw, at)
	}
	copy(raw[off:], value)
	return addr, r, nil
}

// belowSince reports whether addr, where a record of a key of hash h
// lies, is below the Since of a table covering h: an older owner's copy
// that the remote chain overrides (indirect.go).
func (s *Session) belowSince(h, addr uint64) bool {
	if !s.st.anyIndirections() { // the test inlines, covered does not
		return false
	}
	t := s.st.coveringTable(h)
	return t != nil && addr < t.Since && t.has(h) // the lookup last: most records are above
}

func (s *Session) delete(key []byte, h uint64) (Status, error) {
	for spins := 0; ; spins++ {
		if st, err := s.deleteOnce(key, h); !s.again(err, spins) {
			return st, err
		}
	}
}

// deleteOnce marks key's mutable record deleted in place, or appends a
// tombstone in front of its chain (blindly when the key is on the device).
// Like upsertOnce it locks a mutable record, and its tombstone is a doubt
// past a record in the fuzzy region.
func (s *Session) deleteOnce(key []byte, h uint64) (Status, error) {
	l := s.st.log
	if s.st.anyIndirections() { // the test inlines, covered does not
		if ind, _ := s.st.covered(h); ind != nil {
			if st, done, err := s.deleteCovered(key, h, ind); done {
				return st, err
			}
		}
	}
	slot, e, ok := s.st.index.Find(s.g, h)
	if !ok || e.Address() == 0 {
		return NotFound, nil
	}
	head, safeRO, ro := l.Head(), l.SafeReadOnly(), l.MutableFrom()
	addr, r, found := s.trace(key, e.Address(), head)
	switch {
	case !found && addr < l.Begin():
		return NotFound, nil
	case !found:
		return s.appendTombstone(slot, e, key, 0, true) // on the device: a doubt
	}
	hdr, at := r.ReadExpiry()
	st := OK
	if s.st.expired(at) {
		st = NotFound // deleted all the same: it is still counted
	}
	switch {
	case addr < ro && hdr.Tombstone():
		return NotFound, nil
	case addr < safeRO:
		_, err := s.appendTombstone(slot, e, key, -1, false)
		return st, err
	case addr < ro:
		_, err := s.appendTombstone(slot, e, key, 0, true) // fuzzy: see upsertOnce
		return st, err
	}
	hdr, ok = r.Lock() // mutable: deleted in place
	switch {
	case !ok:
		return 0, errCASLost // sealed: a newer copy exists
	case hdr.Tombstone():
		r.Unlock(hdr, r.ValueLen())
		return NotFound, nil
	}
	_, at = hlog.SplitValue(hdr, r.Value())
	st = OK
	if s.st.expired(at) {
		st = NotFound
	}
	r.Unlock(hdr&^hlog.FlagExpires|hlog.FlagTombstone, 0)
	s.countKeys(-1)
	return st, nil
}

// deleteCovered decides the delete of a key an indirection covers unless
// a record of it at or above the table's Since is in memory (done false:
// the delete goes on as for any key, that record decides): its value may
// be in the remote log, so a tombstone goes in front of its chain
// whatever the local chain holds, and the delete reports OK (as a blind
// delete of a key on the device does).
func (s *Session) deleteCovered(key []byte, h uint64, ind *Indirections) (st Status, done bool, err error) {
	l := s.st.log
	slot, e := s.findOrCreate(h)
	addr, r, found := s.trace(key, e.Address(), l.Head())
	switch {
	case found && addr >= ind.Since:
		return 0, false, nil
	case !found && addr >= max(l.Begin(), ind.Since):
		// The local chain goes on on the device: whether the key is
		// live there is a doubt, resolved later (keycount.go).
		_, err = s.appendTombstone(slot, e, key, 0, true)
	case found && addr < l.SafeReadOnly():
		// An older owner's copy, read-only: its count is known.
		delta := int64(-1)
		if r.Header().Tombstone() {
			delta = 0
		}
		_, err = s.appendTombstone(slot, e, key, delta, false)
	case found:
		_, err = s.appendTombstone(slot, e, key, 0, true)
	default: // no local record of the key: it was never counted here
		_, err = s.appendTombstone(slot, e, key, 0, false)
	}
	return OK, true, err
}

// appendTombstone appends a tombstone for key in front of e's chain and
// counts delta; doubt marks and lists it (keycount.go).
func (s *Session) appendTombstone(slot index.Slot, e index.Entry, key []byte, delta int64, doubt bool) (Status, error) {
	addr, r, err := s.allocRecord(key, 0)
	if err != nil {
		return 0, err
	}
	r.Init(key, 0, 0)
	return OK, s.installCounted(slot, e, addr, r, hlog.FlagTombstone, delta, doubt)
}

// again reports whether an attempt that failed with err must run again from
// the index, first waiting for the tail when that is what it failed on.
func (s *Session) again(err error, spins int) bool {
	switch err {
	case errRetryTail:
		s.waitForTail(spins)
		return true
	case errCASLost:
		return true
	}
	return false
}

// allocRecord reserves a record at the tail.
func (s *Session) allocRecord(key []byte, valueLen int) (uint64, hlog.Record, error) {
	l := s.st.log
	addr, err := l.Allocate(hlog.RecordSize(len(key), valueLen))
	switch {
	case err == nil:
		return addr, l.Record(addr), nil
	case errors.Is(err, hlog.ErrRetryLater):
		return 0, hlog.Record{}, errRetryTail
	case errors.Is(err, hlog.ErrTooLarge):
		return 0, hlog.Record{}, ErrRecordTooLarge
	}
	return 0, hlog.Record{}, fmt.Errorf("store: append: %w", err)
}

// install publishes a written record in front of e's chain. When another
// writer moved the entry first, the record is marked invalid.
func (s *Session) install(slot index.Slot, e index.Entry, addr uint64, r hlog.Record, tombstone bool) error {
	var flags hlog.Header
	if tombstone {
		flags = hlog.FlagTombstone
	}
	return s.installCounted(slot, e, addr, r, flags, 0, false)
}

// installCounted is install with header flags (FlagTombstone), which
// counts delta in the key count once the record is in, and marks and
// lists it as a doubt when doubt is set.
//
// Invariant (chains in address order): addr was allocated after e was
// read, so it is above e's address, and a record whose CAS loses is
// marked invalid, never linked: an entry only moves up, and a record
// linked after someone read an entry is above it (ChainHead and the
// server's parked reads rely on it; index growth may give an entry a
// lower address, but only under an epoch phase change that waits out
// every reader of the old one).
func (s *Session) installCounted(slot index.Slot, e index.Entry, addr uint64, r hlog.Record, flags hlog.Header, delta int64, doubt bool) error {
	h := hlog.MakeHeader(e.Address(), s.version, false) | flags
	if flags&hlog.FlagExpires != 0 {
		s.st.noteExpiry()
	}
	if doubt {
		h |= hlog.FlagDoubt
	}
	r.Publish(h)
	if !slot.CompareAndSwap(e, addr) {
		r.SetInvalid()
		return errCASLost
	}
	if doubt {
		s.doubt(addr)
	}
	s.countKeys(delta)
	return nil
}
