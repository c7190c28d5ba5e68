package session

import (
	"testing"

	"github.com/fleetkv/fleetkv/wire"
)

func TestCheck(t *testing.T) {
	s := New(true)
	data := wire.RequestHeader{View: 5, Serial: 1}
	ctl := wire.RequestHeader{Flags: wire.FlagControl}
	if v := s.Check(data, 5); v != NeedsOpen {
		t.Fatalf("data before OPEN: %v", v)
	}
	if v := s.Check(ctl, 5); v != Run {
		t.Fatalf("control before OPEN: %v", v)
	}
	s.Opened(7)
	for _, c := range []struct {
		view, serial, loopView uint64
		want                   Verdict
	}{
		{5, 1, 5, Run},
		{4, 1, 5, ViewChanged},
		{6, 1, 5, RetryLater},
	} {
		if v := s.Check(wire.RequestHeader{View: c.view, Serial: c.serial}, c.loopView); v != c.want {
			t.Errorf("view %d serial %d on loop view %d: %v, want %v", c.view, c.serial, c.loopView, v, c.want)
		}
	}
	s.Executed(1, 10)
	if s.Next() != 11 {
		t.Fatalf("next = %d", s.Next())
	}
	for serial, want := range map[uint64]Verdict{11: Run, 10: BadSerial, 12: BadSerial, 1: BadSerial} {
		if v := s.Check(wire.RequestHeader{View: 5, Serial: serial}, 5); v != want {
			t.Errorf("serial %d: %v, want %v", serial, v, want)
		}
	}
	// After a rejection, batches already on their way (past next) are
	// rejected too, until the re-issued batch at next runs.
	s.Reject(wire.BatchViewChanged, 6, 11)
	if v := s.Check(wire.RequestHeader{View: 6, Serial: 30}, 6); v != RetryLater {
		t.Fatalf("batch past next after a rejection: %v", v)
	}
	s.Executed(11, 5)
	if v := s.Check(wire.RequestHeader{View: 6, Serial: 30}, 6); v != BadSerial {
		t.Fatalf("gap after the re-issue ran: %v", v)
	}
	s.TakeOutput(6)
}

func decode(t *testing.T, b []byte) ([]wire.ResponseHeader, [][]wire.Result) {
	t.Helper()
	var hs []wire.ResponseHeader
	var rs [][]wire.Result
	for len(b) > 0 {
		h, err := wire.ParseResponseHeader(b, wire.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		var r wire.ResultReader
		var res []wire.Result
		if h.Status == wire.BatchOK {
			r.Reset(h, b[wire.HeaderSize:], wire.DefaultLimits)
			for {
				x, ok, err := r.Next()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				res = append(res, x)
			}
		}
		hs, rs = append(hs, h), append(rs, res)
		b = b[wire.HeaderSize+int(h.Length):]
	}
	return hs, rs
}

func TestResponsesAndCompletions(t *testing.T) {
	s := New(false)
	s.BeginResponse(100)
	s.Result(wire.StatusOK, []byte("v"), 0)
	s.Result(wire.StatusPending, nil, 0)
	s.AddPending(101)
	s.EndResponse(3)
	s.Reject(wire.BatchViewChanged, 4, 102)
	if !s.Complete(101, wire.StatusOK, []byte("late"), 0) {
		t.Fatal("completion of a pending serial refused")
	}
	if s.Complete(101, wire.StatusOK, nil, 0) || s.Complete(55, wire.StatusOK, nil, 0) {
		t.Fatal("a completion was accepted twice, or for an unknown serial")
	}
	hs, rs := decode(t, s.TakeOutput(4))
	if len(hs) != 3 {
		t.Fatalf("%d batches", len(hs))
	}
	if hs[0].Status != wire.BatchOK || hs[0].Serial != 100 || hs[0].View != 3 || len(rs[0]) != 2 ||
		string(rs[0][0].Value) != "v" || rs[0][1].Status != wire.StatusPending {
		t.Fatalf("first batch %+v %+v", hs[0], rs[0])
	}
	if hs[1].Status != wire.BatchViewChanged || hs[1].Serial != 102 || hs[1].View != 4 {
		t.Fatalf("second batch %+v", hs[1])
	}
	if c := rs[2]; len(c) != 1 || !c[0].Completion || c[0].Serial != 101 || string(c[0].Value) != "late" {
		t.Fatalf("completion batch %+v", c)
	}
	if s.Pending() != 0 || s.ResponseLen() != 0 {
		t.Fatal("state left over")
	}
}

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	s := New(false)
	v := []byte("12345678")
	run := func() {
		s.BeginResponse(1)
		for i := 0; i < 100; i++ {
			s.Result(wire.StatusOK, v, 0)
		}
		s.TakeOutput(1)
	}
	run()
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Fatalf("%v allocations per response", a)
	}
}

// TestFirstBatchCannotBeOvertaken: when a connection's first batch is
// rejected (its view is stale) and a later batch arrives with the new view
// before the first is re-sent, the later batch must not run: it would skip
// the first batch's operations. (A session once took its first serial from
// whichever batch ran first.)
func TestFirstBatchCannotBeOvertaken(t *testing.T) {
	s := New(false)
	if v := s.Check(wire.RequestHeader{View: 1, Serial: FirstSerial, Count: 60}, 2); v != ViewChanged {
		t.Fatalf("stale first batch: %v", v)
	}
	s.Reject(wire.BatchViewChanged, 2, FirstSerial)
	if v := s.Check(wire.RequestHeader{View: 2, Serial: FirstSerial + 60, Count: 60}, 2); v != RetryLater {
		t.Fatalf("second batch overtaking the rejected first: %v, want RetryLater", v)
	}
	if v := s.Check(wire.RequestHeader{View: 2, Serial: FirstSerial, Count: 60}, 2); v != Run {
		t.Fatalf("re-sent first batch: %v", v)
	}
	s.Executed(FirstSerial, 60)
	if v := s.Check(wire.RequestHeader{View: 2, Serial: FirstSerial + 60, Count: 60}, 2); v != Run {
		t.Fatalf("second batch after the first: %v", v)
	}
	if v := New(false).Check(wire.RequestHeader{View: 2, Serial: 7}, 2); v != BadSerial {
		t.Fatalf("a connection starting at serial 7: %v, want BadSerial", v)
	}
}

// TestHeldResponseSpansTurns: a response held across the server's turns
// (Hold) is neither closed nor written by TakeOutput, which writes what
// was finished before it; results and its own operations' completions go
// on into it, completions of earlier operations are written at once in a
// completion batch, a COMMIT meanwhile is written at once up to the
// operation before it and follows it for the rest, and Next is exact at
// every hold (a checkpoint's CPR point reads it).
func TestHeldResponseSpansTurns(t *testing.T) {
	s := New(false)
	s.BeginResponse(1)
	s.Result(wire.StatusPending, nil, 0)
	s.AddPending(1)
	s.EndResponse(7)
	s.BeginResponse(2) // a batch of serials 2..5, its turn ending before 4
	s.Result(wire.StatusPending, nil, 0)
	s.AddPending(2)
	s.Result(wire.StatusOK, []byte("a"), 0)
	s.Hold(4)
	if s.Next() != 4 {
		t.Fatalf("next = %d after a hold before serial 4", s.Next())
	}
	hs, _ := decode(t, s.TakeOutput(7))
	if len(hs) != 1 || hs[0].Serial != 1 {
		t.Fatalf("first turn wrote %+v: want only the finished response to serial 1", hs)
	}
	if !s.Complete(1, wire.StatusOK, []byte("late"), 0) || !s.Complete(2, wire.StatusOK, []byte("b"), 0) {
		t.Fatal("completion refused")
	}
	s.Commit(7, 3)
	hs, rs := decode(t, s.TakeOutput(7))
	if len(hs) != 2 || hs[0].Serial != 0 || len(rs[0]) != 1 || rs[0][0].Serial != 1 || string(rs[0][0].Value) != "late" ||
		hs[1].Status != wire.BatchCommit || hs[1].Serial != 1 {
		t.Fatalf("second turn wrote %+v %+v: want the completion of serial 1 and COMMIT 1 (the rest of COMMIT 3 after the held response)", hs, rs)
	}
	if b := s.TakeOutput(7); len(b) != 0 {
		t.Fatalf("a held response wrote %d bytes", len(b))
	}
	if s.ResponseLen() == 0 {
		t.Fatal("the held response does not count against the connection's bound")
	}
	s.Result(wire.StatusOK, []byte("c"), 0)
	s.Result(wire.StatusOK, []byte("d"), 0)
	s.Executed(2, 4)
	s.EndResponse(8)
	hs, rs = decode(t, s.TakeOutput(8))
	if len(hs) != 2 {
		t.Fatalf("%d batches after the batch ended, want its response and the COMMIT", len(hs))
	}
	if h, r := hs[0], rs[0]; h.Status != wire.BatchOK || h.Serial != 2 || h.View != 8 || h.Count != 5 ||
		r[0].Status != wire.StatusPending || string(r[1].Value) != "a" || !r[2].Completion || r[2].Serial != 2 ||
		string(r[2].Value) != "b" || string(r[3].Value) != "c" || string(r[4].Value) != "d" {
		t.Fatalf("held response %+v %+v", h, r)
	}
	if hs[1].Status != wire.BatchCommit || hs[1].Serial != 3 {
		t.Fatalf("after it %+v, want COMMIT 3", hs[1])
	}
	if s.Next() != 6 || s.ResponseLen() != 0 {
		t.Fatalf("next %d, %d bytes left", s.Next(), s.ResponseLen())
	}
	// A completion left in the side batch when the held response closes
	// follows it; a failure drops a held response: the connection closes.
	s.BeginResponse(6)
	s.Result(wire.StatusPending, nil, 0)
	s.AddPending(6)
	s.EndResponse(8)
	s.BeginResponse(7)
	s.Result(wire.StatusOK, nil, 0)
	s.Hold(8)
	s.TakeOutput(8)
	s.Complete(6, wire.StatusOK, []byte("e"), 0)
	s.Result(wire.StatusOK, nil, 0)
	s.Executed(7, 2)
	s.EndResponse(8)
	hs, rs = decode(t, s.TakeOutput(8))
	if len(hs) != 2 || hs[0].Serial != 7 || hs[1].Serial != 0 || string(rs[1][0].Value) != "e" {
		t.Fatalf("a held response and a completion after it: %+v %+v", hs, rs)
	}
	s.BeginResponse(9)
	s.Result(wire.StatusOK, nil, 0)
	s.Hold(10)
	s.Fail(wire.CodeMalformed, 8, 10, "bad")
	hs, _ = decode(t, s.TakeOutput(8))
	if len(hs) != 1 || hs[0].Status != wire.BatchError {
		t.Fatalf("after a failure %+v", hs)
	}
}
