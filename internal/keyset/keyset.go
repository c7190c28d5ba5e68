// Package keyset is a small set of keys, reset and refilled many times: the
// keys a walk of one hash chain has met (a log scan's, a migration
// resolver's), where only a key's first (newest) record counts.
//
// A chain holds few keys, so a Set keeps copies of them in one buffer and
// searches them by hash, without an allocation per key; past Listed keys
// it moves them to a map. The caller passes each key's hash (the one it
// computed anyway); two keys of one hash are two keys.
package keyset

import "bytes"

// Listed is how many keys a Set searches in a list before it moves them to
// a map.
const Listed = 64

// Set is a set of keys; the zero value is empty and ready.
type Set struct {
	hashes []uint64
	ends   []int // of each key in keys
	keys   []byte
	many   map[string]struct{} // all the keys, once there are more than Listed
}

// Reset empties the set, keeping its memory.
func (k *Set) Reset() {
	k.hashes, k.ends, k.keys = k.hashes[:0], k.ends[:0], k.keys[:0]
	if k.many != nil {
		clear(k.many)
	}
}

// Add reports whether key, of hash h, is new, and adds it (a copy).
func (k *Set) Add(h uint64, key []byte) bool {
	if len(k.many) > 0 {
		if _, ok := k.many[string(key)]; ok {
			return false
		}
		k.many[string(key)] = struct{}{}
		return true
	}
	start := 0
	for i, kh := range k.hashes {
		if kh == h && bytes.Equal(k.keys[start:k.ends[i]], key) {
			return false
		}
		start = k.ends[i]
	}
	if len(k.hashes) == Listed {
		if k.many == nil {
			k.many = make(map[string]struct{}, 2*Listed)
		}
		start = 0
		for _, end := range k.ends {
			k.many[string(k.keys[start:end])] = struct{}{}
			start = end
		}
		k.many[string(key)] = struct{}{}
		return true
	}
	k.keys = append(k.keys, key...)
	k.hashes, k.ends = append(k.hashes, h), append(k.ends, len(k.keys))
	return true
}
