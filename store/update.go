package store

import (
	"errors"

	"github.com/fleetkv/fleetkv/keyhash"
)

// Conditional operations. An Update is one read-modify-write that looks at
// the key's current value, decides from it what to write (merge, leave the
// key alone, or delete it) and reports what it found: whether the key had a
// live value, and the old or the new value when asked. It runs under RMW's
// rules (in place in the mutable region, copy-on-write below it, pending
// across device reads and the fuzzy region, behind the session's earlier
// pending writes to the key), so the value it decides on is the value it
// replaces: two sessions deleting one key, or creating it only if absent,
// never both succeed.

// Cond says when an Update writes.
type Cond uint8

const (
	// Always merges the input into the key's value, creating the value
	// when the key has none (a plain RMW).
	Always Cond = iota
	// IfAbsent creates the value only when the key has no live value.
	IfAbsent
	// IfPresent merges only into a live value.
	IfPresent
	// Remove deletes the key when it has a live value; Update.Merge is not
	// used.
	Remove
	// IfNoneSince creates the value unless the key has a record, live or
	// deleted, at a log address at or above Update.Since: a record written
	// since then is newer than the one being inserted and wins. A
	// migration's target inserts the records it is sent so (Since is its
	// log's tail when it started to take them). It returns no value: Want
	// is not used.
	IfNoneSince
	// ReapExpired deletes the key when its newest record has expired (the
	// active expiry pass); it keeps every other key as it is. Merge is not
	// used.
	ReapExpired
	// DeleteIfNoneSince deletes the key unless it has a record at or above
	// Update.Since (as IfNoneSince decides): it writes a tombstone even
	// where the key has no record at all, so that the key has one since
	// then. A migration's target records so that the source holds no
	// record of a key it asked for. Merge and Want are not used.
	DeleteIfNoneSince
)

// Want says which value an Update returns.
type Want uint8

const (
	// WantNone returns no value.
	WantNone Want = iota
	// WantOld returns the live value the key had, if it had one.
	WantOld
	// WantNew returns the live value the key has after the Update, if any.
	WantNew
)

// An Update is a conditional read-modify-write (Session.Update).
type Update struct {
	If    Cond
	Want  Want
	Merge Merger // the merge (Replace for a conditional set); nil for Remove
	Input []byte
	Since uint64 // IfNoneSince, DeleteIfNoneSince: the log address from which a record wins
	// Expire says what happens to the value's expiry (expiry.go): its zero
	// value keeps the expiry a live value had.
	Expire Expiry
	// WithExpiry returns the wanted value with its expiry in front of it
	// (SplitExpiring).
	WithExpiry bool
	// Held, when not 0, runs the Update only where the key's newest
	// record, live or deleted, is in this store's log at or above Held;
	// otherwise it writes nothing and fails with ErrNotHeld (a remote
	// value, indirect.go, is not looked for). A migration's target runs
	// operations that decide from a key's value so until every record has
	// arrived: a record there was written since the source stopped
	// writing the key. Not with IfNoneSince or DeleteIfNoneSince.
	Held uint64
}

// ErrNotHeld fails an Update or RMW whose key has no record at or above
// the address it must hold one at (Update.Held, Session.RMWHeld).
var ErrNotHeld = errors.New("store: the key has no record since the address the operation requires")

// errNoMerger rejects an Update that would merge without a merger.
var errNoMerger = errors.New("store: Update without a Merger")

// errHeldSince rejects an Update with both Held and a condition decided by
// Since: rmwSince decides those before Held is looked at.
var errHeldSince = errors.New("store: Update.Held with IfNoneSince or DeleteIfNoneSince")

// action is what an Update does with the value it found.
type action uint8

const (
	actMerge  action = iota // merge into the value, or create it
	actKeep                 // leave the key as it is
	actRemove               // delete the key
)

// creates reports whether an Update under c may create an absent key.
func (c Cond) creates() bool {
	return c == Always || c == IfAbsent || c == IfNoneSince || c == DeleteIfNoneSince
}

// local reports whether the running operation is decided by the store's
// own records alone (its condition's, or those at or above held).
func (r *result) local() bool { return r.cond.bySince() || r.held != 0 }

// mergesLive reports whether the running RMW or Update merges its input
// into the key's value when that value is live, keeping its expiry, with
// nothing else to decide: a plain RMW, or an Update that is not held, is
// not conditional on absence or on a record's age, and leaves the expiry
// as it is. rmwNewest may then decide it from the newest record alone.
func (r *result) mergesLive() bool {
	return r.held == 0 && r.x.Mode == KeepExpiry && (r.cond == Always || r.cond == IfPresent)
}

// bySince reports whether c is decided by whether the key has a record at
// or above Update.Since, from the store's own records alone (a remote
// value, indirect.go, is not looked for).
func (c Cond) bySince() bool { return c == IfNoneSince || c == DeleteIfNoneSince }

// action decides on the key's value old; recent: it has a record at or
// above the Update's Since. Remove deletes an expired value too (it is
// still counted), reporting it absent, and a live value the key count
// does not count yet (found through an indirection, indirect.go).
func (c Cond) action(old prior, recent bool) action {
	live := old.live
	switch {
	case c == ReapExpired && old.counted && !live:
		return actRemove
	case c == IfAbsent && live, c == IfPresent && !live, c == Remove && !old.counted && !live, c.bySince() && recent, c == ReapExpired:
		return actKeep
	case c == Remove, c == DeleteIfNoneSince:
		return actRemove
	}
	return actMerge
}

// decide returns what the running Update, merging with m, does with the
// key's value old: its condition's action, unless the expiry's condition
// keeps the key (EXPIRE NX and the like) or nothing would change (a Keep
// that leaves the expiry as it is: PERSIST of a key without one), or the
// expiry it sets is already past, which deletes a live value (EXPIRE with
// a time in the past).
func (s *Session) decide(old prior, m Merger) action {
	r := &s.res
	act := r.cond.action(old, r.recent)
	_, keep := m.(Keep)
	switch {
	case act != actMerge:
		return act
	case old.live && !r.x.Allows(old.at):
		return actKeep
	case r.x.Mode == SetExpiry && r.x.At <= s.st.cfg.Now():
		if old.counted || old.live { // live: a remote value (indirect.go)
			return actRemove
		}
		return actKeep
	case keep && old.live && r.x.after(old) == old.at:
		return actKeep
	}
	return actMerge
}

// result is what the running RMW or Update reports. The rmw path sets it
// every time it decides; a lost race that starts over decides again and
// overwrites it, so it always describes the attempt that took effect.
//
// Invariant: zero outside a run of the rmw path; set at the entry of every
// run of an Update or of an RMW with held (its first run and each
// continuation of a pending one) and zeroed at its end; nothing between
// that entry and the run's end issues another operation on the session.
type result struct {
	update bool // an Update (a plain RMW reports OK and no value)
	cond   Cond
	want   Want
	live   bool   // the key had a live value
	since  uint64 // IfNoneSince, DeleteIfNoneSince: Update.Since
	x      Expiry // Update.Expire (a plain RMW keeps the expiry)
	withAt bool   // Update.WithExpiry
	recent bool   // bySince: the key has a record at or above since (set before the decision)
	held   uint64 // Update.Held (also of a plain RMW: RMWHeld)
	dst    []byte // where the wanted value goes (the caller's, or the pending op's buffer)
	out    []byte // dst with the wanted value appended
}

// status is an Update's Status: OK when the key had a live value.
func (r *result) status() Status {
	if !r.update || r.live {
		return OK
	}
	return NotFound
}

// reportOld records the value the key had, before the operation changes
// it. Only an Update calls it: a plain RMW reports nothing and pays one
// test of res.update for it.
func (s *Session) reportOld(old prior) {
	r := &s.res
	r.live = old.live
	r.out = r.dst
	if r.want == WantOld && old.live {
		r.out = r.appendValue(old.at, old.value)
	}
}

// reportNew records the value the key has after the operation (live false:
// none) and its expiry at; reportOld came first.
func (s *Session) reportNew(live bool, at int64, v []byte) {
	if r := &s.res; r.want == WantNew && live {
		r.out = r.appendValue(at, v)
	}
}

// appendValue appends a wanted value to dst, with its expiry when asked.
func (r *result) appendValue(at int64, v []byte) []byte {
	if r.withAt {
		return AppendExpiring(r.dst, at, v)
	}
	return append(r.dst, v...)
}

// Update runs u on key. It returns OK when key had a live value before it,
// NotFound when it had none, and appends the value u.Want names to dst
// (nothing when that value does not exist). When the key's record must be
// read from the device, or sits in the fuzzy region, it returns Pending and
// the completion carries the same Status and the value.
func (s *Session) Update(key []byte, u Update, dst []byte) ([]byte, Status, error) {
	return s.UpdateHashed(key, keyhash.Hash(key), &u, dst)
}

// UpdateHashed is Update with key's hash, h == keyhash.Hash(key), already
// computed, and u by reference (it is read, never kept): an Update does
// not fit in registers, and the server's ADD pays for every copy.
func (s *Session) UpdateHashed(key []byte, h uint64, u *Update, dst []byte) ([]byte, Status, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return dst, 0, err
	}
	if u.Merge == nil && u.If != Remove && u.If != ReapExpired && u.If != DeleteIfNoneSince {
		return dst, 0, errNoMerger
	}
	if u.Held != 0 && u.If.bySince() {
		return dst, 0, errHeldSince
	}
	s.awaitRMW(h)
	if err := s.begin(); err != nil {
		return dst, 0, err
	}
	r := &s.res // field by field: a composite literal is built aside and copied
	r.update, r.cond, r.want, r.since, r.x, r.withAt, r.held = true, u.If, u.Want, u.Since, u.Expire, u.WithExpiry, u.Held
	r.dst, r.out = dst, dst
	return s.runUpdate(key, h, u.Input, u.Merge, dst)
}

// RMWNewHashed is UpdateHashed of Update{Merge: m, Input: input, Want:
// WantNew}: a plain RMW that returns the value it produced (the server's
// ADD), without an Update to fill in and check.
func (s *Session) RMWNewHashed(key []byte, h uint64, input []byte, m Merger, dst []byte) ([]byte, Status, error) {
	if err := s.checkKeyHash(key, h); err != nil {
		return dst, 0, err
	}
	if m == nil {
		return dst, 0, errNoMerger
	}
	s.awaitRMW(h)
	if err := s.begin(); err != nil {
		return dst, 0, err
	}
	r := &s.res // zero outside a run: its other fields are that Update's
	r.update, r.want, r.dst, r.out = true, WantNew, dst, dst
	return s.runUpdate(key, h, input, m, dst)
}

// runUpdate runs the Update that s.res describes, the session begun, and
// ends it: what UpdateHashed returns.
func (s *Session) runUpdate(key []byte, h uint64, input []byte, m Merger, dst []byte) ([]byte, Status, error) {
	st, err, done := OK, error(nil), false
	if s.res.mergesLive() && !s.st.anyIndirections() {
		done, err = s.rmwNewest(key, h, input, m)
	}
	if !done {
		st, err = s.rmw(key, input, m, h, nil)
	}
	s.end()
	out := s.res.out
	if err == nil && st != Pending {
		st = s.res.status()
	} else {
		out = dst
	}
	s.res = result{} // a plain RMW runs with the zero result
	return out, st, err
}

// Replace is the merge of a conditional set: the new value is the input.
type Replace struct{}

// InitialSize implements Merger.
func (Replace) InitialSize(input []byte) int { return len(input) }

// Initial implements Merger.
func (Replace) Initial(dst, input []byte) error { copy(dst, input); return nil }

// MergedSize implements Merger.
func (Replace) MergedSize(_, input []byte) (int, error) { return len(input), nil }

// Merge implements Merger.
func (Replace) Merge(dst, _, input []byte) error { copy(dst, input); return nil }

// InPlace implements Merger.
func (Replace) InPlace(v, input []byte) (int, bool, error) {
	if len(input) > cap(v) {
		return 0, false, nil
	}
	return copy(v[:len(input)], input), true, nil
}

// Keep is the merge that leaves a live value as it is: an Update that
// changes only the expiry (EXPIRE, PERSIST, GETEX) merges with it under
// IfPresent.
type Keep struct{}

// InitialSize implements Merger: Keep never creates a value.
func (Keep) InitialSize([]byte) int { return 0 }

// Initial implements Merger.
func (Keep) Initial([]byte, []byte) error { return nil }

// MergedSize implements Merger.
func (Keep) MergedSize(old, _ []byte) (int, error) { return len(old), nil }

// Merge implements Merger.
func (Keep) Merge(dst, old, _ []byte) error { copy(dst, old); return nil }

// InPlace implements Merger.
func (Keep) InPlace(v, _ []byte) (int, bool, error) { return len(v), true, nil }
