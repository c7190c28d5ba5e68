package server

import (
	"context"
	"testing"

	"github.com/fleetkv/fleetkv/wire"
)

// TestDeliverAnswersParkedReads: records handed to the loops in process
// (Deliver) answer the reads parked on their keys, on whichever loop
// parked them: a moved record its value, an absence NOT_FOUND; a record
// no read waits for is stored; one of a migration the routing does not
// accept is not; a kind other than a moved record or an absence is refused.
func TestDeliverAnswersParkedReads(t *testing.T) {
	s := startTest(t, func(c *Config) { c.ServerID = "me"; c.Loops = 2 })
	pt := newParkingTarget(t, s)
	pt.read("moved", "{m}a")
	pt.read("absent", "{m}b")
	if err := pt.reader.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two reads parked", func() bool { return s.Stats().ParkedReads == 2 })
	if _, err := s.Deliver([]Delivered{{ID: 7, Kind: wire.MigrateFetch, Key: []byte("{m}a")}}); err == nil {
		t.Error("a fetch was delivered")
	}
	recs := []Delivered{
		{ID: 7, Kind: wire.MigrateMoved, Key: []byte("{m}a"), Value: []byte("from the source")},
		{ID: 7, Kind: wire.MigrateAbsent, Key: []byte("{m}b")},
		{ID: 7, Kind: wire.MigrateMoved, Key: []byte("{m}c"), Value: []byte("no one waited")},
		{ID: 8, Kind: wire.MigrateMoved, Key: []byte("{m}d"), Value: []byte("not accepted")},
	}
	taken, err := s.Deliver(recs)
	if err != nil {
		t.Fatal(err)
	}
	<-taken
	if err := pt.reader.Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]readAnswer{"moved": {"from the source", true, nil}, "absent": {"", false, nil}} {
		if got := pt.answers[name]; got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	if err := s.Install(context.Background(), pt.base); err != nil { // every record arrived
		t.Fatal(err)
	}
	pt.read("stored", "{m}c")
	pt.read("not accepted", "{m}d")
	if err := pt.reader.Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]readAnswer{"stored": {"no one waited", true, nil}, "not accepted": {"", false, nil}} {
		if got := pt.answers[name]; got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	if w := s.Stats().ParkWaits; w.Count() != 2 {
		t.Errorf("park waits: %d, want the 2 reads", w.Count())
	}
}

// TestDeliverWithoutLoops: a server that is not serving takes nothing, and
// says so at once.
func TestDeliverWithoutLoops(t *testing.T) {
	s := &Server{}
	taken, err := s.Deliver([]Delivered{{ID: 7, Kind: wire.MigrateAbsent, Key: []byte("k")}})
	if err == nil {
		t.Fatal("a server without loops took records")
	}
	<-taken
}
