package keyset

import (
	"fmt"
	"testing"
)

// TestSet: a key is new once per chain, by its bytes, not its hash
// (two keys of one hash are two keys), in the list and past it, in the
// map, and again after a reset.
func TestSet(t *testing.T) {
	var k Set
	for _, n := range []int{1, Listed, Listed + 1, 3 * Listed} {
		for round := range 2 {
			k.Reset()
			for i := range n {
				key := []byte(fmt.Sprintf("key-%d", i))
				if !k.Add(uint64(i%3), key) { // hashes shared by many keys
					t.Fatalf("n %d round %d: %s not new", n, round, key)
				}
				if k.Add(uint64(i%3), key) {
					t.Fatalf("n %d round %d: %s new twice", n, round, key)
				}
			}
			for i := range n {
				if key := []byte(fmt.Sprintf("key-%d", i)); k.Add(uint64(i%3), key) {
					t.Fatalf("n %d round %d: %s new again after %d keys", n, round, key, n)
				}
			}
		}
	}
}
