package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/ssd"
)

// TestScanCursorSurvivesGrowth scans the whole store a few keys at a time
// (ScanStep and ScanPositions, resuming after the last position covered,
// as SCAN's cursor does) while the index doubles twice and another session
// writes and deletes keys of its own: every key present throughout is met
// exactly once, no key deleted before the scan is met, and keys on the
// device are read from it.
func TestScanCursorSurvivesGrowth(t *testing.T) {
	const stable, gone = 3000, 500
	st, s := smallIndexWith(t, "stable-", stable)
	for i := 0; i < gone; i++ {
		k := []byte(fmt.Sprintf("gone-%d", i))
		if _, err := s.Upsert(k, []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	s.CompletePending(true)
	s.Suspend()
	if st.Log().Head() <= st.Log().Begin() {
		t.Fatal("nothing reached the device")
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // churn beside the scan
		defer wg.Done()
		w := newSession(t, st)
		defer w.Suspend()
		for i := 0; !stop.Load(); i++ {
			k := []byte(fmt.Sprintf("churn-%d", i%700))
			var err error
			if i%3 == 0 {
				_, err = w.Delete(k)
			} else {
				_, err = w.Upsert(k, []byte("w"))
			}
			if err != nil {
				t.Error(err)
				return
			}
			w.CompletePending(false)
		}
	}()
	seen := map[string]int{}
	steps := 0
	for from := uint64(0); ; steps++ {
		switch steps {
		case 3, 7:
			if err := st.GrowIndex(); err != nil {
				t.Fatal(err)
			}
		}
		to := st.ScanStep(from, 10)
		step := map[string]bool{}
		err := st.ScanPositions(context.Background(), from, to, nil, func(key, _ []byte, _ int64, live bool, _ uint64) error {
			if live && !step[string(key)] {
				step[string(key)] = true
				seen[string(key)]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if to == ^uint64(0) {
			break
		}
		from = to + 1
	}
	stop.Store(true)
	wg.Wait()
	if bits := st.Stats().Index.Bits; bits != 6 || steps < 8 {
		t.Fatalf("the index has %d bits after %d steps: the growth did not happen during the scan", bits, steps)
	}
	for i := 0; i < stable; i++ {
		if n := seen[fmt.Sprintf("stable-%d", i)]; n != 1 {
			t.Fatalf("stable-%d met %d times", i, n)
		}
	}
	for k := range seen {
		if k[:4] == "gone" {
			t.Fatalf("%s, deleted before the scan, was met", k)
		}
	}
}

// TestScanAfterGrowthSeesNewestRecords: keys written, pushed to the device
// and then deleted after the index doubled have their chains in both
// halves of their old bucket; a scan must meet each key's newest record
// (the tombstone) in its own bucket, never an older one in the other.
func TestScanAfterGrowthSeesNewestRecords(t *testing.T) {
	const n, kept = 3000, 50
	st, s := smallIndexWith(t, "k", n)
	s.Suspend()
	if err := st.GrowIndex(); err != nil {
		t.Fatal(err)
	}
	for i := kept; i < n; i++ {
		if _, err := s.Delete([]byte(fmt.Sprintf("k%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	s.CompletePending(true)
	s.Suspend()
	live := 0
	err := st.ScanPositions(context.Background(), 0, ^uint64(0), nil, func(_, _ []byte, _ int64, l bool, _ uint64) error {
		if l {
			live++
		}
		return nil
	})
	if err != nil || live != kept {
		t.Fatalf("a scan after growth met %d live keys (%v), want %d", live, err, kept)
	}
	if c, err := st.CountKeys(context.Background(), 0, ^uint64(0)); err != nil || c != kept {
		t.Fatalf("CountKeys = %d %v, want %d", c, err, kept)
	}
}

// smallIndexWith opens a store whose index (16 buckets) grows only when
// asked and whose log spills to the device soon, and upserts keys
// prefix0 .. prefix(n-1) through the session it returns.
func smallIndexWith(t *testing.T, prefix string, n int) (*Store, *Session) {
	t.Helper()
	cfg := compactConfig(openDevice(t, "mem"))
	cfg.IndexBits, cfg.NoAutoGrow = 4, true
	st := openTest(t, cfg)
	s := newSession(t, st)
	for i := 0; i < n; i++ {
		if _, err := s.Upsert([]byte(fmt.Sprintf("%s%d", prefix, i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	return st, s
}

// TestScanWalksDeviceChainsSideBySide scans a churned store (values up to
// 3 KiB, so some records take a second, longer read; deletes; appends)
// whose device answers reads late and out of order: the scan meets every
// key's newest record exactly once, and it kept several chains' reads in
// flight at once, never more than scanReads.
func TestScanWalksDeviceChainsSideBySide(t *testing.T) {
	dev := &lateDevice{Device: ssd.NewMemDevice(), rng: rand.New(rand.NewPCG(7, 8))}
	st := openTest(t, compactConfig(dev))
	s := newSession(t, st)
	m := model{}
	rng := rand.New(rand.NewPCG(3, 4))
	churn(t, s, m, rng, "k", 600, 6000)
	for i := 0; i < 40; i++ { // long values
		k := fmt.Sprintf("k-%d", rng.IntN(600))
		v := bytes.Repeat([]byte{'L'}, 1500+rng.IntN(1500))
		if _, err := s.Upsert([]byte(k), v); err != nil {
			t.Fatal(err)
		}
		m[k] = v
	}
	churn(t, s, m, rng, "k", 600, 3000) // bury them
	s.CompletePending(true)
	s.Suspend()
	dev.late.Store(true)
	got := map[string][]byte{}
	err := st.Scan(context.Background(), 0, ^uint64(0), func(key, value []byte, _ int64, live bool, _ uint64) error {
		if _, ok := got[string(key)]; ok {
			return fmt.Errorf("%s met twice", key)
		}
		got[string(key)] = nil
		if live {
			got[string(key)] = append([]byte{}, value...)
		}
		return nil
	})
	dev.late.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		if g, ok := got[k]; !ok || !bytes.Equal(g, v) {
			t.Fatalf("%s: scanned %.20q (met %v), want %.20q", k, g, ok, v)
		}
	}
	for k, g := range got {
		if _, ok := m[k]; !ok && g != nil {
			t.Fatalf("%s scanned live, never written", k)
		}
	}
	most, reads := dev.most.Load(), dev.reads.Load()
	t.Logf("%d device reads, at most %d in flight", reads, most)
	if most < 2 || most > scanReads {
		t.Fatalf("at most %d reads in flight during the scan: want 2..%d", most, scanReads)
	}
}

// lateDevice answers reads, while late is set, after a random delay of up
// to a millisecond each, so that they complete out of order; it counts the
// reads in flight.
type lateDevice struct {
	ssd.Device
	late                  atomic.Bool
	mu                    sync.Mutex
	rng                   *rand.Rand
	inFlight, most, reads atomic.Int64
}

func (d *lateDevice) ReadAsync(p []byte, off uint64, cb ssd.Callback) {
	if !d.late.Load() {
		d.Device.ReadAsync(p, off, cb)
		return
	}
	d.reads.Add(1)
	if n := d.inFlight.Add(1); n > d.most.Load() {
		d.most.Store(n) // one scan goroutine issues: no race on the maximum
	}
	d.mu.Lock()
	delay := time.Duration(d.rng.IntN(1000)) * time.Microsecond
	d.mu.Unlock()
	time.AfterFunc(delay, func() {
		d.Device.ReadAsync(p, off, lateCallback{d, cb})
	})
}

type lateCallback struct {
	d  *lateDevice
	cb ssd.Callback
}

func (c lateCallback) IODone(n int, err error) {
	c.d.inFlight.Add(-1)
	c.cb.IODone(n, err)
}
