// Package index is the latch-free hash index of the store: a table of
// cache-line buckets that maps (bucket, tag) of a key's hash to the log address
// of the newest record of that hash chain. It holds no keys; the store follows
// the chain in the log and compares keys.
//
// The hash split is fixed, because slots are what servers own. Keys are
// hashed by keyhash.Hash (the Redis Cluster slot in the top 14 bits,
// go-metro below); the bucket is the top k bits of the hash with the slot's
// low 8 bits taken out (hash.go), the tag its low 14 bits. A range of slot
// groups (256 slots each) is therefore one contiguous run of buckets, and
// growing the table to 2^(k+1) buckets splits bucket i into buckets 2i and
// 2i+1. The index takes hashes from its callers and never hashes a key
// itself.
//
// The package owns the bucket layout, the tentative two-phase insert and the
// epoch-driven growth. It must never block a worker on a lock, and never
// follow a log address itself except through the Chain a store provides.
package index
