package crashtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/fleetkv/fleetkv/client"
)

// Native sessions speak fleetkv's own protocol, whose COMMIT batches tell
// each session its commit point T. They pipeline appends (RMWs; most of
// their keys are on the device, so they wait for it, across checkpoints),
// sets and deletes. After a restart each resumes its session and is told
// the T of the recovered checkpoint: T must be at least the last commit
// point the session saw before the kill (nothing committed lost), and its
// keys must hold exactly the state after its operations up to T (none
// after them in).

// nativeKeys is each native session's key space.
const nativeKeys = 200

// nativeOpsPerCycle bounds what a native session issues between two kills:
// enough that the kill comes first, while it writes.
const nativeOpsPerCycle = 200_000

// nativeSession is one native writer's history since its last check.
type nativeSession struct {
	id      int
	cs      *client.Session
	base    map[string][]byte // the state checked last, by key (absent: none)
	baseAt  uint64            // the last serial before ops (the base is the state then)
	ops     []nativeOp        // issued since: ops[i] has serial baseAt+1+i
	state   map[string][]byte // after every op issued
	durable uint64            // the highest commit point the session saw
	known   bool              // a resume found the session: checkpoints record it
}

// nativeOp sets (or, with app, appends) val to key k, or deletes it (val nil).
type nativeOp struct {
	k   int
	val []byte
	app bool
}

func newNativeSession(id int) *nativeSession {
	return &nativeSession{id: id, base: map[string][]byte{}, state: map[string][]byte{}}
}

func (s *nativeSession) key(k int) string { return fmt.Sprintf("n%d:%d", s.id, k) }

func applyNative(old []byte, o nativeOp) []byte {
	switch {
	case o.val == nil:
		return nil
	case o.app:
		return append(append([]byte(nil), old...), o.val...)
	}
	return o.val
}

// run pipelines operations (batches of 8, answers awaited every 64) until
// the connection fails (the kill) or n operations are issued.
func (s *nativeSession) run(rng *rand.Rand, n int) {
	for issued := 0; issued < n; {
		for i := range 64 {
			o := nativeOp{k: rng.IntN(nativeKeys), val: fmt.Appendf(nil, "%d.%d,", s.id, s.baseAt+uint64(len(s.ops))+1)}
			key := s.key(o.k)
			var err error
			switch r := rng.IntN(10); {
			case r < 5 && len(s.state[key]) < 150:
				o.app = true
				err = s.cs.Append([]byte(key), o.val, nil)
			case r < 8:
				err = s.cs.Upsert([]byte(key), o.val, nil)
			default:
				o.val = nil
				err = s.cs.Delete([]byte(key), nil)
			}
			if err != nil {
				return
			}
			s.ops = append(s.ops, o)
			s.state[key] = applyNative(s.state[key], o)
			if i%8 == 7 && s.cs.Flush() != nil {
				return
			}
		}
		issued += 64
		err := s.cs.Wait()
		s.durable = max(s.durable, s.cs.Durable())
		if err != nil {
			return
		}
	}
}

// check resumes the session on the restarted server and compares its keys
// with the state at the commit point the server tells it; that state is
// the base of the next cycle, on the resumed connection. A session no
// checkpoint recorded is unknown to the server: it must not have seen a
// commit point, none of its operations may be back, and a new session
// takes its place.
func (s *nativeSession) check(cycle int, addr string) (string, error) {
	issued := s.baseAt + uint64(len(s.ops))
	var cs *client.Session
	at := uint64(0) // the commit point the server tells; 0: a new session
	if s.cs != nil {
		s.cs.Close()
		var err error
		cs, err = client.Dial(client.Config{Addr: addr, Resume: s.cs.ID()})
		switch {
		case err == nil:
			at = cs.ResumedAt()
		case strings.Contains(err.Error(), "unknown session") && !s.known && s.durable == 0:
			cs = nil
		default:
			return "", fmt.Errorf("cycle %d: native session %d: resume: %v", cycle, s.id, err)
		}
	}
	n := 0 // ops recovered
	if cs == nil {
		var err error
		if cs, err = client.Dial(client.Config{Addr: addr}); err != nil {
			return "", err
		}
	} else {
		if at < s.durable || at > issued {
			return "", fmt.Errorf("cycle %d: native session %d resumed at %d: it saw %d committed and issued up to %d",
				cycle, s.id, at, s.durable, issued)
		}
		if at > s.baseAt { // else what came after the last check is lost: its reads, maybe some ops
			n = int(at - s.baseAt)
		}
		s.known = true
	}
	s.cs = cs
	want := map[string][]byte{}
	for k, v := range s.base {
		want[k] = v
	}
	for _, o := range s.ops[:n] {
		key := s.key(o.k)
		want[key] = applyNative(want[key], o)
	}
	if err := s.compare(want); err != nil {
		return "", fmt.Errorf("cycle %d: native session %d at commit point %d (saw %d, issued %d): %v", cycle, s.id, at, s.durable, issued, err)
	}
	line := fmt.Sprintf("native session %d at commit point %d of %d issued (saw %d committed)", s.id, at, issued, s.durable)
	// The reads took serials too: the ops of the next cycle follow them.
	s.base, s.baseAt, s.ops, s.durable = want, s.cs.LastSerial(), nil, at
	s.state = map[string][]byte{}
	for k, v := range want {
		s.state[k] = v
	}
	return line, nil
}

// compare reads every key of the session and reports the first that does
// not hold want's value.
func (s *nativeSession) compare(want map[string][]byte) error {
	var bad []string
	for k := range nativeKeys {
		key := s.key(k)
		err := s.cs.Read([]byte(key), func(r client.Result) {
			found := r.Err == nil && r.Status == client.OK
			if r.Err != nil || found != (want[key] != nil) || !bytes.Equal(r.Value, want[key]) {
				bad = append(bad, fmt.Sprintf("%s = %q (found %v, %v), want %q", key, r.Value, found, r.Err, want[key]))
			}
		})
		if err != nil {
			return err
		}
	}
	if err := s.cs.Wait(); err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d keys differ, e.g. %s", len(bad), bad[0])
	}
	return nil
}
