package cluster

import (
	"context"
	"errors"
	"testing"
)

func TestParseRanges(t *testing.T) {
	rs, err := ParseRanges("0-99, 200,300-300")
	if err != nil || len(rs) != 3 || rs[0] != (Range{0, 99}) || rs[1] != (Range{200, 200}) || rs[2].Len() != 1 {
		t.Fatalf("ParseRanges = %v, %v", rs, err)
	}
	for _, bad := range []string{"", "5-1", "16384", "-3", "a-b", "1-2-3"} {
		if _, err := ParseRanges(bad); err == nil {
			t.Errorf("ParseRanges(%q) accepted", bad)
		}
	}
	if got := FormatRanges(rs); got != "0-99,200,300" {
		t.Errorf("FormatRanges = %q", got)
	}
}

func TestSlotSet(t *testing.T) {
	var s SlotSet
	s.Add(Range{10, 200})
	s.Add(Range{16000, 16383})
	s.Remove(Range{100, 100})
	if !s.Has(10) || s.Has(100) || !s.Has(16383) || s.Has(9) || s.Count() != 191-1+384 {
		t.Fatalf("set %v holds %d", s.Ranges(), s.Count())
	}
	if got := s.Ranges(); len(got) != 3 || got[1] != (Range{101, 200}) {
		t.Fatalf("Ranges = %v", got)
	}
	if AllSlots().Count() != Slots {
		t.Fatal("AllSlots misses some")
	}
}

func TestNewMapSpreadsEvenly(t *testing.T) {
	m, err := NewMap("c", []Server{{ID: "b"}, {ID: "a"}, {ID: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, id := range m.ServerIDs() {
		n := m.Owned(id).Count()
		if n < Slots/3 || n > Slots/3+1 {
			t.Fatalf("%s owns %d slots", id, n)
		}
		total += n
	}
	if total != Slots || m.Ranges[0].Owner != "a" {
		t.Fatalf("map %+v", m.Ranges)
	}
	if a, ok := m.Owner(Slots - 1); !ok || a.Owner != "c" {
		t.Fatalf("owner of the last slot: %+v %v", a, ok)
	}
	if _, err := NewMap("c", nil); err == nil {
		t.Fatal("a map without servers")
	}
}

func TestValidateRefusesBrokenMaps(t *testing.T) {
	m, _ := NewMap("c", []Server{{ID: "a"}, {ID: "b"}})
	for name, broken := range map[string]func(*Map){
		"overlap":       func(m *Map) { m.Ranges[1].First = m.Ranges[0].Last },
		"unknown owner": func(m *Map) { m.Ranges[0].Owner = "z" },
		"no view":       func(m *Map) { delete(m.Views, "a") },
		"bad from":      func(m *Map) { m.Ranges[0].From = "b" },
	} {
		n := m.clone()
		broken(n)
		if err := n.Validate(); !errors.Is(err, ErrInvalidMap) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
	if _, err := m.Assign([]Range{{0, 1}}, "z", nil); !errors.Is(err, ErrUnknownServer) {
		t.Fatalf("assign to an unknown server: %v", err)
	}
}

// TestChangeRetriesConflicts: a change that loses the race is made again
// from a fresh read.
func TestChangeRetriesConflicts(t *testing.T) {
	ctx := context.Background()
	md := NewMem()
	m, _ := NewMap("c", []Server{{ID: "a"}, {ID: "b"}})
	if _, err := md.SwapMap(ctx, 0, m); err != nil {
		t.Fatal(err)
	}
	calls := 0
	got, err := Change(ctx, md, 3, func(st State) (*Map, error) {
		calls++
		if calls == 1 { // someone else changes the map first
			other, _ := st.Map.Assign([]Range{{0, 9}}, "b", nil)
			if _, err := md.SwapMap(ctx, st.MapRevision, other); err != nil {
				t.Fatal(err)
			}
		}
		return st.Map.Assign([]Range{{20, 29}}, "b", nil)
	})
	if err != nil || calls != 2 {
		t.Fatalf("Change: %v after %d calls", err, calls)
	}
	if a, _ := got.Owner(5); a.Owner != "b" || got.Epoch != 3 {
		t.Fatalf("the other change was lost: %+v", got.Ranges)
	}
	md.SetDown(true)
	if _, err := Change(ctx, md, 3, func(State) (*Map, error) { return nil, nil }); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Change with the store down: %v", err)
	}
}

// TestRoutingWithHolds: the held slots leave Serving, Misses and Accept
// come along, the routing it starts from is unchanged, and no holds change
// nothing.
func TestRoutingWithHolds(t *testing.T) {
	r := &Routing{View: 3, Serving: AllSlots()}
	h := Holds{Hold: &SlotSet{}, Misses: &SlotSet{}, Accept: []Accepting{{ID: 7, Slots: &SlotSet{}}}}
	h.Hold.Add(Range{First: 10, Last: 19})
	h.Misses.Add(Range{First: 20, Last: 29})
	got := r.WithHolds(&h)
	switch {
	case got.View != 3 || got.Serving.Has(10) || got.Serving.Has(19) || !got.Serving.Has(20) || !got.Serving.Has(9):
		t.Fatalf("serving %v", got.Serving.Ranges())
	case got.Misses == nil || !got.Misses.Has(25) || got.Misses.Has(10) || len(got.Accept) != 1:
		t.Fatalf("misses %v accept %v", got.Misses, got.Accept)
	case !r.Serving.Has(10):
		t.Fatal("WithHolds changed the routing it started from")
	}
	none := Holds{Hold: &SlotSet{}, Misses: &SlotSet{}}
	if got := r.WithHolds(&none); got.Misses != nil || *got.Serving != *r.Serving {
		t.Fatalf("empty holds: %+v", got)
	}
	if r.WithHolds(nil) != r {
		t.Fatal("nil holds made a new routing")
	}
}
