package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/keyhash"
)

// TestCountKeys churns keys until most records are on the device, then
// counts the live keys of slot ranges (a single slot, a run, every slot)
// and compares with the model.
func TestCountKeys(t *testing.T) {
	st, m := churned(t, 3)
	want := func(first, last uint16) int64 {
		n := int64(0)
		for k, v := range m {
			if sl := keyhash.Slot([]byte(k)); v != nil && sl >= first && sl <= last {
				n++
			}
		}
		return n
	}
	var someSlot uint16
	for k, v := range m {
		if v != nil {
			someSlot = keyhash.Slot([]byte(k))
			break
		}
	}
	for _, r := range [][2]uint16{{someSlot, someSlot}, {0, 4095}, {4096, 16383}, {0, 16383}} {
		got, err := st.CountKeys(context.Background(), keyhash.FirstHash(r[0]), keyhash.LastHash(r[1]))
		if err != nil {
			t.Fatal(err)
		}
		if w := want(r[0], r[1]); got != w || (r == [2]uint16{someSlot, someSlot} && w == 0) {
			t.Fatalf("slots %d-%d hold %d live keys, counted %d", r[0], r[1], w, got)
		}
	}
}

// TestIndexGrowsWhereKeysCrowd: keys of a third of the slots (a server's
// share) fill a third of the buckets; the index doubles once overflow
// buckets pile up there, before the average load factor says so.
func TestIndexGrowsWhereKeysCrowd(t *testing.T) {
	st := openTest(t, Config{IndexBits: 10})
	s := newSession(t, st)
	n := 0
	for i := 0; n < 3000; i++ {
		k := []byte(fmt.Sprint("crowd-", i))
		if keyhash.Slot(k) >= keyhash.Slots/3 {
			continue
		}
		if _, err := s.Upsert(k, k); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if lf := st.index.LoadFactor(); lf >= growLoadFactor {
		t.Fatalf("load factor %.1f: the average alone would grow the index", lf)
	}
	s.Suspend()
	deadline := time.Now().Add(10 * time.Second)
	for st.Stats().Index.Bits == 10 || st.Stats().Index.Growing {
		if time.Now().After(deadline) {
			t.Fatalf("the index did not grow: %+v", st.Stats().Index)
		}
		s.Upsert([]byte("crowd-poke"), nil) // growth is checked as sessions refresh
		s.Suspend()
		time.Sleep(time.Millisecond)
	}
}

// TestScan churns keys until most records are on the device, then scans
// slot ranges: every live key of the range is visited once with its value,
// a visited dead key is deleted in the model, and no key outside the range
// is visited.
func TestScan(t *testing.T) {
	st, m := churned(t, 5)
	for _, r := range [][2]uint16{{0, 4095}, {4096, 16383}, {0, 16383}} {
		seen := map[string]bool{}
		err := st.Scan(context.Background(), keyhash.FirstHash(r[0]), keyhash.LastHash(r[1]), func(key, value []byte, _ int64, live bool, addr uint64) error {
			k := string(key)
			if addr < st.Log().Begin() || addr >= st.Log().Tail() {
				return fmt.Errorf("key %q visited at address %d, outside the log", k, addr)
			}
			switch sl := keyhash.Slot(key); {
			case sl < r[0] || sl > r[1]:
				return fmt.Errorf("key %q of slot %d visited", k, sl)
			case seen[k]:
				return fmt.Errorf("key %q visited twice", k)
			case live != (m[k] != nil) || live && string(value) != string(m[k]):
				return fmt.Errorf("key %q visited as %v %q, the model has %q", k, live, value, m[k])
			}
			seen[k] = true
			return nil
		})
		if err != nil {
			t.Fatalf("slots %d-%d: %v", r[0], r[1], err)
		}
		for k, v := range m {
			if sl := keyhash.Slot([]byte(k)); v != nil && sl >= r[0] && sl <= r[1] && !seen[k] {
				t.Fatalf("slots %d-%d: live key %q not visited", r[0], r[1], k)
			}
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := st.Scan(context.Background(), 0, ^uint64(0), func([]byte, []byte, int64, bool, uint64) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("an error from fn: %v after %d calls", err, calls)
	}
}

// churned returns a store whose 400 keys were churned (seeded) until most
// of their records are on the device, and its model.
func churned(t *testing.T, seed uint64) (*Store, model) {
	st := openTest(t, compactConfig(openDevice(t, "mem")))
	s := newSession(t, st)
	m := model{}
	churn(t, s, m, rand.New(rand.NewPCG(seed, seed+1)), "k", 400, 8000)
	s.CompletePending(true)
	s.Suspend()
	if st.Log().Head() <= st.Log().Begin() {
		t.Fatal("nothing reached the device")
	}
	return st, m
}
