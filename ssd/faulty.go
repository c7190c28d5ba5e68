package ssd

import (
	"errors"
	"slices"
	"sync"
	"syscall"
)

// FaultRule says which I/Os a fault applies to and what it reports. The zero
// rule applies to every I/O and reports syscall.EIO.
//
// An I/O matches a rule when it overlaps [From, To) (To 0: no upper end; a
// zero-length I/O matches when From <= off < To). Of the matching I/Os the
// rule fires on every Every-th (0 or 1: on each), and after Count firings
// (0: no limit) it is removed. So {Count: 3} fails the next three I/Os,
// {Every: 4} every fourth, {Every: 5, Count: 1} only the fifth, and
// {From: a, To: b} those that touch [a, b).
type FaultRule struct {
	Err      error  // what a failed I/O or Sync reports; nil: syscall.EIO
	Count    int    // firings before the rule is removed; 0: unlimited
	Every    int    // fire on every Every-th matching I/O; 0 or 1: each
	From, To uint64 // the offset range an I/O must overlap; To 0: unbounded
	Keep     int    // ShortWrites: bytes written and reported; 0: half of p
}

// FaultStats counts the faults a FaultyDevice injected since it was made.
// Clear does not reset it.
type FaultStats struct {
	ReadFaults  uint64 // reads failed
	WriteFaults uint64 // writes failed, by a rule or the space budget
	NoSpace     uint64 // of WriteFaults, those reported as syscall.ENOSPC
	ShortWrites uint64 // writes cut short
	SyncFaults  uint64 // Syncs failed
}

// FaultyDevice wraps a Device and injects faults by rules that tests add and
// remove at any time, from any goroutine:
//
//	f := ssd.NewFaultyDevice(ssd.NewCrashDevice(4096))
//	f.FailWrites(ssd.FaultRule{Count: 3, From: 0, To: 1 << 20}) // next 3 writes below 1 MiB: EIO
//	f.FailReads(ssd.FaultRule{Every: 10})                       // every 10th read: EIO
//	f.ShortWrites(ssd.FaultRule{Every: 2, Keep: 4096})          // every 2nd write: only 4 KiB land
//	f.NoSpaceBeyond(1 << 30)                                    // writes reaching past 1 GiB: ENOSPC
//	f.NoSpaceAfter(64 << 20)                                    // after 64 MiB more written: ENOSPC
//	f.FailSyncs(ssd.FaultRule{Count: 1})                        // next Sync: EIO
//	f.Clear()                                                   // back to the inner device's behaviour
//
// A failed read or write reports (0, err) through its callback and moves no
// bytes; a failed Sync returns the error without syncing the inner device. A
// short write passes only a prefix of p, rounded down to the alignment, to
// the inner device, which reports that prefix's length with no error. A
// fault reaches the caller the same way as any outcome of the inner device:
// through the callback, exactly once, never by a panic.
//
// The space budget is checked first: a write that does not fit fails with
// syscall.ENOSPC and no rule sees it. Then the rules are tried in the order
// they were added, and the first that fires decides; later rules do not see
// that I/O. The budget is charged the bytes passed to the inner device.
type FaultyDevice struct {
	inner Device
	mu    struct {
		sync.Mutex
		rules []*faultRule // in the order added
		// Invariant: spaceLeft is meaningful only while limited; it never
		// goes below zero (a write that does not fit is failed, uncharged).
		limited   bool
		spaceLeft uint64
		stats     FaultStats
		// holding parks reads in held until ReleaseReads (HoldReads).
		holding bool
		held    []heldRead
	}
}

// heldRead is a read HoldReads parked.
type heldRead struct {
	p   []byte
	off uint64
	cb  Callback
}

// faultKind is what a rule applies to.
type faultKind int

const (
	faultRead faultKind = iota
	faultWrite
	faultShort
	faultSync
)

// faultRule is a FaultRule with its kind and progress.
//
// Invariant: fired < Count while Count > 0 (a rule is removed when it fires
// its last time).
type faultRule struct {
	FaultRule
	kind  faultKind
	seen  int // matching I/Os so far
	fired int
}

// NewFaultyDevice wraps inner, injecting nothing until a rule is added.
func NewFaultyDevice(inner Device) *FaultyDevice {
	return &FaultyDevice{inner: inner}
}

// Inner returns the wrapped device.
func (f *FaultyDevice) Inner() Device { return f.inner }

// FailReads adds a rule that fails matching reads with r.Err.
func (f *FaultyDevice) FailReads(r FaultRule) { f.add(faultRead, r) }

// FailWrites adds a rule that fails matching writes with r.Err; nothing is
// written.
func (f *FaultyDevice) FailWrites(r FaultRule) { f.add(faultWrite, r) }

// ShortWrites adds a rule that cuts matching writes short: only the first
// r.Keep bytes (0: half of p), rounded down to the alignment and kept below
// len(p), are written and reported. r.Err is not used. A write of no more
// than the alignment is cut to nothing and reports (0, nil).
func (f *FaultyDevice) ShortWrites(r FaultRule) { f.add(faultShort, r) }

// FailSyncs adds a rule that fails Sync with r.Err. Count and Every apply;
// From and To do not.
func (f *FaultyDevice) FailSyncs(r FaultRule) {
	r.From, r.To = 0, 0
	f.add(faultSync, r)
}

// NoSpaceBeyond adds a rule that fails with syscall.ENOSPC every write that
// reaches past limit: FailWrites(FaultRule{Err: syscall.ENOSPC, From: limit}).
func (f *FaultyDevice) NoSpaceBeyond(limit uint64) {
	f.FailWrites(FaultRule{Err: syscall.ENOSPC, From: limit})
}

// NoSpaceAfter lets writes pass budget more bytes to the inner device; a
// write that would pass more fails with syscall.ENOSPC and writes nothing.
// It replaces an earlier budget.
func (f *FaultyDevice) NoSpaceAfter(budget uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.limited, f.mu.spaceLeft = true, budget
}

// Clear removes every rule and the space budget. The counters stay.
func (f *FaultyDevice) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.rules = nil
	f.mu.limited, f.mu.spaceLeft = false, 0
}

// HoldReads parks every read issued from now on (after the fault rules
// judged it) until ReleaseReads: a device that stalls, for tests of what
// waits on it.
func (f *FaultyDevice) HoldReads() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.holding = true
}

// ReleaseReads issues the parked reads to the inner device and stops
// parking.
func (f *FaultyDevice) ReleaseReads() {
	f.mu.Lock()
	held := f.mu.held
	f.mu.holding, f.mu.held = false, nil
	f.mu.Unlock()
	for _, h := range held {
		f.inner.ReadAsync(h.p, h.off, h.cb)
	}
}

// Stats returns the counters of injected faults.
func (f *FaultyDevice) Stats() FaultStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.stats
}

func (f *FaultyDevice) add(kind faultKind, r FaultRule) {
	if r.Err == nil {
		r.Err = syscall.EIO
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.rules = append(f.mu.rules, &faultRule{FaultRule: r, kind: kind})
}

// Alignment implements Device: the inner device's.
func (f *FaultyDevice) Alignment() int { return f.inner.Alignment() }

// ReadAsync implements Device.
func (f *FaultyDevice) ReadAsync(p []byte, off uint64, cb Callback) {
	f.mu.Lock()
	r := f.fireLocked(off, len(p), faultRead)
	if r != nil {
		f.mu.stats.ReadFaults++
	}
	hold := r == nil && f.mu.holding
	if hold {
		f.mu.held = append(f.mu.held, heldRead{p, off, cb})
	}
	f.mu.Unlock()
	switch {
	case r != nil:
		cb.IODone(0, r.Err)
	case !hold:
		f.inner.ReadAsync(p, off, cb)
	}
}

// WriteAsync implements Device.
func (f *FaultyDevice) WriteAsync(p []byte, off uint64, cb Callback) {
	f.mu.Lock()
	keep, err := f.judgeWriteLocked(off, len(p))
	f.mu.Unlock()
	switch {
	case err != nil:
		cb.IODone(0, err)
	case keep == 0 && len(p) > 0:
		cb.IODone(0, nil) // cut short to nothing
	default:
		f.inner.WriteAsync(p[:keep], off, cb)
	}
}

// judgeWriteLocked decides a write of n bytes at off: it fails with err, or
// passes its first keep bytes on. It charges the budget and counts faults.
func (f *FaultyDevice) judgeWriteLocked(off uint64, n int) (keep int, err error) {
	if f.mu.limited && uint64(n) > f.mu.spaceLeft {
		return 0, f.countWriteFault(syscall.ENOSPC)
	}
	keep = n
	switch r := f.fireLocked(off, n, faultWrite, faultShort); {
	case r == nil:
	case r.kind == faultWrite:
		return 0, f.countWriteFault(r.Err)
	default:
		keep = shortLength(r.Keep, n, f.inner.Alignment())
		f.mu.stats.ShortWrites++
	}
	if f.mu.limited {
		f.mu.spaceLeft -= uint64(keep)
	}
	return keep, nil
}

// countWriteFault counts a failed write and returns its error.
func (f *FaultyDevice) countWriteFault(err error) error {
	f.mu.stats.WriteFaults++
	if errors.Is(err, syscall.ENOSPC) {
		f.mu.stats.NoSpace++
	}
	return err
}

// shortLength is how much of an n-byte write a short-write rule keeps:
// want (0: half), below n, rounded down to align.
func shortLength(want, n, align int) int {
	if want <= 0 {
		want = n / 2
	}
	keep := min(want, n-1)
	return keep - keep%align
}

// Sync implements Device.
func (f *FaultyDevice) Sync() error {
	f.mu.Lock()
	r := f.fireLocked(0, 0, faultSync)
	if r != nil {
		f.mu.stats.SyncFaults++
	}
	f.mu.Unlock()
	if r != nil {
		return r.Err
	}
	return f.inner.Sync()
}

// Release implements Device: the inner device's.
func (f *FaultyDevice) Release(off uint64) error { return f.inner.Release(off) }

// Close implements Device: it closes the inner device.
func (f *FaultyDevice) Close() error { return f.inner.Close() }

// fireLocked offers an I/O of n bytes at off to the rules of the given
// kinds, in order, and returns the first that fires, or nil. A rule that
// fires its last time is removed.
func (f *FaultyDevice) fireLocked(off uint64, n int, kinds ...faultKind) *faultRule {
	for i, r := range f.mu.rules {
		if !r.applies(off, n, kinds) {
			continue
		}
		r.seen++
		if r.Every > 1 && r.seen%r.Every != 0 {
			continue
		}
		r.fired++
		if r.Count > 0 && r.fired >= r.Count {
			f.mu.rules = slices.Delete(f.mu.rules, i, i+1)
		}
		return r
	}
	return nil
}

// applies reports whether r is of one of kinds and covers [off, off+n).
func (r *faultRule) applies(off uint64, n int, kinds []faultKind) bool {
	switch {
	case !slices.Contains(kinds, r.kind):
		return false
	case r.kind == faultSync:
		return true
	case r.kind == faultShort && n == 0:
		return false // nothing to cut
	}
	end := off + uint64(n)
	if n == 0 {
		end = off + 1
	}
	return end > r.From && (r.To == 0 || off < r.To)
}
