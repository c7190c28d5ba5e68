package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/ssd"
)

// Checkpoint describes a durable state of the store: the log from Begin to
// End is on the device (synced), and every record below End was linked
// into its hash chain under an index of at most IndexBits bits. The
// caller records it (with the page size, which fixes the address layout)
// and hands it back to Recover.
type Checkpoint struct {
	Begin, End uint64
	IndexBits  uint
	PageBits   uint
	// IndexStart, when not 0, is where the log stood when the index
	// snapshot recovery may load began (see index_snapshot.go): recovery
	// with it replays the log from there instead of from Begin. The
	// snapshot may be an earlier checkpoint's.
	IndexStart uint64 `json:",omitempty"`
	// Snapshot says the log from SnapshotStart to End is in a log snapshot
	// (see log_snapshot.go), not on the device: RestoreSnapshot must write
	// it back before recovery.
	Snapshot      bool   `json:",omitempty"`
	SnapshotStart uint64 `json:",omitempty"`
	// Keys is how many live keys the log below End holds, when
	// KeysCounted (a checkpoint that paused the sessions counts them; a
	// recovery without it counts them by a scan).
	Keys        int64 `json:",omitempty"`
	KeysCounted bool  `json:",omitempty"`
	// KeysResolvedBelow: the records marked FlagDoubt from here to End are
	// not resolved in Keys yet (store's keycount.go); recovery does it.
	KeysResolvedBelow uint64 `json:",omitempty"`
}

// Checkpoint makes everything the store holds now durable: a fold-over of
// the log (everything below its tail made read-only and written), then a
// device sync. Sessions keep running; what they do meanwhile lands after
// End and is in the next checkpoint. Safe from any goroutine that is not a
// session's owner in the middle of an operation; one runs at a time. Like
// every wait on the epoch, it needs each session to refresh or be suspended:
// a session that stays protected while idle holds it up until ctx ends.
func (st *Store) Checkpoint(ctx context.Context) (Checkpoint, error) {
	return st.CheckpointWith(ctx, CheckpointOptions{})
}

// CheckpointWithIndex is Checkpoint with an index snapshot written to index
// (see CheckpointOptions.Index).
func (st *Store) CheckpointWithIndex(ctx context.Context, index io.Writer) (Checkpoint, error) {
	return st.CheckpointWith(ctx, CheckpointOptions{Index: index})
}

// CheckpointOptions shape a checkpoint.
type CheckpointOptions struct {
	// Index, when not nil, receives a snapshot of the index, written before
	// the checkpoint's end is chosen; the checkpoint records where it began
	// in IndexStart. The caller makes the snapshot durable before it
	// records the checkpoint.
	Index io.Writer
	// Pause, when not nil, makes the checkpoint exact: it ends at the tail
	// read while every writing session is stopped between two operations
	// with no write pending, so each session's operations up to its stop
	// are in it and none after. Without Pause the checkpoint ends where the
	// fold-over closes the log, and holds whatever the sessions did until
	// then too: at least every operation completed when it started (and an
	// RMW pending across it may be missing while later operations of its
	// session are in).
	Pause Pause
	// Snapshot, when not nil, makes the checkpoint a snapshot instead of a
	// fold-over (see log_snapshot.go): the log not flushed yet, up to the
	// end, is written to Snapshot, and the records in memory stay mutable
	// once it is. Needs Pause. The caller makes the snapshot durable before
	// it records the checkpoint.
	Snapshot io.Writer
}

// Pause stops every session that writes to the store (Compact's and
// ReapExpired's need not: copies change no key's value, and their deletes
// of expired keys wait for the pause's end, Store.reaping) at a point
// between two of its
// operations where none of its writes is pending (Session.CompleteWrites;
// reads may be), keeps them there while it calls atStop, then lets them go
// on. What each session had
// issued when it stopped is its CPR point. It returns an error, without
// calling atStop, when it could not stop them all (ctx ended).
type Pause func(ctx context.Context, atStop func()) error

// CheckpointWith takes a checkpoint as o says: the index snapshot, then the
// end (the paused tail, or the fold-over's), then the fold-over and a
// device sync that make everything below the end durable.
func (st *Store) CheckpointWith(ctx context.Context, o CheckpointOptions) (Checkpoint, error) {
	st.ckpt.Lock()
	defer st.ckpt.Unlock()
	// Begin is read before the fold-over: a compaction moves it only after
	// copying the live records below it to the tail, so they are then
	// below the tail the fold-over makes durable. (A Flush moves it while
	// it holds ckpt.)
	begin := st.Begin()
	var indexStart uint64
	if o.Index != nil {
		indexStart = st.log.Tail()
		if err := st.epochs.Barrier(ctx); err != nil {
			return Checkpoint{}, fmt.Errorf("store: checkpoint: %w", err)
		}
		if _, err := st.writeIndex(o.Index); err != nil {
			return Checkpoint{}, fmt.Errorf("store: checkpoint: index snapshot: %w", err)
		}
	}
	if o.Pause == nil {
		if o.Snapshot != nil {
			return Checkpoint{}, errors.New("store: checkpoint: a snapshot needs a pause")
		}
		end, err := st.foldOver(ctx)
		return st.checkpointAt(begin, end, indexStart), err
	}
	// The snapshot's entries point below the tail as it was when the
	// export ended, so below this end too. Raising the fence before the
	// writers go on keeps the records below the end as they are now: the
	// writers' next updates of them go to the tail.
	var end, flushed uint64
	var was hlog.Fence
	var keys int64
	var resolved uint64
	st.reaping.Lock()
	err := o.Pause(ctx, func() {
		end = st.log.Tail()
		flushed = st.log.FlushedUntil()
		was = st.log.RaiseFence(end)
		keys, resolved = st.keys.atCheckpoint()
	})
	st.reaping.Unlock()
	if err != nil {
		return Checkpoint{}, fmt.Errorf("store: checkpoint: pausing the sessions: %w", err)
	}
	c := st.checkpointAt(begin, end, indexStart)
	c.Keys, c.KeysCounted, c.KeysResolvedBelow = keys, true, resolved
	if o.Snapshot == nil {
		_, err := st.foldOver(ctx)
		return c, err
	}
	c.Snapshot, c.SnapshotStart = true, flushed&^(st.log.PageSize()-1)
	err = st.writeSnapshot(ctx, o.Snapshot, c.SnapshotStart, end)
	if err != nil {
		err = fmt.Errorf("store: checkpoint: log snapshot: %w", err)
	} else if err = st.log.Device().Sync(); err != nil { // the pages below the snapshot
		err = fmt.Errorf("store: checkpoint: sync: %w", err)
	}
	// The records below the end are copied (or the checkpoint failed, and
	// nothing needs them as they were). Even when ctx ended: a fence left
	// up would keep the hot records from being updated in place for good.
	if lerr := st.log.LowerFence(context.WithoutCancel(ctx), was); err == nil && lerr != nil {
		err = fmt.Errorf("store: checkpoint: %w", lerr)
	}
	return c, err
}

// foldOver makes the log durable up to its tail and returns that end.
func (st *Store) foldOver(ctx context.Context) (uint64, error) {
	end, err := st.log.FoldOver(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: checkpoint: %w", err)
	}
	if err := st.log.Device().Sync(); err != nil {
		return 0, fmt.Errorf("store: checkpoint: sync: %w", err)
	}
	return end, nil
}

// checkpointAt describes the checkpoint from begin to end.
func (st *Store) checkpointAt(begin, end, indexStart uint64) Checkpoint {
	return Checkpoint{Begin: begin, End: end, IndexBits: st.linkBits(), PageBits: st.log.PageBits(), IndexStart: indexStart}
}

// linkBits bounds the index size records have been linked under so far:
// the table's bits, one more while it grows into a table twice as large.
func (st *Store) linkBits() uint {
	s := st.index.Stats()
	if s.Growing {
		return s.Bits + 1
	}
	return s.Bits
}

// RecoveryStats say what Recover found.
type RecoveryStats struct {
	Records    int    // records replayed into the index
	End        uint64 // where the valid log ends (the checkpoint's End unless cut)
	Start      uint64 // where the recovered store appends its first record
	Cut        bool   // the log was damaged before the checkpoint's end
	CutReason  string // what was found where it was cut
	IndexBits  uint   // the index the store opened with
	PagesTotal uint64 // pages scanned
	// IndexEntries is how many entries an index snapshot gave (0: none was
	// used, the whole log from Begin was replayed); IndexError why a
	// snapshot offered was not used.
	IndexEntries uint64 `json:",omitempty"`
	IndexError   string `json:",omitempty"`
	From         uint64 // where the replay started
}

// Recover opens a store over cfg.Log.Device, which holds the log of
// checkpoint c: it scans the log from c.Begin to c.End, verifying every
// record's checksum, and points the index at each key's newest record. The
// index gets at least c.IndexBits bits, since a record's chain link was made
// under that size and a smaller table could merge two chains into one that
// reaches only one of them. A record that does not hold together before
// c.End cuts the log there: what follows is lost, and RecoveryStats says so.
// The recovered store appends from the page after the valid end. For a
// snapshot checkpoint (c.Snapshot), RestoreSnapshot must have written the
// log snapshot back to the device first.
func Recover(cfg Config, c Checkpoint) (*Store, RecoveryStats, error) {
	st, rs, err := openForRecovery(cfg, c)
	if err != nil {
		return nil, rs, err
	}
	err = st.replay(c, c.Begin, &rs)
	if err == nil {
		err = st.restart(c, &rs)
	}
	if err != nil {
		st.Close()
		return nil, rs, err
	}
	st.restoreKeys(c, rs)
	return st, rs, nil
}

// restoreKeys takes the key count from c and resolves the doubts it left
// (the records marked FlagDoubt from c.KeysResolvedBelow to c.End). Without
// a count (a checkpoint that did not pause the sessions, or one from
// before the count), or when the log was cut before c's end, it counts the
// keys by a scan: no session runs yet, so either way the count is exact.
// A record it cannot read (damage below the replayed log) leaves the count
// at what it had, and Stats says why (KeysError): the store still opens.
func (st *Store) restoreKeys(c Checkpoint, rs RecoveryStats) {
	st.keys.resolvedBelow = rs.Start
	if c.End <= hlog.FirstAddress {
		return // an empty store
	}
	ctx := context.Background()
	if c.KeysCounted && !rs.Cut {
		doubts, err := st.doubtsIn(c)
		var corr int64
		if err == nil {
			corr, err = st.resolveDoubts(ctx, doubts)
		}
		if st.keys.base = c.Keys + corr; err == nil {
			return
		}
	}
	n, err := st.CountKeys(ctx, 0, ^uint64(0))
	if err != nil {
		st.keys.err = fmt.Sprintf("the recovered key count may be off: %v", err)
		return
	}
	st.keys.base = n
}

// doubtsIn returns the addresses of the records marked FlagDoubt from
// c.KeysResolvedBelow (at least c.Begin) to c.End.
func (st *Store) doubtsIn(c Checkpoint) ([]uint64, error) {
	var doubts []uint64
	from := max(c.KeysResolvedBelow, c.Begin)
	if from >= c.End {
		return nil, nil
	}
	_, err := hlog.ScanDevice(st.log.Device(), st.log.PageBits(), from, c.End, func(addr uint64, rec []byte) error {
		if h, _, _, _, _ := hlog.DecodePrefix(rec); h&hlog.FlagDoubt != 0 {
			doubts = append(doubts, addr)
		}
		return nil
	})
	return doubts, err
}

// openForRecovery opens the empty store checkpoint c's log is recovered
// into: the checkpoint's page size, an index at least as large as the one
// its records were linked under.
func openForRecovery(cfg Config, c Checkpoint) (*Store, RecoveryStats, error) {
	var rs RecoveryStats
	if c.PageBits != 0 && cfg.Log.PageBits != 0 && c.PageBits != cfg.Log.PageBits {
		return nil, rs, fmt.Errorf("store: recover: the log was written with %d-byte pages, not %d",
			uint64(1)<<c.PageBits, uint64(1)<<cfg.Log.PageBits)
	}
	if c.PageBits != 0 {
		cfg.Log.PageBits = c.PageBits
	}
	cfg.IndexBits = max(cfg.IndexBits, c.IndexBits)
	st, err := Open(cfg)
	if err != nil {
		return nil, rs, err
	}
	rs.IndexBits = st.index.Bits()
	st.mayExpire.Store(true) // the log's records may hold expiries
	return st, rs, nil
}

// RecoverWithIndex is Recover that first loads the index snapshot that
// c.IndexStart refers to (open returns its bytes; it is called twice, as
// the snapshot is checked whole before any of it is used) and replays only
// the log from c.IndexStart. A snapshot that fails its checks, or a log cut
// before c.End (entries of the snapshot may point past the cut), falls
// back to Recover; RecoveryStats says why.
func RecoverWithIndex(cfg Config, c Checkpoint, open func() (io.ReadCloser, error)) (*Store, RecoveryStats, error) {
	if c.IndexStart == 0 || open == nil {
		return Recover(cfg, c)
	}
	st, rs, err := openForRecovery(cfg, c)
	if err != nil {
		return nil, rs, err
	}
	n, err := st.readIndex(open)
	if err == nil {
		rs.IndexEntries = n
		err = st.replay(c, max(c.Begin, c.IndexStart), &rs)
		if err == nil && rs.Cut {
			// Nothing was written yet: the full replay cuts the log where
			// the damage starts, which may be below the snapshot's start.
			err = fmt.Errorf("the log is cut at %d, before the checkpoint's end %d", rs.End, c.End)
		}
		if err == nil {
			err = st.restart(c, &rs)
		}
		if err == nil {
			st.restoreKeys(c, rs)
			return st, rs, nil
		}
	}
	st.Close()
	st, full, ferr := Recover(cfg, c)
	full.IndexError = err.Error()
	return st, full, ferr
}

// replay links the records of the log from from to c.End into the index
// and says where the valid log ends. It writes nothing to the device.
func (st *Store) replay(c Checkpoint, from uint64, rs *RecoveryStats) error {
	rs.From = from
	st.replaying.Store(true)
	defer st.replaying.Store(false)
	if c.End <= hlog.FirstAddress {
		rs.End, rs.Start = hlog.FirstAddress, hlog.FirstAddress
		return nil // an empty checkpoint: the store is new
	}
	s, err := st.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	pageBits := st.log.PageBits()
	if err := s.begin(); err != nil {
		return err
	}
	end, scanErr := hlog.ScanDevice(st.log.Device(), pageBits, from, c.End, func(addr uint64, rec []byte) error {
		_, kl, _, _, _ := hlog.DecodePrefix(rec)
		slot, e := s.findOrCreate(keyhash.Hash(rec[hlog.PrefixSize : hlog.PrefixSize+kl]))
		if !slot.CompareAndSwap(e, addr) {
			return fmt.Errorf("store: recover: index entry for the record at %d changed under the replay", addr)
		}
		rs.Records++
		s.end() // refreshes now and then: index growth and log actions go on
		return s.begin()
	})
	s.end()
	switch {
	case errors.Is(scanErr, hlog.ErrTorn):
		rs.Cut, rs.CutReason = true, scanErr.Error()
	case scanErr != nil:
		return fmt.Errorf("store: recover: %w", scanErr)
	}
	rs.End = end
	rs.PagesTotal = (end - from + st.log.PageSize() - 1) >> pageBits
	rs.Start = (end + st.log.PageSize() - 1) &^ (st.log.PageSize() - 1)
	return nil
}

// restart starts the log after the end replay found: a cut inside a page
// is covered with a filler first.
func (st *Store) restart(c Checkpoint, rs *RecoveryStats) error {
	if c.End <= hlog.FirstAddress {
		return nil // an empty checkpoint: the store is new
	}
	end, pageBits := rs.End, st.log.PageBits()
	if rs.Start != end {
		// A cut inside a page: cover the rest of the page with a filler, so
		// that the next recovery's scan passes it to the records after it.
		if err := closeDevicePage(st.log.Device(), pageBits, end); err != nil {
			return fmt.Errorf("store: recover: closing the cut page: %w", err)
		}
	}
	return st.log.Restart(c.Begin, rs.Start)
}

// closeDevicePage puts a filler from end to the end of its page on the
// device, and syncs it. Only the sector that holds end is rewritten: every
// reader skips a filler by its length and never reads past its header
// (hlog.ScanDevice), so what the page holds after it stays as it is. A
// fold-over leaves the log's end inside a page, so every recovery after
// one does this: a sector, not a page of 32 MiB read and written back.
func closeDevicePage(dev ssd.Device, pageBits uint, end uint64) error {
	size := uint64(1) << pageBits
	sector := end &^ (ssd.SectorSize - 1) // end is 8-aligned: the header fits in its sector
	buf := ssd.AlignedBuffer(ssd.SectorSize)
	if err := hlog.ReadPage(dev, buf, sector); err != nil {
		return err
	}
	hlog.PutFiller(buf[end-sector:], size-end&(size-1))
	if err := hlog.WritePage(dev, buf, sector); err != nil {
		return err
	}
	return dev.Sync()
}
