package cluster

import (
	"testing"
	"time"
)

// rebalanceState is three servers, a/b/c, with NewMap's ranges (a:
// 0-5460, b: 5461-10921, c: 10922-16383), all live, with loads.
func rebalanceState(loads map[ServerID]ServerLoad) State {
	m, _ := NewMap("t", []Server{{ID: "a"}, {ID: "b"}, {ID: "c"}})
	return State{Map: m, Live: map[ServerID]Server{"a": {ID: "a"}, "b": {ID: "b"}, "c": {ID: "c"}}, Loads: loads}
}

func load(total float64, slots ...SlotLoad) ServerLoad {
	return ServerLoad{OpsPerSec: total, Slots: slots}
}

func TestRebalancerWaitsThenMovesAHotSlot(t *testing.T) {
	r := NewRebalancer(RebalanceConfig{Mode: RebalanceOn, Window: 10 * time.Second, Cooldown: 30 * time.Second})
	st := rebalanceState(map[ServerID]ServerLoad{
		"a": load(9000, SlotLoad{10, 8000}, SlotLoad{20, 1000}), "b": load(500), "c": load(600)})
	t0 := time.Unix(1000, 0)
	if d := r.Step(st, t0); d.Plan != nil || d.Note == "" {
		t.Fatalf("first sight of a hot server: %+v", d)
	}
	for _, dt := range []time.Duration{5 * time.Second, 15 * time.Second, 29 * time.Second} {
		if d := r.Step(st, t0.Add(dt)); d.Plan != nil {
			t.Fatalf("a plan after %v (window 10 s, cooldown 30 s from the first step): %+v", dt, d)
		}
	}
	d := r.Step(st, t0.Add(30*time.Second))
	if d.Plan == nil {
		t.Fatalf("no plan after the cooldown: %+v", d)
	}
	s := d.Plan.Steps[0]
	// mean 3366, amount min(5633, 2866): slot 10 (8000 ops/s) moves whole
	// to the coolest, b.
	if d.Plan.Kind != PlanRebalance || s.Source != "a" || s.Target != "b" || len(s.Ranges) != 1 || s.Ranges[0] != (Range{10, 10}) ||
		!d.Plan.At.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("plan %+v", d.Plan)
	}
	if d := r.Step(st, t0.Add(31*time.Second)); d.Plan != nil {
		t.Fatalf("a second plan at once: %+v", d)
	}
}

func TestRebalancerSplitsARun(t *testing.T) {
	r := NewRebalancer(RebalanceConfig{Mode: RebalanceOn, Window: time.Second, Cooldown: time.Second})
	var slots []SlotLoad
	for s := uint16(100); s < 200; s++ {
		slots = append(slots, SlotLoad{s, 90}) // 9000 over a's 100..199
	}
	slots = append(slots, SlotLoad{5000, 10})
	st := rebalanceState(map[ServerID]ServerLoad{"a": load(9010, slots...), "b": load(400), "c": load(300)})
	t0 := time.Unix(1000, 0)
	var d Decision
	for i := 0; i < 5 && d.Plan == nil; i++ {
		d = r.Step(st, t0.Add(time.Duration(i)*time.Second))
	}
	if d.Plan == nil {
		t.Fatal("no plan")
	}
	// mean 3236.7, amount min(5773.3, 2936.7): from slot 5000 (the run's
	// busiest top) down, 10 + 90 × 33 = 2980 ≥ amount at slot 167.
	s := d.Plan.Steps[0]
	if s.Target != "c" || len(s.Ranges) != 1 || s.Ranges[0] != (Range{167, 5000}) {
		t.Fatalf("step %+v", s)
	}
	// Those slots moved by a rebalance a minute ago stay: the next plan
	// takes the rest of the run.
	st.Plans = []Plan{{ID: 1, Kind: PlanRebalance, Ended: true, At: t0.Add(-time.Minute), Steps: []Step{s}}}
	r = NewRebalancer(RebalanceConfig{Mode: RebalanceOn, Window: time.Second, Cooldown: time.Second})
	d = Decision{}
	for i := 0; i < 5 && d.Plan == nil; i++ {
		d = r.Step(st, t0.Add(time.Duration(i)*time.Second))
	}
	if d.Plan == nil || d.Plan.ID != 2 || d.Plan.Steps[0].Ranges[0] != (Range{134, 166}) {
		t.Fatalf("after a recent move: %+v", d.Plan)
	}
}

func TestRebalancerStaysQuiet(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		name string
		cfg  RebalanceConfig
		st   State
	}{
		{"off", RebalanceConfig{Mode: RebalanceOff}, rebalanceState(map[ServerID]ServerLoad{"a": load(9000, SlotLoad{1, 9000}), "b": load(0), "c": load(0)})},
		{"balanced", RebalanceConfig{Mode: RebalanceOn}, rebalanceState(map[ServerID]ServerLoad{"a": load(3300, SlotLoad{1, 3000}), "b": load(3000), "c": load(3100)})},
		{"under the floor", RebalanceConfig{Mode: RebalanceOn, Floor: 5000}, rebalanceState(map[ServerID]ServerLoad{"a": load(4000, SlotLoad{1, 4000}), "b": load(0), "c": load(0)})},
		{"one reporter", RebalanceConfig{Mode: RebalanceOn}, rebalanceState(map[ServerID]ServerLoad{"a": load(9000, SlotLoad{1, 9000})})},
		{"a migration runs", RebalanceConfig{Mode: RebalanceOn}, func() State {
			st := rebalanceState(map[ServerID]ServerLoad{"a": load(9000, SlotLoad{1, 9000}), "b": load(0), "c": load(0)})
			st.Migrations = []Migration{{ID: 1, Phase: PhaseMove}}
			return st
		}()},
	} {
		c.cfg.Window, c.cfg.Cooldown = time.Second, time.Second
		r := NewRebalancer(c.cfg)
		for i := range 10 {
			if d := r.Step(c.st, t0.Add(time.Duration(i)*time.Second)); d.Plan != nil {
				t.Errorf("%s: plan %+v", c.name, d.Plan)
			}
		}
	}
}

// TestRebalancerHotServerChanges: the window starts again when another
// server becomes the hot one, and a run of busy state restarts the cooldown.
func TestRebalancerHotServerChanges(t *testing.T) {
	r := NewRebalancer(RebalanceConfig{Mode: RebalanceOn, Window: 10 * time.Second, Cooldown: time.Second})
	hotA := rebalanceState(map[ServerID]ServerLoad{"a": load(9000, SlotLoad{1, 9000}), "b": load(0), "c": load(0)})
	hotB := rebalanceState(map[ServerID]ServerLoad{"a": load(0), "b": load(9000, SlotLoad{6000, 4500}, SlotLoad{7000, 4500}), "c": load(0)})
	t0 := time.Unix(1000, 0)
	r.Step(hotA, t0)
	r.Step(hotB, t0.Add(8*time.Second))
	if d := r.Step(hotB, t0.Add(12*time.Second)); d.Plan != nil {
		t.Fatalf("b hot for 4 s only: %+v", d.Plan)
	}
	if d := r.Step(hotB, t0.Add(18*time.Second)); d.Plan == nil || d.Plan.Server != "b" {
		t.Fatalf("b hot for 10 s: %+v", d)
	}
}

// TestRebalancerEdges: two servers rebalance (of two, the busier is always
// exactly mean + sd); a server that owns no slot (drained) is no target;
// a slot too hot to split is not moved (it would only move the hot spot).
func TestRebalancerEdges(t *testing.T) {
	t0 := time.Unix(1000, 0)
	run := func(st State) Decision {
		r := NewRebalancer(RebalanceConfig{Mode: RebalanceOn, Window: time.Second, Cooldown: time.Second})
		var d Decision
		for i := 0; i < 5 && d.Plan == nil; i++ {
			d = r.Step(st, t0.Add(time.Duration(i)*time.Second))
		}
		return d
	}
	m, _ := NewMap("t", []Server{{ID: "a"}, {ID: "b"}})
	two := State{Map: m, Live: map[ServerID]Server{"a": {ID: "a"}, "b": {ID: "b"}},
		Loads: map[ServerID]ServerLoad{"a": load(9000, SlotLoad{1, 4500}, SlotLoad{2, 4500}), "b": load(100)}}
	if d := run(two); d.Plan == nil || d.Plan.Steps[0].Target != "b" {
		t.Fatalf("two servers: %+v", d)
	}
	drained := rebalanceState(map[ServerID]ServerLoad{"a": load(9000, SlotLoad{1, 4500}, SlotLoad{2, 4500}), "b": load(3000), "c": load(0)})
	drained.Map, _ = drained.Map.Assign([]Range{{10922, 16383}}, "b", map[ServerID]uint64{"c": 9})
	if d := run(drained); d.Plan != nil && d.Plan.Steps[0].Target == "c" {
		t.Fatalf("a drained server is the target: %+v", d.Plan)
	}
	single := rebalanceState(map[ServerID]ServerLoad{"a": load(9000, SlotLoad{10, 8500}, SlotLoad{11, 500}), "b": load(500), "c": load(600)})
	if d := run(single); d.Plan != nil {
		t.Fatalf("a slot too hot to split moved: %+v", d.Plan)
	}
}
