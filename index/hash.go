package index

// BucketOf returns the bucket of hash h in a table of 2^bits buckets: its
// high bits. Hashes come from keyhash.Hash, whose high bits are the key's
// slot, so one slot range is one contiguous run of buckets.
func BucketOf(h uint64, bits uint) uint64 { return h >> (64 - bits) }
