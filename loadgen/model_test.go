package loadgen

import "testing"

// TestModelIndexesEachKeyOfAShareOnce: every key of a thread's share (the
// keys pick moves a draw to) has its own index within the model's slices,
// and key inverts at.
func TestModelIndexesEachKeyOfAShareOnce(t *testing.T) {
	for _, keys := range []uint64{7, 100, 101} {
		cfg := &Config{Keys: keys, Threads: 3, Sessions: 2}
		g := uint64(cfg.Threads * cfg.Sessions)
		seen := 0
		for id := range cfg.Threads {
			m := newModel(cfg, id, true)
			used := make([]bool, len(m.vers))
			for k := range keys {
				j := k % g
				if j < m.first || j >= m.first+m.sessions {
					continue // another thread's
				}
				i := m.at(k)
				if i >= uint64(len(m.vers)) || len(m.adds) != len(m.vers) || used[i] || m.key(i) != k {
					t.Fatalf("keys %d, thread %d: key %d at %d of %d (used %v), back to %d", keys, id, k, i, len(m.vers), i < uint64(len(used)) && used[i], m.key(i))
				}
				used[i] = true
				seen++
			}
		}
		if seen != int(keys) {
			t.Fatalf("keys %d: the threads' shares hold %d keys", keys, seen)
		}
	}
}
