package store

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/fleetkv/fleetkv/keyhash"
)

// TestCountKeys churns keys until most records are on the device, then
// counts the live keys of slot ranges (a single slot, a run, every slot)
// and compares with the model.
func TestCountKeys(t *testing.T) {
	st := openTest(t, compactConfig(openDevice(t, "mem")))
	s := newSession(t, st)
	m := model{}
	churn(t, s, m, rand.New(rand.NewPCG(3, 4)), "k", 400, 8000)
	s.CompletePending(true)
	s.Suspend()
	if st.Log().Head() <= st.Log().Begin() {
		t.Fatal("nothing reached the device")
	}
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
