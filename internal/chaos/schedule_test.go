package chaos

import (
	"slices"
	"testing"
	"time"
)

// TestSchedule: a seed gives the same schedule again; faults do not
// overlap and end within the span; every kind is drawn; each names nodes
// of its kind (a peer is another server).
func TestSchedule(t *testing.T) {
	servers, metas := []string{"s1", "s2", "s3"}, []string{"meta-0", "meta-1", "meta-2"}
	const span = 100 * time.Second
	a := NewSchedule(7, 200, span, servers, metas, AllFaults)
	if b := NewSchedule(7, 200, span, servers, metas, AllFaults); !slices.Equal(a, b) {
		t.Fatal("seed 7 gave two schedules")
	}
	if c := NewSchedule(8, 200, span, servers, metas, AllFaults); slices.Equal(a, c) {
		t.Fatal("seeds 7 and 8 gave one schedule")
	}
	seen := map[FaultKind]int{}
	var end time.Duration
	for i, f := range a {
		seen[f.Kind]++
		if f.At < end || f.For <= 0 || f.At+f.For > span {
			t.Fatalf("fault %d (%s) overlaps the one before (ends %v) or leaves the span", i, f, end)
		}
		end = f.At + f.For
		want := servers
		if f.Kind == KillMeta {
			want = metas
		}
		if !slices.Contains(want, f.Node) {
			t.Fatalf("fault %d (%s): node not a %v", i, f, want)
		}
		if (f.Kind == CutPeer) != (f.Peer != "") || f.Peer == f.Node || (f.Peer != "" && !slices.Contains(servers, f.Peer)) {
			t.Fatalf("fault %d (%s): peer", i, f)
		}
	}
	if len(seen) != len(AllFaults) {
		t.Fatalf("kinds drawn: %v", seen)
	}
	for _, f := range NewSchedule(7, 50, span, servers, metas, []FaultKind{Lose}) {
		if f.Kind != Lose {
			t.Fatalf("%s drawn from Lose alone", f)
		}
	}
}

func TestParseKinds(t *testing.T) {
	if ks, err := ParseKinds("kill-server, lose"); err != nil || !slices.Equal(ks, []FaultKind{KillServer, Lose}) {
		t.Fatalf("ParseKinds = %v, %v", ks, err)
	}
	if ks, err := ParseKinds(""); err != nil || !slices.Equal(ks, AllFaults) {
		t.Fatalf("ParseKinds(\"\") = %v, %v", ks, err)
	}
	if _, err := ParseKinds("kill-everything"); err == nil {
		t.Fatal("an unknown kind was accepted")
	}
}
