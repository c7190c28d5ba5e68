package server

import (
	"bytes"
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// The data-operation gateway: every data operation of both fronts (native
// batches and RESP commands) reaches the store through these methods, on
// the loop's goroutine. Each checks that the loop serves the key's slot
// under the turn's routing (one load), runs the store operation with the
// hash the caller computed (h == keyhash.Hash(key)), and, when it goes
// pending, the caller registers what waits for it with await.
//
// Invariant: an operation on a slot that l.rt does not serve reaches no
// store: it fails alone with errNotOwner (and l.notOwned names its slot).
// MIGRATE, which carries a migration's records between servers, is checked
// against l.rt.Accept instead: it reaches the store only for a migration
// and slot the routing accepts.
// Invariant: in a slot of l.rt.Misses (a migration's target before every
// record arrived) no operation is answered from a key's absence: a read
// that does not find its key, now or when its device read completes, and
// every operation that decides from the key's value, unless the store
// holds a record of the key written here since the migration began to
// accept the slot (heldFrom; the store decides, after a device read when
// it must: store.Update.Held), fail with errNotOwner as well (a native
// READ that does not find it at once is parked instead: parking.go), and
// the node is asked to fetch the key (fetchMissing), so that the client's
// retry finds it; blind writes go through (a record sent later does not
// replace them).

// errNotOwner is the gateway's refusal of a key whose slot the loop does
// not serve; l.notOwned holds the slot.
var errNotOwner = errors.New("server: the key's slot is not served here")

// serves reports whether the turn's routing serves h's slot, and records
// the slot for the front's reply when it does not.
func (l *loop) serves(h uint64) bool {
	s := keyhash.SlotOf(h)
	if l.rt.Serving.Has(s) {
		return true
	}
	_ = l.refuse(s)
	return false
}

// admits reports whether the turn's routing serves key's slot (serves),
// counts the operation in its slot (slotload.go), and samples the key
// where a migration's source samples it (sampling.go).
func (l *loop) admits(key []byte, h uint64) bool {
	if !l.serves(h) {
		return false
	}
	l.countSlot(keyhash.SlotOf(h))
	if l.rt.Sample != nil {
		l.sample(key, h)
	}
	return true
}

// missing reports whether h's slot is one of l.rt.Misses.
func (l *loop) missing(h uint64) bool {
	return l.rt.Misses != nil && l.rt.Misses.Has(keyhash.SlotOf(h))
}

// heldFrom returns the address from which the store must hold a record of
// a key (hash h) for an operation that decides from its value to run
// (store.Update.Held): 0 (anywhere) unless h's slot is one of l.rt.Misses,
// where it is the Since of the migration that accepts the slot. A record
// at or above it is the source's last (it writes the slot no more once the
// target serves it), a client's later write, or the deletion written when
// the source answered that it has none (migrate). ok is false where the
// slot is one of Misses without such a migration: the operation is
// refused (notHeld).
func (l *loop) heldFrom(h uint64) (held uint64, ok bool) {
	if l.rt.Misses == nil {
		return 0, true // in line: no migration is missing records here
	}
	return l.heldFromMisses(h)
}

// heldFromMisses is heldFrom where the turn's routing has Misses.
func (l *loop) heldFromMisses(h uint64) (held uint64, ok bool) {
	slot := keyhash.SlotOf(h)
	if !l.rt.Misses.Has(slot) {
		return 0, true
	}
	a, ok := l.acceptance(slot)
	return a.Since, ok && a.Since != 0
}

// notHeld refuses an operation on key (hash h) whose record may not have
// arrived yet (heldFrom, store.ErrNotHeld), and has the key fetched.
func (l *loop) notHeld(key []byte, h uint64) error {
	l.fetchMissing(key, h)
	return l.refuse(keyhash.SlotOf(h))
}

// mayMiss reports whether an operation that decides from key's value
// (hash h) would be refused at once because the store holds no record of
// the key from heldFrom on (store.Session.MayHoldSince; one it may hold
// on the device lets it through, and the operation decides), and has
// each such key fetched. It counts no refusal.
func (l *loop) mayMiss(key []byte, h uint64) bool {
	held, ok := l.heldFrom(h)
	if ok && held == 0 {
		return false
	}
	if ok {
		if may, err := l.ss.MayHoldSince(key, h, held); err == nil && may {
			return false
		}
	}
	l.fetchMissing(key, h)
	return true
}

// deletedHere reports whether dead, the address of a deleted or expired
// record a read met in slot (0: none), was written here since the
// migration that accepts the slot began to: newer than anything its
// source holds, so the read answers not found.
func (l *loop) deletedHere(slot uint16, dead uint64) bool {
	a, ok := l.acceptance(slot)
	return ok && a.Since != 0 && dead >= a.Since
}

// fetchMissing asks the node to fetch key (hash h) from the source of the
// migration that accepts its slot, for an operation refused because the
// key may not have arrived yet, unless the key was asked for less than a
// second ago (a client retrying a refused operation before the answer
// came). The first read parked on a key asks again however recently it
// was asked (parkMiss calls askFetch): only the answer to a fetch made
// after it parked reaches it.
func (l *loop) fetchMissing(key []byte, h uint64) {
	if at, ok := l.fetched[h]; ok && time.Since(at) < time.Second {
		return
	}
	l.askFetch(key, h)
}

// askFetch asks the node to fetch key (hash h) from the source of the
// migration that accepts its slot, and notes when (fetchMissing).
func (l *loop) askFetch(key []byte, h uint64) {
	a, ok := l.acceptance(keyhash.SlotOf(h))
	if l.s.cfg.OnParked == nil || !ok {
		return
	}
	if l.fetched == nil || len(l.fetched) >= maxFetched {
		l.fetched = map[uint64]time.Time{}
	}
	l.fetched[h] = time.Now()
	l.s.cfg.OnParked(a.ID, key)
}

// maxFetched bounds a loop's memory of the keys it asked to fetch.
const maxFetched = 4096

// read reads key into the loop's value buffer; the value is valid until the
// next read.
func (l *loop) read(key []byte, h uint64) (store.Status, []byte, error) {
	return l.readWith(key, h, false)
}

// readExpiring is read returning the value with its expiry in front of it
// (store.ReadExpiring).
func (l *loop) readExpiring(key []byte, h uint64) (store.Status, []byte, error) {
	return l.readWith(key, h, true)
}

func (l *loop) readWith(key []byte, h uint64, withAt bool) (store.Status, []byte, error) {
	l.missRead = false // a read of a slot not served is refused, never parked
	if !l.admits(key, h) {
		return 0, nil, errNotOwner
	}
	var st store.Status
	var err error
	var head uint64 // before the read: what is linked from now on is above it
	if l.rt.Misses != nil && l.rt.Misses.Has(keyhash.SlotOf(h)) {
		if head, err = l.ss.ChainHead(h); err != nil {
			return 0, nil, err
		}
	}
	if withAt {
		l.value, st, err = l.ss.ReadExpiring(key, h, l.value[:0])
	} else {
		l.value, st, err = l.ss.ReadHashed(key, h, l.value[:0])
	}
	if st != store.OK && err == nil && l.rt.Misses != nil {
		switch {
		case st == store.NotFound && l.missing(h):
			dead := l.ss.ReadMet()
			if l.deletedHere(keyhash.SlotOf(h), dead) {
				return st, l.value, nil
			}
			// Not counted yet, and l.notOwned not set: the caller parks
			// the read, answers it, or refuses it through l.refuse, which
			// records the slot (exec and respSteps, the only callers).
			l.missRead, l.missHead, l.missDead = true, head, dead
			l.missKey, l.missH, l.missWithAt = key, h, withAt
			return 0, nil, errNotOwner
		case st == store.Pending && l.rt.Misses.Has(keyhash.SlotOf(h)):
			l.awaitMiss = &missedRead{key: bytes.Clone(key), h: h, head: head, slot: keyhash.SlotOf(h), withAt: withAt}
		}
	}
	return st, l.value, err
}

func (l *loop) upsert(key []byte, h uint64, value []byte) (store.Status, error) {
	if !l.admits(key, h) {
		return 0, errNotOwner
	}
	return l.ss.UpsertHashed(key, h, value)
}

// upsertExpiring is upsert with an expiry (Unix milliseconds; 0: none).
func (l *loop) upsertExpiring(key []byte, h uint64, value []byte, at int64) (store.Status, error) {
	if !l.admits(key, h) {
		return 0, errNotOwner
	}
	return l.ss.UpsertExpiring(key, h, value, at)
}

// update runs a conditional operation; the value it wants lands in the
// loop's value buffer, valid until the next read or update.
// u is by reference: an Update does not fit in registers.
func (l *loop) update(key []byte, h uint64, u *store.Update) (store.Status, []byte, error) {
	if !l.admits(key, h) {
		return 0, nil, errNotOwner
	}
	return l.updateAdmitted(key, h, u)
}

// updateAdmitted is update of an operation admits took.
func (l *loop) updateAdmitted(key []byte, h uint64, u *store.Update) (store.Status, []byte, error) {
	var ok bool
	if u.Held, ok = l.heldFrom(h); !ok {
		return 0, nil, l.notHeld(key, h)
	}
	var st store.Status
	var err error
	l.value, st, err = l.ss.UpdateHashed(key, h, u, l.value[:0])
	return st, l.value, l.heldOutcome(key, h, u.Held, st, err)
}

// add is update of store.Update{Want: store.WantNew, Merge:
// store.Int64Add{}, Input: input} (ADD): store.RMWNewHashed where no
// migration holds the key back.
func (l *loop) add(key []byte, h uint64, input []byte) (store.Status, []byte, error) {
	if !l.admits(key, h) {
		return 0, nil, errNotOwner
	}
	if l.rt.Misses != nil { // heldFrom may hold it: the general path decides
		u := &l.addUpdate
		u.Input = input
		st, v, err := l.updateAdmitted(key, h, u)
		u.Input = nil // the batch's bytes, not kept past the operation
		return st, v, err
	}
	var st store.Status
	var err error
	l.value, st, err = l.ss.RMWNewHashed(key, h, input, store.Int64Add{}, l.value[:0])
	return st, l.value, err
}

func (l *loop) rmw(key []byte, h uint64, input []byte, m store.Merger) (store.Status, error) {
	if !l.admits(key, h) {
		return 0, errNotOwner
	}
	held, ok := l.heldFrom(h)
	if !ok {
		return 0, l.notHeld(key, h)
	}
	st, err := l.ss.RMWHeld(key, h, input, m, held)
	return st, l.heldOutcome(key, h, held, st, err)
}

// heldOutcome is the error of an operation run with store.Update.Held
// (held; 0: none) that ended with st and err: a refusal when the key has
// no record from held on. One that went pending notes its key for await,
// whose completion may still be refused so (completed).
func (l *loop) heldOutcome(key []byte, h, held uint64, st store.Status, err error) error {
	if held == 0 {
		return err // in line: the common case costs no call
	}
	return l.heldRefusal(key, h, held, st, err)
}

// heldRefusal is heldOutcome where held is not 0.
func (l *loop) heldRefusal(key []byte, h, held uint64, st store.Status, err error) error {
	switch {
	case err == store.ErrNotHeld:
		return l.notHeld(key, h)
	case err == nil && st == store.Pending:
		l.awaitMiss = &missedRead{key: bytes.Clone(key), h: h, slot: keyhash.SlotOf(h), held: true}
	}
	return err
}

// errBadMigrate refuses a MIGRATE whose value cannot be parsed.
var errBadMigrate = errors.New("server: MIGRATE value is not id u64 | kind u8 | value")

// migrate stores a record a migration sent (wire.OpMigrate) when the turn's
// routing accepts that migration's records for the key's slot
// (Routing.Accept): a moved record unless the key has one written since
// the target prepared, a shipped-back record or deletion as it comes; a
// key the source holds no record of is deleted, again unless it has a
// record written since, and the reads parked for it answer not found
// (absent). A fetch reads the key for the migration's target where the
// routing lends the slot (Routing.Lend); its value, with its expiry in
// front of it (store.ReadExpiring), or where the shared tier has it
// (lend.go), lands in the loop's value buffer.
func (l *loop) migrate(key []byte, h uint64, v []byte) (store.Status, []byte, error) {
	id, kind, at, value, ok := wire.ParseMigrateValue(v)
	if !ok {
		return 0, nil, errBadMigrate
	}
	slot := keyhash.SlotOf(h)
	if kind == wire.MigrateFetch {
		if _, ok := findAccepting(l.rt.Lend, cluster.MigrationID(id), slot); !ok {
			return 0, nil, l.refuse(slot)
		}
		return l.fetch(cluster.MigrationID(id), key, h)
	}
	return l.migrated(cluster.MigrationID(id), kind, key, h, at, value)
}

// migrated stores a record migration id sent for key (hash h), as
// migrate describes: kind says what the source has of the key (a moved
// record, a shipped-back one, a deletion, or nothing), value and at are
// the record's value and expiry.
func (l *loop) migrated(id cluster.MigrationID, kind wire.MigrateKind, key []byte, h uint64, at int64, value []byte) (store.Status, []byte, error) {
	slot := keyhash.SlotOf(h)
	a, ok := findAccepting(l.rt.Accept, id, slot)
	if !ok {
		return 0, nil, l.refuse(slot)
	}
	var u store.Update
	switch kind {
	case wire.MigrateMoved:
		u = store.Update{If: store.IfNoneSince, Since: a.Since, Merge: store.Replace{}, Input: value, Expire: store.ExpiryOf(at)}
	case wire.MigrateShipped:
		st, err := l.ss.UpsertExpiring(key, h, value, at)
		return st, nil, err
	case wire.MigrateAbsent:
		return l.absent(key, h, a.Since)
	default:
		u = store.Update{If: store.Remove}
	}
	var st store.Status
	var err error
	l.value, st, err = l.ss.UpdateHashed(key, h, &u, l.value[:0])
	if kind == wire.MigrateMoved && err == nil {
		// Whether inserted or not: parking.go. A value that expired on
		// the way reads as absent (the clock is read only for a value
		// with an expiry: a read per record was 7 % of a target's time).
		live := at == 0 || !store.Expired(at, l.s.st.Now())
		l.announce(key, h, value, at, live)
	}
	return st, nil, err
}

// absent takes a migration source's answer that it holds no record of key
// (hash h): a deletion from since on, unless the key has a record there.
// The source writes the slot no more, so an operation that decides from
// the key's value may run here from now on (heldFrom), and a read answers
// not found (deletedHere). The reads parked for the key answer not found,
// whatever the deletion did.
func (l *loop) absent(key []byte, h, since uint64) (store.Status, []byte, error) {
	var st store.Status
	var err error
	if since != 0 { // 0: not known, and nothing is written
		l.value, st, err = l.ss.UpdateHashed(key, h, &store.Update{If: store.DeleteIfNoneSince, Since: since}, l.value[:0])
	}
	l.announce(key, h, nil, 0, false)
	return st, nil, err
}

// refuse records an operation refused NOT_OWNER for slot: the slot for
// the front's reply (l.notOwned), and the refusal in not_owner_ops. Every
// refusal of the gateway, the parked reads and their completions goes
// through it.
func (l *loop) refuse(slot uint16) error {
	l.notOwned = slot
	l.stats.notOwner.Add(1)
	return errNotOwner
}

// fenceSlot refuses cs's later operations on slot until its client
// re-routes (conn.fence).
func (cs *conn) fenceSlot(slot uint16) {
	if cs.fence == nil {
		cs.fence = &cluster.SlotSet{}
	}
	cs.fence.Add(cluster.Range{First: slot, Last: slot})
}

// findAccepting returns the entry of as for migration id and slot.
func findAccepting(as []cluster.Accepting, id cluster.MigrationID, slot uint16) (cluster.Accepting, bool) {
	for _, a := range as {
		if a.ID == id && a.Slots.Has(slot) {
			return a, true
		}
	}
	return cluster.Accepting{}, false
}

// acceptance returns the acceptance of the migration whose records the
// turn's routing takes for slot.
func (l *loop) acceptance(slot uint16) (cluster.Accepting, bool) {
	for _, a := range l.rt.Accept {
		if a.Slots.Has(slot) {
			return a, true
		}
	}
	return cluster.Accepting{}, false
}

// pendingKind says which front waits for a pending store operation.
type pendingKind uint8

const (
	pendingNative   pendingKind = iota + 1 // a native connection's operation (c, serial)
	pendingRESP                            // a RESP connection's running command (r)
	pendingRESPHole                        // a read reply of a RESP connection that goes on meanwhile (r, hole)
)

// pendingRef names the client operation a pending store operation answers.
type pendingRef struct {
	kind   pendingKind
	op     wire.Op // a native operation's code
	c      *conn
	serial uint64
	r      *respConn
	hole   *respHole
	// miss: an operation in a slot of Routing.Misses (nil: none): a read
	// that does not find its key is parked (native: repark) or fails with
	// errNotOwner (for its slot), and so does a held one the store refuses.
	miss *missedRead
	// at is when the turn that issued it started (Server.clock): its wait
	// counts as the foreground's. 0 when admission control is off, or when
	// a peer's connection issued it (conn.peer): completed records nothing.
	at time.Duration
}

// missedRead is a pending operation on a key (hash h) of a slot of
// Routing.Misses: a read that went to the device and may not find its key,
// with its chain's head before it was issued (store.Session.ChainHead: a
// record above it came since), or, held, an operation that decides from
// the key's value and may find no record from heldFrom on
// (store.ErrNotHeld).
type missedRead struct {
	key    []byte
	h      uint64
	head   uint64
	slot   uint16
	held   bool
	withAt bool // a read that wanted the expiry too (readExpiring)
}

// await registers ref as waiting for the store operation the gateway just
// answered Pending. Every front calls it right after that answer, before
// any other gateway call: l.awaitMiss, set by that read, is meant for this
// ref alone.
func (l *loop) await(ref pendingRef) {
	if l.awaitMiss != nil {
		ref.miss, l.awaitMiss = l.awaitMiss, nil
	}
	if ref.c == nil || !ref.c.peer {
		ref.at = l.turnAt // a peer's wait is not the foreground's (conn.peer)
	}
	l.pending[l.ss.Serial()] = ref
	l.stats.pending.Add(1)
	l.issued++ // the native turn running counts it (turnReads)
}

// failure is a store error as both fronts report it: the native result
// code and the RESP error line.
type failure struct {
	code wire.Code
	msg  string
}

// classify maps an error of the gateway to what the fronts report. A RESP
// reply for errNotOwner is MOVED, built from the routing (respNotOwner).
func classify(err error) failure {
	switch {
	case errors.Is(err, errNotOwner):
		return failure{wire.CodeNotOwner, "ERR the key's slot is not served here"}
	case errors.Is(err, store.ErrNotInt64):
		return failure{wire.CodeNotInt64, "ERR value is not an 8-byte integer"}
	case errors.Is(err, store.ErrRecordTooLarge):
		return failure{wire.CodeRecordTooBig, "ERR value too large"}
	case errors.Is(err, store.ErrKeyTooLarge):
		return failure{wire.CodeTooLarge, "ERR key too large"}
	case errors.Is(err, store.ErrEmptyKey):
		return failure{wire.CodeBadArgument, "ERR empty key"}
	case errors.Is(err, errBadMigrate):
		return failure{wire.CodeBadArgument, "ERR " + err.Error()}
	case errors.Is(err, syscall.ENOSPC):
		return failure{wire.CodeNoSpace, "ERR device full: writes fail until space is freed"}
	case errors.Is(err, store.ErrCorrupt):
		return failure{wire.CodeCorrupt, "ERR record failed its check on the device: " + err.Error()}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) || errors.Is(err, hlog.ErrFlush) || errors.Is(err, io.ErrUnexpectedEOF) {
		return failure{wire.CodeIO, "ERR device I/O error: " + err.Error()}
	}
	return failure{wire.CodeInternal, "ERR internal error: " + err.Error()}
}
