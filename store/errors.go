package store

import (
	"errors"

	"github.com/fleetkv/fleetkv/hlog"
)

// Errors returned by store operations. Merge errors come from the Merger and
// are returned as they are (ErrNotInt64 for the built-in add).
var (
	// ErrKeyTooLarge is returned for a key longer than Config.MaxKeyLen.
	ErrKeyTooLarge = errors.New("store: key too large")
	// ErrEmptyKey is returned for a zero-length key.
	ErrEmptyKey = errors.New("store: empty key")
	// ErrRecordTooLarge is returned when key and value do not fit in one log
	// page.
	ErrRecordTooLarge = errors.New("store: record larger than a log page")
	// ErrBadExpiry is returned for a negative expiry time.
	ErrBadExpiry = errors.New("store: negative expiry time")
	// ErrNotInt64 is returned by Int64Add when the stored value is not 8 bytes.
	ErrNotInt64 = errors.New("store: value is not a 64-bit integer")
	// ErrClosed is returned by operations on a closed session or store.
	ErrClosed = errors.New("store: closed")
	// ErrCorrupt reports a record that cannot be valid (an impossible header
	// or address). Under -tags invariants such a state panics instead.
	ErrCorrupt = hlog.ErrCorrupt
)
