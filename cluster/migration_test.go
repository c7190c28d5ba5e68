package cluster

import (
	"slices"
	"testing"
)

// TestCollectable: a migration record is collectable once it is final,
// below both its servers' clean-up floors, not a running plan step's, and
// older than the records kept; the newest is always kept.
func TestCollectable(t *testing.T) {
	rec := func(id MigrationID, p Phase, src, dst ServerID) Migration {
		return Migration{ID: id, Source: src, Target: dst, Phase: p, Revision: int64(id)}
	}
	st := State{
		Migrations: []Migration{
			rec(1, PhaseComplete, "a", "b"),  // collectable
			rec(2, PhaseCancelled, "a", "c"), // c's floor is below it
			rec(3, PhaseMove, "a", "b"),      // not final
			rec(4, PhaseComplete, "b", "a"),  // a running step's
			rec(5, PhaseCancelled, "b", "a"), // collectable
			rec(6, PhaseComplete, "a", "b"),  // kept: among the newest
			rec(7, PhaseComplete, "a", "b"),
		},
		Cleaned: map[ServerID]MigrationID{"a": 8, "b": 8, "c": 2},
		Plans: []Plan{
			{ID: 1, Steps: []Step{{State: StepRunning, Migration: 4}}},
			{ID: 2, Ended: true, Steps: []Step{{State: StepRunning, Migration: 5}}}, // ended: not read again
		},
	}
	ids := func(ms []Migration) (out []MigrationID) {
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	if got := ids(Collectable(st, 2)); !slices.Equal(got, []MigrationID{1, 5}) {
		t.Fatalf("collectable keeping 2: %v, want [1 5]", got)
	}
	if got := ids(Collectable(st, 0)); !slices.Equal(got, []MigrationID{1, 5, 6}) {
		t.Fatalf("collectable keeping 0: %v, want [1 5 6] (the newest stays)", got)
	}
	if got := Collectable(State{}, 0); len(got) != 0 {
		t.Fatalf("collectable of an empty store: %v", got)
	}
}
