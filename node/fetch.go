package node

import (
	"bytes"
	"context"
	"errors"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/store"
	"github.com/fleetkv/fleetkv/wire"
)

// A migration's target parks the reads of keys it has not received
// (server/parking.go) and tells the node of each key (onParked); the
// fetcher gets the key's record from the source at once instead of waiting
// for the move to reach it.

// pull is a key a loop parked a read on, to fetch from the migration's
// source.
type pull struct {
	id  cluster.MigrationID
	key []byte
}

// pullQueue bounds the keys waiting to be fetched; a key that finds it
// full is not fetched (its reads are answered when the move sends it).
const pullQueue = 65536

// onParked takes the first read a loop parked on a key
// (server.Config.OnParked): the key is fetched from the source.
func (g *migrations) onParked(id cluster.MigrationID, key []byte) {
	select {
	case g.pulls <- pull{id, bytes.Clone(key)}:
	default:
	}
}

// fetchBatch is the most keys fetched from a source at once.
const fetchBatch = 2048

// fetch takes the keys the loops parked reads on, fetches their records
// from the migrations' sources (MIGRATE fetch, where the source lends
// them) and hands them to this server's loops (MIGRATE of the record, or
// absent), which answer the parked reads. A failure leaves the reads
// parked until the move sends their keys.
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
		if err := f.fetch(ctx, batch); err != nil {
			m.log.Debug("migration: fetching parked keys", "keys", len(batch), "err", err)
		}
	}
}

// fetcher keeps the sessions the fetches go over.
type fetcher struct {
	m       *member
	sources map[cluster.ServerID]*client.Session
	local   *client.Session
}

func (f *fetcher) fetch(ctx context.Context, batch []pull) error {
	srcs := f.m.mg.sources.Load()
	if srcs == nil {
		return nil
	}
	var errs []error
	for _, p := range batch {
		src, ok := (*srcs)[p.id]
		if !ok {
			continue
		}
		if err := f.ask(ctx, src, p); err != nil {
			errs = append(errs, err)
		}
	}
	for src, sess := range f.sources {
		if err := f.wait(ctx, sess); err != nil {
			errs = append(errs, err)
			sess.Close()
			delete(f.sources, src)
		}
	}
	if f.local != nil {
		if err := f.wait(ctx, f.local); err != nil {
			errs = append(errs, err)
			f.local.Close()
			f.local = nil
		}
	}
	return errors.Join(errs...)
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
	return sess.Migrate(uint64(p.id), wire.MigrateFetch, p.key, 0, nil, func(r client.Result) {
		kind := wire.MigrateMoved
		at, value, ok := store.SplitExpiring(r.Value)
		switch {
		case r.Err != nil:
			return // not lent (yet): the move sends it
		case r.Status == client.NotFound:
			kind = wire.MigrateAbsent
		case !ok:
			return // not an answer from this build: the move sends it
		}
		if f.local == nil {
			var err error
			if f.local, err = client.DialContext(ctx, client.Config{Addr: f.m.srv.Addr(), AuthToken: f.m.mg.token}); err != nil {
				return
			}
		}
		_ = f.local.Migrate(uint64(p.id), kind, p.key, at, value, nil)
	})
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
	if f.local != nil {
		f.local.Close()
	}
}
