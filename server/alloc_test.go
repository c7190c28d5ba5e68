package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/session"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// TestBatchPathDoesNotAllocate runs the loop's batch path (decode, execute
// against the store, assemble the response) on a pipelined stream of
// batches and counts allocations.
func TestBatchPathDoesNotAllocate(t *testing.T) {
	l := handLoop(t)
	cs := &conn{l: l, sess: session.New(false)}
	var in []byte
	serial := uint64(1)
	makeBatch := func() {
		in = in[:0]
		var start int
		in, start = wire.BeginBatch(in)
		for i := 0; i < 1000; i++ {
			k := binary.LittleEndian.AppendUint64(nil, uint64(i%500))
			switch i % 4 {
			case 0:
				in = wire.AppendOp(in, wire.OpUpsert, k, k)
			case 1:
				in = wire.AppendOp(in, wire.OpAdd, binary.LittleEndian.AppendUint64([]byte("c"), uint64(i%7)), k)
			default:
				in = wire.AppendOp(in, wire.OpRead, k, nil)
			}
		}
		wire.FinishRequest(in, start, wire.RequestHeader{Count: 1000, View: 1, Serial: serial})
		serial += 1000
	}
	run := func() {
		if used, action := l.runBatches(cs, in); used != len(in) || action != 0 {
			t.Fatalf("batch not run: used %d of %d", used, len(in))
		}
		if out := cs.sess.TakeOutput(1); len(out) == 0 {
			t.Fatal("no response")
		}
		l.ss.Suspend()
	}
	makeBatch()
	run()
	allocs := testing.AllocsPerRun(50, func() {
		makeBatchSerial(in, serial)
		serial += 1000
		run()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 1000-operation batch", allocs)
	}
}

// makeBatchSerial renumbers a batch in place.
func makeBatchSerial(b []byte, serial uint64) { binary.LittleEndian.PutUint64(b[24:], serial) }

// handLoop is a loop without gnet, over an in-memory store, for tests that
// drive its paths by hand.
func handLoop(t testing.TB) *loop {
	return handLoopWith(t, store.Config{IndexBits: 14, Log: hlog.Config{PageBits: 20, MemoryBytes: 64 << 20}})
}

// handLoopWith is handLoop over a store configured by cfg.
func handLoopWith(t testing.TB, cfg store.Config) *loop {
	t.Helper()
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{cfg: Config{Listen: "x"}, st: st}
	if err := srv.cfg.fill(); err != nil {
		t.Fatal(err)
	}
	srv.route.Store(cluster.Standalone(1))
	l, err := newLoop(srv, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.close()
		st.Close()
	})
	return l
}

// TestRESPCommandPathDoesNotAllocate parses and runs a pipeline of RESP
// commands (SET, GET, INCR, APPEND, MGET, EXISTS, DEL) and counts
// allocations.
func TestRESPCommandPathDoesNotAllocate(t *testing.T) {
	l := handLoop(t)
	r := &respConn{l: l, authed: true}
	var in []byte
	for i := 0; i < 200; i++ {
		k := fmt.Sprintf("key:%d", i%50)
		for _, cmd := range [][]string{{"SET", k, "value"}, {"GET", k}, {"INCR", "n" + k}, {"APPEND", "a" + k, "xy"},
			{"MGET", k, "n" + k}, {"EXISTS", k}, {"DEL", "a" + k}, {"SET", k, "v2", "GET"}} {
			in = resp.AppendArray(in, len(cmd))
			for _, a := range cmd {
				in = resp.AppendBulkString(in, a)
			}
		}
	}
	run := func() {
		for used := 0; used < len(in); {
			n, err := l.respParse(in[used:])
			if err != nil || n == 0 || l.respRunWindow(r) != len(l.rwin) {
				t.Fatalf("parse at %d: n=%d err=%v", used, n, err)
			}
			used += n
		}
		if len(r.out) == 0 || r.out[0] == '-' || bytes.Contains(r.out, []byte("\r\n-")) {
			t.Fatalf("replies %.80q", r.out)
		}
		r.out = r.out[:0]
		l.ss.Suspend()
	}
	run()
	if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
		t.Fatalf("%v allocations per 1600 commands", allocs)
	}
}
