package server

import (
	"context"
	"sync"

	"github.com/fleetkv/fleetkv/cluster"
)

// Per-slot load, for the cluster's rebalancing: every data operation a
// loop admits (the gateway's admits) counts one in its slot, in a counter
// array the loop alone writes; SlotLoad takes and clears the loops' arrays
// through their task queues, so no counter is shared or locked.

// slotLoad is a loop's operations per slot since SlotLoad last took them.
type slotLoad [cluster.Slots]uint32

// countSlot counts one operation in slot s.
func (l *loop) countSlot(s uint16) {
	l.slotOps[s%cluster.Slots]++
}

// SlotLoad returns the data operations every loop admitted in each slot
// since the last call, and clears them.
func (s *Server) SlotLoad(ctx context.Context) (*[cluster.Slots]uint64, error) {
	var mu sync.Mutex
	var out [cluster.Slots]uint64
	err := s.onEveryLoop(ctx, func(l *loop) {
		mu.Lock()
		defer mu.Unlock()
		for i, n := range &l.slotOps {
			out[i] += uint64(n)
		}
		l.slotOps = slotLoad{}
	})
	mu.Lock()
	defer mu.Unlock()
	return &out, err
}
