package server

import (
	"context"
	"errors"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/wire"
)

// Delivering fetched records: the node fetches from a migration's source
// the keys that reads parked on (parking.go) and hands the answers to the
// loops in process (Deliver), not over a session of its own to this
// server's port. Each record goes to a loop that parks reads on its key,
// which stores it as a MIGRATE of it would (migrated) and answers them
// there; a record no read waits for any more goes to the loop its hash
// picks. Over loopback, every batch of fetched records was encoded,
// written, read, decoded and answered, and the node waited for the answers
// before it fetched the next keys: 5-25 ms a batch in bench-elastic's add,
// against 1-4 ms for the source's answers (BENCHMARKS.md).

// Delivered is a migration's answer for a key, fetched from its source:
// the key's record (Kind wire.MigrateMoved: Value, and its expiry At, 0
// for none) or its absence (wire.MigrateAbsent).
type Delivered struct {
	ID    cluster.MigrationID
	Kind  wire.MigrateKind
	Key   []byte
	At    int64
	Value []byte
}

// errNotServing is Deliver's answer when the server has no loop to take
// the records.
var errNotServing = errors.New("server: no event loop takes the records (not started, or stopping)")

// errDeliveredKind refuses a record that is neither a moved record nor an
// absence.
var errDeliveredKind = errors.New("server: a delivered record is a moved record or an absence")

// Deliver hands recs to the loops, and returns a channel that is closed
// once every loop took its share, and the records are no longer
// referenced (at once when it fails: none was handed over, or, where
// some loop could not take its share, once the others took theirs). The
// caller must not change recs before then. A record whose
// migration the loop's routing does not accept for its slot is dropped
// (refused, as a MIGRATE of it would be); one whose insert must read the
// device completes on its own.
func (s *Server) Deliver(recs []Delivered) (<-chan struct{}, error) {
	for i := range recs {
		if k := recs[i].Kind; k != wire.MigrateMoved && k != wire.MigrateAbsent {
			return closedChan(), errDeliveredKind
		}
	}
	s.mu.Lock()
	loops := append([]*loop(nil), s.mu.list...)
	s.mu.Unlock()
	if len(loops) == 0 {
		return closedChan(), errNotServing
	}
	shares := make([][]delivery, len(loops))
	for i := range recs {
		d := delivery{rec: &recs[i], h: keyhash.Hash(recs[i].Key)}
		j := s.deliverTo(d.h, loops)
		shares[j] = append(shares[j], d)
	}
	done := make(chan struct{})
	left := 0
	for _, sh := range shares {
		if len(sh) > 0 {
			left++
		}
	}
	finished := make(chan struct{}, left)
	var failed error
	for i, sh := range shares {
		if len(sh) == 0 {
			continue
		}
		l := loops[i]
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.deliver(sh)
			finished <- struct{}{}
			return nil
		}))
		if err != nil {
			failed = err
			left--
		}
	}
	go func() {
		for range left {
			<-finished
		}
		close(done)
	}()
	return done, failed
}

// delivery is a record for a loop, with its key's hash.
type delivery struct {
	rec *Delivered
	h   uint64
}

// deliverTo returns the index in loops of the loop to hand a record of
// hash h: one that parks reads on it, else the one h picks.
func (s *Server) deliverTo(h uint64, loops []*loop) int {
	r := &s.parkedOn
	if r.mayList(h) {
		r.mu.Lock()
		listed := r.m[h]
		r.mu.Unlock()
		for _, pl := range listed {
			for i, l := range loops {
				if l == pl {
					return i
				}
			}
		}
	}
	return int(h % uint64(len(loops)))
}

// deliver stores the records handed to the loop, on the loop, and answers
// the reads parked on their keys; inserts that must read the device
// complete on their own (no one waits for them: completed ignores them).
func (l *loop) deliver(ds []delivery) {
	l.turn()
	for _, d := range ds {
		r := d.rec
		_, _, _ = l.migrated(r.ID, r.Kind, r.Key, d.h, r.At, r.Value)
	}
	l.flushDirty()
	l.ss.Suspend()
	l.resumeStalled()
	l.schedulePoll()
}
