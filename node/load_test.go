package node

import (
	"testing"

	"github.com/fleetkv/fleetkv/cluster"
)

// TestSummarise: the total over the interval, and the busiest
// cluster.MaxReportedSlots slots by slot.
func TestSummarise(t *testing.T) {
	var ops [cluster.Slots]uint64
	for s := range 1000 {
		ops[s*7] = uint64(s + 1) // slots 0, 7, ..., the later the busier
	}
	l := summarise(&ops, 2, 5)
	if l.Seq != 5 || l.OpsPerSec != 1000*1001/2/2.0 || len(l.Slots) != cluster.MaxReportedSlots {
		t.Fatalf("%+v", l)
	}
	for i, sl := range l.Slots {
		s := 1000 - cluster.MaxReportedSlots + i
		if sl.Slot != uint16(s*7) || sl.OpsPerSec != float64(s+1)/2 {
			t.Fatalf("slot %d: %+v", i, sl)
		}
	}
	if l := summarise(&[cluster.Slots]uint64{3: 4}, 1, 1); len(l.Slots) != 1 || l.OpsPerSec != 4 {
		t.Fatalf("%+v", l)
	}
}
