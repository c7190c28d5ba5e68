package store

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/ssd"
)

// Indirection records: a migration's target holds, for each hash chain of
// the source that goes on into records the source keeps only on its
// device, the address in the source's log where the chain goes on, and
// reads those records through a device of its own (the shared tier's
// reader) when a key is looked up, instead of receiving them. The table
// lives beside the index, not in the log, so the log's walkers
// (compaction, recovery, checkpoints, scans) are unchanged; the caller
// keeps it durable and installs it again after a recovery.
//
// The rule a covered key follows (h is covered when a table has an
// indirection for h's chain): this store's records of the key at or above
// the table's Since are newer than anything in the source's log and decide;
// below Since they are older than the source's (a copy dropped when the
// slot left this server earlier) and are skipped; without a record at or
// above Since, the source's chain decides, walked from the indirection's
// address as a device read would walk this store's own chain.
//
// A key found through an indirection is not counted by the key count
// (prior.counted false) until this store writes a record of it: a read
// that copies it to the tail, or any write, counts it then.
//
// Invariant: a table's Since is at or below every record this store wrote
// for its keys after the source stopped serving them, and at or above
// every record of them from before (the migration's Accepting.Since).
// Precondition of InstallIndirections: no covered key's newest record
// below Since is live (a migration's prepare drops the incoming slots
// first, migrate.Drop): such records count nothing, so compaction drops
// every covered record below Since without a change of the key count.
// Invariant: compaction does not drop a tombstone of a covered key that is
// its chain's newest record of the key: it would uncover the source's value.

// RemoteLog is another store's log, read through dev.
type RemoteLog struct {
	Dev      ssd.Device
	PageSize uint64 // the remote log's page size: no record is larger
	// Begin is the remote log's begin when the indirections were taken: a
	// chain that goes below it ends.
	Begin uint64
}

// Indirections is one migration's indirection records.
type Indirections struct {
	ID     string // the migration that made them
	Remote RemoteLog
	Since  uint64 // see the rule above
	// Ranges are the hash ranges (inclusive) the table covers: the
	// migration's slots. A chain holds keys of other slots too (a bucket
	// spans a slot group), which the table must not cover: this store
	// may own them, with records older than Since that are theirs.
	Ranges [][2]uint64
	bits   uint          // the source index's bucket bits the chains are named under
	ind    []indirection // by chain once sealed (a chain's address in its line)
	dir    chainDir      // over ind, built by seal
}

// indirection is one chain of the source and where it goes on.
type indirection struct{ chain, addr uint64 }

// chainDir finds a chain in a sealed table in about two loads (its slot,
// then the chain with its address): a binary search of a table of 170 K
// chains, 18 dependent loads on every read of a covered slot, was 40 % of
// a target's CPU while its indirections were unresolved (BENCHMARKS.md).
//
// Invariant: first[j] is the index of the first chain c with
// (c-base)>>shift >= j, for j in [0, len(first)); the chains in
// [first[j], first[j+1]) are those with (c-base)>>shift == j.
type chainDir struct {
	base  uint64 // the smallest chain
	last  uint64 // the largest
	shift uint
	first []uint32
}

// newChainDir indexes chains (sorted, unique) with about one slot per
// chain over the span they lie in: a table covers some slots only, so its
// chains lie in a few runs of the whole name space.
func newChainDir(ind []indirection) chainDir {
	n := len(ind)
	if n == 0 {
		return chainDir{}
	}
	d := chainDir{base: ind[0].chain, last: ind[n-1].chain}
	spanBits := uint(bits.Len64(d.last - d.base))
	slotBits := min(uint(bits.Len(uint(n))), spanBits)
	d.shift = spanBits - slotBits
	d.first = make([]uint32, 1<<slotBits+1)
	i := 0
	for j := range d.first {
		for i < n && (ind[i].chain-d.base)>>d.shift < uint64(j) {
			i++
		}
		d.first[j] = uint32(i)
	}
	return d
}

// find returns c's indirection in ind (the slice the directory was built
// over), or false.
func (d *chainDir) find(ind []indirection, c uint64) (*indirection, bool) {
	if len(d.first) == 0 || c < d.base || c > d.last {
		return nil, false
	}
	j := (c - d.base) >> d.shift
	for i := d.first[j]; i < d.first[j+1]; i++ { // about one, in one or two lines
		if ind[i].chain >= c {
			return &ind[i], ind[i].chain == c
		}
	}
	return nil, false
}

// NewIndirections returns an empty table covering the hashes of ranges,
// for chains named under a source index of 2^bits buckets
// (index.ChainID).
func NewIndirections(id string, remote RemoteLog, since uint64, bits uint, ranges [][2]uint64) *Indirections {
	return &Indirections{ID: id, Remote: remote, Since: since, bits: bits, Ranges: ranges}
}

// Add records that the chain named chain goes on at addr in the remote
// log. Call it before the table is installed.
func (t *Indirections) Add(chain, addr uint64) {
	t.ind = append(t.ind, indirection{chain, addr})
}

// Len returns the number of indirections.
func (t *Indirections) Len() int { return len(t.ind) }

// Bits returns the source index bits the chains are named under.
func (t *Indirections) Bits() uint { return t.bits }

// Each calls fn with every indirection, in chain order.
func (t *Indirections) Each(fn func(chain, addr uint64) error) error {
	for _, in := range t.ind {
		if err := fn(in.chain, in.addr); err != nil {
			return err
		}
	}
	return nil
}

// seal sorts the table for lookup; a chain added twice keeps its last
// address.
func (t *Indirections) seal() error {
	for _, in := range t.ind {
		if in.addr < hlog.FirstAddress {
			return fmt.Errorf("store: indirection %s: chain %#x at address %d", t.ID, in.chain, in.addr)
		}
	}
	slices.SortStableFunc(t.ind, func(a, b indirection) int { return cmp.Compare(a.chain, b.chain) })
	out := t.ind[:0]
	for _, in := range t.ind {
		if n := len(out); n > 0 && out[n-1].chain == in.chain {
			out[n-1].addr = in.addr
			continue
		}
		out = append(out, in)
	}
	t.ind = slices.Clip(out)
	t.dir = newChainDir(t.ind)
	return nil
}

// Covers reports whether h lies in the table's ranges.
func (t *Indirections) Covers(h uint64) bool {
	for _, r := range t.Ranges {
		if h >= r[0] && h <= r[1] {
			return true
		}
	}
	return false
}

// lookup returns where h's chain goes on in the remote log (false: the
// source sent every record of it; h's own records decide).
func (t *Indirections) lookup(h uint64) (uint64, bool) {
	in, ok := t.dir.find(t.ind, index.ChainOf(h, t.bits))
	if !ok {
		return 0, false
	}
	return in.addr, true
}

// indirections is the store's installed tables, newest last; replaced
// whole (copy on write) under the store's indirect mutex.
type indirections []*Indirections

// covering returns the newest table whose ranges hold h, and the address
// h's chain goes on at, if that table has an indirection for it. An older
// table is never asked: the newest migration of h's slot to this store
// sent what its source held.
func (ts indirections) covering(h uint64) (*Indirections, uint64) {
	return ts.table(h).chain(h)
}

// table returns the newest table whose ranges hold h (nil: none).
func (ts indirections) table(h uint64) *Indirections {
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].Covers(h) {
			return ts[i]
		}
	}
	return nil
}

// has reports whether t has an indirection for h's chain.
func (t *Indirections) has(h uint64) bool {
	_, ok := t.lookup(h)
	return ok
}

// chain returns t and where h's chain goes on when t (which may be nil)
// has an indirection for it; nil otherwise.
func (t *Indirections) chain(h uint64) (*Indirections, uint64) {
	if t == nil {
		return nil, 0
	}
	if a, ok := t.lookup(h); ok {
		return t, a
	}
	return nil, 0
}

// InstallIndirections makes t part of every lookup from now on. Its ID
// must be new.
func (st *Store) InstallIndirections(t *Indirections) error {
	if t.Remote.Dev == nil {
		return fmt.Errorf("store: indirections %s without a device", t.ID)
	}
	if err := t.seal(); err != nil {
		return err
	}
	st.indirect.Lock()
	defer st.indirect.Unlock()
	old := st.tables()
	for _, o := range old {
		if o.ID == t.ID {
			return fmt.Errorf("store: indirections %s installed twice", t.ID)
		}
	}
	next := append(slices.Clone(old), t)
	st.indirections.Store(&next)
	return nil
}

// RemoveIndirections drops the table t (once every key it covers has a
// record in this store, or another table replaces it) and reports whether
// it was installed. Operations already following one of its chains
// finish.
func (st *Store) RemoveIndirections(t *Indirections) bool {
	st.indirect.Lock()
	defer st.indirect.Unlock()
	old := st.tables()
	for i, o := range old {
		if o == t {
			next := slices.Delete(slices.Clone(old), i, i+1)
			if len(next) == 0 {
				st.indirections.Store(nil) // lookups pay one load again
			} else {
				st.indirections.Store(&next)
			}
			return true
		}
	}
	return false
}

// dropIndirections removes every table (Flush).
func (st *Store) dropIndirections() {
	st.indirect.Lock()
	defer st.indirect.Unlock()
	st.indirections.Store(nil)
}

// Indirections returns the installed tables, oldest first.
func (st *Store) Indirections() []*Indirections { return slices.Clone(st.tables()) }

// Installed reports whether t is among the tables installed in the store.
func (st *Store) Installed(t *Indirections) bool { return slices.Contains(st.tables(), t) }

func (st *Store) tables() indirections {
	if p := st.indirections.Load(); p != nil {
		return *p
	}
	return nil
}

// Covered reports whether an installed table sends lookups of hash h into
// another log: a key that the move did not send may be there.
func (st *Store) Covered(h uint64) bool {
	t, _ := st.covered(h)
	return t != nil
}

// anyIndirections reports whether a table of indirections is installed.
// It inlines where covered does not: RMW and delete test it before calling
// covered (a one-op operation is bound by the instructions on its path,
// BENCHMARKS.md, issue 18).
func (st *Store) anyIndirections() bool {
	p := st.indirections.Load()
	return p != nil && len(*p) > 0
}

// coveringTable returns the newest table whose ranges hold h, without
// looking h's chain up in it (nil: none): a read whose key has a record
// at or above the table's Since needs no more (two loads from memory
// saved on most reads of a covered slot once its keys are pulled in).
func (st *Store) coveringTable(h uint64) *Indirections {
	p := st.indirections.Load()
	if p == nil {
		return nil
	}
	return p.table(h)
}

// covered returns the table covering h and where its chain goes on, when
// any is installed (one atomic load otherwise).
func (st *Store) covered(h uint64) (*Indirections, uint64) {
	p := st.indirections.Load()
	if p == nil || len(*p) == 0 {
		return nil, 0
	}
	return p.covering(h)
}

// Chains calls fn with every hash chain of the index that may hold keys
// of hashes in [lo, hi] (one run of buckets: chains of other hashes in
// those buckets come too, a reader filters by key), named under the
// index's size now (index.ChainID), with the address of its newest
// record. It returns that size's bits: a table of indirections to these
// chains is made with them. No growth runs meanwhile.
func (st *Store) Chains(lo, hi uint64, fn func(chain, addr uint64) error) (uint, error) {
	bits := st.index.Bits()
	err := st.index.ExportRange(lo, hi, func(e index.Entry, bucket uint64, b uint) error {
		bits = b
		return fn(index.ChainID(bucket, e.Tag()), e.Address())
	})
	return bits, err
}
