package store

import (
	"context"
	"fmt"
)

// CountKeys returns how many keys hash into [lo, hi] (a slot range:
// keyhash.FirstHash, LastHash), by Scan: operations going on meanwhile may
// or may not be counted. It counts as the key count does (keycount.go):
// a key whose value expired counts until it is reaped, as in Redis. The calling goroutine must not hold a protected
// Session.
func (st *Store) CountKeys(ctx context.Context, lo, hi uint64) (int64, error) {
	var n int64
	err := st.Scan(ctx, lo, hi, func(_, _ []byte, at int64, live bool, _ uint64) error {
		if live || at != 0 { // at != 0 and not live: expired
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("store: count keys: %w", err)
	}
	return n, nil
}
