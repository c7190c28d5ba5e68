package node

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/internal/s3test"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/tier"
)

// TestMigrationThroughIndirections: two members share a directory tier;
// a quarter of the slots, most of whose records a's memory no longer
// holds, moves from a to b. a sends only what lies above what its tier
// holds and leaves the rest as indirections; b reads those keys through
// the tier (the resolver is held meanwhile), writes over some of them,
// restarts (the table is installed again before it serves), then
// resolves the table: every key reads back, the table, its file, its tier
// object and a's pin are gone.
//
// The source's data is 4× its memory; the tier is a directory, and S3 on
// a real S3 server (versitygw), where the reads are ranged GETs.
func TestMigrationThroughIndirections(t *testing.T) {
	for _, kind := range []string{"dir", "s3"} {
		t.Run(kind, func(t *testing.T) {
			shared := "dir://" + t.TempDir()
			if kind == "s3" {
				shared = s3test.Start(t)
			}
			// Each read through S3 is a ranged GET: the S3 run reads
			// a twentieth of the keys through the table.
			every := map[string]int{"dir": 1, "s3": 20}[kind]
			migrateThroughIndirections(t, shared, every)
		})
	}
}

func migrateThroughIndirections(t *testing.T, shared string, every int) {
	ctx := context.Background()
	md, a, b, cb, release, held := tierPair(t, shared)
	c := dialCluster(t, a)

	// 8000 keys of 2 KiB in the moving quarter: 16 MiB, 4× a's memory,
	// so most of them are only on a's device.
	want := fillQuarter(t, c, 8000, 17)
	sealed(t, a)

	id := startMigration(t, md, "a", "b", []cluster.Range{quarter})
	select { // b took the table and holds its resolver
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("b took no indirection table")
	}
	rec := waitFinal(t, md, id)
	if rec.Phase != cluster.PhaseComplete {
		t.Fatalf("migration ended %s: %s", rec.Phase, rec.Reason)
	}
	tables := b.Server().Store().Indirections()
	if len(tables) != 1 || tables[0].Len() == 0 {
		t.Fatalf("b holds %d tables", len(tables))
	}
	if st := b.Server().Stats().Store; st.IndirectionTables != 1 || st.IndirectionChains != tables[0].Len() {
		t.Fatalf("/stats shows %d tables, %d chains", st.IndirectionTables, st.IndirectionChains)
	}
	servedBy(t, quarter, b, a)
	st, err := tier.Open(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	if pins, _ := st.List(ctx, "pins/"); len(pins) != 1 {
		t.Fatalf("pins in the tier: %q", pins)
	}
	check(t, c, sample(want, every)) // through the indirections (and the copies reads leave)
	n := 0
	for k, v := range want {
		if n++; n%5 != 0 {
			continue
		}
		nv := "after-" + k
		if v == "" {
			nv = "revived-" + k
		}
		if err := c.Set(ctx, []byte(k), []byte(nv)); err != nil {
			t.Fatal(err)
		}
		want[k] = nv
	}
	// b restarts holding the table: it installs it again before it
	// serves, from its own file.
	addr := b.Server().Addr()
	stopNode(t, b)
	cb.Server.Listen = addr // where the map says b is
	b = startNode(t, cb)
	if len(b.Server().Store().Indirections()) != 1 {
		t.Fatal("b restarted without its table")
	}
	c = dialCluster(t, a) // the old client's connection to b is gone
	check(t, c, sample(want, every))
	close(release)
	eventually(t, "b resolved the table", func() bool { return b.Server().Stats().Store.IndirectionTables == 0 })
	check(t, c, want)
	if b.ind.resolved.Load() == 0 {
		t.Fatal("the resolver inserted nothing")
	}
	for _, prefix := range []string{"pins/", "indirections/"} {
		if names, _ := st.List(ctx, prefix); len(names) != 0 {
			t.Fatalf("%s left in the tier: %q", prefix, names)
		}
	}
	// The key count is exact again.
	if n, want := keysIn(b, quarter), countLive(want); n != want {
		t.Fatalf("b counts %d keys of the quarter, holds %d", n, want)
	}
}

func countLive(want map[string]string) int64 {
	n := int64(0)
	for _, v := range want {
		if v != "" {
			n++
		}
	}
	return n
}

// sample returns every every-th key of want (in no order).
func sample(want map[string]string, every int) map[string]string {
	out, i := map[string]string{}, 0
	for k, v := range want {
		if i++; i%every == 0 {
			out[k] = v
		}
	}
	return out
}

// TestFlushRetiresIndirections: a FLUSHALL on a target holding an
// unresolved table drops it with every key; its resolver then retires the
// table's file, pin and object instead of bringing the keys back.
func TestFlushRetiresIndirections(t *testing.T) {
	ctx := context.Background()
	shared := "dir://" + t.TempDir()
	md, a, b, _, release, held := tierPair(t, shared)
	c := dialCluster(t, a)
	keys := slices.Collect(maps.Keys(fillQuarter(t, c, 4000, 0)))
	sealed(t, a)
	id := startMigration(t, md, "a", "b", []cluster.Range{quarter})
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("b took no indirection table")
	}
	if rec := waitFinal(t, md, id); rec.Phase != cluster.PhaseComplete {
		t.Fatalf("migration ended %s", rec.Phase)
	}
	if err := b.Server().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	st, _ := tier.Open(ctx, shared)
	eventually(t, "the table retired", func() bool {
		names, _ := st.List(ctx, "indirections/")
		pins, _ := st.List(ctx, "pins/")
		b.ind.mu.Lock()
		n := len(b.ind.installed)
		b.ind.mu.Unlock()
		return n == 0 && len(names) == 0 && len(pins) == 0
	})
	if b.ind.resolved.Load() != 0 {
		t.Fatalf("the resolver inserted %d flushed keys", b.ind.resolved.Load())
	}
	check(t, dialCluster(t, b), map[string]string{keys[0]: "", keys[len(keys)-1]: ""})
}

// TestParkedReadsReadTheTier: while a's move through the tier is held
// after its seal, b parks the reads of keys it lacks and fetches them;
// a answers each key its memory no longer holds with where the key's
// chain goes on in the tier, and b reads the record there: every key reads
// at its value (deleted and never written keys as absent), most of them
// read through the tier; a's device serves only the few whose records lie
// between the cut and its memory.
func TestParkedReadsReadTheTier(t *testing.T) {
	cut := newGate(cluster.TaskMove)
	md, a, b, _, release, _ := tierPair(t, "dir://"+t.TempDir(), func(ca, _ *Config) {
		ca.Cluster.cutGate = holdAfterCut(cut, 0)
	})
	c := dialCluster(t, a)
	want := fillQuarter(t, c, 4000, 13)
	for i := 0; len(want) < 4100; i++ { // never written
		if k := fmt.Sprintf("none%d", i); keyhash.Slot([]byte(k)) >= quarter.First && keyhash.Slot([]byte(k)) <= quarter.Last {
			want[k] = ""
		}
	}
	id := startMigration(t, md, "a", "b", []cluster.Range{quarter})
	cut.wait(t)
	servedBy(t, quarter, b, a)
	pending := a.Server().Stats().Pending
	check(t, dialCluster(t, b), want)
	below, read, devReads := a.Server().Stats().FetchesBelow, b.member.mg.fetches.tier.Load(), a.Server().Stats().Pending-pending
	t.Logf("a answered %d fetches through the tier and read %d keys from its device; b read %d keys from the tier", below, devReads, read)
	if below < 2000 || read != int64(below) || devReads > 1000 {
		t.Fatal("the keys a's memory does not hold were not read through the tier")
	}
	close(cut.release)
	close(release)
	if rec := waitFinal(t, md, id); rec.Phase != cluster.PhaseComplete {
		t.Fatalf("migration ended %s: %s", rec.Phase, rec.Reason)
	}
	check(t, c, want)
}

// TestParkedReadsReadTheTable: reads b parks while a's move is held after
// its seal, and which nothing fetches (b's fetcher is held), are still
// parked when the move ends and their slot leaves Misses. b answers each
// of a key the move left in a's log through the table it took: the value
// a had (another client writes other keys of the same slots through b
// meanwhile), and never NOT_OWNER, which a routed client had to fail when
// it had sent more on the slot since.
func TestParkedReadsReadTheTable(t *testing.T) {
	ctx := context.Background()
	cut := newGate(cluster.TaskMove)
	fetching := make(chan struct{})
	md, a, b, _, release, _ := tierPair(t, "dir://"+t.TempDir(), func(ca, cb *Config) {
		ca.Cluster.cutGate = holdAfterCut(cut, 0)
		cb.Cluster.fetchGate = func(ctx context.Context) error {
			select {
			case <-fetching:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	defer close(release)
	c := dialCluster(t, a)
	want := fillQuarter(t, c, 4000, 13)
	id := startMigration(t, md, "a", "b", []cluster.Range{quarter})
	cut.wait(t)
	servedBy(t, quarter, b, a)
	reader, err := client.DialCluster(ctx, client.Config{Addr: b.Server().Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	type answer struct {
		res  client.Result
		want string
	}
	var mu sync.Mutex
	got := map[string]answer{}
	var keys, others []string
	for k := range want {
		if len(keys) < 600 {
			keys = append(keys, k)
		} else if others = append(others, k); len(others) == 50 {
			break
		}
	}
	for _, k := range keys {
		if err := reader.Read([]byte(k), func(r client.Result) {
			mu.Lock()
			defer mu.Unlock()
			r.Value = bytes.Clone(r.Value)
			got[k] = answer{r, want[k]}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := reader.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b parks the reads", func() bool { return b.Server().Stats().ParkedReads >= 300 })
	writer := dialCluster(t, b)
	for _, k := range others {
		if err := writer.Set(ctx, []byte(k), []byte("newer")); err != nil {
			t.Fatal(err)
		}
	}
	close(cut.release)
	if err := reader.Wait(); err != nil {
		t.Fatal(err)
	}
	covered := b.Server().Stats().ParkedCovered
	t.Logf("%d reads parked, %d answered through the table", b.Server().Stats().Parks, covered)
	if covered < 100 {
		t.Fatalf("%d parked reads answered through the table, want most of %d", covered, len(keys))
	}
	for _, k := range keys {
		a := got[k]
		if a.res.Err != nil || (a.res.Status == client.OK) != (a.want != "") || string(a.res.Value) != a.want {
			t.Fatalf("parked read of %s: %q status %v err %v, want %q", k, a.res.Value, a.res.Status, a.res.Err, a.want)
		}
	}
	close(fetching)
	if rec := waitFinal(t, md, id); rec.Phase != cluster.PhaseComplete {
		t.Fatalf("migration ended %s: %s", rec.Phase, rec.Reason)
	}
	for _, k := range others {
		want[k] = "newer"
	}
	check(t, c, want)
}

// holdAfterCut is a cutGate that reports records (when not 0), then holds
// the move at cut, reporting progress meanwhile (the source would cancel
// it otherwise).
func holdAfterCut(cut *gate, records int) func(context.Context, func(int)) error {
	return func(ctx context.Context, progress func(int)) error {
		if records != 0 {
			progress(records)
		}
		held := make(chan error, 1)
		go func() { held <- cut.run(ctx, cluster.Task{Kind: cluster.TaskMove}) }()
		for {
			select {
			case err := <-held:
				return err
			case <-time.After(50 * time.Millisecond):
				progress(0)
			}
		}
	}
}

// TestCancelledMoveReleasesTheTier: a migration cancelled after its
// target took the indirection table ends Cancelled with every key at its
// value on the source; the target's drop retires the table (or finds its
// resolver done) and its files, deletes the table objects and the
// source's pin from the tier, and leaves no key of the ranges behind
// (before, a resolver could insert them after the drop).
func TestCancelledMoveReleasesTheTier(t *testing.T) {
	ctx := context.Background()
	take := newGate(cluster.TaskCheckpoint)
	md, a, b, cb, release, _ := tierPair(t, "dir://"+t.TempDir(), func(_, cb *Config) {
		cb.Cluster.taskGate = take.run
	})
	c := dialCluster(t, a)
	want := fillQuarter(t, c, 4000, 0)
	sealed(t, a)
	id := startMigration(t, md, "a", "b", []cluster.Range{quarter})
	take.wait(t) // a's move is done: its table is in the tier
	if err := b.member.takeIndirections(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := len(b.Server().Store().Indirections()); n != 1 {
		t.Fatalf("b took %d tables", n)
	}
	requestCancel(t, md, id)
	close(take.release)
	close(release) // a resolver, if one starts, runs into the cancel
	if rec := waitFinal(t, md, id); rec.Phase != cluster.PhaseCancelled {
		t.Fatalf("migration ended %s: %s", rec.Phase, rec.Reason)
	}
	check(t, c, want)
	st := a.sealer.segs.Store()
	eventually(t, "b forgot the table, its files and the tier's copies", func() bool {
		files, _ := filepath.Glob(filepath.Join(clusterDir(cb.Dir), "indirections", "*"))
		names, _ := st.List(ctx, "indirections/")
		pins, _ := st.List(ctx, "pins/")
		return len(b.Server().Store().Indirections()) == 0 && len(files) == 0 && len(names) == 0 && len(pins) == 0
	})
	// The drop rests between slot groups; a resolver that ran before it
	// (during the ship-back) inserted keys it deletes.
	eventually(t, "b dropped the ranges", func() bool { return keysIn(b, quarter) == 0 })
}

// fillQuarter writes n keys of the moving quarter through c, values of
// 2 KiB, deleting the keys whose number is a multiple of deleteEvery (0:
// none), and returns what each reads ("": absent).
func fillQuarter(t *testing.T, c *client.Client, n, deleteEvery int) map[string]string {
	t.Helper()
	ctx := context.Background()
	want := map[string]string{}
	for i := 0; len(want) < n; i++ {
		k := fmt.Sprintf("k%d", i)
		if s := keyhash.Slot([]byte(k)); s < quarter.First || s > quarter.Last {
			continue
		}
		v := fmt.Sprintf("%d-%s", i, bytes.Repeat([]byte{'v'}, 2048))
		if err := c.Set(ctx, []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
		if deleteEvery > 0 && i%deleteEvery == 0 {
			if _, err := c.Delete(ctx, []byte(k)); err != nil {
				t.Fatal(err)
			}
			want[k] = ""
		}
	}
	return want
}

// sealed checkpoints n and waits until its sealer has uploaded its log
// up to the checkpoint (tierPair's 1 MiB segments).
func sealed(t *testing.T, n *Node) {
	t.Helper()
	m, err := n.Server().Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	final := min(m.Store.End, n.Server().Store().Log().FlushedUntil()) >> 20
	eventually(t, "the log in the tier", func() bool { return n.sealer.hi.Load() >= final })
}

// holdResolver is a resolveGate that says it was reached (held) and holds
// the resolver until release is closed.
func holdResolver(release <-chan struct{}, held chan<- struct{}) func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case held <- struct{}{}:
		default:
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// tierPair starts members a and b sharing the tier at shared, with 4 MiB
// of memory each, b's resolvers held until release is closed (held says
// one got there); cb is b's configuration. opts change the configurations
// before the members start.
func tierPair(t *testing.T, shared string, opts ...func(ca, cb *Config)) (md *cluster.Mem, a, b *Node, cb Config, release chan struct{}, held chan struct{}) {
	md = cluster.NewMem()
	release, held = make(chan struct{}), make(chan struct{}, 1)
	ca, cb := memberConfig(t, md, "a"), memberConfig(t, md, "b")
	for _, c := range []*Config{&ca, &cb} {
		c.Tier = TierConfig{URL: shared, SegmentSize: 1 << 20, Interval: 10 * time.Millisecond}
		c.Server.Store.Log.MemoryBytes = 4 << 20
	}
	cb.Cluster.resolveGate = holdResolver(release, held)
	for _, o := range opts {
		o(&ca, &cb)
	}
	a, b = twoMembers(t, md, ca, cb)
	return md, a, b, cb, release, held
}

// TestMoveProgress: a running move shows in its source's progress (what
// /cluster/migrations serves) with the slots of its ranges and the records
// reported so far, and leaves it when it ends; the target runs no data
// task and shows none.
func TestMoveProgress(t *testing.T) {
	cut := newGate(cluster.TaskMove)
	md, a, b, _, release, _ := tierPair(t, "dir://"+t.TempDir(), func(ca, _ *Config) {
		ca.Cluster.cutGate = holdAfterCut(cut, 7)
	})
	defer close(release)
	fillQuarter(t, dialCluster(t, a), 500, 0)
	id := startMigration(t, md, "a", "b", []cluster.Range{quarter})
	cut.wait(t)
	tasks := a.member.mg.progress().([]cluster.TaskProgress)
	if len(tasks) != 1 {
		t.Fatalf("source's progress %+v, want one task", tasks)
	}
	if p := tasks[0]; p.Migration != id || p.Task != cluster.TaskMove.String() || p.Slots != int(quarter.Last-quarter.First+1) ||
		p.Records != 7 || p.SlotsDone != 0 || p.Seconds <= 0 {
		t.Fatalf("source's progress %+v, want the move of migration %d over %d slots, 7 records so far", p, id, quarter.Last-quarter.First+1)
	}
	if tasks := b.member.mg.progress().([]cluster.TaskProgress); len(tasks) != 0 {
		t.Fatalf("target's progress %+v, want none", tasks)
	}
	close(cut.release)
	if rec := waitFinal(t, md, id); rec.Phase != cluster.PhaseComplete {
		t.Fatalf("migration ended %s: %s", rec.Phase, rec.Reason)
	}
	if tasks := a.member.mg.progress().([]cluster.TaskProgress); len(tasks) != 0 {
		t.Fatalf("source's progress after the move %+v, want none", tasks)
	}
}
