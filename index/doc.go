// Package index is the latch-free hash index of the store: a table of
// cache-line buckets that maps (bucket, tag) of a key's hash to the log address
// of the newest record of that hash chain. It holds no keys; the store follows
// the chain in the log and compares keys.
//
// The hash split is fixed, because hash ranges are what servers own:
//
//	hash:   | bucket: the top k bits | ... | tag: the low 14 bits |
//
// bucket = hash >> (64-k). One interval of the 64-bit hash space is therefore
// one contiguous run of buckets, and growing the table to 2^(k+1) buckets
// splits bucket i into buckets 2i and 2i+1. Keys are hashed by keyhash.Hash,
// whose top 14 bits are the key's Redis Cluster slot: a slot range is a run
// of buckets too. The index takes hashes from its callers and never hashes a
// key itself.
//
// The package owns the bucket layout, the tentative two-phase insert and the
// epoch-driven growth. It must never block a worker on a lock, and never
// follow a log address itself except through the Chain a store provides.
package index
