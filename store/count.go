package store

import (
	"context"
	"fmt"
)

// CountKeys returns how many live keys hash into [lo, hi] (a slot range:
// keyhash.FirstHash, LastHash), by Scan: operations going on meanwhile may
// or may not be counted. The calling goroutine must not hold a protected
// Session.
func (st *Store) CountKeys(ctx context.Context, lo, hi uint64) (int64, error) {
	var n int64
	err := st.Scan(ctx, lo, hi, func(_, _ []byte, _ int64, live bool, _ uint64) error {
		if live {
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("store: count keys: %w", err)
	}
	return n, nil
}
