package index

// The index's view of a key hash (package keyhash: the key's slot in the
// top 14 bits, go-metro bits below). A bucket is chosen by the slot's top
// groupBits bits, its slot group, then by the go-metro bits right under the
// slot:
//
//	hash:         | group 6 | slot's low 8 | go-metro 50: ... | tag 14 |
//	bucketHash:   | group 6 | go-metro 50 ... | 0 x 8 |
//	bucket:       the top k bits of bucketHash
//
// A range of slot groups is therefore one contiguous run of buckets (a
// migration scans only those), and growing the table to 2^(k+1) buckets
// splits bucket i into 2i and 2i+1. The slot's low bits are left out on
// purpose: keys that share a {tag} share a slot, and a slot alone would own
// only 2^(k-14) buckets, so a tag with many keys (redis-benchmark --cluster
// puts a client's every key in one slot) would pile up in a few chains; in
// a group they spread over 2^(k-6).
const (
	slotBits  = 14
	groupBits = 6
)

func bucketHash(h uint64) uint64 {
	return h&^(1<<(64-groupBits)-1) | (h<<slotBits)>>groupBits
}

// BucketOf returns the bucket of hash h in a table of 2^bits buckets.
func BucketOf(h uint64, bits uint) uint64 { return bucketHash(h) >> (64 - bits) }

// Position returns where hash h lies in the order buckets are numbered in:
// at every table size 2^k, bucket i holds the hashes whose Position has i
// in its top k bits. Doubling the table splits every bucket's range of
// positions in two, so a range of positions, and a cursor at a position,
// mean the same keys whatever the size (SCAN's cursor).
func Position(h uint64) uint64 { return bucketHash(h) }

// ChainID names one hash chain of a table of 2^bits buckets: the bucket
// and the tag of its entry. Another table (another store's, or this one's
// after a growth) names the same hashes' chain by ChainOf with its own
// bits.
func ChainID(bucket, tag uint64) uint64 { return bucket<<tagBits | tag }

// ChainOf returns the ChainID of hash h's chain in a table of 2^bits
// buckets.
func ChainOf(h uint64, bits uint) uint64 { return ChainID(BucketOf(h, bits), h&(1<<tagBits-1)) }
