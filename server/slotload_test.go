package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/keyhash"
)

// TestSlotLoad: every data operation admitted counts once in its key's
// slot, over every loop; SlotLoad clears what it returns.
func TestSlotLoad(t *testing.T) {
	s := startTest(t, nil)
	c, err := client.New(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := s.SlotLoad(ctx); err != nil { // what starting counted
		t.Fatal(err)
	}
	want := map[uint16]uint64{}
	for i := range 200 {
		k := []byte(fmt.Sprint("load:", i%50))
		want[keyhash.Slot(k)]++
		if i%2 == 0 {
			err = c.Set(ctx, k, k)
		} else {
			_, _, err = c.Get(ctx, k)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.SlotLoad(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for slot, n := range got {
		if n != want[uint16(slot)] {
			t.Fatalf("slot %d: %d operations counted, %d ran", slot, n, want[uint16(slot)])
		}
	}
	again, _ := s.SlotLoad(ctx)
	for slot, n := range again {
		if n != 0 {
			t.Fatalf("slot %d: %d counted again", slot, n)
		}
	}
}
