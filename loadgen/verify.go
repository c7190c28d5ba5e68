package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/fleetkv/fleetkv/client"
)

// check verifies a read. A key this run wrote must hold exactly the version
// the read was issued after. A key it did not write may hold any version of
// that key (an earlier run's), or be absent unless VerifyLoaded; with
// values of 16 bytes or more that is checked too, since a value names its
// key and version.
func (t *thread) check(sl *slot, r client.Result) {
	if t.model.added(sl.key) {
		return // counters are checked at the end
	}
	ver := sl.expect
	if ver == 0 && r.Status == client.OK && len(r.Value) >= 16 {
		ver = binary.LittleEndian.Uint64(r.Value[8:]) // not written by this run
	}
	want := t.want[:t.cfg.ValueSize]
	fillValue(want, sl.key, ver)
	switch {
	case r.Status == client.OK && (bytes.Equal(r.Value, want) || (sl.expect == 0 && len(want) < 16)):
	case r.Status == client.NotFound && sl.expect == 0 && !t.cfg.VerifyLoaded:
	default:
		t.report("read of key %d: got %v %x, want version %d", sl.key, r.Status, head(r.Value), sl.expect)
	}
}

// verifyCounters reads back every key the thread added to.
func (t *thread) verifyCounters() error {
	for i, n := range t.model.adds {
		if n == 0 {
			continue
		}
		k := t.model.key(uint64(i))
		s := t.session(k, t.sessionOf(k))
		base := make([]byte, t.cfg.ValueSize)
		fillValue(base, k, t.model.vers[i])
		loaded := int64(binary.LittleEndian.Uint64(base))
		key := k
		if err := s.Read(t.key, func(r client.Result) {
			got := int64(0)
			if len(r.Value) >= 8 {
				got = int64(binary.LittleEndian.Uint64(r.Value))
			}
			if r.Err != nil || (got != n && got != loaded+n) {
				t.report("counter %d = %d (%v), want %d or %d", key, got, r.Err, n, loaded+n)
			}
		}); err != nil {
			return err
		}
		if err := s.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// sessionOf returns which of the thread's sessions owns key k in verify mode.
func (t *thread) sessionOf(k uint64) int {
	return int(k%t.globalSessions()) - t.id*t.cfg.Sessions
}

func (t *thread) report(format string, args ...any) {
	if t.cfg.Verify || t.bad.Load() == 0 {
		msg := fmt.Sprintf(format, args...)
		t.firstBad.CompareAndSwap(nil, &msg)
	}
	if t.cfg.Verify {
		t.bad.Add(1)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

// model is what a verifying thread wrote to its share of the keys: those
// whose number modulo g (the sessions of all threads) is one of its own
// sessions', first..first+sessions-1 (pick moves every key it draws
// there). It is indexed densely, so a lookup is a load from a slice
// rather than a probe of a map: over a million keys the maps' probes took
// a fifth of the machine in bench-elastic (the load generator's 69 %).
type model struct {
	g, first, sessions uint64
	vers               []uint64 // the version last written per key (0: none by this run)
	adds               []int64  // adds sent per key; nil unless the workload adds
}

func newModel(cfg *Config, id int, adds bool) *model {
	m := &model{g: uint64(cfg.Threads * cfg.Sessions), first: uint64(id * cfg.Sessions), sessions: uint64(cfg.Sessions)}
	n := (cfg.Keys + m.g - 1) / m.g * m.sessions
	m.vers = make([]uint64, n)
	if adds {
		m.adds = make([]int64, n)
	}
	return m
}

// at is the index of key k, one of the thread's share.
func (m *model) at(k uint64) uint64 { return k/m.g*m.sessions + k%m.g - m.first }

// key is the key at index i (at's inverse).
func (m *model) key(i uint64) uint64 { return i/m.sessions*m.g + m.first + i%m.sessions }

// added reports whether the thread sent an add to key k.
func (m *model) added(k uint64) bool { return m.adds != nil && m.adds[m.at(k)] != 0 }
