package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/tier"
	"github.com/fleetkv/fleetkv/wire"
)

// A migration's target parks the reads of keys it has not received
// (server/parking.go), refuses other operations on them, and tells the
// node of each key (onParked); the fetcher gets the key's record from the
// source at once instead of waiting for the move to reach it.

// pull is a key a loop parked a read on, or refused an operation for, to
// fetch from the migration's source.
type pull struct {
	id  cluster.MigrationID
	key []byte
}

// pullQueue bounds the keys waiting to be fetched; a key that finds it
// full is not fetched (its reads are answered when the move sends it).
const pullQueue = 65536

// fetchCounts count what became of the keys the loops parked reads on or
// refused operations for, for /metrics: a key is dropped (the queue was full), or asked of its
// source, which answers it (record, absent, or where the tier has it),
// refuses it (not lent yet) or never answers in time (lost); a key asked
// through the tier is counted again as read there (tier) or not (lost).
// A read of a key not answered stays parked until the move sends it or
// the read's time runs out.
type fetchCounts struct {
	dropped, asked, record, absent, below, refused, lost, tier atomic.Int64
}

// onParked takes a key a loop parks a read on, or refused an operation
// for (server.Config.OnParked): the key is fetched from the source.
func (g *migrations) onParked(id cluster.MigrationID, key []byte) {
	select {
	case g.pulls <- pull{id, bytes.Clone(key)}:
	default:
		g.fetches.dropped.Add(1)
	}
}

// fetchBatch is the most keys fetched from a source at once.
const fetchBatch = 2048

// fetch takes the keys the loops parked reads on, fetches their records
// from the migrations' sources (MIGRATE fetch, where the source lends
// them) and hands them to this server's loops (server.Deliver: the record,
// or its absence), which answer the parked reads. It fetches the next keys
// while the loops take the last ones; a failure leaves the reads parked
// until the move sends their keys.
func (m *member) fetch(ctx context.Context) {
	defer m.mg.wg.Done()
	f := fetcher{m: m, sources: map[cluster.ServerID]*client.Session{}}
	defer f.close()
	for {
		var batch []pull
		select {
		case <-ctx.Done():
			return
		case p := <-m.mg.pulls:
			batch = append(batch, p)
		}
		for len(batch) < fetchBatch {
			select {
			case p := <-m.mg.pulls:
				batch = append(batch, p)
				continue
			default:
			}
			break
		}
		if gate := m.mg.fetch; gate != nil && gate(ctx) != nil {
			return
		}
		if err := f.fetch(ctx, batch); err != nil {
			m.log.Debug("migration: fetching parked keys", "keys", len(batch), "err", err)
		}
	}
}

// fetcher keeps the sessions the fetches go over, and the readers of the
// sources' logs in the shared tier.
type fetcher struct {
	m       *member
	sources map[cluster.ServerID]*client.Session
	logs    map[string]*tier.Reader // by the log's name in the tier
	// out are the answers to hand to the loops; taken holds, oldest
	// first, a channel for each hand-over the loops may not have taken yet
	// (server.Deliver), whose records must stay as they are until it is
	// closed: at most handOvers.
	out   []server.Delivered
	taken []<-chan struct{}
	// below are the fetches a source answered with where the key's chain
	// goes on in the tier, read once the batch's answers are in.
	below []tierFetch
	// answered counts the sources' answers to the batch being fetched.
	answered int64
}

// tierFetch is a key to read from a source's log in the tier: the first
// record of the key on the chain from addr down to begin.
type tierFetch struct {
	pull
	addr, begin uint64
	log         string
}

func (f *fetcher) fetch(ctx context.Context, batch []pull) error {
	srcs := f.m.mg.sources.Load()
	if srcs == nil {
		return nil
	}
	var errs []error
	asked := int64(0)
	f.answered = 0
	for _, p := range batch {
		src, ok := (*srcs)[p.id]
		if !ok {
			continue
		}
		if err := f.ask(ctx, src, p); err != nil {
			errs = append(errs, err)
			continue
		}
		asked++
	}
	for src, sess := range f.sources {
		if err := f.wait(ctx, sess); err != nil {
			errs = append(errs, err)
			sess.Close()
			delete(f.sources, src)
		}
	}
	c := &f.m.mg.fetches
	c.asked.Add(asked)
	c.lost.Add(asked - f.answered)
	if err := f.handOver(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := f.readTier(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := f.handOver(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// handOvers bounds the hand-overs the loops have not taken yet. A loop
// serving load takes a task 3-12 ms after it is queued (bench-elastic's
// add); waiting for each hand-over before the next kept the fetcher from
// asking meanwhile (1 against 4: the drain's parked reads waited 9.5
// against 7.2 ms, BENCHMARKS.md).
const handOvers = 4

// handOver hands the answers gathered since the last call to this
// server's loops, once fewer than handOvers are left for them to take.
func (f *fetcher) handOver(ctx context.Context) error {
	if len(f.out) == 0 {
		return nil
	}
	for len(f.taken) > 0 {
		select {
		case <-f.taken[0]:
			f.taken = f.taken[1:]
			continue
		default: // not taken yet
		}
		if len(f.taken) < handOvers {
			break
		}
		select {
		case <-f.taken[0]:
			f.taken = f.taken[1:]
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	taken, err := f.m.srv.Deliver(f.out)
	f.taken = append(f.taken, taken)
	f.out = nil // the loops have them until taken
	return err
}

// ask queues the fetch of p's key from src; its answer queues the record
// (or its absence) to this server.
func (f *fetcher) ask(ctx context.Context, src cluster.ServerID, p pull) error {
	sess := f.sources[src]
	if sess == nil {
		var err error
		if sess, err = f.m.dialPeer(ctx, src); err != nil {
			return err
		}
		f.sources[src] = sess
	}
	c := &f.m.mg.fetches
	return sess.Migrate(uint64(p.id), wire.MigrateFetch, p.key, 0, nil, func(r client.Result) {
		var refusal *client.OpError
		if r.Err != nil && !errors.As(r.Err, &refusal) {
			return // no answer (the wait timed out, the connection broke): lost
		}
		f.answered++
		kind := wire.MigrateMoved
		at, value, ok := store.SplitExpiring(r.Value)
		switch {
		case r.Err != nil:
			c.refused.Add(1)
			return // not lent (yet): the move sends it
		case r.Status == client.NotFound:
			kind = wire.MigrateAbsent
		case !ok:
			c.refused.Add(1)
			return // not an answer from this build: the move sends it
		}
		if addr, begin, log, below := wire.ParseFetchBelow(r.Value); below {
			c.below.Add(1)
			f.below = append(f.below, tierFetch{pull: p, addr: addr, begin: begin, log: string(log)})
			return
		}
		if kind == wire.MigrateAbsent {
			c.absent.Add(1)
		} else {
			c.record.Add(1)
		}
		f.deliver(p, kind, at, bytes.Clone(value))
	})
}

// deliver gathers a fetched record (value: the fetcher's to keep), or its
// absence, for this server's loops (handOver).
func (f *fetcher) deliver(p pull, kind wire.MigrateKind, at int64, value []byte) {
	f.out = append(f.out, server.Delivered{ID: p.id, Kind: kind, Key: p.key, At: at, Value: value})
}

// tierReaders is how many keys of a batch are read from the tier at once.
const tierReaders = 16

// tierRecord is what a key's read from the tier found; read is false
// for a key not read (the batch's time ran out).
type tierRecord struct {
	read  bool
	kind  wire.MigrateKind
	at    int64
	value []byte
	err   error
}

// readTier reads the keys the sources answered with where the tier has
// them, tierReaders at once for at most the member's timeout, and
// delivers what it found. A key that is not read stays parked (the move
// sends it).
func (f *fetcher) readTier(ctx context.Context) error {
	jobs := f.below
	f.below = f.below[:0]
	if len(jobs) == 0 {
		return nil
	}
	reading, cancel := context.WithTimeout(ctx, f.m.timeout)
	defer cancel()
	devs := make([]*tier.Reader, len(jobs))
	var failed []error
	for i, j := range jobs {
		var err error
		if devs[i], err = f.logReader(j.log); err != nil {
			failed = append(failed, err)
		}
	}
	found := make([]tierRecord, len(jobs))
	now := f.m.srv.Store().Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(tierReaders, len(jobs)) {
		wg.Go(func() {
			var buf []byte
			for i := int(next.Add(1) - 1); i < len(jobs) && reading.Err() == nil; i = int(next.Add(1) - 1) {
				if devs[i] != nil {
					found[i], buf = readKey(jobs[i], devs[i], now, buf)
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for i, j := range jobs {
		switch r := found[i]; {
		case r.err != nil:
			failed = append(failed, r.err)
		case r.read && ctx.Err() == nil:
			f.deliver(j.pull, r.kind, r.at, r.value)
			n++
		}
	}
	f.m.mg.fetches.tier.Add(int64(n))
	f.m.mg.fetches.lost.Add(int64(len(jobs) - n))
	if len(failed) > 0 {
		return fmt.Errorf("node: %d of %d keys not read from the tier: %w", len(failed), len(jobs), failed[0])
	}
	if n < len(jobs) {
		return fmt.Errorf("node: %d of %d keys not read from the tier: %w", len(jobs)-n, len(jobs), reading.Err())
	}
	return nil
}

// readKey reads j's key from its source's log in the tier (dev): its
// newest record, absent when that is a deletion or expired at now.
func readKey(j tierFetch, dev *tier.Reader, now int64, buf []byte) (tierRecord, []byte) {
	rec, buf, err := hlog.FindKey(dev, j.key, j.addr, j.begin, buf)
	switch {
	case err != nil:
		return tierRecord{err: err}, buf
	case rec == nil:
		return tierRecord{read: true, kind: wire.MigrateAbsent}, buf
	}
	h, kl, _, vl, _ := hlog.DecodePrefix(rec)
	v, at := hlog.SplitValue(h, rec[hlog.PrefixSize+kl:hlog.PrefixSize+kl+vl])
	if h.Tombstone() || store.Expired(at, now) {
		return tierRecord{read: true, kind: wire.MigrateAbsent}, buf
	}
	return tierRecord{read: true, kind: wire.MigrateMoved, at: at, value: bytes.Clone(v)}, buf
}

// logReader returns the reader of the log named log in the shared tier.
func (f *fetcher) logReader(log string) (*tier.Reader, error) {
	if r := f.logs[log]; r != nil {
		return r, nil
	}
	if f.m.ind == nil {
		return nil, errors.New("node: a source answered a fetch through the shared tier, which this server has none of")
	}
	size, id, err := parseLogName([]byte(log))
	if err != nil {
		return nil, err
	}
	segs, err := tier.NewSegments(f.m.ind.tier, id, size)
	if err != nil {
		return nil, err
	}
	if f.logs == nil {
		f.logs = map[string]*tier.Reader{}
	}
	f.logs[log] = segs.Reader(tierReaders)
	return f.logs[log], nil
}

// wait waits for every answer of sess, at most the member's timeout.
func (f *fetcher) wait(ctx context.Context, sess *client.Session) error {
	ctx, cancel := context.WithTimeout(ctx, f.m.timeout)
	defer cancel()
	defer sess.StopOn(ctx)()
	return sess.Wait()
}

func (f *fetcher) close() {
	for _, s := range f.sources {
		s.Close()
	}
	for _, r := range f.logs {
		r.Close()
	}
}
