package keyhash

import (
	"math/rand/v2"
	"testing"

	metro "github.com/dgryski/go-metro"
)

// reference is Hash by its definition: Slot's CRC above go-metro's bits.
func reference(key []byte) uint64 {
	return uint64(Slot(key))<<SlotShift | metro.Hash64(key, Seed)&lowMask
}

// TestHashIsSlotAndMetro checks Hash's one pass against its definition at
// every length on both sides of shortKey: random keys, keys of one repeated
// byte, and keys with a '{' (and a '}' after it) at every position, so
// that each word and the tail find a brace.
func TestHashIsSlotAndMetro(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4*shortKey)
	check := func(key []byte) {
		t.Helper()
		if got, want := Hash(key), reference(key); got != want {
			t.Fatalf("len %d key %q: Hash %#x, want %#x", len(key), key, got, want)
		}
	}
	for n := 0; n <= len(buf); n++ {
		key := buf[:n]
		for trial := 0; trial < 64; trial++ {
			for i := range key {
				key[i] = byte(rng.Uint32())
				if trial == 0 {
					key[i] = 0xff
				}
			}
			check(key)
		}
		for open := 0; open < n; open++ {
			for i := range key {
				key[i] = 'a' + byte(rng.IntN(26))
			}
			key[open] = '{'
			check(key)
			if close := open + 1 + rng.IntN(n-open); close < n {
				key[close] = '}'
				check(key)
			}
		}
	}
	for _, k := range []string{"", "a", "{user1000}.following", "12345678", "{", "{}", "x{y}z{w}", "0123456789abcdef0123456789abcdef0"} {
		check([]byte(k))
	}
}
