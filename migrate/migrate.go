// Package migrate runs the data tasks of a live migration
// (cluster.Migrator's tasks) against a store: dropping the records of slot
// ranges, and sending them to the peer as MIGRATE operations over a native
// session. The node runs them off the loops; they block for I/O.
//
// Both work through a range a slot group at a time (the up to 256 slots
// of it that share the index's buckets, keyhash and docs/cluster.md): each
// bucket is walked once, and what they hold at once is one group's keys of
// the range, not the range's.
package migrate

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/fleetkv/fleetkv/admit"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// groupSlots is the number of slots that share their index buckets.
const groupSlots = 256

// record is one key's newest record, copied out of a Scan.
type record struct {
	key, value []byte
	at         int64 // the value's expiry, 0: none
	live       bool  // false: deleted or expired
	addr       uint64
	// off, kl, vl: where key and value start in their share's copy, and
	// their lengths, while eachChunkOf collects them.
	off, kl, vl int
}

// scanner scans the keys of hashes [lo, hi]: store.Scan, or ScanCut.
type scanner func(ctx context.Context, lo, hi uint64, fn store.ScanFunc) error

// eachChunk calls fn with the records of ranges, a slot group's share at a
// time, in hash order; the slice is reused between calls.
func eachChunk(ctx context.Context, st *store.Store, ranges []cluster.Range, fn func([]record) error) error {
	return eachChunkOf(ctx, st.Scan, ranges, fn, nil)
}

// eachChunkOf is eachChunk over what scan finds; done (when set) is told
// of the slots of each share once fn took its records. The records' keys
// and values are copies in one buffer per share (reused, as the slice is):
// fn must copy what it keeps, as the store and the client do.
func eachChunkOf(ctx context.Context, scan scanner, ranges []cluster.Range, fn func([]record) error, done func(slots int)) error {
	var buf []record
	var copies []byte
	for _, r := range ranges {
		for first := int(r.First); first <= int(r.Last); first = (first/groupSlots + 1) * groupSlots {
			last := min(int(r.Last), (first/groupSlots+1)*groupSlots-1)
			buf, copies = buf[:0], copies[:0]
			err := scan(ctx, keyhash.FirstHash(uint16(first)), keyhash.LastHash(uint16(last)), func(key, value []byte, at int64, live bool, addr uint64) error {
				// Slices of copies are taken once it stops growing.
				buf = append(buf, record{at: at, live: live, addr: addr, off: len(copies), kl: len(key), vl: len(value)})
				copies = append(append(copies, key...), value...)
				return nil
			})
			if err != nil {
				return err
			}
			for i := range buf {
				r := &buf[i]
				k, v := r.off+r.kl, r.off+r.kl+r.vl
				r.key, r.value = copies[r.off:k:k], copies[k:v:v]
			}
			if len(buf) > 0 {
				if err := fn(buf); err != nil {
					return err
				}
			}
			if done != nil {
				done(last - first + 1)
			}
		}
	}
	return nil
}

// Progress is told of a data task's progress: records sent and answered,
// and slots whose every record was (each once). It may hold the task back
// (a throttle).
type Progress func(records, slots int)

// Drop deletes every key of ranges from st, live or expired (the garbage
// a migration leaves, or what a target held of the ranges before it
// prepared: an expired record left there would be reaped later, and that
// tombstone, written after the drop, would win over the record sent), and
// returns the log's tail after the last deletion: a record at or above it
// was written after the drop. The caller checkpoints to make the drop
// durable. It works a share of the time (duty; nil: flat out), resting
// after slot groups: a drop nothing waits on (the source's copies after a
// move) leaves the foreground the CPU and the disk.
func Drop(ctx context.Context, st *store.Store, ranges []cluster.Range, duty *admit.Duty) (uint64, error) {
	s, err := st.NewSession()
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var failed error
	s.SetCompletion(func(c store.Completion) {
		if c.Err != nil && failed == nil {
			failed = c.Err
		}
	})
	duty.Begin()
	err = eachChunk(ctx, st, ranges, func(recs []record) error {
		for _, r := range recs {
			if !r.live && r.at == 0 {
				continue // deleted already
			}
			if _, err := s.Delete(r.key); err != nil {
				return fmt.Errorf("migrate: drop: %w", err)
			}
		}
		s.CompletePending(true)
		s.Suspend()
		if failed != nil {
			return failed
		}
		duty.Wait(ctx) // a slice of 0: after every slot group
		return nil
	})
	if err != nil {
		return 0, err
	}
	return st.Log().Tail(), nil
}

// answerEvery is how many records Send sends before it waits for their
// answers and reports progress (a throttle paces the move there).
const answerEvery = 1024

// Send sends the newest record of every key of ranges in st, from log
// address since on, to the server of sess as MIGRATE operations of
// migration id: live records as kind (moved, or shipped back), deleted ones
// only when shipping back (as deletions; a target that prepared holds
// nothing older). A source sends from 0; a cancelled migration's target
// ships back from the Since it prepared at, so that what it had not
// touched since, the deletions of its drop among it, stays the source's.
// It waits for the peer to answer every answerEvery records and each
// chunk, and calls progress (when set) with the records answered and the
// slots done.
// A refusal (the peer does not take the migration's records) ends it with
// client.ErrNotOwner.
//
// It returns the incarnation of the peer that took every record. It asks
// for it before the first record and after the last, on the same
// connection: a session reconnects only after a lost connection failed an
// operation (which fails Send), and a control operation is never sent on a
// new one, so one answer for both means one run of the peer took them all.
func Send(ctx context.Context, st *store.Store, ranges []cluster.Range, since uint64, sess *client.Session,
	id cluster.MigrationID, kind wire.MigrateKind, progress Progress) (uint64, error) {
	return send(ctx, st.Scan, ranges, since, sess, id, kind, progress)
}

// SendCut is Send of moved records that reads nothing below cut (what a
// shared tier holds of st's log): every chain that reaches below it goes
// to indirect instead (store.ScanCut), for the target to read through the
// tier. indirect runs on the calling goroutine. progress is also called
// (with 0 records) every answerEvery chains cut: a move that sends little
// is moving on all the same.
func SendCut(ctx context.Context, st *store.Store, ranges []cluster.Range, cut uint64, sess *client.Session,
	id cluster.MigrationID, indirect func(bits uint, chain, addr uint64) error, progress Progress) (uint64, error) {
	cuts := 0
	counted := func(bits uint, chain, addr uint64) error {
		if cuts++; cuts%answerEvery == 0 && progress != nil {
			progress(0, 0)
		}
		return indirect(bits, chain, addr)
	}
	scan := func(ctx context.Context, lo, hi uint64, fn store.ScanFunc) error {
		return st.ScanCut(ctx, lo, hi, cut, fn, counted)
	}
	return send(ctx, scan, ranges, 0, sess, id, wire.MigrateMoved, progress)
}

func send(ctx context.Context, scan scanner, ranges []cluster.Range, since uint64, sess *client.Session,
	id cluster.MigrationID, kind wire.MigrateKind, progress Progress) (uint64, error) {
	first, err := Incarnation(sess)
	if err != nil {
		return 0, err
	}
	var failed error
	answer := func(r client.Result) {
		if r.Err != nil && failed == nil {
			failed = r.Err
		}
	}
	n := 0
	answered := func() error { // waits for the answers to the last n records
		if err := sess.Wait(); err != nil {
			return err
		}
		if failed != nil {
			return failed
		}
		if progress != nil && n > 0 {
			progress(n, 0)
		}
		n = 0
		return ctx.Err()
	}
	err = eachChunkOf(ctx, scan, ranges, func(recs []record) error {
		for _, r := range recs {
			k := kind
			switch {
			case r.addr < since:
				continue
			case !r.live && kind == wire.MigrateMoved:
				continue
			case !r.live:
				k = wire.MigrateShippedDeleted
			}
			if err := sess.Migrate(uint64(id), k, r.key, r.at, r.value, answer); err != nil {
				return err
			}
			if n++; n == answerEvery {
				if err := answered(); err != nil {
					return err
				}
			}
		}
		return answered()
	}, func(slots int) {
		if progress != nil {
			progress(0, slots)
		}
	})
	if err != nil {
		return 0, err
	}
	last, err := Incarnation(sess)
	if err == nil && last != first {
		err = fmt.Errorf("migrate: the peer restarted while it took the records (incarnation %d, then %d)", first, last)
	}
	return last, err
}

// SendKeys sends the newest record of each of keys (the hot keys a source
// sampled) in st to the server of sess as MIGRATE moved operations of
// migration id, before the rest of the ranges (Send); keys without a live
// record are skipped, and so are keys whose record is no longer in memory:
// hot ones are, and reading the others from the device would hold back
// the move (while the target parks reads of the ranges) for keys the move
// and the target's fetches bring soon enough. It returns the incarnation
// of the peer that took them, as Send does.
func SendKeys(ctx context.Context, st *store.Store, keys [][]byte, sess *client.Session, id cluster.MigrationID) (uint64, error) {
	first, err := Incarnation(sess)
	if err != nil {
		return 0, err
	}
	s, err := st.NewSession()
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var failed error
	fail := func(err error) {
		if err != nil && failed == nil {
			failed = err
		}
	}
	answer := func(r client.Result) { fail(r.Err) }
	pending := map[uint64][]byte{}
	s.SetCompletion(func(c store.Completion) {
		key := pending[c.Serial]
		delete(pending, c.Serial)
		fail(c.Err)
		if c.Err == nil && c.Status == store.OK {
			at, v, _ := store.SplitExpiring(c.Value)
			fail(sess.Migrate(uint64(id), wire.MigrateMoved, key, at, v, answer))
		}
	})
	var buf []byte
	for i, k := range keys {
		var stt store.Status
		// Bound at the top: a chain that leaves memory before the key's
		// record answers below (NotFound), never from the device.
		buf, stt, _, err = s.ReadAbove(k, keyhash.Hash(k), ^uint64(0), buf[:0])
		switch {
		case err != nil:
			return 0, fmt.Errorf("migrate: read a hot key: %w", err)
		case stt == store.OK:
			at, v, _ := store.SplitExpiring(buf)
			fail(sess.Migrate(uint64(id), wire.MigrateMoved, k, at, v, answer))
		case stt == store.Pending:
			pending[s.Serial()] = k
		}
		if i%groupSlots == groupSlots-1 || i == len(keys)-1 {
			// The store session rests between groups; the peer's
			// answers are not waited for until the end (the session
			// keeps InFlight batches unanswered): the target parks the
			// reads of keys it lacks until these arrive.
			s.CompletePending(true)
			s.Suspend()
			if failed != nil {
				return 0, failed
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
	}
	if fail(sess.Wait()); failed != nil {
		return 0, failed
	}
	last, err := Incarnation(sess)
	if err == nil && last != first {
		err = fmt.Errorf("migrate: the peer restarted while it took the records (incarnation %d, then %d)", first, last)
	}
	return last, err
}

// Incarnation asks the server of sess for its incarnation (a MIGRATOR
// operation without a message).
func Incarnation(sess *client.Session) (uint64, error) {
	var inc uint64
	var failed error
	err := sess.Migrator(nil, func(r client.Result) {
		switch {
		case r.Err != nil:
			failed = r.Err
		case len(r.Value) != 8:
			failed = fmt.Errorf("migrate: the peer answered an incarnation of %d bytes", len(r.Value))
		default:
			inc = binary.LittleEndian.Uint64(r.Value)
		}
	})
	if err == nil {
		err = sess.Wait()
	}
	if err == nil {
		err = failed
	}
	return inc, err
}
