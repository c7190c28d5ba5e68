package server

import (
	"context"
	"sync"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
)

// Sampling hot keys: while a migration's source samples (Routing.Sample),
// every data operation on a key of the migration's slots remembers the key
// in its loop, up to Config.MaxSampled keys per loop and migration; the
// node collects them (Sampled) and sends their records to the target first,
// before it serves the slots, so that the keys clients use most are there
// when it starts. The check costs a nil test per operation outside
// migrations.

// sampleSet is the keys a loop sampled for one migration, by hash.
type sampleSet map[uint64][]byte

// sample remembers key (hash h) when the turn's routing samples its slot.
func (l *loop) sample(key []byte, h uint64) {
	slot := keyhash.SlotOf(h)
	for _, a := range l.rt.Sample {
		if !a.Slots.Has(slot) {
			continue
		}
		if l.samples == nil {
			l.samples = map[cluster.MigrationID]sampleSet{}
		}
		set := l.samples[a.ID]
		if set == nil {
			set = sampleSet{}
			l.samples[a.ID] = set
		}
		if _, ok := set[h]; !ok && len(set) < l.s.cfg.MaxSampled {
			set[h] = append([]byte(nil), key...)
		}
		return
	}
}

// Sampled returns the keys every loop sampled for migration id and forgets
// them.
func (s *Server) Sampled(ctx context.Context, id cluster.MigrationID) ([][]byte, error) {
	var mu sync.Mutex
	var keys [][]byte
	err := s.onEveryLoop(ctx, func(l *loop) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range l.samples[id] {
			keys = append(keys, k)
		}
		delete(l.samples, id)
	})
	mu.Lock()
	defer mu.Unlock()
	return keys, err
}
