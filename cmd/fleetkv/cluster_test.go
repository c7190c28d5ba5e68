package main

import "testing"

// TestCheckLocalDrain: cluster local's --drain must name a server the
// cluster will have and leave one, checked before anything starts.
func TestCheckLocalDrain(t *testing.T) {
	for _, c := range []struct {
		drain   string
		servers int
		ok      bool
	}{
		{"", 1, true}, {"s1", 2, true}, {"s3", 3, true},
		{"s4", 3, false}, {"s0", 3, false}, {"s01", 3, false}, {"x1", 3, false}, {"s1", 1, false},
	} {
		if err := checkLocalDrain(c.drain, c.servers); (err == nil) != c.ok {
			t.Errorf("checkLocalDrain(%q, %d) = %v", c.drain, c.servers, err)
		}
	}
}
