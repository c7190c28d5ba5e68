// Package keyhash computes the one hash every part of fleetkv files a key
// under: the index, the store, the cluster's ownership map, the native
// client's router, the load generator and the Redis front.
//
//	hash:  | slot: 14 bits (63..50) | go-metro bits: 50 bits (49..0) |
//
// The slot is Redis Cluster's: CRC16 (XMODEM) of the key, or of its hash tag
// (the bytes between the first '{' and the next '}' when that is not empty),
// mod 16384. Redis Cluster clients therefore route to fleetkv unchanged, and
// keys sharing a tag share a slot. The low 50 bits come from go-metro over the
// whole key with a fixed seed, so keys of one tag still spread over the index.
// The index takes its bucket from the hash's high bits (the slot's top 6
// bits, then the go-metro bits: a range of slot groups is one run of
// buckets, and a slot's keys still spread over many) and its tag from the
// low bits.
//
// Hashes are persisted (index snapshots, logs replayed into an index) and
// shared between servers and clients: they must never depend on the
// process. Format names this layout; a data directory records the format it
// was written with and a server refuses one written with another.
//
// The package is a leaf: it imports nothing of fleetkv and must never
// allocate.
package keyhash
