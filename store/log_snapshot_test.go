package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// noPause is the Pause of a test whose only writer is the caller, between
// two of its operations.
func noPause(_ context.Context, atStop func()) error { atStop(); return nil }

// TestLogSnapshotCheckpoint: after a snapshot checkpoint the records in
// memory are still updated in place (after a fold-over they append); those
// updates reach the device with later flushes, and recovery from the
// snapshot checkpoint, which writes the snapshot back first, still finds
// the values as they were at the checkpoint. A damaged snapshot is refused
// and changes nothing.
func TestLogSnapshotCheckpoint(t *testing.T) {
	dev := ssd.NewCrashDevice(512)
	cfg := Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 64 << 12, Device: dev}}
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	set := func(v string) {
		t.Helper()
		for i := range 100 {
			if _, err := s.Upsert(fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "%s%03d", v, i)); err != nil {
				t.Fatal(err)
			}
		}
		s.Suspend()
	}
	set("a")
	var snap bytes.Buffer
	ck, err := st.CheckpointWith(context.Background(), CheckpointOptions{Pause: noPause, Snapshot: &snap})
	if err != nil {
		t.Fatal(err)
	}
	if !ck.Snapshot || ck.SnapshotStart >= ck.End || ck.End != st.Log().Tail() {
		t.Fatalf("snapshot checkpoint %+v, tail %d", ck, st.Log().Tail())
	}
	set("b")
	if tail := st.Log().Tail(); tail != ck.End {
		t.Fatalf("updates after a snapshot checkpoint appended: tail %d, checkpoint end %d", tail, ck.End)
	}
	// A fold-over (not recorded) flushes the updated pages over the
	// checkpoint's: the device now holds "b" below its end.
	if _, err := st.CheckpointWith(context.Background(), CheckpointOptions{Pause: noPause}); err != nil {
		t.Fatal(err)
	}
	before := st.Log().Tail()
	set("c")
	if st.Log().Tail() == before {
		t.Fatal("updates after a fold-over updated in place")
	}
	s.Close()
	st.Close()
	dev.PowerLoss(ssd.LoseUnsynced, nil)

	damaged := bytes.Clone(snap.Bytes())
	damaged[len(damaged)/2] ^= 1
	if err := RestoreSnapshot(dev, ck, snapshotOpener(damaged)); !errors.Is(err, errBadSnapshot) {
		t.Fatalf("restoring a damaged snapshot: %v", err)
	}
	if err := RestoreSnapshot(dev, ck, snapshotOpener(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	st, rs, err := Recover(cfg, ck)
	if err != nil || rs.Cut {
		t.Fatalf("recover: %+v %v", rs, err)
	}
	defer st.Close()
	s = newSession(t, st)
	for i := range 100 {
		key := fmt.Appendf(nil, "k%d", i)
		if v, status, err := completeRead(t, s, key); err != nil || status != OK || string(v) != fmt.Sprintf("a%03d", i) {
			t.Fatalf("%s = %q %v %v after recovering the snapshot checkpoint, want a%03d", key, v, status, err, i)
		}
	}
}

// TestRMWCopyBelowQuietSeals: while a paused checkpoint's fence is up, an
// RMW of a record below it copies the record at once and seals it, so
// that once the fence is down again nobody updates the old record in
// place (an update there would miss the copy); the copy is updated in
// place then.
func TestRMWCopyBelowQuietSeals(t *testing.T) {
	st := openTest(t, Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 64 << 12}})
	s := newSession(t, st)
	key := []byte("counter")
	l := st.Log()
	old := l.Tail() // where the RMW's record goes
	if _, err := s.RMW(key, []byte("a"), Append{}); err != nil {
		t.Fatal(err)
	}
	s.Suspend()
	if old < l.SafeReadOnly() || old < l.MutableFrom() {
		t.Fatalf("record at %d not mutable (safe read-only %d, mutable from %d)", old, l.SafeReadOnly(), l.MutableFrom())
	}
	was := l.RaiseFence(l.Tail())
	if status, err := s.RMW(key, []byte("b"), Append{}); err != nil || status != OK {
		t.Fatalf("RMW below the fence: %v %v, want OK at once", status, err)
	}
	s.Suspend()
	if !l.Record(old).Header().Sealed() {
		t.Fatal("the record an RMW copied below the fence is not sealed")
	}
	if err := l.LowerFence(context.Background(), was); err != nil {
		t.Fatal(err)
	}
	tail := l.Tail()
	if _, err := s.RMW(key, []byte("c"), Append{}); err != nil {
		t.Fatal(err)
	}
	s.Suspend()
	if l.Tail() != tail {
		t.Fatal("the copy was not updated in place once the fence was down")
	}
	if v, status := syncRead(t, s, key); status != OK || string(v) != "abc" {
		t.Fatalf("%s = %q %v, want abc", key, v, status)
	}
}
