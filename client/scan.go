package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fleetkv/fleetkv/wire"
)

// Scan asks the server for a run of about count keys of the slots it
// serves, from cursor (0 to start; the result's next cursor, 0 when done),
// that match match (Redis's glob rules; nil: every key). cb gets the
// result; ScanResult splits its value.
func (s *Session) Scan(cursor uint64, count int, match []byte, cb Callback) error {
	if count < 1 {
		return fmt.Errorf("client: scan of %d keys", count)
	}
	return s.sendControlValue(wire.OpScan, wire.AppendScan(nil, cursor, uint32(min(count, 1<<30)), match), cb)
}

// ScanResult splits a Scan result's value into the next cursor and the
// keys (which point into value).
func ScanResult(value []byte) (next uint64, keys [][]byte, err error) {
	next, keys, ok := wire.ParseScanResult(value)
	if !ok {
		return 0, nil, errors.New("client: a SCAN result that does not hold together")
	}
	return next, keys, nil
}

// Keys calls fn with every key that matches match (Redis's glob rules;
// nil: every key) on every server that owns slots, asking for count keys
// at a time. A key present on its server for the whole walk is passed
// once; one whose slot moves meanwhile may be missed or passed twice, as
// with Redis Cluster. key is valid only during fn; an error from fn ends
// the walk.
func (c *Client) Keys(ctx context.Context, match []byte, count int, fn func(key []byte) error) error {
	cl, err := c.get(ctx)
	if err != nil {
		return err
	}
	defer c.put(cl)
	for _, m := range cl.owners() {
		if err := cl.scanServer(ctx, m, match, count, fn); err != nil {
			return err
		}
	}
	return nil
}

// FlushAll drops every key of every server that owns slots (FLUSH on
// each, one after the other: not atomic across servers).
func (c *Client) FlushAll(ctx context.Context) error {
	cl, err := c.get(ctx)
	if err != nil {
		return err
	}
	defer c.put(cl)
	for _, m := range cl.owners() {
		s, err := cl.session(ctx, m)
		if err != nil {
			return err
		}
		var failed error
		if err := s.FlushAll(func(r Result) { failed = r.Err }); err != nil {
			return err
		}
		if err := s.Wait(); err != nil {
			return err
		}
		if failed != nil {
			return fmt.Errorf("client: FLUSH on %s: %w", m.addr, failed)
		}
	}
	return nil
}

// owners returns the servers that own slots, each once, by address.
func (c *Cluster) owners() []*member {
	if c.single != nil {
		return []*member{c.single}
	}
	var ms []*member
	for _, m := range c.owner {
		if m != nil && !slices.Contains(ms, m) {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b *member) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	return ms
}

// scanServer walks every key of m's slots that matches match.
func (c *Cluster) scanServer(ctx context.Context, m *member, match []byte, count int, fn func(key []byte) error) error {
	s, err := c.session(ctx, m)
	if err != nil {
		return err
	}
	var fnErr error
	for cursor, more := uint64(0), true; more; {
		var opErr error
		err := s.Scan(cursor, count, match, func(r Result) {
			if opErr = r.Err; opErr != nil {
				return
			}
			next, keys, err := ScanResult(r.Value)
			if opErr = err; err != nil {
				return
			}
			for _, k := range keys {
				if fnErr == nil {
					fnErr = fn(k)
				}
			}
			cursor, more = next, next != 0
		})
		if err == nil {
			err = c.waitWithin(ctx)
		}
		switch {
		case err != nil:
			return err
		case opErr != nil:
			return fmt.Errorf("client: scan of %s: %w", m.addr, opErr)
		case fnErr != nil:
			return fnErr
		}
	}
	return nil
}
