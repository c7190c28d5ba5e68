package server

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// Parked reads: on a migration's target, a native READ of a key it lacks
// in a slot whose records may not all have arrived (Routing.Misses) is not
// refused but parked, answered PENDING, and completed when the answer is
// known. So is a RESP read step: one that has a hole's fill (GET, each key
// of MGET, STRLEN, TYPE: resp_holes.go) becomes a hole that the answer
// fills, and the connection goes on meanwhile; another (each key of
// EXISTS) holds its connection until the answer, as a step waiting for the
// device does (respWait), and so does a read that wants the expiry too
// (TTL and its kin: parkedRead.withAt; the record's expiry comes with it,
// announce). A read is parked whether memory told it the key is not here,
// or a device read (repark) did, unless a record of the key was linked
// since the read was issued (it is refused then, and the client re-issues
// it), or the read met a deletion or expiry written here since the
// migration began to accept the slot (it answers NOT_FOUND: parkMiss).
// Once parked:
//   - the key's record arrives (a MIGRATE of this migration: sent by the
//     source's move, or fetched from the source by the node, which
//     Config.OnParked tells of the key when the first read parks on it:
//     askFetch): the read
//     answers that record's value, whatever the insert did (a newer write
//     keeps the key; the read, parked before it, is answered as before
//     it), or NOT_FOUND when the source has no record of the key;
//   - the slot leaves Misses (the source said every record was sent): the
//     source had no record of the key, the read answers NOT_FOUND, unless
//     an indirection table covers the key (store/indirect.go: the move
//     left it in the source's log): the read goes to the store then,
//     through the table alone (store.ReadCovered: the source's value, as
//     of when the read was parked), and completes like any read of the
//     device (readCovered); when the store holds a record of the key
//     written since the table's Since (here, or sent by the move after
//     the read parked), it is refused NOT_OWNER instead, and the client
//     re-issues it when it sent no write on the slot after it
//     (client.Cluster.refusedLate; it fails otherwise); or the
//     slot is no longer served (a cancel): NOT_OWNER, and the client
//     re-routes it;
//   - it waited parkTimeout, or the connection closed: NOT_OWNER, or
//     nothing.
//
// A parked read answers as of when it was parked, so a later operation of
// its connection on the key may run before it without changing what it
// answers: the connection's order holds. Reads are all that is parked, so
// parking changes no CPR point or resumed session's serial. The loop holds
// at most Config.MaxParked of them; more are refused as before.

// A migration's records reach the loop of its session's connection, not
// necessarily the loop that parked a read of the key: parkedRegistry tells
// that loop which others park reads on the key, and it hands them the
// record (announce).

// parkedRegistry lists, by key hash, the loops that park reads on it.
type parkedRegistry struct {
	n  atomic.Int64 // hashes listed: announce looks only when not 0
	mu sync.Mutex
	m  map[uint64][]*loop
	// listed counts the hashes listed by their low bits (listedAt): an
	// announcement of a hash whose count is 0 has no loop to hand its
	// record to, and skips the lock and the maps. A move announces every
	// record it inserts, and while any read was parked the lock and two
	// map lookups were a fifth of the target loop's time.
	listed [1 << 14]atomic.Int32
}

func listedAt(h uint64) int { return int(h & (1<<14 - 1)) }

// mayList reports whether a loop may park reads on h. It is maintained
// with n, under mu, before the loop looks for the key's newer records
// (parkMiss): an insert announced after it (gateway.go's migrate) either
// is found by that look or finds the count.
func (r *parkedRegistry) mayList(h uint64) bool {
	return r.n.Load() != 0 && r.listed[listedAt(h)].Load() != 0
}

func (r *parkedRegistry) add(h uint64, l *loop) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[uint64][]*loop{}
	}
	if len(r.m[h]) == 0 {
		r.n.Add(1)
		r.listed[listedAt(h)].Add(1)
	}
	r.m[h] = append(r.m[h], l)
}

func (r *parkedRegistry) remove(h uint64, l *loop) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ls := slices.DeleteFunc(r.m[h], func(x *loop) bool { return x == l })
	if len(ls) > 0 {
		r.m[h] = ls
		return
	}
	if _, ok := r.m[h]; ok {
		delete(r.m, h)
		r.n.Add(-1)
		r.listed[listedAt(h)].Add(-1)
	}
}

// announce hands the record a migration sent for key (found: a value and
// its expiry at, 0 for none; or none at the source) to every loop that
// parks reads on it: this one at once, the others through their task
// queues.
func (l *loop) announce(key []byte, h uint64, value []byte, at int64, found bool) {
	r := &l.s.parkedOn
	if !r.mayList(h) {
		return
	}
	r.mu.Lock()
	listed := r.m[h]
	mine := slices.Contains(listed, l) // this loop parks reads on h (parking)
	var others []*loop                 // a copy only when there are others
	if n := len(listed); n > 1 || n == 1 && !mine {
		others = slices.DeleteFunc(slices.Clone(listed), func(x *loop) bool { return x == l })
	}
	r.mu.Unlock()
	if mine {
		l.arrived(key, h, value, at, found)
	}
	if len(others) > 0 {
		handOver(others, bytes.Clone(key), h, bytes.Clone(value), at, found)
	}
}

// handOver hands other loops the record announce found them parking on
// (key and value: copies the loops may keep). Apart from announce, so
// that the closures' captures cost a call with no other loop nothing.
func handOver(others []*loop, key []byte, h uint64, value []byte, at int64, found bool) {
	for _, o := range others {
		_ = o.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			o.arrived(key, h, value, at, found)
			o.flushDirty()
			return nil
		}))
	}
}

// parkTimeout bounds how long a read stays parked.
const parkTimeout = 10 * time.Second

// parkedRead is one parked read: a native connection's operation (c,
// serial) or a RESP connection's read step (r, and hole once parked; or
// wait: the connection waits for it; withAt: it wants the value with its
// expiry in front, as store.ReadExpiring answers).
type parkedRead struct {
	c      *conn
	serial uint64
	r      *respConn
	hole   *respHole
	wait   bool
	withAt bool
	key    []byte
	slot   uint16
	at     time.Time
}

// closed reports whether the read's connection closed.
func (p parkedRead) closed() bool {
	if p.r != nil {
		return p.r.closed
	}
	return p.c.closed
}

// parking is a loop's parked reads, by key hash.
// Invariant: the loop is listed on h in the server's parkedRegistry exactly
// while byHash holds reads for h: parkMiss lists it before the first, and
// keepParked removes it with the last. announce relies on it to hand a
// record only to the loops that park on its key.
type parking struct {
	byHash map[uint64][]parkedRead
	n      int
	rt     *cluster.Routing // the routing the parked reads were last checked against
	swept  time.Time
}

// missAnswer is what becomes of a read of a slot of Routing.Misses that
// found no live record of its key (parkMiss).
type missAnswer uint8

const (
	missRefused missAnswer = iota // NOT_OWNER: the client re-issues it
	missParked                    // parked until the key's record arrives
	missAbsent                    // NOT_FOUND: a deletion or expiry written here decided it
)

// parkMiss decides the read pr (its connection's part: parkedRead) of key
// (hash h), which found no live record here. head is the key's chain head
// before the read was issued (store.Session.ChainHead), dead the address
// of the deleted or expired record of the key the read met
// (store.Session.ReadMet, store.Completion.Found; 0: it met none). The
// read is
//   - refused when a record of the key may have been linked since it was
//     issued (above head: the move's or a fetch's insert, a client's
//     write): the client re-issues it and finds that record;
//   - answered NOT_FOUND when the record it met was written here since
//     the migration began to accept the slot (Accepting.Since): a deletion
//     or an expiry written by a client after the handover is newer than
//     anything the source holds;
//   - parked otherwise (it met nothing, or garbage of an earlier
//     ownership below Since), or refused when the loop holds all it may,
//     or when it met a record and no migration accepts the slot.
//
// The caller counts a parked native read pending in its session; a parked
// RESP read's reply becomes a hole here, unless it has one already (its
// device read's), or its connection waits for it (pr.wait).
//
// The loop lists itself as parking on h before it looks for newer records,
// and a migration's insert announces after it inserts (gateway.go's
// migrate): either the look finds the insert, or the announcement finds
// the loop.
func (l *loop) parkMiss(pr parkedRead, key []byte, h, head, dead uint64) missAnswer {
	p := &l.parked
	first := len(p.byHash[h]) == 0
	if first {
		l.s.parkedOn.add(h, l)
	}
	answer := l.judgeMiss(key, h, head, dead)
	if answer == missParked && p.n >= l.s.cfg.MaxParked {
		answer = missRefused
	}
	if answer != missParked {
		if first {
			l.s.parkedOn.remove(h, l)
		}
		return answer
	}
	if p.byHash == nil {
		p.byHash = map[uint64][]parkedRead{}
	}
	if p.n == 0 {
		p.rt, p.swept = l.rt, time.Now()
	}
	if first {
		l.askFetch(key, h) // the node fetches it from the source
	}
	switch {
	case pr.r != nil && pr.wait && !pr.r.waiting:
		l.respHold(pr.r)
	case pr.r != nil && !pr.wait && pr.hole == nil:
		pr.hole = l.addHole(pr.r)
	}
	pr.key, pr.slot, pr.at = bytes.Clone(key), keyhash.SlotOf(h), time.Now()
	p.byHash[h] = append(p.byHash[h], pr)
	p.n++
	l.stats.parked.Add(1)
	l.stats.parks.Add(1)
	return missParked
}

// judgeMiss is parkMiss's decision: from what memory holds of key now
// (anything linked above head came after the read) and from what the read
// met (dead).
func (l *loop) judgeMiss(key []byte, h, head, dead uint64) missAnswer {
	addr, err := l.ss.Newest(key, h)
	if err != nil || addr > head {
		return missRefused // linked since the read, or its chain leaves memory above where the read began
	}
	if dead == 0 {
		return missParked // the key has no record here
	}
	since, ok := l.acceptedSince(keyhash.SlotOf(h))
	switch {
	case !ok:
		return missRefused // no migration says which records are garbage
	case dead >= since:
		return missAbsent
	}
	return missParked // garbage of an earlier ownership (Prepare's drop)
}

// acceptedSince is where the migration that accepts slot began to accept
// it: records from there on were written here since; !ok when none
// accepts it.
func (l *loop) acceptedSince(slot uint16) (uint64, bool) {
	for _, a := range l.rt.Accept {
		if a.Slots.Has(slot) {
			return a.Since, true
		}
	}
	return 0, false
}

// repark decides a native read, or a RESP read step (with a hole, or with
// its connection waiting), that went to the device for a key of a slot of
// Routing.Misses and met no live record there (ref.miss; dead, the record
// it met, if any) as parkMiss does, where it used to be refused: under a
// flat-out move most chains of a target's buckets reach its device, and
// refused reads came back, went to the device and were refused again until
// the move reached their keys (BENCHMARKS.md). The slot must still be one
// of Misses; a native read's session counts it pending already, and a RESP
// read keeps its hole or its wait.
func (l *loop) repark(ref pendingRef, dead uint64) missAnswer {
	m := ref.miss
	var pr parkedRead
	switch {
	case ref.kind == pendingNative && !ref.c.closed:
		pr = parkedRead{c: ref.c, serial: ref.serial}
	case ref.kind == pendingRESPHole && !ref.r.closed:
		pr = parkedRead{r: ref.r, hole: ref.hole}
	case ref.kind == pendingRESP && !ref.r.closed:
		pr = parkedRead{r: ref.r, wait: true, withAt: m.withAt} // waiting since its device read
	default:
		return missRefused
	}
	if l.rt.Misses == nil || !l.rt.Misses.Has(m.slot) || !l.rt.Serving.Has(m.slot) {
		return missRefused
	}
	answer := l.parkMiss(pr, m.key, m.h, m.head, dead)
	if answer == missParked {
		l.stats.reparks.Add(1)
	}
	return answer
}

// arrived completes the reads parked on key (hash h) with the value a
// migration sent for it and its expiry at; !found: the source has no
// record of the key.
func (l *loop) arrived(key []byte, h uint64, value []byte, at int64, found bool) {
	p := &l.parked
	rs := p.byHash[h]
	if len(rs) == 0 {
		return
	}
	kept := rs[:0]
	for _, r := range rs {
		if bytes.Equal(r.key, key) {
			if !found {
				l.unpark(r, wire.StatusNotFound, nil, 0, 0)
			} else {
				l.unpark(r, wire.StatusOK, value, at, 0)
			}
			continue
		}
		kept = append(kept, r)
	}
	l.keepParked(h, kept)
}

// sweepParked answers the parked reads whose slot left Misses under the
// turn's routing, and those parked too long. It looks only when the
// routing changed or a second passed.
func (l *loop) sweepParked() {
	p := &l.parked
	now := time.Now()
	if p.n == 0 || p.rt == l.rt && now.Sub(p.swept) < time.Second {
		return
	}
	p.rt, p.swept = l.rt, now
	for h, rs := range p.byHash {
		kept := rs[:0]
		for _, r := range rs {
			switch {
			case r.closed():
				l.unpark(r, 0, nil, 0, 0)
			case l.rt.Serving.Has(r.slot) && (l.rt.Misses == nil || !l.rt.Misses.Has(r.slot)) && !l.s.st.Covered(h):
				l.unpark(r, wire.StatusNotFound, nil, 0, 0)
			case l.rt.Serving.Has(r.slot) && (l.rt.Misses == nil || !l.rt.Misses.Has(r.slot)) && l.readCovered(r, h):
				// covered: it reads where the table leads
			case !l.rt.Serving.Has(r.slot) || now.Sub(r.at) > parkTimeout ||
				l.rt.Misses == nil || !l.rt.Misses.Has(r.slot): // covered: re-issued, see above
				if r.c != nil {
					r.c.fenceSlot(r.slot) // the client re-issues it before later operations on the slot
				}
				_ = l.refuse(r.slot) // a RESP reply names the slot: TRYAGAIN, MOVED or CLUSTERDOWN
				l.unpark(r, wire.StatusError, nil, 0, wire.CodeNotOwner)
			default:
				kept = append(kept, r)
			}
		}
		l.keepParked(h, kept)
	}
	l.flushDirty()
}

// readCovered turns parked read r, whose slot left Misses with the key
// covered by an indirection table (the move left the key in the source's
// log), into a store read through the table alone (store.ReadCovered):
// the source's value of the key, as of when the read was parked, whatever
// was written here since, so the connection's order holds. False when the
// store did not take it (the table went meanwhile): it is refused then.
func (l *loop) readCovered(r parkedRead, h uint64) bool {
	st, err := l.ss.ReadCovered(r.key, h, r.withAt)
	if err != nil || st != store.Pending {
		return false
	}
	l.parkEnded(r)
	l.stats.parkedCovered.Add(1)
	switch {
	case r.r != nil && r.wait:
		l.await(pendingRef{kind: pendingRESP, r: r.r})
		return true
	case r.r != nil:
		l.await(pendingRef{kind: pendingRESPHole, r: r.r, hole: r.hole})
		return true
	}
	// The connection counted it pending when it was parked.
	l.await(pendingRef{kind: pendingNative, c: r.c, serial: r.serial, op: wire.OpRead})
	return true
}

func (l *loop) keepParked(h uint64, kept []parkedRead) {
	if len(kept) == 0 {
		delete(l.parked.byHash, h)
		l.s.parkedOn.remove(h, l)
		return
	}
	l.parked.byHash[h] = kept
}

// unpark completes a parked read with its answer (to a closed connection:
// nothing, and a native one's session is gone with its last pending
// operation). A RESP read's hole is filled, or its waiting command goes
// on, as after its store read: st OK with value (and its expiry at, in
// front of it when the read wants it), NOT_FOUND, or an error, which is
// NOT_OWNER for the slot l.refuse recorded last.
func (l *loop) unpark(r parkedRead, st wire.Status, value []byte, at int64, code wire.Code) {
	l.parkEnded(r)
	if r.r == nil {
		l.completeAside(r.c, r.serial, st, value, code)
		return
	}
	c := store.Completion{Status: store.NotFound}
	switch {
	case st == wire.StatusOK && r.withAt:
		c = store.Completion{Status: store.OK, Value: store.AppendExpiring(nil, at, value)} // rare: a migration's reads alone
	case st == wire.StatusOK:
		c = store.Completion{Status: store.OK, Value: value}
	case st == wire.StatusError:
		c = store.Completion{Err: errNotOwner}
	}
	if r.wait {
		l.respCompleted(r.r, c)
		return
	}
	l.respHoleCompleted(r.r, r.hole, c)
}

// parkEnded counts r out of the parked reads, and its wait into the
// loop's parkWaits.
func (l *loop) parkEnded(r parkedRead) {
	l.parked.n--
	l.stats.parked.Add(^uint64(0))
	l.stats.parkWaits.observe(time.Since(r.at))
}

// completeAside completes c's pending operation serial, which waited for
// something other than the store (a parked read, a SCAN's walk); to a
// closed connection nothing is sent, and its session is gone with its last
// pending operation. The answer goes out with the loop's dirty
// connections.
func (l *loop) completeAside(c *conn, serial uint64, st wire.Status, value []byte, code wire.Code) {
	if c.closed {
		if c.sess.Forget(serial) == 0 {
			delete(l.closing, c)
			l.sessionGone(c)
		}
		return
	}
	c.sess.Complete(serial, st, value, code)
	if !c.dirty {
		c.dirty = true
		l.dirty = append(l.dirty, c)
	}
}
