package node

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/migrate"
)

// runProgress is how far a running data task of a migration (a move, a
// ship-back) got: the server's /cluster/migrations shows it, and
// 'fleetkv cluster migrations' draws it.
type runProgress struct {
	key     taskKey
	slots   int
	started time.Time
	records atomic.Int64
	done    atomic.Int64 // slots
}

// track records t as running until the returned function is called. Each
// run is an entry of its own: an aborted run that ends after the next run
// of its task started removes only its own.
func (g *migrations) track(t cluster.Task) (*runProgress, func()) {
	rp := &runProgress{key: taskKey{t.Migration, t.Kind}, started: time.Now()}
	for _, r := range t.Ranges {
		rp.slots += int(r.Last) - int(r.First) + 1
	}
	g.running.Store(rp, struct{}{})
	return rp, func() { g.running.Delete(rp) }
}

// count is a migrate.Progress that adds to rp, then calls next.
func (rp *runProgress) count(next migrate.Progress) migrate.Progress {
	return func(records, slots int) {
		rp.records.Add(int64(records))
		rp.done.Add(int64(slots))
		next(records, slots)
	}
}

// progress lists the running data tasks (server.Config.Progress).
func (g *migrations) progress() any { return g.tasks() }

// tasks lists the running data tasks, in the order of their migrations.
func (g *migrations) tasks() []cluster.TaskProgress {
	out := []cluster.TaskProgress{}
	g.running.Range(func(k, _ any) bool {
		rp := k.(*runProgress)
		out = append(out, cluster.TaskProgress{Migration: rp.key.id, Task: rp.key.kind.String(), Slots: rp.slots,
			SlotsDone: rp.done.Load(), Records: rp.records.Load(), Seconds: time.Since(rp.started).Seconds()})
		return true
	})
	slices.SortFunc(out, func(a, b cluster.TaskProgress) int { return cmp.Compare(a.Migration, b.Migration) })
	return out
}
