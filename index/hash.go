package index

import metro "github.com/dgryski/go-metro"

// Seed is the fixed go-metro seed of every key hash. Changing it changes which
// server owns which key and invalidates every persisted index.
const Seed = 0x9e3779b97f4a7c15

// HashKey returns the 64-bit hash the index, the cluster's ownership map and
// the client's router all use for key.
func HashKey(key []byte) uint64 { return metro.Hash64(key, Seed) }

// BucketOf returns the bucket of hash h in a table of 2^bits buckets.
func BucketOf(h uint64, bits uint) uint64 { return h >> (64 - bits) }
