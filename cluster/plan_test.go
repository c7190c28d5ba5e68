package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

var planSeed = flag.Uint64("plan-seed", 0, "run TestPlanSimulation with this seed only")

// randomMap returns a map of n servers (s1..sn) whose slots are spread in
// random fragments, some left unassigned.
func randomMap(rng *rand.Rand, n int) *Map {
	var servers []Server
	for i := range n {
		servers = append(servers, Server{ID: ServerID(fmt.Sprintf("s%d", i+1))})
	}
	m, _ := NewMap("t", servers)
	slots := make([]Assignment, Slots)
	for s := 0; s < Slots; {
		run := 1 + rng.IntN(3000)
		owner := ServerID("")
		if rng.IntN(10) > 0 {
			owner = servers[rng.IntN(n)].ID
		}
		for ; run > 0 && s < Slots; run, s = run-1, s+1 {
			slots[s] = Assignment{Owner: owner}
		}
	}
	m.Ranges = compress(slots)
	return m
}

// applySteps moves every step's slots in m (no handovers), checking that
// each source assigns them when its step runs and that no slot moves twice.
func applySteps(t *testing.T, m *Map, steps []Step, maxSlots int) map[ServerID]int {
	t.Helper()
	var moved SlotSet
	for i, s := range steps {
		if maxSlots > 0 && s.Slots() > maxSlots {
			t.Fatalf("step %d moves %d slots, more than %d", i, s.Slots(), maxSlots)
		}
		if got := assignedTo(m, s.Ranges); got != s.Source {
			t.Fatalf("step %d %+v: its slots are %q's", i, s, got)
		}
		for _, r := range s.Ranges {
			for x := int(r.First); x <= int(r.Last); x++ {
				if moved.Has(uint16(x)) {
					t.Fatalf("slot %d moves twice", x)
				}
			}
			moved.Add(r)
		}
		applied := map[ServerID]uint64{}
		maps := m.Views
		for id, v := range maps {
			applied[id] = v + 1
		}
		n, err := m.Assign(s.Ranges, s.Target, applied)
		if err != nil {
			t.Fatal(err)
		}
		*m = *n
	}
	count := map[ServerID]int{}
	for _, a := range m.Ranges {
		count[a.Owner] += a.Len()
	}
	return count
}

func TestNewPlanBalances(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 1 + rng.IntN(7)
		m := randomMap(rng, n)
		kind, id := PlanAdd, ServerID("new")
		if n > 1 && rng.IntN(2) == 0 {
			kind, id = PlanDrain, ServerID(fmt.Sprintf("s%d", 1+rng.IntN(n)))
		} else {
			m = m.WithServer(Server{ID: id})
		}
		maxSlots := []int{0, 100, 1000, 5000}[rng.IntN(4)]
		before := map[ServerID]int{}
		total := 0
		for _, a := range m.Ranges {
			before[a.Owner] += a.Len()
			total += a.Len()
		}
		p, err := NewPlan(State{Map: m}, kind, id, maxSlots)
		if errors.Is(err, ErrBalanced) || err != nil && kind == PlanDrain && before[id] == 0 {
			continue
		}
		if err != nil {
			t.Fatalf("seed %d: %s %s: %v", seed, kind, id, err)
		}
		members := 0
		for sid, c := range before {
			if c > 0 && sid != id {
				members++
			}
		}
		if kind == PlanAdd {
			members++
		}
		after := applySteps(t, m.clone(), p.Steps, maxSlots)
		movedSlots := 0
		for _, s := range p.Steps {
			movedSlots += s.Slots()
		}
		surplus := 0
		for sid, b := range before {
			surplus += max(0, b-after[sid])
		}
		for sid, c := range after {
			share := total / members
			if sid == id && kind == PlanDrain {
				share = 0
			}
			if c != share && c != share+1 && !(kind == PlanDrain && sid == id && c == 0) {
				t.Fatalf("seed %d: %s %s: %s ends with %d slots, share %d of %d over %d members", seed, kind, id, sid, c, share, total, members)
			}
		}
		if kind == PlanDrain && after[id] != 0 {
			t.Fatalf("seed %d: drained %s keeps %d slots", seed, id, after[id])
		}
		if movedSlots != surplus {
			t.Fatalf("seed %d: %d slots moved where %d had to", seed, movedSlots, surplus)
		}
	}
}

func TestNewPlanRefuses(t *testing.T) {
	m, _ := NewMap("t", []Server{{ID: "a"}, {ID: "b"}})
	st := State{Map: m}
	for _, c := range []struct {
		name string
		st   State
		kind PlanKind
		id   ServerID
		want error
	}{
		{"no map", State{}, PlanAdd, "a", ErrNoMap},
		{"unknown server", st, PlanAdd, "c", ErrUnknownServer},
		{"balanced", st, PlanAdd, "a", ErrBalanced},
		{"running plan", State{Map: m, Plans: []Plan{{ID: 1}}}, PlanDrain, "a", ErrPlanRunning},
		{"running migration", State{Map: m, Migrations: []Migration{{ID: 1, Phase: PhaseMove}}}, PlanDrain, "a", ErrMigrating},
	} {
		if _, err := NewPlan(c.st, c.kind, c.id, 0); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	one, _ := NewMap("t", []Server{{ID: "a"}})
	if _, err := NewPlan(State{Map: one}, PlanDrain, "a", 0); err == nil {
		t.Error("draining the only server was planned")
	}
	p, err := NewPlan(State{Map: m, Plans: []Plan{{ID: 4, Ended: true}}}, PlanDrain, "a", 0)
	if err != nil || p.ID != 5 || len(p.Steps) != 1 || p.Steps[0].Source != "a" || p.Steps[0].Target != "b" || p.Steps[0].Slots() != Slots/2 {
		t.Errorf("draining a: %+v %v", p, err)
	}
}

// simMigrations plays the servers for plans: every running migration
// completes (the map moves its slots and the source reports the view
// without them) or, one time in cancelEvery, is cancelled.
type simMigrations struct {
	md          *Mem
	rng         *rand.Rand
	cancelEvery int
}

func (s *simMigrations) step(t *testing.T, ctx context.Context) bool {
	st, err := s.md.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var running []Migration
	for _, m := range st.Migrations {
		if !m.Phase.Final() {
			running = append(running, m)
		}
	}
	if len(running) == 0 {
		return false
	}
	m := running[s.rng.IntN(len(running))]
	if m.CancelRequested || s.cancelEvery > 0 && s.rng.IntN(s.cancelEvery) == 0 {
		m.Phase, m.Reason = PhaseCancelled, "simulated"
		if _, err := s.md.SwapMigration(ctx, MigrationSwap{Migration: m}); err != nil {
			t.Fatal(err)
		}
		return true
	}
	next, err := st.Map.Assign(m.Ranges, m.Target, st.Applied)
	if err != nil {
		t.Fatal(err)
	}
	m.Phase = PhaseComplete
	if _, err := s.md.SwapMigration(ctx, MigrationSwap{Migration: m, Map: next, MapRevision: st.MapRevision}); err != nil {
		t.Fatal(err)
	}
	if err := s.md.ReportApplied(ctx, m.Source, next.Views[m.Source]); err != nil {
		t.Fatal(err)
	}
	return true
}

// runPlanner applies Next until it has nothing to do, checking one running
// step per source; it returns how many changes it stored.
func runPlanner(t *testing.T, ctx context.Context, md *Mem, id PlanID) int {
	n := 0
	for {
		st, _ := md.Load(ctx)
		p, _ := st.PlanByID(id)
		w, ok := p.Next(st)
		if !ok {
			return n
		}
		busy := map[ServerID]bool{}
		for _, s := range w.Plan.Steps {
			if s.State == StepRunning {
				if busy[s.Source] {
					t.Fatalf("two steps of source %s run: %+v", s.Source, w.Plan.Steps)
				}
				busy[s.Source] = true
			}
		}
		if _, err := md.SwapPlan(ctx, w); err != nil {
			t.Fatal(err)
		}
		n++
	}
}

// TestPlanSimulation drives plans through migrations that complete or are
// cancelled in random order, with plans resumed from the store at every
// change, and checks that each ends with the map balanced (or failed after
// MaxStepTries cancels of one step, or cancelled by an operator).
func TestPlanSimulation(t *testing.T) {
	seeds := make([]uint64, 200)
	for i := range seeds {
		seeds[i] = uint64(i)
	}
	if *planSeed != 0 {
		seeds = []uint64{*planSeed}
	}
	outcomes := map[string]int{}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { outcomes[planSimulation(t, seed)]++ })
	}
	t.Logf("outcomes: %v", outcomes)
	if *planSeed == 0 && (outcomes["done"] == 0 || outcomes["failed"] == 0 || outcomes["cancelled"] == 0) {
		t.Fatalf("the seeds did not reach every ending: %v", outcomes)
	}
}

// planSimulation runs one seed and says how its plan ended: done, failed,
// cancelled, or none (nothing to plan).
func planSimulation(t *testing.T, seed uint64) string {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 11))
	md := NewMem()
	n := 2 + rng.IntN(4)
	m := randomMap(rng, n)
	kind, id := PlanDrain, ServerID(fmt.Sprintf("s%d", 1+rng.IntN(n)))
	if rng.IntN(2) == 0 {
		kind, id = PlanAdd, "new"
		m = m.WithServer(Server{ID: id})
	}
	if _, err := md.SwapMap(ctx, 0, m); err != nil {
		t.Fatal(err)
	}
	st, _ := md.Load(ctx)
	p, err := NewPlan(st, kind, id, []int{0, 500, 2000}[rng.IntN(3)])
	if errors.Is(err, ErrBalanced) || err != nil && kind == PlanDrain {
		return "none" // a drain of a server without slots
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.SwapPlan(ctx, PlanSwap{Plan: p}); err != nil {
		t.Fatal(err)
	}
	sim := &simMigrations{md: md, rng: rng, cancelEvery: []int{0, 4, 2}[rng.IntN(3)]}
	cancelAt := -1
	if rng.IntN(4) == 0 {
		cancelAt = rng.IntN(len(p.Steps) + 1)
	}
	for round := 0; ; round++ {
		if round > 10000 {
			t.Fatal("the plan never ends")
		}
		if round == cancelAt {
			st, _ := md.Load(ctx)
			q, _ := st.PlanByID(p.ID)
			if !q.Ended {
				q.CancelRequested = true
				if _, err := md.SwapPlan(ctx, PlanSwap{Plan: q}); err != nil {
					t.Fatal(err)
				}
			}
		}
		changes := runPlanner(t, ctx, md, p.ID)
		if !sim.step(t, ctx) && changes == 0 {
			break
		}
	}
	st, _ = md.Load(ctx)
	q, _ := st.PlanByID(p.ID)
	if !q.Ended {
		t.Fatalf("plan not ended and nothing runs: %+v", q)
	}
	for _, s := range q.Steps {
		if !s.State.final() {
			t.Fatalf("ended plan with step %+v", s)
		}
		if s.Tries > MaxStepTries {
			t.Fatalf("step tried %d times", s.Tries)
		}
	}
	for _, mg := range st.Migrations {
		if !mg.Phase.Final() {
			t.Fatalf("migration %v runs after its plan ended", &mg)
		}
	}
	if q.Reason != "" {
		if q.CancelRequested {
			return "cancelled"
		}
		if !slices.ContainsFunc(q.Steps, func(s Step) bool { return s.Tries == MaxStepTries }) {
			t.Fatalf("plan failed without a step tried %d times: %+v", MaxStepTries, q)
		}
		return "failed"
	}
	// Every step done: the map is balanced.
	total, count := 0, map[ServerID]int{}
	for _, a := range st.Map.Ranges {
		count[a.Owner] += a.Len()
		total += a.Len()
	}
	members := len(count)
	for sid, c := range count {
		if share := total / members; c != share && c != share+1 {
			t.Fatalf("%s ends with %d slots, share %d: %s", sid, c, share, q.Summary())
		}
	}
	if kind == PlanDrain && count[id] != 0 {
		t.Fatalf("drained %s owns %d slots", id, count[id])
	}
	return "done"
}

// TestPlanWaitsForHandover: a step whose source was given its slots but
// has not been handed them yet waits; steps of one source run one at a
// time; a step whose slots reached its target otherwise is done.
func TestPlanWaitsForHandover(t *testing.T) {
	m, _ := NewMap("t", []Server{{ID: "a"}, {ID: "b"}})
	m = m.WithServer(Server{ID: "c"})
	p := Plan{ID: 1, Kind: PlanAdd, Server: "c", Steps: []Step{
		{Source: "a", Target: "c", Ranges: []Range{{0, 9}}, State: StepPending},
		{Source: "a", Target: "c", Ranges: []Range{{10, 19}}, State: StepPending},
		{Source: "b", Target: "c", Ranges: []Range{{100, 109}}, State: StepPending},
	}}
	// b was given 100-109 from a, which has not applied that view yet.
	moved, err := m.Assign([]Range{{100, 109}}, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	st := State{Map: moved, Applied: map[ServerID]uint64{}}
	w, ok := p.Next(st)
	if !ok || w.Migration == nil || w.Migration.Source != "a" || w.Plan.Steps[0].State != StepRunning {
		t.Fatalf("first change: %+v %v", w, ok)
	}
	st.Migrations = append(st.Migrations, *w.Migration)
	if w2, ok := w.Plan.Next(st); ok {
		t.Fatalf("a second change while a's step runs and b waits for its handover: %+v", w2)
	}
	st.Applied["a"] = moved.Views["a"]
	w2, ok := w.Plan.Next(st)
	if !ok || w2.Migration == nil || w2.Migration.Source != "b" {
		t.Fatalf("after the handover: %+v %v", w2, ok)
	}
	st.Migrations = append(st.Migrations, *w2.Migration)
	// Slots 10-19 reach c outside the plan: their step is done at once
	// when a is free.
	st.Map, _ = st.Map.Assign([]Range{{10, 19}}, "c", st.Applied)
	st.Migrations[0].Phase = PhaseComplete
	p3 := w2.Plan
	p3.Steps = slices.Clone(p3.Steps)
	w3, _ := p3.Next(st)
	w4, _ := w3.Plan.Next(st)
	if w3.Plan.Steps[0].State != StepDone || w4.Plan.Steps[1].State != StepDone || w4.Plan.Steps[1].Note == "" || w4.Migration != nil {
		t.Fatalf("after a's migration completed: %+v / %+v", w3.Plan.Steps, w4.Plan.Steps)
	}
}

// TestPlanYieldsToOperators: a step whose slots another migration holds
// waits for it (the slots may come back), whatever the map says now; an
// operator's cancel of a plan's migration ends the plan instead of a retry.
func TestPlanYieldsToOperators(t *testing.T) {
	m, _ := NewMap("t", []Server{{ID: "a"}, {ID: "b"}})
	m = m.WithServer(Server{ID: "c"})
	p := Plan{ID: 1, Kind: PlanAdd, Server: "c", Steps: []Step{{Source: "a", Target: "c", Ranges: []Range{{0, 9}}, State: StepPending}}}
	moved, _ := m.Assign([]Range{{0, 9}}, "c", nil)
	st := State{Map: moved, Migrations: []Migration{{ID: 1, Source: "a", Target: "c", Ranges: []Range{{0, 9}}, Phase: PhaseMove}}}
	if w, ok := p.Next(st); ok {
		t.Fatalf("a step changed while an operator's migration holds its slots: %+v", w.Plan.Steps)
	}
	st = State{Map: m, Applied: map[ServerID]uint64{}}
	w, _ := p.Next(st)
	st.Migrations = []Migration{*w.Migration}
	st.Migrations[0].Phase, st.Migrations[0].CancelRequested = PhaseCancelled, true
	w2, _ := w.Plan.Next(st)
	w3, _ := w2.Plan.Next(st)
	if w2.Plan.Steps[0].State != StepCancelled || w2.Plan.Reason == "" || !w3.Plan.Ended || w3.Migration != nil {
		t.Fatalf("after an operator's cancel: %+v / %+v", w2.Plan, w3.Plan)
	}
}
