package store

import (
	"bytes"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/internal/invariants"
)

// rmw runs one read-modify-write. p is the pending record when the operation
// is being retried from CompletePending, nil for a new operation; when rmw
// returns Pending, the operation (p or a new record) is queued again,
// otherwise the caller finishes p. Its entry points (RMWHeld, UpdateHashed)
// try rmwNewest first, in line, where result.mergesLive allows.
func (s *Session) rmw(key, input []byte, m Merger, h uint64, p *pendingOp) (Status, error) {
	for spins := 0; ; spins++ {
		if st, err := s.rmwOnce(key, input, m, h, p); !s.again(err, spins) {
			return st, err
		}
	}
}

// rmwNewest is the common case of an RMW, or of an Update that merges
// into a live value (result.mergesLive), tried before the general path and
// decided as rmwOnce and rmwMutable would decide it: key's newest record
// is the first of its index chain, in the mutable region, live without an
// expiry, and the merge fits in place. It reports whether it is done
// (merged, or the merge failed with err); otherwise nothing changed and
// rmwOnce decides. The caller has checked mergesLive and that no
// indirection is installed (a covered key's records here may not be its
// newest). upsertNewest repeats its steps up to the lock.
func (s *Session) rmwNewest(key []byte, h uint64, input []byte, m Merger) (bool, error) {
	var e index.Entry
	if s.res.update {
		var ok bool
		if _, e, ok = s.entryFor(h); !ok {
			return false, nil
		}
	} else {
		// entryFor's case for a plain RMW, called without its tests
		// (entryFor does not inline): 597 instructions per one-op RMW
		// against 611 through entryFor.
		_, e = s.findOrCreate(h)
	}
	l := s.st.log
	addr := e.Address()
	if addr < l.MutableFrom() {
		return false, nil // a new entry, or read-only or on the device
	}
	r := l.Record(addr)
	if invariants.Enabled {
		s.checkRecord(addr, r)
	}
	if !bytes.Equal(r.Key(), key) {
		return false, nil // another key's record first: rmwOnce traces the chain
	}
	hdr, ok := r.Lock()
	if !ok {
		return false, nil // sealed: a newer copy exists
	}
	raw := r.Value()
	if hdr&(hlog.FlagTombstone|hlog.FlagExpires) != 0 {
		r.Unlock(hdr, len(raw)) // as it was: rmwMutable counts and keeps expiries
		return false, nil
	}
	if s.res.update {
		s.reportOld(prior{value: raw, counted: true, live: true})
	}
	var n int
	var fits bool
	var err error
	if _, add := m.(Int64Add); add {
		n, fits, err = Int64Add{}.InPlace(raw, input) // counters' merge, called directly: it inlines
	} else {
		n, fits, err = m.InPlace(raw, input)
	}
	if err != nil || !fits {
		r.Unlock(hdr, len(raw)) // as it was
		return err != nil, err
	}
	s.reportNew(true, 0, raw[:n])
	r.Unlock(hdr, n)
	return true, nil
}

func (s *Session) rmwOnce(key, input []byte, m Merger, h uint64, p *pendingOp) (Status, error) {
	l := s.st.log
	var ind *Indirections
	var raddr uint64
	if !s.res.local() && s.st.anyIndirections() { // the test inlines, covered does not
		ind, raddr = s.st.covered(h)
	}
	slot, e, ok := s.entryFor(h)
	switch {
	case !ok && s.res.held != 0:
		return 0, ErrNotHeld
	case !ok && ind != nil:
		// No entry: the remote value decides, and an entry is made only
		// if the Update then writes (continueRMW).
		p = s.pend.reuse(p, OpRMW, h, key, input, m)
		p.entryAddr, p.begin = 0, l.Begin()
		p.cover(ind, raddr)
		s.pend.goRemote(p)
		return Pending, nil
	case !ok:
		return s.rmwCopy(slot, e, key, input, m, absent) // absent, and it cannot create: kept
	}
	head, safeRO, quiet, ro := l.Head(), l.SafeReadOnly(), l.Quiet(), l.MutableFrom()
	if s.res.cond.bySince() {
		if st, done, err := s.rmwSince(slot, e, key, input, m, head); done {
			return st, err
		}
	}
	addr, r, found := s.trace(key, e.Address(), head)
	if s.res.cond.bySince() {
		s.res.recent = found && addr >= s.res.since
	}
	if s.res.held != 0 && !s.mayHold(addr, found, s.res.held) {
		return 0, ErrNotHeld // a record on the device is read first (pendingSet.found decides)
	}
	if found && ind != nil && addr < ind.Since {
		found = false // an older owner's copy: the remote chain decides
	}
	switch {
	case found && addr >= ro:
		// An insert (or deletion) that wins over records below since goes
		// to the tail, never into one of them: a later client write there
		// would look older than since to a repeated insert.
		return s.rmwMutable(slot, e, r, key, input, m, !s.res.cond.bySince())
	case found && addr >= max(safeRO, quiet):
		// Another worker may still update this record in place: a copy
		// made now could lose its update. Retry once everyone has seen
		// that the region is read-only.
		s.pend.startRetry(s.pend.reuse(p, OpRMW, h, key, input, m))
		return Pending, nil
	case found && addr >= safeRO:
		// Below a fence no one updates in place now, but a snapshot
		// checkpoint lowers it again: the copy seals the record, so that a
		// worker that found it before the copy was installed does not
		// update it in place then (its update would miss the copy).
		return s.rmwMutable(slot, e, r, key, input, m, false)
	case found:
		return s.rmwCopy(slot, e, key, input, m, s.st.priorOf(r.Header(), r.Value()))
	}
	begin := l.Begin()
	if addr >= begin && (ind == nil || addr >= ind.Since) {
		p = s.pend.reuse(p, OpRMW, h, key, input, m)
		p.entryAddr, p.begin = e.Address(), begin
		p.cover(ind, raddr)
		s.pend.startRead(p, addr)
		return Pending, nil
	}
	if ind != nil {
		p = s.pend.reuse(p, OpRMW, h, key, input, m)
		p.entryAddr, p.begin = e.Address(), begin
		p.cover(ind, raddr)
		s.pend.goRemote(p)
		return Pending, nil
	}
	return s.rmwCopy(slot, e, key, input, m, absent)
}

// rmwSince decides an IfNoneSince or DeleteIfNoneSince Update from memory
// when it can: a record of the key at or above since (found above head)
// wins and the key is kept; a chain that ends without one means the key
// has none, and the value (or a tombstone) is inserted. Otherwise (done
// false) rmwOnce goes on as for any Update: the key's newest record is
// below since, or on the device (the search's end decides,
// pendingSet.found).
func (s *Session) rmwSince(slot index.Slot, e index.Entry, key, input []byte, m Merger, head uint64) (st Status, done bool, err error) {
	since := s.res.since
	addr, r, found := s.trace(key, e.Address(), max(head, since))
	switch {
	case found:
		s.res.recent = true
		hdr, at := r.ReadExpiry()
		s.reportOld(prior{live: !hdr.Tombstone() && !s.st.expired(at)}) // IfNoneSince returns no value
		return OK, true, nil
	case addr == 0 || addr < s.st.log.Begin():
		s.res.recent = false
		st, err := s.rmwCopy(slot, e, key, input, m, absent)
		return st, true, err
	case addr < since && addr < head:
		// No record since; an older one may be on the device: inserted
		// blind, as a doubt of the key count (keycount.go).
		s.res.recent = false
		s.reportOld(absent)
		if s.res.cond == DeleteIfNoneSince {
			st, err := s.appendTombstone(slot, e, key, 0, true) // a blind delete's count
			return st, true, err
		}
		st, err := s.writeMerged(slot, e, key, input, m, absent, true)
		return st, true, err
	}
	// An older record of the key in memory below since (rmwOnce finds it,
	// and appends past it: the key count learns whether the insert revives
	// the key), or the newest on the device at or above since.
	return 0, false, nil
}

// rmwMutable decides on the record r, which it locks, and merges in place
// when inPlace and the result fits the record; otherwise it writes the
// merged value (or a tombstone) to the tail while holding the record, and
// seals it.
func (s *Session) rmwMutable(slot index.Slot, e index.Entry, r hlog.Record, key, input []byte, m Merger, inPlace bool) (Status, error) {
	hdr, ok := r.Lock()
	if !ok {
		return 0, errCASLost // sealed: a newer copy exists; start over
	}
	raw := r.Value()
	old := s.st.priorOf(hdr, raw)
	act := actMerge
	if s.res.update {
		s.reportOld(old)
		act = s.decide(old, m)
	}
	var st Status
	var err error
	switch act {
	case actKeep:
		s.reportNew(old.live, old.at, old.value)
		r.Unlock(hdr, len(raw))
		return OK, nil
	case actRemove:
		if inPlace { // only of a counted value: bySince Updates never go in place
			r.Unlock(hdr&^hlog.FlagExpires|hlog.FlagTombstone, 0)
			s.countKeys(-1)
			return OK, nil
		}
		st, err = s.removeCopy(slot, e, key, old)
	default:
		if inPlace {
			if done, err := s.mergeInPlace(r, hdr, raw, old, input, m); done {
				return OK, err
			}
		}
		st, err = s.writeMerged(slot, e, key, input, m, old, false)
	}
	if err == nil {
		hdr |= hlog.FlagSealed
	}
	r.Unlock(hdr, len(raw))
	return st, err
}

// entryFor returns h's index entry for the running RMW, creating it only
// when the operation may create the key: an Update that cannot (Remove,
// IfPresent) of a key without an entry is decided without one (ok false),
// so deletes of absent keys leave no empty entries behind; nor does one
// that must find a record of the key (Update.Held).
func (s *Session) entryFor(h uint64) (index.Slot, index.Entry, bool) {
	if s.res.update && !s.res.cond.creates() || s.res.held != 0 {
		return s.st.index.Find(s.g, h)
	}
	slot, e := s.findOrCreate(h)
	return slot, e, true
}

// mergeInPlace merges input into r, which the caller locked (its header
// was hdr, its value area is raw, holding old), when the result fits, and
// unlocks it. It reports whether it is done: merged, or failed with err;
// otherwise r is still locked, unchanged, and the caller copies it. An
// expiry goes in place only into a record that has room for one.
func (s *Session) mergeInPlace(r hlog.Record, hdr hlog.Header, raw []byte, old prior, input []byte, m Merger) (bool, error) {
	at := s.res.x.after(old)
	off := 0
	switch {
	case hdr.Expires():
		off = hlog.ExpirySize // kept, 0 when the value has none
	case at != 0:
		return false, nil
	}
	if len(raw) < off {
		return false, nil // a tombstone's area never held an expiry
	}
	v := raw[off:]
	var n int
	if !old.live { // deleted or expired: the value starts anew
		if n = m.InitialSize(input); n > cap(v) {
			return false, nil
		}
		if err := m.Initial(v[:n], input); err != nil {
			r.Unlock(hdr, len(raw)) // as it was: a failed merge changes nothing
			return true, err
		}
		hdr &^= hlog.FlagTombstone
		if !old.counted {
			s.countKeys(1)
		}
	} else {
		var fits bool
		var err error
		n, fits, err = m.InPlace(v, input)
		switch {
		case err != nil:
			r.Unlock(hdr, len(raw))
			return true, err
		case !fits:
			return false, nil
		}
	}
	if off > 0 {
		hlog.PutExpiry(raw[:off], at)
		if at != 0 {
			s.st.noteExpiry()
		}
	}
	s.reportNew(true, at, v[:n])
	r.Unlock(hdr, off+n)
	return true, nil
}

// rmwCopy decides on the key's value old and writes the merged value, or
// a tombstone, as a new record at the tail. old's value must stay
// unchanged meanwhile: it is read-only, or a private copy read from the
// device.
func (s *Session) rmwCopy(slot index.Slot, e index.Entry, key, input []byte, m Merger, old prior) (Status, error) {
	if s.res.update {
		s.reportOld(old)
		switch s.decide(old, m) {
		case actKeep:
			s.reportNew(old.live, old.at, old.value)
			return OK, nil
		case actRemove:
			return s.removeCopy(slot, e, key, old)
		}
	}
	return s.writeMerged(slot, e, key, input, m, old, false)
}

// writeMerged writes the merged (or initial) value as a new record at the
// tail. old's value must stay unchanged meanwhile: it is read-only, or
// locked by the caller, or a private copy read from the device. doubt:
// whether the key had a live value is not known (old is absent then), and
// the record is a doubt of the key count.
func (s *Session) writeMerged(slot index.Slot, e index.Entry, key, input []byte, m Merger, old prior, doubt bool) (Status, error) {
	n := m.InitialSize(input)
	if old.live {
		var err error
		if n, err = m.MergedSize(old.value, input); err != nil {
			return 0, err
		}
	}
	at := s.res.x.after(old)
	flags, off := layout(at)
	page := s.st.log.PageSize()
	if hlog.RecordSize(len(key), off+n) > page {
		return 0, ErrRecordTooLarge
	}
	capacity := n
	if rs, ok := m.(Reserver); ok {
		if c := rs.Reserve(n); c > n && hlog.RecordSize(len(key), off+c) <= page {
			capacity = c
		}
	}
	addr, r, err := s.allocRecord(key, off+capacity)
	if err != nil {
		return 0, err
	}
	raw := r.Init(key, off+n, off+capacity)
	if off > 0 {
		hlog.PutExpiry(raw, at)
	}
	dst := raw[off:]
	if old.live {
		err = m.Merge(dst, old.value, input)
	} else {
		err = m.Initial(dst, input)
	}
	if err != nil {
		s.st.log.Abandon(addr, hlog.RecordSize(len(key), off+capacity))
		return 0, err
	}
	s.reportNew(true, at, dst)
	if err := s.installCounted(slot, e, addr, r, flags, revivedIf(!old.counted), doubt); err != nil {
		return 0, err
	}
	return OK, nil
}

// revivedIf is the key count's change of a write that makes its key live:
// 1 when it was not.
func revivedIf(absent bool) int64 {
	if absent {
		return 1
	}
	return 0
}

// removeCopy appends a tombstone for key, whose value old is live, in
// front of e's chain; the key count loses the key if it counted it (a
// value found through an indirection it did not).
func (s *Session) removeCopy(slot index.Slot, e index.Entry, key []byte, old prior) (Status, error) {
	return s.appendTombstone(slot, e, key, -revivedIf(old.counted), false)
}

// continueRMW finishes an RMW whose old value came from the device. If the
// chain changed while the read was in flight, the RMW starts over from the
// index.
func (s *Session) continueRMW(p *pendingOp, old prior) (Status, error) {
	for spins := 0; ; spins++ {
		slot, e, ok := s.entryFor(p.hash)
		if !ok && p.ind != nil && p.entryAddr == 0 {
			// A covered key without an entry (rmwOnce): it gets one only
			// when the Update writes.
			if s.res.update && s.decide(old, p.merger) == actKeep {
				return s.rmwCopy(slot, e, p.key(), p.input(), p.merger, old) // decides the same: writes nothing
			}
			slot, e = s.findOrCreate(p.hash)
			ok = true
		}
		if !ok || e.Address() != p.entryAddr {
			return s.rmw(p.key(), p.input(), p.merger, p.hash, p)
		}
		st, err := s.rmwCopy(slot, e, p.key(), p.input(), p.merger, old)
		switch err {
		case errRetryTail:
			s.waitForTail(spins)
		case errCASLost:
			return s.rmw(p.key(), p.input(), p.merger, p.hash, p)
		default:
			return st, err
		}
	}
}
