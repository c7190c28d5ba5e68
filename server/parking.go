package server

import (
	"bytes"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/wire"
)

// Parked reads: on a migration's target, a native READ of a key it lacks in
// a slot whose records may not all have arrived (Routing.Misses) is not
// refused but parked, answered PENDING, and completed when the answer is
// known:
//   - the key's record arrives (a MIGRATE of this migration): the read
//     answers that record's value, whatever the insert did (a newer write
//     keeps the key; the read, parked before it, is answered as before it);
//   - the slot leaves Misses (the source said every record was sent): the
//     source had no record of the key, the read answers NOT_FOUND; or the
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

// parkTimeout bounds how long a read stays parked.
const parkTimeout = 10 * time.Second

// parkedRead is one parked read.
type parkedRead struct {
	c      *conn
	serial uint64
	key    []byte
	slot   uint16
	at     time.Time
}

// parking is a loop's parked reads, by key hash.
type parking struct {
	byHash map[uint64][]parkedRead
	n      int
	rt     *cluster.Routing // the routing the parked reads were last checked against
	swept  time.Time
}

// park parks cs's read of key (hash h) with serial; false when the loop
// holds as many as it may.
func (l *loop) park(cs *conn, serial uint64, key []byte, h uint64) bool {
	p := &l.parked
	if p.n >= l.s.cfg.MaxParked {
		return false
	}
	if p.byHash == nil {
		p.byHash = map[uint64][]parkedRead{}
	}
	if p.n == 0 {
		p.rt, p.swept = l.rt, time.Now()
	}
	p.byHash[h] = append(p.byHash[h], parkedRead{c: cs, serial: serial, key: bytes.Clone(key), slot: keyhash.SlotOf(h), at: time.Now()})
	p.n++
	cs.sess.AddPending(serial)
	l.stats.parked.Add(1)
	l.stats.parks.Add(1)
	return true
}

// arrived completes the reads parked on key (hash h) with the value a
// migration sent for it.
func (l *loop) arrived(key []byte, h uint64, value []byte) {
	p := &l.parked
	rs := p.byHash[h]
	if len(rs) == 0 {
		return
	}
	kept := rs[:0]
	for _, r := range rs {
		if bytes.Equal(r.key, key) {
			l.unpark(r, wire.StatusOK, value, 0)
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
			case r.c.closed:
				l.unpark(r, 0, nil, 0)
			case l.rt.Serving.Has(r.slot) && (l.rt.Misses == nil || !l.rt.Misses.Has(r.slot)):
				l.unpark(r, wire.StatusNotFound, nil, 0)
			case !l.rt.Serving.Has(r.slot) || now.Sub(r.at) > parkTimeout:
				r.c.fenceSlot(r.slot) // the client re-issues it before later operations on the slot
				l.notOwned = r.slot
				l.stats.notOwner.Add(1)
				l.unpark(r, wire.StatusError, nil, wire.CodeNotOwner)
			default:
				kept = append(kept, r)
			}
		}
		l.keepParked(h, kept)
	}
	l.flushDirty()
}

func (l *loop) keepParked(h uint64, kept []parkedRead) {
	if len(kept) == 0 {
		delete(l.parked.byHash, h)
		return
	}
	l.parked.byHash[h] = kept
}

// unpark completes a parked read with its answer (to a closed connection:
// nothing, and its session is gone with its last pending operation).
func (l *loop) unpark(r parkedRead, st wire.Status, value []byte, code wire.Code) {
	l.parked.n--
	l.stats.parked.Add(^uint64(0))
	c := r.c
	if c.closed {
		if c.sess.Forget(r.serial) == 0 {
			delete(l.closing, c)
			l.sessionGone(c)
		}
		return
	}
	c.sess.Complete(r.serial, st, value, code)
	if !c.dirty {
		c.dirty = true
		l.dirty = append(l.dirty, c)
	}
}
