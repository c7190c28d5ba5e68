package server

import (
	"sync/atomic"

	"github.com/fleetkv/fleetkv/store"
)

// activeExpiry deletes expired keys in the background, so that memory and
// DBSIZE follow expiries without anyone reading the keys: every
// ActiveExpireInterval, on a goroutine of its own (never a loop), it runs
// one step of the store's pass over the index (store.ReapExpired, about
// ActiveExpireKeys keys, the in-memory part of their chains) and goes on
// from there the next time. Keys whose newest record is on the device are
// left to compaction, which drops expired records as it passes (and counts
// them as garbage when it estimates).
type activeExpiry struct {
	s      *Server
	cursor uint64 // where the next step starts; only the goroutine touches it
	// pass sums the current pass's steps; idle says the last complete one
	// met no key with an expiry. Only the goroutine touches them.
	pass   store.ReapStats
	idle   bool
	last   atomic.Pointer[store.ReapStats] // the last complete pass
	reaped atomic.Uint64                   // expired keys found and deleted (ReapStats.Expired)
	passes atomic.Uint64
	done   chan struct{}
}

// ExpiryStats say what active expiry did.
type ExpiryStats struct {
	// Reaped counts the expired keys the steps found and deleted (unless a
	// write or delete of the key came first).
	Reaped uint64 `json:"reaped"`
	Passes uint64 `json:"passes"` // complete passes over the index
	// Expiring counts the keys with an expiry the last complete pass met
	// in memory (INFO's expires=): an estimate, not exact as DBSIZE is.
	Expiring int `json:"expiring"`
	// AvgTTLMillis is the mean time those not expired yet had left when
	// the pass met them (INFO's avg_ttl=, an estimate as Redis's is).
	AvgTTLMillis int64 `json:"avg_ttl_ms"`
}

func newActiveExpiry(s *Server) *activeExpiry { return &activeExpiry{s: s, done: closedChan()} }

// start runs the steps; done is closed once they ended (with s.life).
// Called once, before the server's Start returns.
func (e *activeExpiry) start() {
	e.done = periodically(e.s.life, e.s.cfg.ActiveExpireInterval, e.step)
}

// step runs one step of the pass. A step that fails is logged and its
// slice skipped (the next pass comes back to it). A pass that met no key
// with an expiry is not run again until a value with one is written
// (store.MayExpire): a store without expiries costs no walks.
func (e *activeExpiry) step() {
	if e.cursor == 0 {
		if e.idle && !e.s.st.MayExpire() {
			return
		}
		e.s.st.ClearMayExpire() // writes during the pass set it again
	}
	st, err := e.s.st.ReapExpired(e.s.life, e.cursor, e.s.cfg.ActiveExpireKeys)
	if err != nil {
		if e.s.life.Err() == nil {
			e.s.log.Error("active expiry failed", "err", err)
		}
		st = store.ReapStats{Next: st.Next}
	}
	e.reaped.Add(uint64(st.Expired))
	e.pass.Keys += st.Keys
	e.pass.Expiring += st.Expiring
	e.pass.Expired += st.Expired
	e.pass.TTLMillis += st.TTLMillis
	if e.cursor = st.Next; e.cursor == 0 {
		done := e.pass
		e.idle = done.Expiring == 0
		e.last.Store(&done)
		e.pass = store.ReapStats{}
		e.passes.Add(1)
	}
}

func (e *activeExpiry) stats() ExpiryStats {
	st := ExpiryStats{Reaped: e.reaped.Load(), Passes: e.passes.Load()}
	if last := e.last.Load(); last != nil {
		st.Expiring = last.Expiring
		if n := last.Expiring - last.Expired; n > 0 {
			st.AvgTTLMillis = last.TTLMillis / int64(n)
		}
	}
	return st
}
