package client

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// Client is the synchronous API: every call sends one operation and waits
// for its result. It is safe from any goroutine; each call borrows a
// Cluster (routed sessions to the servers) from a pool, so concurrent calls
// pipeline on separate sessions. Against a single server it routes every
// key there; against a cluster, by the slot map the servers give.
type Client struct {
	cfg    Config
	mu     sync.Mutex
	idle   []*Cluster
	closed bool
}

// New returns a client for the server or cluster at cfg.Addr (and
// cfg.Seeds). It dials lazily.
func New(cfg Config) (*Client, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg}, nil
}

// Close closes every idle session; sessions in use close when returned.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	var errs []error
	for _, s := range idle {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Get returns key's value, or found == false.
func (c *Client) Get(ctx context.Context, key []byte) (value []byte, found bool, err error) {
	err = c.do(ctx, func(s *Cluster, cb Callback) error { return s.Read(key, cb) }, func(r Result) {
		found = r.Status == OK
		value = append([]byte(nil), r.Value...)
	})
	return value, found, err
}

// Set sets key to value.
func (c *Client) Set(ctx context.Context, key, value []byte) error {
	return c.do(ctx, func(s *Cluster, cb Callback) error { return s.Upsert(key, value, cb) }, nil)
}

// SetTTL sets key to value, which expires ttl from now by this client's
// clock (a ttl of at most 0 leaves a value that reads as absent at once).
// The server judges the expiry by its own clock, in milliseconds: a skew
// between the two shifts it.
func (c *Client) SetTTL(ctx context.Context, key, value []byte, ttl time.Duration) error {
	at := max(time.Now().Add(ttl).UnixMilli(), 1)
	return c.do(ctx, func(s *Cluster, cb Callback) error { return s.UpsertExpiring(key, value, at, cb) }, nil)
}

// Expire sets key's expiry to at (the zero time removes it; a time at or
// before now deletes the key) and returns whether the key held a value,
// and the expiry it had (the zero time: none).
func (c *Client) Expire(ctx context.Context, key []byte, at time.Time) (existed bool, old time.Time, err error) {
	ms := int64(0)
	if !at.IsZero() {
		ms = max(at.UnixMilli(), 1)
	}
	err = c.do(ctx, func(s *Cluster, cb Callback) error { return s.Expire(key, ms, cb) }, func(r Result) {
		existed = r.Status == OK
		if o := ExpiryOf(r); existed && o != 0 {
			old = time.UnixMilli(o)
		}
	})
	return existed, old, err
}

// Delete deletes key; existed reports whether it held a value (the server
// reads a key that left memory to know).
func (c *Client) Delete(ctx context.Context, key []byte) (existed bool, err error) {
	err = c.do(ctx, func(s *Cluster, cb Callback) error { return s.Delete(key, cb) }, func(r Result) {
		existed = r.Status == OK
	})
	return existed, err
}

// Incr adds delta to the int64 at key (an absent key counts as 0) and
// returns the value this addition produced: one ADD, whose result carries
// it, so other clients' additions never show in it.
func (c *Client) Incr(ctx context.Context, key []byte, delta int64) (int64, error) {
	var v int64
	err := c.do(ctx, func(s *Cluster, cb Callback) error { return s.Add(key, delta, cb) }, func(r Result) {
		if len(r.Value) == 8 {
			v = int64(binary.LittleEndian.Uint64(r.Value))
		}
	})
	return v, err
}

// do queues an operation on a pooled Cluster and waits for it within ctx.
func (c *Client) do(ctx context.Context, queue func(*Cluster, Callback) error, onResult func(Result)) error {
	s, err := c.get(ctx)
	if err != nil {
		return err
	}
	var opErr error
	cb := func(r Result) {
		if r.Err != nil {
			if opErr == nil {
				opErr = r.Err
			}
			return
		}
		if onResult != nil {
			onResult(r)
		}
	}
	if err := queue(s, cb); err != nil {
		c.put(s)
		return err
	}
	err = s.waitWithin(ctx)
	if err == nil {
		err = opErr
	}
	if ctxErr := ctxErr(ctx); ctxErr != nil && err != nil {
		err = errors.Join(ctxErr, err)
	}
	c.put(s)
	return err
}

func (c *Client) get(ctx context.Context) (*Cluster, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(c.idle); n > 0 {
		s := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return s, nil
	}
	c.mu.Unlock()
	return DialCluster(ctx, c.cfg)
}

// put returns a Cluster to the pool, dropping one whose sessions failed
// (the next call dials afresh).
func (c *Client) put(s *Cluster) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !s.healthy() {
		s.abandon()
		return
	}
	c.idle = append(c.idle, s)
}

// ctxErr is ctx.Err(), also when the socket's deadline (set to ctx's) fired
// a moment before the context's own timer.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}
