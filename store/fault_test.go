package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// faultyStore opens a store with 8 frames of 4 KiB over a FaultyDevice, and
// pushes nKeys keys of 100-byte values well below head.
func faultyStore(t *testing.T, nKeys int) (*Store, *Session, *ssd.FaultyDevice) {
	t.Helper()
	fd := ssd.NewFaultyDevice(ssd.NewMemDevice())
	st := openTest(t, Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, Device: fd}})
	s := newSession(t, st)
	for i := 0; i < nKeys; i++ {
		if _, err := s.Upsert(faultKey(i), faultValue(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	return st, s, fd
}

func faultKey(i int) []byte        { return fmt.Appendf(nil, "key-%05d", i) }
func faultValue(i, gen int) []byte { return bytes.Repeat(fmt.Appendf(nil, "%d.%d;", i, gen), 40)[:100] }

// completeRead reads key to the end, through the device if need be, and
// returns the value, the status and the error.
func completeRead(t *testing.T, s *Session, key []byte) ([]byte, Status, error) {
	t.Helper()
	v, status, err := s.Read(key, nil)
	if err != nil || status != Pending {
		return v, status, err
	}
	serial := s.Serial()
	var got *Completion
	s.SetCompletion(func(c Completion) {
		if c.Serial == serial {
			c.Value = append([]byte(nil), c.Value...)
			got = &c
		}
	})
	defer s.SetCompletion(nil)
	s.CompletePending(true)
	if got == nil {
		t.Fatalf("no completion for the read of %q", key)
	}
	return got.Value, got.Status, got.Err
}

// TestReadErrorFailsOnlyThatRead: EIO on the device fails the reads that hit
// it with an error that says so; every other key, in memory or on the
// device, still reads its value, and the store keeps working.
func TestReadErrorFailsOnlyThatRead(t *testing.T) {
	const n = 600
	st, s, fd := faultyStore(t, n)
	head := st.log.Head()
	if head < 16<<10 {
		t.Fatalf("head %d: too little on the device", head)
	}
	fd.FailReads(ssd.FaultRule{From: 0, To: 8 << 10}) // the first two pages
	failed, ok := 0, 0
	for i := 0; i < n; i++ {
		v, status, err := completeRead(t, s, faultKey(i))
		switch {
		case err != nil:
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("key %d: error %v does not wrap EIO", i, err)
			}
			failed++
		case status != OK || !bytes.Equal(v, faultValue(i, 0)):
			t.Fatalf("key %d = %v %q", i, status, v)
		default:
			ok++
		}
	}
	if failed == 0 || ok < n/2 {
		t.Fatalf("%d reads failed, %d succeeded: the fault did not hit, or hit too much", failed, ok)
	}
	fd.Clear()
	for i := 0; i < n; i++ {
		if v, status, err := completeRead(t, s, faultKey(i)); err != nil || status != OK || !bytes.Equal(v, faultValue(i, 0)) {
			t.Fatalf("after the fault cleared, key %d = %v %q %v", i, status, v, err)
		}
	}
	if fd.Stats().ReadFaults == 0 {
		t.Fatal("no read fault counted")
	}
}

// TestNoSpaceFailsWritesCleanly: when the device refuses flushes (ENOSPC),
// writes fail with an error that says so once the log needs a new page,
// nothing panics, and every write acknowledged before or after still reads
// back its value.
func TestNoSpaceFailsWritesCleanly(t *testing.T) {
	const n = 300
	st, s, fd := faultyStore(t, n)
	fd.NoSpaceAfter(0)
	acked := map[int]int{} // key -> generation acknowledged
	for i := 0; i < n; i++ {
		acked[i] = 0
	}
	var writeErr error
	for gen, i := 1, 0; i < 20*n && writeErr == nil; i++ {
		k := i % n
		_, err := s.Upsert(faultKey(k), faultValue(k, gen))
		if err != nil {
			writeErr = err
			break
		}
		acked[k] = gen
		if k == n-1 {
			gen++
		}
	}
	if writeErr == nil {
		t.Fatal("writes never failed with the device full")
	}
	if !errors.Is(writeErr, syscall.ENOSPC) || !errors.Is(writeErr, hlog.ErrFlush) {
		t.Fatalf("write error %v: want a flush error wrapping ENOSPC", writeErr)
	}
	if fd.Stats().NoSpace == 0 {
		t.Fatal("no ENOSPC injected")
	}
	// Reads still work, and return every acknowledged write.
	for k, gen := range acked {
		v, status, err := completeRead(t, s, faultKey(k))
		if err != nil || status != OK || !bytes.Equal(v, faultValue(k, gen)) {
			t.Fatalf("key %d: %v %q %v; want generation %d", k, status, v, err, gen)
		}
	}
	if _, err := s.Upsert(faultKey(0), faultValue(0, 99)); err == nil {
		// An in-place update of a mutable record needs no new page and may
		// succeed; then it must read back.
		if v, _, err := completeRead(t, s, faultKey(0)); err != nil || !bytes.Equal(v, faultValue(0, 99)) {
			t.Fatalf("in-place update after ENOSPC reads %q %v", v, err)
		}
	}
	_ = st
}

// TestPendingRMWIsNotOvertaken: an APPEND of a key on the device goes
// pending; the UPSERT and APPEND the session issues next on that key wait
// for it, so the key ends as if the three ran in order.
func TestPendingRMWIsNotOvertaken(t *testing.T) {
	_, s, _ := faultyStore(t, 400)
	key := faultKey(0) // long below head
	st, err := s.RMW(key, []byte("+a"), Append{})
	if err != nil || st != Pending {
		t.Fatalf("append to a cold key: %v %v, want Pending", st, err)
	}
	if _, err := s.Upsert(key, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RMW(key, []byte("+b"), Append{}); err != nil {
		t.Fatal(err)
	}
	s.CompletePending(true)
	if v, status, err := completeRead(t, s, key); err != nil || status != OK || string(v) != "new+b" {
		t.Fatalf("key = %q %v %v, want \"new+b\"", v, status, err)
	}
}

// heldReads is a device that holds back the reads issued while hold is
// set, until release.
type heldReads struct {
	ssd.Device
	hold atomic.Bool
	mu   sync.Mutex
	held []func()
}

func (d *heldReads) ReadAsync(p []byte, off uint64, cb ssd.Callback) {
	if d.hold.Load() {
		d.mu.Lock()
		d.held = append(d.held, func() { d.Device.ReadAsync(p, off, cb) })
		d.mu.Unlock()
		return
	}
	d.Device.ReadAsync(p, off, cb)
}

func (d *heldReads) release() {
	d.mu.Lock()
	held := d.held
	d.held = nil
	d.mu.Unlock()
	for _, read := range held {
		read()
	}
}

// TestCompleteWritesLeavesReads: CompleteWrites returns once the pending
// RMWs have taken effect, while reads the device holds back are still
// pending; those complete later.
func TestCompleteWritesLeavesReads(t *testing.T) {
	dev := &heldReads{Device: ssd.NewMemDevice()}
	st := openTest(t, Config{IndexBits: 8, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, Device: dev}})
	s := newSession(t, st)
	for i := range 400 {
		if _, err := s.Upsert(faultKey(i), faultValue(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	done := map[uint64]Completion{}
	s.SetCompletion(func(c Completion) { done[c.Serial] = c })
	var reads, rmws []uint64
	dev.hold.Store(true)
	for i := range 20 {
		if _, st, err := s.Read(faultKey(2*i), nil); err != nil || st != Pending {
			t.Fatalf("read of a cold key: %v %v, want Pending", st, err)
		}
		reads = append(reads, s.Serial())
	}
	dev.hold.Store(false)
	for i := range 20 {
		if st, err := s.RMW(faultKey(2*i+1), []byte("+a"), Append{}); err != nil || st != Pending {
			t.Fatalf("append to a cold key: %v %v, want Pending", st, err)
		}
		rmws = append(rmws, s.Serial())
	}
	s.CompleteWrites()
	for _, serial := range rmws {
		if c, ok := done[serial]; !ok || c.Err != nil {
			t.Fatalf("RMW %d after CompleteWrites: done %v, %+v", serial, ok, c)
		}
	}
	if n := s.PendingCount(); n != len(reads) {
		t.Fatalf("%d operations pending after CompleteWrites, want the %d held reads", n, len(reads))
	}
	dev.release()
	s.CompletePending(true)
	for _, serial := range reads {
		if c, ok := done[serial]; !ok || c.Err != nil || c.Status != OK {
			t.Fatalf("read %d: done %v, %+v", serial, ok, c)
		}
	}
	for i := range 20 {
		v, status, err := completeRead(t, s, faultKey(2*i+1))
		if want := string(faultValue(2*i+1, 0)) + "+a"; err != nil || status != OK || string(v) != want {
			t.Fatalf("%s = %q %v %v, want %q", faultKey(2*i+1), v, status, err, want)
		}
	}
}

// TestGarbledDeviceBytesAreNeverServed flips bytes in the values of flushed
// records on the device: a read of such a record fails with ErrCorrupt (the
// record's checksum, written when its page was flushed, no longer holds);
// every read that succeeds returns the value that was written.
func TestGarbledDeviceBytesAreNeverServed(t *testing.T) {
	const n = 600
	st, s, fd := faultyStore(t, n)
	damageExpected.Store(true)
	defer damageExpected.Store(false)
	dev := fd.Inner()
	cold := st.Log().Head()
	// Every 512 bytes of the flushed log, one byte becomes 0xff: inside a
	// value, a key (the chain walk then misses it) or a prefix.
	for off := uint64(hlog.FirstAddress + 40); off < cold; off += 512 {
		done := make(chan error, 1)
		dev.WriteAsync([]byte{0xff}, off, doneChan(done))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var corrupt, good int
	for i := 0; i < n; i++ {
		v, status, err := completeRead(t, s, faultKey(i))
		switch {
		case errors.Is(err, ErrCorrupt):
			corrupt++
		case err != nil:
			t.Fatalf("key %d: %v", i, err)
		case status == OK && bytes.Equal(v, faultValue(i, 0)):
			good++
		default:
			t.Fatalf("key %d: status %v, value %q: a garbled record was served", i, status, v)
		}
	}
	if corrupt == 0 || good == 0 {
		t.Fatalf("%d corrupt, %d good reads: want both", corrupt, good)
	}
	t.Logf("%d reads refused as corrupt, %d good", corrupt, good)
}

// doneChan is an ssd.Callback that sends the error.
type doneChan chan error

func (d doneChan) IODone(_ int, err error) { d <- err }
