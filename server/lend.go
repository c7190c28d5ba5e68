package server

import (
	"maps"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// A source in Move lends the slots it stopped serving to its target's
// fetches (Routing.Lend, gateway.go's migrate). Once the node knows that
// the shared tier holds the log below an address (a move's cut, pinned
// there for the target), a fetch of a key whose chain leaves memory below
// it is answered with where the chain goes on (wire.AppendFetchBelow): the
// target reads the record from the tier, and the source's device, busy
// with the move's scan and the foreground's cold reads, does not wait on
// it.

// tierCut is where the shared tier holds a migration's source log from.
type tierCut struct {
	bound uint64 // the tier holds the log below it (from the log's begin)
	log   []byte // names the log in the tier, for the target
}

// LendBelow lets migration id's fetches be answered with where the key's
// chain goes on in the shared tier when that is below bound, log naming
// the log there; bound 0 ends it (answers already sent stand). The caller
// holds the tier's copy of the log from its begin up to bound meanwhile
// (a pin). Safe from any goroutine.
func (s *Server) LendBelow(id cluster.MigrationID, bound uint64, log []byte) {
	s.cutsMu.Lock()
	defer s.cutsMu.Unlock()
	next := map[cluster.MigrationID]tierCut{}
	if cur := s.cuts.Load(); cur != nil {
		next = maps.Clone(*cur)
	}
	if bound == 0 {
		delete(next, id)
	} else {
		next[id] = tierCut{bound: bound, log: append([]byte(nil), log...)}
	}
	s.cuts.Store(&next)
}

// fetch reads key for migration id's target (a lent slot): from memory
// or the device, or, where the tier holds its chain, where that goes on.
// The answer lands in the loop's value buffer. The loop's goroutine only.
func (l *loop) fetch(id cluster.MigrationID, key []byte, h uint64) (store.Status, []byte, error) {
	var c tierCut // bound 0 without a cut: a plain read
	if cuts := l.s.cuts.Load(); cuts != nil {
		c = (*cuts)[id]
	}
	var st store.Status
	var below store.ChainBelow
	var err error
	l.value, st, below, err = l.ss.ReadAbove(key, h, c.bound, l.value[:0])
	if err != nil || below.Addr == 0 {
		return st, l.value, err
	}
	l.stats.fetchesBelow.Add(1)
	l.value = wire.AppendFetchBelow(l.value[:0], below.Addr, below.Begin, c.log)
	return store.OK, l.value, nil
}
