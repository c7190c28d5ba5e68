package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/wire"
)

// Cluster is one client thread's routed access to a fleetkv cluster, or to
// a single server: one Session per server it sends to, each operation
// routed by its key's slot (keyhash.Slot) through the slot map a server
// gave it (CLUSTER_MAP, from the server's watched copy: no access to the
// metadata store is needed). When a server answers VIEW_CHANGED or refuses
// operations with NOT_OWNER, the Cluster waits for every batch it has in
// flight, fetches the map again and re-issues the refused operations to
// their owners in the order they were issued, so operations on one key
// keep their order. A slot being handed over is retried with a growing
// pause for up to Config.RerouteTimeout, then its operations fail with
// ErrNotOwner.
//
// Like Session, its methods must be called by one goroutine at a time, and
// callbacks run on that goroutine.
//
// Invariant: between two map fetches every operation on a key goes to one
// session (the owner the map names), and a fetch happens only after every
// session's batches in flight are answered (drain). So a key's operations
// in flight are always in one session, in order, their refusals arrive in
// that order, and retry holds them in that order ahead of any later
// operation (add re-routes retry before it sends anything new).
type Cluster struct {
	cfg     Config
	members map[string]*member // by native address
	owner   [cluster.Slots]*member
	single  *member // a standalone server: every slot
	// direct is single's session while nothing waits to be re-routed:
	// operations go straight to it (the common case of one server).
	direct *Session
	epoch  uint64 // of the map routed by (0: standalone or none)
	stale  bool   // a server answered VIEW_CHANGED since the last fetch
	retry  []retryOp
	spare  []retryOp
	arenas [2][]byte // copies of the refused operations' keys and values
	expBuf []byte    // UpsertExpiring's value, copied by add
	arena  int       // the arena retry's copies go to
	start  time.Time // what retryOp.since counts from
	// last is the newest operation sent on each slot (by its session and
	// serial), writes how many operations other than READ were sent on it
	// (wrapping): a refusal that comes with a completion is re-issued only
	// when nothing was sent on the slot after it, or, for a READ, no write
	// (refusedLate).
	last   [cluster.Slots]sentOp
	writes [cluster.Slots]uint32
	stats  ClusterStats
	err    error
	// scope is the WaitContext in progress (nil: none): every connection
	// dialled during it (re-routing, fetching the map) is bounded by it.
	scope *waitScope
}

// ClusterStats count what a Cluster did besides sending operations.
type ClusterStats struct {
	Fetches   uint64 // slot maps fetched
	Rerouted  uint64 // operations refused (NOT_OWNER) and re-issued
	ViewMoves uint64 // VIEW_CHANGED answers seen
}

type member struct {
	addr string
	sess *Session
	// marked is the connection of sess that the next WaitDurable covers
	// (sess.conns when it was dialled or last covered); lost is set when a
	// session of m was replaced since. Maintained by session and
	// WaitDurable: a commit point belongs to one connection, so operations
	// answered on any other since the last WaitDurable are not covered.
	marked uint64
	lost   bool
}

// sentOp names an operation sent: its session and serial.
type sentOp struct {
	s      *Session
	serial uint64
}

type retryOp struct {
	op         wire.Op
	key, value []byte // in one of the arenas
	cb         Callback
	since      uint32 // when it was first refused under the current map (Cluster.stamp)
}

// DialCluster fetches the slot map from the server at cfg.Addr (or, if it
// cannot, from one of cfg.Seeds) and returns a Cluster routing by it.
func DialCluster(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, members: map[string]*member{}, start: time.Now()}
	if err := c.refresh(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Read queues a read of key. The key is copied; cb gets the value.
func (c *Cluster) Read(key []byte, cb Callback) error { return c.add(wire.OpRead, key, nil, cb) }

// Upsert queues setting key to value (both copied).
func (c *Cluster) Upsert(key, value []byte, cb Callback) error {
	return c.add(wire.OpUpsert, key, value, cb)
}

// UpsertExpiring queues setting key to value with an expiry (Session.UpsertExpiring).
func (c *Cluster) UpsertExpiring(key, value []byte, expireAt int64, cb Callback) error {
	c.expBuf = expiringValue(c.expBuf, expireAt, value)
	return c.add(wire.OpUpsertExpiring, key, c.expBuf, cb)
}

// Expire queues setting or removing key's expiry (Session.Expire).
func (c *Cluster) Expire(key []byte, expireAt int64, cb Callback) error {
	v := expiryValue(expireAt)
	return c.add(wire.OpExpire, key, v[:], cb)
}

// Delete queues deleting key.
func (c *Cluster) Delete(key []byte, cb Callback) error { return c.add(wire.OpDelete, key, nil, cb) }

// Add queues adding delta to the little-endian int64 at key.
func (c *Cluster) Add(key []byte, delta int64, cb Callback) error {
	var d [8]byte
	putInt64(d[:], delta)
	return c.add(wire.OpAdd, key, d[:], cb)
}

// Append queues appending value to key's value.
func (c *Cluster) Append(key, value []byte, cb Callback) error {
	return c.add(wire.OpAppend, key, value, cb)
}

func (c *Cluster) add(op wire.Op, key, value []byte, cb Callback) error {
	if s := c.direct; s != nil && s.err == nil {
		return s.add(op, key, value, cb)
	}
	return c.addRouted(op, key, value, cb)
}

// addRouted is add through the routing table, after any re-routing due.
func (c *Cluster) addRouted(op wire.Op, key, value []byte, cb Callback) error {
	if c.err != nil {
		return c.err
	}
	if len(c.retry) > 0 || c.stale {
		if err := c.reroute(); err != nil {
			return err
		}
	}
	return c.send(op, key, value, cb, 0)
}

// send queues an operation on the session of its key's owner; since is
// when it was first refused (0: never). An operation whose slot has no
// owner fails with ErrNotOwner.
func (c *Cluster) send(op wire.Op, key, value []byte, cb Callback, since uint32) error {
	m, slot := c.single, -1
	if m == nil {
		slot = int(keyhash.Slot(key))
		if m = c.owner[slot]; m == nil {
			if cb != nil {
				cb(Result{Err: ErrNotOwner})
			}
			return nil
		}
	}
	s, err := c.session(c.ctx(), m)
	if err != nil {
		return err
	}
	var writes uint32
	if slot >= 0 {
		c.last[slot] = sentOp{s, s.serial} // the serial add gives it
		writes = c.writes[slot]
		if op != wire.OpRead {
			c.writes[slot]++
		}
	}
	return s.addRefused(op, key, value, cb, since, writes)
}

// stamp is the time since the Cluster started in milliseconds, plus 1
// (0 stands for never in retryOp.since and opRec.since).
func (c *Cluster) stamp() uint32 { return uint32(time.Since(c.start)/time.Millisecond) + 1 }

// session returns m's session, dialling it when there is none or it
// stopped.
func (c *Cluster) session(ctx context.Context, m *member) (*Session, error) {
	if m.sess != nil && m.sess.err == nil {
		return m.sess, nil
	}
	cfg := c.cfg
	cfg.Addr, cfg.Resume = m.addr, 0
	s, err := DialContext(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.misrouted = c.misrouted
	s.refusedLate = func(op wire.Op, key, value []byte, cb Callback, serial uint64, writes uint32) bool {
		return c.refusedLate(s, op, key, value, cb, serial, writes)
	}
	s.viewChanged = func() { c.stale, c.direct = true, nil; c.stats.ViewMoves++ }
	s.onConnect = func(nc net.Conn) {
		if c.scope != nil {
			c.scope.add(nc)
		}
	}
	if c.scope != nil {
		c.scope.add(s.nc)
	}
	m.lost = m.lost || m.sess != nil // the old session's commit point is gone
	m.sess, m.marked = s, s.conns
	c.setDirect()
	return s, nil
}

// refusedLate takes an operation s's server answered PENDING and then
// refused with NOT_OWNER in its completion (Session.keepPending); writes
// is c.writes of its slot when it was sent. It is re-issued, as a fresh
// refusal, only when no operation on its slot was sent after it, or, for
// a READ, no write: operations sent after it may have run, and running it
// again after a write would break the order this Cluster keeps per key;
// it then fails (false). A READ run again after later READs is answered
// after them, as a read pending on a server's device may be (each was
// sent while it was unanswered).
func (c *Cluster) refusedLate(s *Session, op wire.Op, key, value []byte, cb Callback, serial uint64, writes uint32) bool {
	slot := keyhash.Slot(key)
	if c.last[slot] != (sentOp{s, serial}) && (op != wire.OpRead || c.writes[slot] != writes) {
		return false
	}
	c.misrouted(op, key, value, cb, 0)
	return true
}

// misrouted takes an operation a server refused with NOT_OWNER (first at
// since; 0: now): a copy of it waits in retry for reroute.
func (c *Cluster) misrouted(op wire.Op, key, value []byte, cb Callback, since uint32) {
	if since == 0 {
		since = c.stamp()
	}
	c.direct = nil
	a := c.arenas[c.arena]
	n := len(a)
	a = append(append(a, key...), value...)
	c.arenas[c.arena] = a
	c.retry = append(c.retry, retryOp{op: op, key: a[n : n+len(key) : n+len(key)], value: a[n+len(key) : len(a) : len(a)], cb: cb, since: since})
	c.stats.Rerouted++
}

// Flush sends every session's batch being built.
func (c *Cluster) Flush() error {
	for _, m := range c.members {
		if m.sess != nil && m.sess.err == nil {
			if err := m.sess.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Wait flushes and returns once every queued operation has its result,
// re-routed ones included.
func (c *Cluster) Wait() error {
	for {
		for _, m := range c.members {
			if m.sess != nil && m.sess.err == nil {
				if err := m.sess.Wait(); err != nil {
					return err
				}
			}
		}
		if len(c.retry) == 0 && !c.stale {
			return nil
		}
		if err := c.reroute(); err != nil {
			return err
		}
	}
}

// Close waits for every operation and closes the sessions.
func (c *Cluster) Close() error {
	err := c.Wait()
	for _, m := range c.members {
		if m.sess != nil {
			err = errors.Join(err, closeErr(m.sess.Close()))
		}
	}
	if c.err == nil {
		c.err = ErrClosed
	}
	c.direct = nil
	return err
}

func closeErr(err error) error {
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// Stats returns what the Cluster counted.
func (c *Cluster) Stats() ClusterStats { return c.stats }

// WaitContext is Wait bounded by ctx: its deadline is every connection's,
// and its cancellation breaks them (their operations then fail with
// ErrUnknownOutcome).
func (c *Cluster) WaitContext(ctx context.Context) error { return c.waitWithin(ctx) }

// WaitDurable waits within ctx for every operation queued so far, then asks
// each server this Cluster has a session with for a checkpoint and returns
// once every one reports its session's operations durable. So every
// operation answered before the call is durable where it ran, unless a
// connection was lost since the previous WaitDurable (or, for the first,
// since the session was dialled): that connection's commit point went with
// it, and WaitDurable fails with ErrUnknownOutcome (the next call covers
// what comes after).
func (c *Cluster) WaitDurable(ctx context.Context) error {
	if err := c.waitWithin(ctx); err != nil {
		return err
	}
	lost := false
	for _, m := range c.members {
		if m.sess == nil {
			continue
		}
		lost = lost || m.lost || m.sess.err != nil || m.sess.conns != m.marked
		m.lost, m.marked = false, m.sess.conns
	}
	if lost {
		return fmt.Errorf("client: a connection was lost since the last durability wait: %w", ErrUnknownOutcome)
	}
	for _, m := range c.members {
		if m.sess != nil && m.sess.err == nil {
			if err := m.sess.WaitDurable(ctx); err != nil {
				return err
			}
			if m.sess.conns != m.marked {
				return fmt.Errorf("client: a connection was lost while waiting for durability: %w", ErrUnknownOutcome)
			}
		}
	}
	return nil
}

// Outstanding returns how many operations are queued, in flight, pending
// or waiting to be re-routed.
func (c *Cluster) Outstanding() int {
	n := len(c.retry)
	for _, m := range c.members {
		if m.sess != nil {
			n += m.sess.Outstanding()
		}
	}
	return n
}

// waitWithin is Wait bounded by ctx: its deadline is every connection's,
// those dialled while it waits included (re-routing, fetching the map),
// and its cancellation breaks them (their operations then fail with
// ErrUnknownOutcome).
func (c *Cluster) waitWithin(ctx context.Context) error {
	w := newWaitScope(ctx)
	for _, m := range c.members {
		if m.sess != nil && m.sess.nc != nil {
			w.add(m.sess.nc)
		}
	}
	c.scope = w
	stop := context.AfterFunc(ctx, w.breakAll)
	err := c.Wait()
	stop()
	c.scope = nil
	for _, m := range c.members {
		if m.sess != nil && m.sess.nc != nil {
			_ = m.sess.nc.SetDeadline(time.Time{})
		}
	}
	return err
}

// ctx is the context of the wait in progress, for the dials it makes.
func (c *Cluster) ctx() context.Context {
	if c.scope != nil {
		return c.scope.ctx
	}
	return context.Background()
}

// waitScope is a WaitContext's hold on the connections it waits on: each
// gets its deadline, and all are broken when its context ends. Safe for
// the AfterFunc's goroutine (the rest of a Cluster is not).
type waitScope struct {
	ctx      context.Context
	deadline time.Time // zero: none
	mu       sync.Mutex
	conns    []net.Conn // the AfterFunc must not read m.sess.nc, which a reconnect replaces
	broken   bool       // ctx ended: a connection added now is broken at once
}

func newWaitScope(ctx context.Context) *waitScope {
	d, _ := ctx.Deadline()
	return &waitScope{ctx: ctx, deadline: d}
}

// add bounds nc by the wait.
func (w *waitScope) add(nc net.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conns = append(w.conns, nc)
	if w.broken {
		_ = nc.SetDeadline(time.Unix(1, 0))
		return
	}
	_ = nc.SetDeadline(w.deadline)
}

// breakAll breaks every connection of the wait, and those added later.
func (w *waitScope) breakAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.broken = true
	for _, nc := range w.conns {
		_ = nc.SetDeadline(time.Unix(1, 0))
	}
}

// healthy reports whether every session can go on being used.
func (c *Cluster) healthy() bool {
	if c.err != nil {
		return false
	}
	for _, m := range c.members {
		if m.sess != nil && (m.sess.err != nil || m.sess.nc == nil) {
			return false
		}
	}
	return true
}

// abandon closes every connection without waiting.
func (c *Cluster) abandon() {
	for _, m := range c.members {
		if m.sess != nil && m.sess.nc != nil {
			m.sess.nc.Close()
			m.sess.nc = nil
		}
	}
	c.err, c.direct = ErrClosed, nil
}

// reroute re-issues the refused operations after fetching the map again:
// first every session's batches in flight are answered (so that every
// refusal of an operation issued before is known, and re-issued before any
// later operation on its key), then the map is fetched and the operations
// are sent to their owners in the order they were refused.
func (c *Cluster) reroute() error {
	for len(c.retry) > 0 || c.stale {
		if err := c.drain(); err != nil {
			return err
		}
		c.rerouted()
		before := c.epoch
		if err := c.refresh(c.ctx()); err != nil {
			return err
		}
		if len(c.retry) == 0 {
			continue
		}
		if err := c.pace(before); err != nil {
			return err
		}
		q := c.retry
		c.retry, c.spare = c.spare[:0], nil
		c.arena ^= 1
		c.arenas[c.arena] = c.arenas[c.arena][:0]
		for i := range q {
			if err := c.send(q[i].op, q[i].key, q[i].value, q[i].cb, q[i].since); err != nil {
				return err
			}
			q[i] = retryOp{}
		}
		c.spare = q[:0]
	}
	c.setDirect()
	return nil
}

// rerouted marks every session's next data batch as sent after every
// refusal is known (wire.FlagRerouted): drain answered all that were in
// flight, and what they refused is re-issued before anything later.
func (c *Cluster) rerouted() {
	for _, m := range c.members {
		if m.sess != nil {
			m.sess.rerouted = true
		}
	}
}

// setDirect lets operations skip routing when one standalone server takes
// them all and nothing waits to be re-routed.
func (c *Cluster) setDirect() {
	c.direct = nil
	if m := c.single; m != nil && m.sess != nil && m.sess.err == nil && len(c.retry) == 0 && !c.stale {
		c.direct = m.sess
	}
}

// pace waits before re-issuing when the map did not change (the new owner
// has not taken the slot over yet), and fails the operations refused for
// longer than RerouteTimeout since they were first refused under the
// current map (each its own clock: operations refused later, or again
// after going through, have had less time).
func (c *Cluster) pace(before uint64) error {
	now := c.stamp()
	if c.epoch != before || c.single != nil {
		for i := range c.retry {
			c.retry[i].since = now // a new map: the clocks start over
		}
		return nil
	}
	limit := uint32(c.cfg.RerouteTimeout / time.Millisecond)
	kept, oldest := c.retry[:0], now
	for _, r := range c.retry {
		if now-r.since > limit {
			if r.cb != nil {
				r.cb(Result{Err: ErrNotOwner})
			}
			continue
		}
		kept = append(kept, r)
		oldest = min(oldest, r.since)
	}
	clear(c.retry[len(kept):])
	c.retry = kept
	if len(kept) > 0 {
		waited := time.Duration(now-oldest) * time.Millisecond
		time.Sleep(min(time.Millisecond<<min(waited/(10*time.Millisecond), 6), 64*time.Millisecond))
	}
	return nil
}

// drain flushes every session and reads answers until none has a batch in
// flight (operations answered PENDING may still complete later: they run
// on their owner).
func (c *Cluster) drain() error {
	for _, m := range c.members {
		s := m.sess
		if s == nil || s.err != nil {
			continue
		}
		if err := s.Flush(); err != nil {
			return err
		}
		for len(s.inflight) > 0 {
			if err := s.receive(); err != nil {
				return err
			}
		}
	}
	return nil
}

// refresh fetches the slot map from the first server that answers (the
// members first, then cfg.Addr and cfg.Seeds) and routes by it; a map older
// than the one routed by is passed over.
func (c *Cluster) refresh(ctx context.Context) error {
	c.stale = false
	var errs []error
	stale := false
	tried := map[string]bool{}
	for _, addr := range c.sources() {
		if tried[addr] {
			continue
		}
		tried[addr] = true
		snap, err := c.fetch(ctx, addr)
		switch {
		case err != nil:
			errs = append(errs, err)
		case snap.Map != nil && snap.Map.Epoch < c.epoch:
			stale = true // a server that has not caught up: ask another
		default:
			c.stats.Fetches++
			return c.apply(addr, snap)
		}
	}
	if stale {
		return nil // every server that answered is behind the map routed by
	}
	return fmt.Errorf("client: no server gave the slot map: %w", errors.Join(errs...))
}

// sources lists where the map may be fetched, connected members first.
func (c *Cluster) sources() []string {
	var out []string
	for addr, m := range c.members {
		if m.sess != nil && m.sess.err == nil {
			out = append(out, addr)
		}
	}
	out = append(out, c.cfg.Addr)
	return append(out, c.cfg.Seeds...)
}

// fetch asks the server at addr for its slot map.
func (c *Cluster) fetch(ctx context.Context, addr string) (cluster.Snapshot, error) {
	m := c.member(addr)
	s, err := c.session(ctx, m)
	if err == nil {
		err = s.ensureConn(ctx)
	}
	if err != nil {
		return cluster.Snapshot{}, err
	}
	var snap cluster.Snapshot
	var answer error
	done := false
	err = s.sendControl(wire.OpClusterMap, func(r Result) {
		done = true
		if answer = r.Err; answer == nil {
			answer = json.Unmarshal(r.Value, &snap)
		}
	})
	for err == nil && !done {
		err = s.receive()
		if s.nc == nil && !done { // lost; its callback ran with ErrUnknownOutcome
			break
		}
	}
	if err == nil {
		err = answer
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		return snap, fmt.Errorf("client: slot map from %s: %w", addr, err)
	}
	return snap, nil
}

func (c *Cluster) member(addr string) *member {
	m, ok := c.members[addr]
	if !ok {
		m = &member{addr: addr}
		c.members[addr] = m
	}
	return m
}

// apply routes by snap, which the server at from gave.
func (c *Cluster) apply(from string, snap cluster.Snapshot) error {
	c.direct = nil
	if snap.Standalone {
		c.single, c.epoch = c.member(from), 0
		c.setDirect()
		return nil
	}
	m := snap.Map
	if m == nil {
		return fmt.Errorf("client: %s gave no slot map", from)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("client: slot map from %s: %w", from, err)
	}
	c.single = nil
	c.owner = [cluster.Slots]*member{}
	for _, a := range m.Ranges {
		srv := m.Servers[a.Owner]
		if srv.Native == "" {
			continue
		}
		mb := c.member(srv.Native)
		for s := int(a.First); s <= int(a.Last); s++ {
			c.owner[s] = mb
		}
	}
	c.epoch = m.Epoch
	return nil
}
