package store

import (
	"errors"
	"testing"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/hlog"
)

// failInit is a Merger whose Initial writes part of a value, then fails.
type failInit struct{}

var errInit = errors.New("initial failed")

func (failInit) InitialSize([]byte) int { return 4 }
func (failInit) Initial(dst, _ []byte) error {
	copy(dst, "JUNK")
	return errInit
}
func (failInit) MergedSize(old, _ []byte) (int, error)  { return len(old), nil }
func (failInit) Merge(dst, old, _ []byte) error         { copy(dst, old); return nil }
func (failInit) InPlace(v, _ []byte) (int, bool, error) { return len(v), true, nil }

// A failed RMW changes nothing: a key deleted in place stays deleted, an
// absent key stays absent.
func TestFailedMergeChangesNothing(t *testing.T) {
	st := openTest(t, Config{IndexBits: 4, Log: hlog.Config{PageBits: 16, MemoryBytes: 16 << 16}})
	s := newSession(t, st)
	k := []byte("k")
	mustStatus(t, OK)(s.Upsert(k, []byte("value-with-room")))
	mustStatus(t, OK)(s.Delete(k)) // in place: tombstone on the mutable record
	for _, key := range [][]byte{k, []byte("absent")} {
		if _, err := s.RMW(key, nil, failInit{}); !errors.Is(err, errInit) {
			t.Fatalf("RMW error = %v", err)
		}
		if v, stt := syncRead(t, s, key); stt != NotFound {
			t.Fatalf("%q came back after a failed RMW: %q %v", key, v, stt)
		}
	}
}

// The grower's epoch slot is reserved: sessions up to MaxSessions cannot
// take it, and growth still works with all of them open.
func TestGrowerSlotIsReserved(t *testing.T) {
	st := openTest(t, Config{IndexBits: 4, MaxSessions: 2, Log: hlog.Config{PageBits: 16, MemoryBytes: 16 << 16}})
	for i := 0; i < 2; i++ {
		s := newSession(t, st)
		s.Suspend()
	}
	if _, err := st.NewSession(); !errors.Is(err, epoch.ErrNoSlots) {
		t.Fatalf("a third session with MaxSessions 2: %v", err)
	}
	if err := st.GrowIndex(); err != nil {
		t.Fatalf("GrowIndex with every session slot taken: %v", err)
	}
}
