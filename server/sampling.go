package server

import (
	"context"
	"sync"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
)

// Sampling hot keys: while a migration's source samples (Routing.Sample),
// every data operation on a key of the migration's slots remembers the key
// in its loop, up to Config.MaxSampled keys and Config.MaxSampledBytes
// bytes of keys per loop and migration; the
// node collects them (Sampled) and sends their records to the target first,
// before it serves the slots, so that the keys clients use most are there
// when it starts. The check costs a nil test per operation outside
// migrations.

// sampleSet is the keys a loop sampled for one migration, by hash, and
// the bytes they hold.
type sampleSet struct {
	keys  map[uint64][]byte
	bytes int
}

// sample remembers key (hash h) when the turn's routing samples its slot.
func (l *loop) sample(key []byte, h uint64) {
	slot := keyhash.SlotOf(h)
	for _, a := range l.rt.Sample {
		if !a.Slots.Has(slot) {
			continue
		}
		if l.samples == nil {
			l.samples = map[cluster.MigrationID]*sampleSet{}
		}
		set := l.samples[a.ID]
		if set == nil {
			set = &sampleSet{keys: map[uint64][]byte{}}
			l.samples[a.ID] = set
		}
		set.add(key, h, l.s.cfg.MaxSampled, l.s.cfg.MaxSampledBytes)
		return
	}
}

// add remembers key (hash h) unless it is there, or the set holds
// maxKeys keys or would hold more than maxBytes bytes of keys with it.
func (set *sampleSet) add(key []byte, h uint64, maxKeys, maxBytes int) {
	if len(set.keys) >= maxKeys || set.bytes+len(key) > maxBytes {
		return
	}
	if _, ok := set.keys[h]; !ok {
		set.keys[h] = append([]byte(nil), key...)
		set.bytes += len(key)
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
		if set := l.samples[id]; set != nil {
			for _, k := range set.keys {
				keys = append(keys, k)
			}
		}
		delete(l.samples, id)
	})
	mu.Lock()
	defer mu.Unlock()
	return keys, err
}
