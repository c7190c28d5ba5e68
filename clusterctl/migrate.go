package clusterctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// Migrate starts a live migration of the slots of rs to server to; their
// owner (one server) is the source, which drives it. A registered server
// not in the map yet joins it first. It returns the record as stored.
func (a *Admin) Migrate(ctx context.Context, rs []cluster.Range, to cluster.ServerID) (cluster.Migration, error) {
	if err := a.authorize(ctx); err != nil {
		return cluster.Migration{}, err
	}
	if err := a.join(ctx, to); err != nil {
		return cluster.Migration{}, err
	}
	for try := 0; ; try++ {
		st, err := a.MD.Load(ctx)
		if err != nil {
			return cluster.Migration{}, err
		}
		from, err := ownerOf(st, rs)
		if err != nil {
			return cluster.Migration{}, err
		}
		rec, err := cluster.NewMigration(st, from, to, rs)
		if err != nil {
			return cluster.Migration{}, err
		}
		rev, err := a.MD.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec})
		if errors.Is(err, cluster.ErrConflict) && try < 5 {
			continue
		}
		rec.Revision = rev
		return rec, err
	}
}

// join adds registered server id to the map when it is not in it.
func (a *Admin) join(ctx context.Context, id cluster.ServerID) error {
	_, err := cluster.Change(ctx, a.MD, 5, func(st cluster.State) (*cluster.Map, error) {
		if st.Map == nil {
			return nil, cluster.ErrNoMap
		}
		if _, ok := st.Map.Servers[id]; ok {
			return nil, nil
		}
		live, ok := st.Live[id]
		if !ok {
			return nil, fmt.Errorf("%w: %q is neither in the map nor registered", cluster.ErrUnknownServer, id)
		}
		return st.Map.WithServer(live), nil
	})
	return err
}

// ownerOf returns the one server the map gives every slot of rs.
func ownerOf(st cluster.State, rs []cluster.Range) (cluster.ServerID, error) {
	if st.Map == nil {
		return "", cluster.ErrNoMap
	}
	var owner cluster.ServerID
	for _, r := range rs {
		for _, as := range st.Map.Ranges {
			if max(as.First, r.First) > min(as.Last, r.Last) {
				continue
			}
			if owner != "" && as.Owner != owner {
				return "", fmt.Errorf("clusterctl: slots %s have more than one owner (%s, %s): migrate each owner's part on its own",
					cluster.FormatRanges(rs), owner, as.Owner)
			}
			owner = as.Owner
		}
	}
	if owner == "" {
		return "", fmt.Errorf("clusterctl: no server owns slots %s", cluster.FormatRanges(rs))
	}
	return owner, nil
}

// Migrations returns every migration record, in the order of their ids.
func (a *Admin) Migrations(ctx context.Context) ([]cluster.Migration, error) {
	st, err := a.MD.Load(ctx)
	return st.Migrations, err
}

// Progress is how far a running migration got, from its servers' admin
// listeners: the data task running on its source (or, cancelling, its
// target's ship-back) and the reads its target holds.
type Progress struct {
	Task      string  `json:"task,omitempty"`
	Slots     int     `json:"slots,omitempty"`
	SlotsDone int64   `json:"slots_done,omitempty"`
	Records   int64   `json:"records,omitempty"`
	Rate      float64 `json:"records_per_second,omitempty"`
	Held      uint64  `json:"held_reads"` // reads the target holds now (parked_reads)
	Error     string  `json:"error,omitempty"`
}

// MigrationProgress asks the servers of every running migration of ms how
// far it got (GET /cluster/migrations and /stats), each server once; ended
// ones are left out. Every running one has an entry: what could not be
// asked (the metadata store, a server) is in its Error.
func (a *Admin) MigrationProgress(ctx context.Context, ms []cluster.Migration) map[cluster.MigrationID]Progress {
	out := map[cluster.MigrationID]Progress{}
	st, loadErr := a.MD.Load(ctx)
	tasks := map[cluster.ServerID][]cluster.TaskProgress{}
	held := map[cluster.ServerID]uint64{}
	failed := map[cluster.ServerID]error{}
	ask := func(id cluster.ServerID) error {
		if loadErr != nil {
			return loadErr
		}
		if _, ok := tasks[id]; ok {
			return nil
		}
		if err, ok := failed[id]; ok {
			return err
		}
		err := a.askServer(ctx, st, id, tasks, held)
		if err != nil {
			failed[id] = err
		}
		return err
	}
	for _, m := range ms {
		if m.Phase.Final() {
			continue
		}
		var p Progress
		es, et := ask(m.Source), ask(m.Target)
		if et == es {
			et = nil // one failure (the metadata store's) said once
		}
		if err := errors.Join(es, et); err != nil {
			p.Error = err.Error()
		}
		p.Held = held[m.Target]
		for _, t := range append(tasks[m.Source], tasks[m.Target]...) {
			if t.Migration == m.ID {
				p.Task, p.Slots, p.SlotsDone, p.Records = t.Task, t.Slots, t.SlotsDone, t.Records
				if t.Seconds > 0 {
					p.Rate = float64(t.Records) / t.Seconds
				}
			}
		}
		out[m.ID] = p
	}
	return out
}

// askServer reads server id's running tasks and held reads into tasks and
// held.
func (a *Admin) askServer(ctx context.Context, st cluster.State, id cluster.ServerID,
	tasks map[cluster.ServerID][]cluster.TaskProgress, held map[cluster.ServerID]uint64) error {
	srv, ok := st.Live[id]
	if !ok || srv.Admin == "" {
		return fmt.Errorf("server %s: no live admin listener", id)
	}
	var ts []cluster.TaskProgress
	var s struct {
		ParkedReads uint64 `json:"parked_reads"`
	}
	if err := a.GetJSON(ctx, "http://"+srv.Admin+"/cluster/migrations", &ts); err != nil {
		return err
	}
	if err := a.GetJSON(ctx, "http://"+srv.Admin+"/stats", &s); err != nil {
		return err
	}
	tasks[id], held[id] = ts, s.ParkedReads
	return nil
}

// String draws p: a bar of the slots done, the records sent and their
// rate, and the reads held.
func (p Progress) String() string {
	var b strings.Builder
	if p.Task != "" && p.Slots > 0 {
		const width = 20
		done := int(min(p.SlotsDone, int64(p.Slots)))
		fill := done * width / p.Slots
		fmt.Fprintf(&b, "%s [%s%s] %3d%% %d records %.0f/s, ", p.Task, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
			done*100/p.Slots, p.Records, p.Rate)
	}
	fmt.Fprintf(&b, "%d reads held", p.Held)
	if p.Error != "" {
		fmt.Fprintf(&b, " (%s)", p.Error)
	}
	return b.String()
}

// ErrFinal is returned for a cancel of a migration that ended already.
var ErrFinal = errors.New("clusterctl: the migration ended already")

// Cancel asks migration id's source to cancel it (the record's
// CancelRequested); the source takes it back from whatever phase it is in,
// except Complete.
func (a *Admin) Cancel(ctx context.Context, id cluster.MigrationID) (cluster.Migration, error) {
	if err := a.authorize(ctx); err != nil {
		return cluster.Migration{}, err
	}
	for try := 0; ; try++ {
		st, err := a.MD.Load(ctx)
		if err != nil {
			return cluster.Migration{}, err
		}
		rec, ok := st.MigrationByID(id)
		switch {
		case !ok:
			return cluster.Migration{}, fmt.Errorf("clusterctl: no migration %d", id)
		case rec.Phase.Final():
			return rec, fmt.Errorf("%w: %s", ErrFinal, rec.Phase)
		case rec.CancelRequested:
			return rec, nil
		}
		rec.CancelRequested = true
		rev, err := a.MD.SwapMigration(ctx, cluster.MigrationSwap{Migration: rec})
		if errors.Is(err, cluster.ErrConflict) && try < 5 {
			continue
		}
		rec.Revision = rev
		return rec, err
	}
}

// WaitMigration polls migration id until it is final or wait passes,
// calling changed with each phase it sees; it returns the last record seen.
func (a *Admin) WaitMigration(ctx context.Context, id cluster.MigrationID, wait time.Duration,
	changed func(cluster.Migration)) (cluster.Migration, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last cluster.Migration
	for {
		st, err := a.MD.Load(ctx)
		if err == nil {
			rec, ok := st.MigrationByID(id)
			if !ok {
				return last, fmt.Errorf("clusterctl: no migration %d", id)
			}
			if rec.Phase != last.Phase && changed != nil {
				changed(rec)
			}
			last = rec
			if rec.Phase.Final() {
				return rec, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("clusterctl: migration %d is %s after %v: %w", id, last.Phase, wait, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WriteMigrations prints one line per migration, with the progress of
// the running ones that progress has (nil: none).
func WriteMigrations(w io.Writer, ms []cluster.Migration, progress map[cluster.MigrationID]Progress) {
	if len(ms) == 0 {
		fmt.Fprintln(w, "no migrations")
		return
	}
	fmt.Fprintf(w, "%-6s %-12s %-12s %-11s %-24s %s\n", "ID", "SOURCE", "TARGET", "PHASE", "SLOTS", "NOTE")
	for _, m := range ms {
		var note []string
		if p, ok := progress[m.ID]; ok {
			note = append(note, p.String())
		}
		if m.CancelRequested && !m.Phase.Final() {
			note = append(note, "cancel requested")
		}
		if m.Reason != "" {
			note = append(note, m.Reason)
		}
		fmt.Fprintf(w, "%-6d %-12s %-12s %-11s %-24s %s\n", m.ID, m.Source, m.Target, m.Phase, cluster.FormatRanges(m.Ranges),
			strings.Join(note, "; "))
	}
}
