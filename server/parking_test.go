package server

import "testing"

// TestParkedRegistryCountsListedHashes: mayList holds while any loop
// lists a hash, for hashes sharing their low bits too, and no longer once
// every one is removed.
func TestParkedRegistryCountsListedHashes(t *testing.T) {
	var r parkedRegistry
	a, b := &loop{}, &loop{}
	const h1, h2 = uint64(7), uint64(7 | 1<<40) // the same low bits
	if r.mayList(h1) {
		t.Fatal("an empty registry may list a hash")
	}
	r.add(h1, a)
	r.add(h1, b)
	r.add(h2, a)
	if !r.mayList(h1) || !r.mayList(h2) || r.mayList(h1+1) {
		t.Fatalf("listed: h1 %v, h2 %v, h1+1 %v; want true, true, false", r.mayList(h1), r.mayList(h2), r.mayList(h1+1))
	}
	r.remove(h1, a)
	r.remove(h2, a)
	if !r.mayList(h1) || !r.mayList(h2) { // h2 shares h1's count, and b still lists h1
		t.Fatal("a hash still listed by a loop is not")
	}
	r.remove(h1, b)
	r.remove(h1, b) // removing what is not listed changes nothing
	if r.mayList(h1) || r.mayList(h2) || r.n.Load() != 0 || r.listed[listedAt(h1)].Load() != 0 {
		t.Fatalf("after every removal: h1 %v, h2 %v, n %d, count %d", r.mayList(h1), r.mayList(h2), r.n.Load(), r.listed[listedAt(h1)].Load())
	}
}
