package store

import (
	"encoding/binary"
	"time"

	"github.com/fleetkv/fleetkv/hlog"
)

// Expiry. A value may carry an absolute expiry time in Unix milliseconds,
// wall-clock based as Redis's (it survives checkpoints and recovery as it
// is). The record keeps it in front of its value (hlog.FlagExpires), so a
// record without one pays nothing. An expired value reads as absent
// everywhere (reads, Updates, scans, migration, compaction), but its
// record still counts in the key count until it is reaped: a delete, a
// write over it, compaction or the active expiry pass (ReapExpired)
// replaces it, the first two as for any live key.
//
// The moments follow Redis: a stored expiry at is past once now > at; an
// Update whose new expiry is at or before now deletes the key instead
// (EXPIRE with a time in the past), while UpsertExpiring writes it (SET
// with a past PXAT).

// ExpiryMode says what an Update does with the value's expiry.
type ExpiryMode uint8

const (
	// KeepExpiry keeps the expiry the live value had (a new value has
	// none): RMWs, SET KEEPTTL.
	KeepExpiry ExpiryMode = iota
	// ClearExpiry writes the value without an expiry (SET, PERSIST).
	ClearExpiry
	// SetExpiry gives the value the expiry Expiry.At.
	SetExpiry
)

// ExpiryCond says when an Update with SetExpiry may change a live value's
// expiry (Redis's EXPIRE options; they combine): when it may not, the
// Update leaves the key as it is. Zero: always.
type ExpiryCond uint8

const (
	IfNoExpiry ExpiryCond = 1 << iota // only a value without one (NX)
	IfExpiry                          // only a value with one (XX)
	IfLater                           // only to a later time; no expiry counts as infinite (GT)
	IfEarlier                         // only to an earlier time; no expiry counts as infinite (LT)
)

// Expiry is what an Update does with the expiry.
type Expiry struct {
	Mode ExpiryMode
	At   int64 // SetExpiry: Unix milliseconds
	Only ExpiryCond
}

// Allows reports whether x may change the expiry old (0: none) of a live
// value. A caller that must know whether an Update changed the expiry
// asks it with the old one the Update returns (WantOld, WithExpiry).
func (x Expiry) Allows(old int64) bool {
	if x.Mode != SetExpiry {
		return true
	}
	o := x.Only
	switch {
	case o&IfNoExpiry != 0 && old != 0,
		o&IfExpiry != 0 && old == 0,
		o&IfLater != 0 && (old == 0 || x.At <= old),
		o&IfEarlier != 0 && old != 0 && x.At >= old:
		return false
	}
	return true
}

// after returns the expiry of the value x writes over old.
func (x Expiry) after(old prior) int64 {
	switch x.Mode {
	case SetExpiry:
		return x.At
	case KeepExpiry:
		if old.live {
			return old.at
		}
	}
	return 0
}

// Expired reports whether a value with expiry at (0: none) is past at
// time now (both Unix milliseconds).
func Expired(at, now int64) bool { return at != 0 && now > at }

// ExpiryOf is the Expiry that writes a value with expiry at (0: none), as
// a record sent or read elsewhere carried it.
func ExpiryOf(at int64) Expiry {
	if at == 0 {
		return Expiry{Mode: ClearExpiry}
	}
	return Expiry{Mode: SetExpiry, At: at}
}

// Now returns the time expiry is judged by (Config.Now), in Unix
// milliseconds: fronts that turn relative times into expiries use it.
func (st *Store) Now() int64 { return st.cfg.Now() }

// MayExpire reports whether a value with an expiry may have been written
// since the last ClearMayExpire (or the store recovered a log, whose
// records may hold some): an active expiry pass that met no expiring key
// need not run again while it stays false.
func (st *Store) MayExpire() bool { return st.mayExpire.Load() }

// ClearMayExpire starts watching for writes of values with an expiry
// again (at the start of an active expiry pass).
func (st *Store) ClearMayExpire() { st.mayExpire.Store(false) }

// noteExpiry records a write of a value with an expiry. It reads the flag
// first: a store whose writes all carry expiries does not write one
// shared line per operation.
func (st *Store) noteExpiry() {
	if !st.mayExpire.Load() {
		st.mayExpire.Store(true)
	}
}

// expired is Expired at the store's clock, which it reads only for a
// value that has an expiry: records without one pay no clock read.
func (st *Store) expired(at int64) bool { return at != 0 && Expired(at, st.cfg.Now()) }

// wallClock is the default Config.Now.
func wallClock() int64 { return time.Now().UnixMilli() }

// prior is what an operation found for its key: the newest record's value.
//
// Invariant: live implies counted; value is nil unless live.
type prior struct {
	value   []byte // the value, without its expiry
	at      int64  // its expiry, 0 for none
	counted bool   // a record that is not a tombstone: the key count counts the key
	live    bool   // counted and not expired
}

// priorOf reads the state of a record with header h and value area raw
// (raw is not used for a tombstone).
func (st *Store) priorOf(h hlog.Header, raw []byte) prior {
	if h.Tombstone() {
		return prior{}
	}
	v, at := hlog.SplitValue(h, raw)
	if st.expired(at) {
		return prior{at: at, counted: true}
	}
	return prior{value: v, at: at, counted: true, live: true}
}

// absent is the prior state of a key without a record.
var absent = prior{}

// AppendExpiring appends the 8-byte expiry at, then v, to dst: the form of
// a value returned with its expiry (ReadExpiring, Update.WithExpiry), which
// SplitExpiring takes apart.
func AppendExpiring(dst []byte, at int64, v []byte) []byte {
	return append(binary.LittleEndian.AppendUint64(dst, uint64(at)), v...)
}

// SplitExpiring splits a value returned with its expiry (ReadExpiring,
// Update.WithExpiry) into the expiry (0: none) and the value.
func SplitExpiring(b []byte) (expireAt int64, value []byte, ok bool) {
	if len(b) < 8 {
		return 0, nil, false
	}
	return int64(binary.LittleEndian.Uint64(b)), b[8:], true
}

// layout returns the header flag and the value area offset of a value with
// expiry at.
func layout(at int64) (hlog.Header, int) {
	if at == 0 {
		return 0, 0
	}
	return hlog.FlagExpires, hlog.ExpirySize
}
