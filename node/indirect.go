package node

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetkv/fleetkv/admit"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/internal/keyset"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/migrate"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/tier"
	"github.com/fleetkv/fleetkv/wire"
)

// Indirections between members (store/indirect.go has the engine's half).
//
// Source: a move whose target names the same shared tier asks the target's
// incarnation (the run), seals its log (sealer.seal: a checkpoint, then
// the whole segments it made final go up), pins the tier's copy of the log
// from its begin (sealer.pin, one pin per run), sends only what lies above
// what the tier holds (migrate.SendCut), and writes the chains it cut, with
// where each goes on, as the run's table object in the tier
// ("indirections/<cluster>/<migration>/<target>-<run>"), empty when it cut nothing.
// Target: the checkpoint task it runs once the move finished (its slots
// are in Misses until that task is done) takes its own run's table (an
// error while it is missing), keeps it in
// DIR/cluster/indirections/<migration>.tbl.pending (synced), installs it,
// checkpoints, and then commits the file (renamed to .tbl) and starts the
// table's resolver. A store recovered at start installs every committed
// table of its own log before the server serves and drops pending ones
// (the move runs again for the new incarnation). The resolver reads every
// chain through the tier, inserts each key's newest live record unless the
// target has one since it prepared (IfNoneSince), checkpoints, and only
// then retires the table and its file and deletes every run's pin and
// table object, in that order.
//
// Invariant: a committed table's moved records are durable (its commit
// follows the checkpoint that holds them), so a restart never reads
// through a table whose explicit records it lost.
// Invariant: a member moves no slot out while it holds an unresolved
// table covering it (its scan would not see the keys behind it): the move
// waits for the resolver.

// tableHeader is the JSON line in front of a table's chains, in the tier
// and in the target's file.
type tableHeader struct {
	Cluster     string              `json:"cluster"`
	Migration   cluster.MigrationID `json:"migration"`
	Source      cluster.ServerID    `json:"source"`
	Target      cluster.ServerID    `json:"target"`
	LogID       string              `json:"log_id"`       // the source's log in the tier
	SegmentSize uint64              `json:"segment_size"` // of its segments there
	PageSize    uint64              `json:"page_size"`
	Begin       uint64              `json:"begin"` // the source log's begin, pinned
	Bits        uint                `json:"bits"`  // the source index's size the chains are named under
	Ranges      []cluster.Range     `json:"ranges"`
	Since       uint64              `json:"since,omitempty"` // the target's prepare point (its file only)
	Chains      int                 `json:"chains"`
	// Run is the target's incarnation the move sent its records to: a
	// move runs again after the target restarted, and the target takes
	// the table of its own incarnation only (its pin and object are named
	// by it).
	Run uint64 `json:"run"`
	// TargetLog is the target's log id (its own file only): a log that
	// started over does not take its old tables back.
	TargetLog string `json:"target_log,omitempty"`
}

// tableDir holds the tables of a migration's runs in the tier.
func tableDir(name string, id cluster.MigrationID) string {
	return fmt.Sprintf("indirections/%s/%d/", name, id)
}

// tableObject names the table of run (the target's incarnation) of a
// migration's move to target in the tier.
func tableObject(name string, id cluster.MigrationID, target cluster.ServerID, run uint64) string {
	return fmt.Sprintf("%s%s", tablePrefix(name, id, target), strconv.FormatUint(run, 10))
}

// tablePrefix begins the names of the tables of a migration's moves to
// target.
func tablePrefix(name string, id cluster.MigrationID, target cluster.ServerID) string {
	return fmt.Sprintf("%s%s-", tableDir(name, id), target)
}

// encodeTable is the header, a newline, then chain and address (u64 LE)
// of each indirection.
func encodeTable(h tableHeader, chains, addrs []uint64) []byte {
	h.Chains = len(chains)
	b, _ := json.Marshal(h)
	b = append(b, '\n')
	for i := range chains {
		b = binary.LittleEndian.AppendUint64(b, chains[i])
		b = binary.LittleEndian.AppendUint64(b, addrs[i])
	}
	return b
}

func decodeTable(b []byte) (h tableHeader, chains, addrs []uint64, err error) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return h, nil, nil, errors.New("node: indirection table without a header")
	}
	if err := json.Unmarshal(b[:nl], &h); err != nil {
		return h, nil, nil, fmt.Errorf("node: indirection table header: %w", err)
	}
	body := b[nl+1:]
	if len(body) != 16*h.Chains {
		return h, nil, nil, fmt.Errorf("node: indirection table of migration %d: %d bytes for %d chains", h.Migration, len(body), h.Chains)
	}
	for i := 0; i < len(body); i += 16 {
		chains = append(chains, binary.LittleEndian.Uint64(body[i:]))
		addrs = append(addrs, binary.LittleEndian.Uint64(body[i+8:]))
	}
	return h, chains, addrs, nil
}

// hashRanges turns slot ranges into the hash ranges they cover.
func hashRanges(rs []cluster.Range) [][2]uint64 {
	out := make([][2]uint64, len(rs))
	for i, r := range rs {
		out[i] = [2]uint64{keyhash.FirstHash(r.First), keyhash.LastHash(r.Last)}
	}
	return out
}

// cutChains collects a move's cut chains. A growth of the source's index
// during the move names later chains under more bits; the earlier ones
// are then named under the larger size too (a chain of 2^b buckets holds
// the keys of its 2^(B-b) successors at 2^B, so each successor goes on at
// its address).
type cutChains struct {
	bits          uint
	chains, addrs []uint64
	sizes         []uint
}

func (c *cutChains) add(bits uint, chain, addr uint64) error {
	c.bits = max(c.bits, bits)
	c.chains, c.addrs, c.sizes = append(c.chains, chain), append(c.addrs, addr), append(c.sizes, bits)
	return nil
}

// named returns every chain named under the largest size.
func (c *cutChains) named() (chains, addrs []uint64) {
	const tagBits = 14 // index.ChainID's layout: bucket << 14 | tag
	for i, ch := range c.chains {
		shift := c.bits - c.sizes[i]
		bucket, tag := ch>>tagBits, ch&(1<<tagBits-1)
		for j := uint64(0); j < 1<<shift; j++ {
			chains = append(chains, index.ChainID(bucket<<shift|j, tag))
			addrs = append(addrs, c.addrs[i])
		}
	}
	return chains, addrs
}

// indirector is a node's tables: it installs them and resolves them.
type indirector struct {
	tier  tier.Store
	dir   string // DIR/cluster/indirections
	name  string // the cluster's
	logID string // this node's log (a table is kept for one log only)
	log   *slog.Logger
	srv   *server.Server
	rate  int                             // records a second a resolver inserts at most (0: no cap)
	gate  func(ctx context.Context) error // ClusterConfig.resolveGate
	cpus  cpuGate                         // the resolvers' workers running at once (set with srv)

	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	// mu orders taking a newer run's table against retiring a resolved
	// one: each checks under it that the installed table is the one it
	// means.
	mu        sync.Mutex
	installed map[string]*installedTable // by table id
	// forgotten are the cancelled migrations whose tables this target
	// dropped (forget): a checkpoint task still running takes none of
	// theirs (migration ids are never reused).
	forgotten map[cluster.MigrationID]bool
	resolved  atomic.Int64 // records inserted by resolvers since start
}

// installedTable is a table in the store, with the reader it reads
// through and the run of the move that made it.
type installedTable struct {
	t         *store.Indirections
	r         *tier.Reader
	h         tableHeader
	run       uint64
	resolving bool          // a resolver was started for it (under mu)
	resolved  chan struct{} // closed when that resolver ends
}

func newIndirector(t tier.Store, dataDir, name, logID string, rate int, log *slog.Logger) *indirector {
	ctx, stop := context.WithCancel(context.Background())
	return &indirector{tier: t, dir: filepath.Join(clusterDir(dataDir), "indirections"), name: name, logID: logID, rate: rate,
		log: log, ctx: ctx, stop: stop, installed: map[string]*installedTable{},
		forgotten: map[cluster.MigrationID]bool{}}
}

func tableID(h tableHeader) string { return fmt.Sprintf("%s/%d", h.Cluster, h.Migration) }

// reinstall installs every table kept under dir (Config.Recovered): the
// committed ones, of this log, not older than a FLUSHALL. A table taken
// but not committed (the checkpoint after it did not end) is dropped:
// the move runs again for this new incarnation.
func (x *indirector) reinstall(st *store.Store) error {
	pending, _ := filepath.Glob(filepath.Join(x.dir, "*.pending"))
	for _, f := range pending {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	files, err := filepath.Glob(filepath.Join(x.dir, "*.tbl"))
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		h, chains, addrs, err := decodeTable(b)
		if err != nil {
			return fmt.Errorf("node: %s: %w", f, err)
		}
		if h.TargetLog != x.logID || h.Since < st.FlushedAt() {
			x.log.Warn("dropping an indirection table of another log or from before a flush", "file", f, "migration", h.Migration)
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("node: %w", err)
			}
			continue
		}
		x.mu.Lock()
		err = x.install(st, h, chains, addrs)
		x.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// install makes the table part of st's lookups, in place of an older
// run's; the caller holds mu.
func (x *indirector) install(st *store.Store, h tableHeader, chains, addrs []uint64) error {
	segs, err := tier.NewSegments(x.tier, h.LogID, h.SegmentSize)
	if err != nil {
		return err
	}
	r := segs.Reader(64)
	t := store.NewIndirections(tableID(h), store.RemoteLog{Dev: r, PageSize: h.PageSize, Begin: h.Begin}, h.Since, h.Bits, hashRanges(h.Ranges))
	for i := range chains {
		t.Add(chains[i], addrs[i])
	}
	old := x.installed[t.ID]
	if old != nil {
		st.RemoveIndirections(old.t)
	}
	if err := st.InstallIndirections(t); err != nil {
		r.Close()
		return err
	}
	if old != nil {
		old.r.Close()
	}
	x.installed[t.ID] = &installedTable{t: t, r: r, h: h, run: h.Run}
	x.log.Info("indirections installed", "migration", h.Migration, "source", h.Source, "chains", len(chains), "since", h.Since, "run", h.Run)
	return nil
}

// take installs the table the source of migration id left in the tier
// for this incarnation (run) of this server, the target: kept in a synced
// pending file, then installed. commit, after the checkpoint that makes
// the move's records durable, makes it the table a restart installs and
// starts its resolver. since is where this server prepared. A source that
// shares this server's tier always leaves a table (maybe empty), so a
// missing one is an error: the checkpoint task fails and runs again.
func (x *indirector) take(ctx context.Context, self cluster.ServerID, id cluster.MigrationID, run, since uint64) error {
	st := x.srv.Store()
	b, err := x.tier.Get(ctx, tableObject(x.name, id, self, run))
	if err != nil {
		return fmt.Errorf("node: the indirections of migration %d for incarnation %d: %w", id, run, err)
	}
	h, chains, addrs, err := decodeTable(b)
	if err != nil {
		return err
	}
	if h.Target != self || h.Run != run {
		return fmt.Errorf("node: the indirections of migration %d are for %s (incarnation %d)", id, h.Target, h.Run)
	}
	if len(chains) == 0 {
		return nil // the move sent every record
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.forgotten[id] {
		return nil // cancelled: the drop went first
	}
	if in := x.installed[tableID(h)]; in != nil && in.run == h.Run {
		return nil // taken by an earlier run of the task
	}
	h.Since, h.TargetLog = since, x.logID
	if err := os.MkdirAll(x.dir, 0o755); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := writeSynced(x.file(id)+".pending", encodeTable(h, chains, addrs)); err != nil {
		return err
	}
	return x.install(st, h, chains, addrs)
}

// commit makes migration id's pending table (if any) the one a restart
// installs, and starts its resolver: the checkpoint after the move is
// done.
func (x *indirector) commit(id cluster.MigrationID) error {
	x.mu.Lock()
	forgotten := x.forgotten[id]
	x.mu.Unlock()
	if forgotten {
		return nil // forget removes the files
	}
	b, err := os.ReadFile(x.file(id) + ".pending")
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing taken, or committed already
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	h, _, _, err := decodeTable(b)
	if err != nil {
		return err
	}
	if err := os.Rename(x.file(id)+".pending", x.file(id)); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := syncDir(x.dir); err != nil {
		return err
	}
	x.resolveLater(h)
	return nil
}

// file is where the target keeps migration id's committed table.
func (x *indirector) file(id cluster.MigrationID) string {
	return filepath.Join(x.dir, fmt.Sprintf("%d.tbl", id))
}

// resolveAll starts a resolver for every installed table (after a
// restart).
func (x *indirector) resolveAll() error {
	x.mu.Lock()
	var hs []tableHeader
	for _, in := range x.installed {
		hs = append(hs, in.h)
	}
	x.mu.Unlock()
	for _, h := range hs {
		x.resolveLater(h)
	}
	return nil
}

// resolveLater starts h's resolver, once per installed table.
func (x *indirector) resolveLater(h tableHeader) {
	x.mu.Lock()
	in := x.installed[tableID(h)]
	if in == nil || in.run != h.Run || in.resolving {
		x.mu.Unlock()
		return
	}
	in.resolving, in.resolved = true, make(chan struct{})
	x.mu.Unlock()
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		defer close(in.resolved)
		for {
			err := x.resolve(x.ctx, h)
			if err == nil || x.ctx.Err() != nil {
				return
			}
			x.log.Warn("resolving indirections (retrying)", "migration", h.Migration, "err", err)
			select {
			case <-x.ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
}

// close stops the resolvers and closes the readers (reads in progress
// fail, so nothing waits on them); the tables stay installed in a store
// that is closing too.
func (x *indirector) close() {
	x.stop()
	x.mu.Lock()
	for _, in := range x.installed {
		in.r.Close()
	}
	x.mu.Unlock()
	x.wg.Wait()
}

// resolve pulls every key behind table h into the store, then retires the
// table.
func (x *indirector) resolve(ctx context.Context, h tableHeader) error {
	st := x.srv.Store()
	x.mu.Lock()
	in := x.installed[tableID(h)]
	x.mu.Unlock()
	if in == nil || in.run != h.Run {
		return nil // retired already, or a newer run's table took its place
	}
	t := in.t
	if x.gate != nil {
		if err := x.gate(ctx); err != nil {
			return err
		}
	}
	start := time.Now()
	n, err := x.insertAll(ctx, st, t, h)
	switch {
	case errors.Is(err, errFlushed):
		// A FLUSHALL dropped the table and every key it covered.
	case err != nil:
		return err
	default:
		if _, err := x.srv.Checkpoint(ctx); err != nil {
			return err
		}
	}
	if retired, err := x.retire(in, h); !retired || err != nil {
		return err
	}
	if err := x.release(ctx, h); err != nil {
		return err
	}
	x.log.Info("indirections resolved", "migration", h.Migration, "chains", t.Len(), "records", n, "took", time.Since(start))
	return nil
}

// errFlushed ends a resolver whose table a FLUSHALL dropped.
var errFlushed = errors.New("node: the store was flushed")

// retire removes the resolved table in from the store, then its file,
// unless a newer run's table took its place meanwhile (retired false).
func (x *indirector) retire(in *installedTable, h tableHeader) (retired bool, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.installed[in.t.ID] != in {
		return false, nil
	}
	x.srv.Store().RemoveIndirections(in.t)
	delete(x.installed, in.t.ID)
	in.r.Close()
	if err := os.Remove(x.file(h.Migration)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("node: %w", err)
	}
	return true, syncDir(x.dir)
}

// forget drops migration id's table, when one is taken, and ends its
// resolver (without inserting, as after a FLUSHALL), then deletes its
// files: the migration was cancelled, and this server, its target, drops
// the ranges.
func (x *indirector) forget(ctx context.Context, id cluster.MigrationID) error {
	x.mu.Lock()
	x.forgotten[id] = true
	var resolvers []chan struct{}
	for tid, in := range x.installed {
		if in.h.Cluster != x.name || in.h.Migration != id {
			continue
		}
		x.srv.Store().RemoveIndirections(in.t)
		delete(x.installed, tid)
		in.r.Close()
		if in.resolved != nil {
			resolvers = append(resolvers, in.resolved)
		}
	}
	x.mu.Unlock()
	for _, done := range resolvers { // no insert of it lands after the drop
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, f := range []string{x.file(id), x.file(id) + ".pending"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("node: %w", err)
		}
	}
	if err := syncDir(x.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// releaseCancelled deletes from the tier the table objects that migration
// id's source left for this server (self), the cancelled migration's
// target, and the pins that held the source's log for them.
func (x *indirector) releaseCancelled(ctx context.Context, id cluster.MigrationID, self cluster.ServerID) error {
	names, err := x.tier.List(ctx, tableDir(x.name, id))
	if err != nil {
		return err
	}
	for _, name := range names {
		if !strings.HasPrefix(name, tablePrefix(x.name, id, self)) {
			continue // this server was the source: its target releases
		}
		b, err := x.tier.Get(ctx, name)
		if errors.Is(err, tier.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		h, _, _, err := decodeTable(b)
		if err != nil {
			return fmt.Errorf("node: %s: %w", name, err)
		}
		if h.Target != self {
			continue
		}
		if err := x.release(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// release deletes the pins and the tables of every run of h's migration
// from the tier: the newest run's table is resolved, and no server takes
// an older one any more.
func (x *indirector) release(ctx context.Context, h tableHeader) error {
	pins, err := x.tier.List(ctx, pinDir(h.LogID))
	if err != nil {
		return err
	}
	tables, err := x.tier.List(ctx, tableDir(h.Cluster, h.Migration))
	if err != nil {
		return err
	}
	for _, name := range pins {
		if !strings.HasPrefix(name, pinPrefix(h.LogID, h.Cluster, h.Migration)) {
			continue
		}
		tables = append(tables, name)
	}
	for _, name := range tables {
		if err := x.tier.Delete(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// resolveShare is the part of its time a resolver works (admit.Duty): its
// inserts, the foreground's deepest dip of a move on 2 CPUs when they ran
// flat out (BENCHMARKS.md), are not urgent: the table answers meanwhile.
const resolveShare = 0.5

// dutySlice is how long a resolver works before it rests (admit.Duty).
const dutySlice = 20 * time.Millisecond

// resolveWorkers is how many chains a resolver walks at once: each step of
// a walk is a read of the tier (a ranged GET on S3), so they overlap; of
// the walks, only as many run as the node's cpuGate lets (the others wait
// for the tier, or for a token).
const resolveWorkers = 16

// resolveBlocks is how many blocks of the tier (tier.BlockSize each) a
// resolver keeps.
const resolveBlocks = 64

// insertAll walks every chain of t in the remote log and inserts each
// key's newest live record of it (a key of the chain's own, in the
// table's ranges) unless the store has one since t.Since. Chains go to
// resolveWorkers goroutines, each with a store session of its own and
// running while it holds a token of x.cpus, in the order of their
// addresses, newest first: the walks sweep the log, read through the tier
// a block at a time.
func (x *indirector) insertAll(ctx context.Context, st *store.Store, t *store.Indirections, h tableHeader) (int, error) {
	segs, err := tier.NewSegments(x.tier, h.LogID, h.SegmentSize)
	if err != nil {
		return 0, err
	}
	br := segs.BlockReader(resolveWorkers, resolveBlocks)
	remote := remoteRecords{kept: br, dev: gatedDevice{br, x.cpus}}
	defer br.Close()
	defer context.AfterFunc(ctx, func() { br.Close() })() // reads in progress end with the resolver
	chains := make([]chainAt, 0, t.Len())
	_ = t.Each(func(c, a uint64) error { chains = append(chains, chainAt{c, a}); return nil })
	slices.SortFunc(chains, func(a, b chainAt) int { return cmp.Compare(b.addr, a.addr) })
	var next, inserted atomic.Int64
	started := time.Now()
	// Background work for admission control, but not held to its budget:
	// every read of a key not resolved yet goes through the tier, so a
	// resolver held back keeps the foreground slow for longer (held to the
	// budget, a move's 499,985 chains were still unresolved 20 s after the
	// table was installed, the throughput at two thirds meanwhile:
	// BENCHMARKS.md).
	defer x.srv.Background().Begin()()
	d := admit.Duty{Share: resolveShare, Slice: dutySlice}
	d.Begin()
	errs := make(chan error, resolveWorkers)
	for range resolveWorkers {
		go func() {
			// The token is held from here to the end of the walks, given up
			// only while a read waits for the tier (gatedDevice): also
			// while the worker rests (d.Wait, pace) or waits for its
			// session's own device (CompletePending). So a resting resolver
			// keeps the node's other resolvers waiting too: with the one
			// token of 2 CPUs, two migrations' resolvers share half a CPU,
			// not one (giving it up around a rest that sleeps would need
			// Duty to say beforehand that it will).
			x.cpus.acquire()
			defer x.cpus.release()
			errs <- x.insertChains(ctx, st, t, remote, func() (uint64, uint64, bool) {
				i := next.Add(1) - 1
				if i >= int64(len(chains)) {
					return 0, 0, false
				}
				d.Wait(ctx)
				x.pace(ctx, started, int(inserted.Load()))
				return chains[i].chain, chains[i].addr, true
			}, &inserted)
		}()
	}
	for range resolveWorkers {
		err = errors.Join(err, <-errs)
	}
	n := int(inserted.Load())
	x.resolved.Add(int64(n))
	return n, err
}

// insertChains resolves the chains take hands out until it has none, on a
// session of its own; inserted counts the records it inserts.
func (x *indirector) insertChains(ctx context.Context, st *store.Store, t *store.Indirections, remote remoteRecords,
	take func() (chain, addr uint64, ok bool), inserted *atomic.Int64) error {
	s, err := st.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	var failed error
	s.SetCompletion(func(c store.Completion) {
		if c.Err != nil && failed == nil {
			failed = c.Err
		}
	})
	var buf []byte
	var seen keyset.Set // the chain's keys: a key's newest record decides it
	u := store.Update{If: store.IfNoneSince, Since: t.Since, Merge: store.Replace{}}
	// now is read every nowEvery chains: it only spares the target
	// records that expired already (one inserted a little late carries its
	// expiry and reads as absent there).
	var now int64
	walked := 0 // chains this session walked
	for {
		chain, addr, ok := take()
		if !ok {
			return nil
		}
		if !st.Installed(t) {
			return errFlushed // the only other way a table leaves the store
		}
		seen.Reset()
		if walked%nowEvery == 0 {
			now = st.Now()
		}
		walked++
		for a := addr; a >= max(t.Remote.Begin, hlog.FirstAddress); {
			rec, nb, err := remote.read(a, buf)
			buf = nb
			if err != nil {
				return err
			}
			hdr, kl, _, vl, _ := hlog.DecodePrefix(rec)
			key := rec[hlog.PrefixSize : hlog.PrefixSize+kl]
			if hh := keyhash.Hash(key); t.Covers(hh) && index.ChainOf(hh, t.Bits()) == chain && seen.Add(hh, key) {
				v, at := hlog.SplitValue(hdr, rec[hlog.PrefixSize+kl:hlog.PrefixSize+kl+vl])
				if !hdr.Tombstone() && !store.Expired(at, now) {
					// The pending operation copies key and value: buf
					// may be reused.
					u.Input, u.Expire = v, store.ExpiryOf(at)
					if _, _, err := s.UpdateHashed(key, hh, &u, nil); err != nil {
						return err
					}
					inserted.Add(1)
				}
			}
			a = hdr.Prev()
		}
		s.CompletePending(true)
		s.Suspend()
		if failed != nil {
			return failed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// nowEvery is how many chains a resolver's clock reading serves.
const nowEvery = 1024

// chainAt is a chain of an indirection table and its newest record's
// address in the remote log.
type chainAt struct{ chain, addr uint64 }

// remoteRecords reads a resolver's records of the source's log: in place
// in a block the reader keeps (most of a sweep's: no copy, no callback),
// through the device otherwise (which fetches the block).
type remoteRecords struct {
	kept *tier.Reader
	dev  ssd.Device // kept, gated (gatedDevice)
}

// read returns the record at addr (as hlog.ReadRecord), buf being the
// buffer of the reads that go through the device.
func (r remoteRecords) read(addr uint64, buf []byte) (rec, newBuf []byte, err error) {
	if b := r.kept.Kept(addr); b != nil {
		if rec, _, err := hlog.ParseRecord(b, addr); rec != nil || err != nil {
			return rec, buf, err
		}
	}
	return hlog.ReadRecord(r.dev, addr, buf)
}

// pace holds a resolver to the rate cap.
func (x *indirector) pace(ctx context.Context, start time.Time, n int) {
	if x.rate <= 0 {
		return
	}
	if wait := time.Until(start.Add(time.Duration(float64(n) / float64(x.rate) * float64(time.Second)))); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// tablesCover reports whether an installed table covers a slot of ranges.
func tablesCover(st *store.Store, ranges []cluster.Range) bool {
	hs := hashRanges(ranges)
	for _, t := range st.Indirections() {
		for _, tr := range t.Ranges {
			if slices.ContainsFunc(hs, func(r [2]uint64) bool { return tr[0] <= r[1] && r[0] <= tr[1] }) {
				return true
			}
		}
	}
	return false
}

// move runs a move task: with indirections where the peer shares this
// member's tier, as a plain Send otherwise.
func (m *member) move(ctx context.Context, t cluster.Task, sess *client.Session, progress migrate.Progress) (uint64, error) {
	st := m.srv.Store()
	for tablesCover(st, t.Ranges) { // the store's own indirections first (see above)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if m.sealer == nil || m.tier == "" || m.mg.peer(t.Peer).Tier != m.tier {
		return migrate.Send(ctx, st, t.Ranges, 0, sess, t.Migration, wire.MigrateMoved, progress)
	}
	// The target of this run: the table is for it alone (take).
	run, err := migrate.Incarnation(sess)
	if err != nil {
		return 0, err
	}
	defer m.srv.LendBelow(t.Migration, 0, nil)
	begin, cut, err := m.pinAndSeal(ctx, t.Migration, run)
	if err != nil {
		return 0, err
	}
	stored := false // the run's table object: from then on its target or resolver releases the pin
	defer func() {
		if !stored && cut != 0 {
			m.unpin(t.Migration, run)
		}
	}()
	if m.mg.cut != nil {
		if err := m.mg.cut(ctx, func(records int) { progress(records, 0) }); err != nil {
			return 0, err
		}
	}
	var cc cutChains
	var inc uint64
	if cut == 0 {
		inc, err = migrate.Send(ctx, st, t.Ranges, 0, sess, t.Migration, wire.MigrateMoved, progress)
	} else {
		inc, err = migrate.SendCut(ctx, st, t.Ranges, cut, sess, t.Migration, cc.add, progress)
	}
	if err == nil && inc != run {
		err = fmt.Errorf("node: the target restarted during the move (incarnation %d, then %d)", run, inc)
	}
	if err != nil {
		return 0, err
	}
	chains, addrs := cc.named()
	if len(chains) == 0 && cut != 0 {
		m.srv.LendBelow(t.Migration, 0, nil) // before the pin goes
		if err := m.sealer.segs.Store().Delete(ctx, pinName(m.sealer.segs.LogID(), m.name, t.Migration, run)); err != nil {
			return 0, err
		}
	}
	// A table, empty or not, for every move to a server sharing the tier:
	// the target fails its checkpoint task until it has taken it.
	h := tableHeader{Cluster: m.name, Migration: t.Migration, Source: m.id, Target: t.Peer, LogID: m.sealer.segs.LogID(),
		SegmentSize: m.sealer.segs.Size(), PageSize: st.Log().PageSize(), Begin: begin, Bits: cc.bits, Ranges: t.Ranges, Run: run}
	b := encodeTable(h, chains, addrs)
	if err := m.sealer.segs.Store().Put(ctx, tableObject(m.name, t.Migration, t.Peer, run), bytes.NewReader(b), int64(len(b))); err != nil {
		return 0, err
	}
	stored = true
	m.log.Info("migration: chains below the tier's cut left as indirections", "migration", t.Migration,
		"chains", len(chains), "cut", cut, "table_bytes", len(b))
	return inc, nil
}

// unpin deletes the pin of run of migration id's move, which failed (a
// cancel ends it, or it runs again and pins anew), before it stored its
// table: no target reads the log through it but for fetches already
// answered, which fail and stay parked. The move's context may be over.
func (m *member) unpin(id cluster.MigrationID, run uint64) {
	m.srv.LendBelow(id, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	s := m.sealer
	if err := s.segs.Store().Delete(ctx, pinName(s.segs.LogID(), m.name, id, run)); err != nil && !errors.Is(err, tier.ErrNotFound) {
		m.log.Warn("migration: unpinning a failed move", "migration", id, "err", err)
	}
}

// pinAndSeal pins the tier's copy of the log for run of migration id's
// move, seals the log (sealer.seal) and returns the begin the table names
// and the cut (sealer.pin). Where the tier holds the log from its begin
// already, the pin comes first and the target's fetches are answered
// through the tier (server.LendBelow) while the seal runs, then up to
// the new cut; the lending lasts until the caller ends it. Otherwise the
// pin follows the seal, and the lending the pin. A failed seal removes
// the pin it followed.
func (m *member) pinAndSeal(ctx context.Context, id cluster.MigrationID, run uint64) (begin, cut uint64, err error) {
	s := m.sealer
	if begin, cut, err = s.pin(ctx, m.name, id, run); err != nil {
		return 0, 0, err
	}
	if cut != 0 {
		m.srv.LendBelow(id, cut, s.logName())
	}
	if err := s.seal(ctx); err != nil {
		if cut != 0 {
			m.unpin(id, run)
		}
		return 0, 0, err
	}
	if cut == 0 {
		if begin, cut, err = s.pin(ctx, m.name, id, run); err != nil || cut == 0 {
			return begin, cut, err
		}
	}
	// The log's begin may have moved on during the seal (a compaction):
	// the tier holds the log from the new one (round), not always from
	// the pin's, and nothing below it is part of the log.
	begin = max(begin, m.srv.Store().Begin())
	cut = max(cut, s.held())
	m.srv.LendBelow(id, cut, s.logName())
	return begin, cut, nil
}

// takeIndirections takes migration id's table when this member is its
// target (its routing accepts the migration's records: the since it
// prepared at comes from there) and shares its source's tier (the source
// then left one); a source has none to take.
func (m *member) takeIndirections(ctx context.Context, id cluster.MigrationID) error {
	if m.ind == nil {
		return nil
	}
	src, ok := m.mg.sourceOf(id)
	if !ok || m.mg.peer(src).Tier != m.tier {
		return nil
	}
	for _, a := range m.srv.Routing().Accept {
		if a.ID == id {
			return m.ind.take(ctx, m.id, id, m.srv.Incarnation(), a.Since)
		}
	}
	return nil
}
