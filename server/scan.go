package server

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/wire"
)

// SCAN, KEYS and RANDOMKEY walk the index a run of buckets at a time
// (store.ScanPositions): the cursor is the index position (index.Position)
// the next call starts at, so a key present for a whole scan is returned
// once, whatever the index's growth meanwhile. The walks read chains on the
// device, so they run aside (respAside: the connection waits, its loop goes
// on), at most maxScans at a time per server. A server returns only the
// keys of the slots it serves.

// maxScans bounds the walks running at once; each holds a store session.
const maxScans = 4

// defaultScanCount is SCAN's COUNT when none is given, as in Redis.
const defaultScanCount = 10

// scanSpec is what a SCAN, KEYS or RANDOMKEY asks for.
type scanSpec struct {
	serving *cluster.SlotSet
	match   []byte // nil: every key
	none    bool   // TYPE other than string: no key can match
}

// keep reports whether the scan returns key.
func (sp *scanSpec) keep(key []byte) bool {
	return !sp.none && (sp.match == nil || globMatch(sp.match, key))
}

// served reports whether the server serves h's slot.
func (sp *scanSpec) served(h uint64) bool { return sp.serving.Has(keyhash.SlotOf(h)) }

// scanStep walks the buckets from position from to cover about want keys
// and appends the live keys the spec keeps (each once) to keys; it returns
// the position to resume at (0: the walk reached the end).
func (s *Server) scanStep(ctx context.Context, sp *scanSpec, from uint64, want int, keys [][]byte) ([][]byte, uint64, error) {
	to := s.st.ScanStep(from, want)
	met := map[string]bool{}
	err := s.st.ScanPositions(ctx, from, to, sp.served, func(key, _ []byte, _ int64, live bool, _ uint64) error {
		if live && !met[string(key)] && sp.keep(key) {
			met[string(key)] = true
			keys = append(keys, append([]byte(nil), key...))
		}
		return nil
	})
	return keys, to + 1, err // ^0 + 1: 0, the end
}

// withScan runs job aside once one of the maxScans places is free.
func (l *loop) withScan(r *respConn, job func(ctx context.Context) error, finish func([]byte, error) []byte) {
	l.respAside(r, 0, func(context.Context) error { return l.s.inScanPlace(job) }, finish)
}

// inScanPlace runs job once one of the maxScans places is free, within
// the server's life.
func (s *Server) inScanPlace(job func(ctx context.Context) error) error {
	select {
	case s.scans <- struct{}{}:
	case <-s.life.Done():
		return s.life.Err()
	}
	defer func() { <-s.scans }()
	return job(s.life)
}

// scanNative answers an OpScan: it goes pending, a walk runs aside, and
// its keys complete the operation on the loop (to a connection closed
// meanwhile: nothing, and its session is gone with its last pending
// operation). A result larger than the connection's response limit is
// refused (a smaller COUNT gets it).
func (l *loop) scanNative(cs *conn, serial uint64, v []byte) {
	cursor, count, match, ok := wire.ParseScan(v)
	if !ok {
		cs.sess.Result(wire.StatusError, nil, wire.CodeBadArgument)
		return
	}
	sp := &scanSpec{serving: l.rt.Serving}
	if len(match) > 0 && !(len(match) == 1 && match[0] == '*') {
		sp.match = bytes.Clone(match)
	}
	cs.sess.AddPending(serial)
	cs.sess.Result(wire.StatusPending, nil, 0)
	var keys [][]byte
	var next uint64
	l.s.aside.Add(1)
	go func() {
		defer l.s.aside.Done()
		err := l.s.inScanPlace(func(ctx context.Context) (err error) {
			keys, next, err = l.s.scanStep(ctx, sp, cursor, int(min(count, 1<<20)), nil)
			return err
		})
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			st, payload, code := wire.StatusOK, []byte(nil), wire.Code(0)
			switch {
			case err != nil:
				st, code = wire.StatusError, classify(err).code
			case wire.ScanResultSize(keys) > l.s.cfg.MaxResponse:
				st, code = wire.StatusError, wire.CodeTooLarge
			default:
				payload = wire.AppendScanResult(nil, next, keys)
			}
			l.completeAside(cs, serial, st, payload, code)
			l.flushDirty()
			return nil
		}))
	}()
}

// parseScanOptions reads [MATCH pattern] [COUNT n] [TYPE type] from a.
func parseScanOptions(a [][]byte, sp *scanSpec, count *int) string {
	for i := 0; i < len(a); i += 2 {
		if i+1 >= len(a) {
			return "ERR syntax error"
		}
		switch strings.ToLower(string(clip(a[i], 8))) {
		case "match":
			sp.match = a[i+1]
			if len(sp.match) == 1 && sp.match[0] == '*' {
				sp.match = nil
			}
		case "count":
			n, ok := resp.ParseInt(a[i+1])
			switch {
			case !ok:
				return "ERR value is not an integer or out of range"
			case n < 1:
				return "ERR syntax error"
			}
			*count = int(min(n, 1<<30))
		case "type":
			sp.none = !strings.EqualFold(string(a[i+1]), "string")
		default:
			return "ERR syntax error"
		}
	}
	return ""
}

// cmdScan answers SCAN cursor [MATCH pattern] [COUNT n] [TYPE type].
func cmdScan(l *loop, r *respConn, a [][]byte) []byte {
	cursor, ok := parseCursor(a[1])
	if !ok {
		return resp.AppendError(r.out, "ERR invalid cursor")
	}
	sp := &scanSpec{serving: l.rt.Serving}
	count := defaultScanCount
	if msg := parseScanOptions(a[2:], sp, &count); msg != "" {
		return resp.AppendError(r.out, msg)
	}
	var keys [][]byte
	var next uint64
	l.withScan(r, func(ctx context.Context) (err error) {
		keys, next, err = l.s.scanStep(ctx, sp, cursor, count, nil)
		return err
	}, func(b []byte, err error) []byte {
		if err != nil {
			return resp.AppendError(b, sanitize("ERR scan failed: "+err.Error()))
		}
		b = resp.AppendArray(b, 2)
		b = resp.AppendBulkString(b, strconv.FormatUint(next, 10))
		return appendKeys(b, keys)
	})
	return r.out
}

// cmdKeys answers KEYS pattern: a whole scan.
func cmdKeys(l *loop, r *respConn, a [][]byte) []byte {
	sp := &scanSpec{serving: l.rt.Serving, match: a[1]}
	if len(sp.match) == 1 && sp.match[0] == '*' {
		sp.match = nil
	}
	var keys [][]byte
	l.withScan(r, func(ctx context.Context) (err error) {
		for from := uint64(0); ; {
			if keys, from, err = l.s.scanStep(ctx, sp, from, 4096, keys); err != nil || from == 0 {
				return err
			}
		}
	}, func(b []byte, err error) []byte {
		if err != nil {
			return resp.AppendError(b, sanitize("ERR scan failed: "+err.Error()))
		}
		return appendKeys(b, keys)
	})
	return r.out
}

// cmdRandomKey answers RANDOMKEY: a live key from a scan that starts at a
// random position (and wraps around once), or nil when there is none.
func cmdRandomKey(l *loop, r *respConn, _ [][]byte) []byte {
	sp := &scanSpec{serving: l.rt.Serving}
	var key []byte
	l.withScan(r, func(ctx context.Context) error {
		start := rand.Uint64()
		for from, wrapped := start, false; ; {
			keys, next, err := l.s.scanStep(ctx, sp, from, 16, nil)
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				key = keys[rand.IntN(len(keys))]
				return nil
			}
			if wrapped && (next == 0 || next > start) {
				return nil // every position was walked
			}
			if from = next; next == 0 {
				wrapped = true
			}
		}
	}, func(b []byte, err error) []byte {
		switch {
		case err != nil:
			return resp.AppendError(b, sanitize("ERR scan failed: "+err.Error()))
		case key == nil:
			return resp.AppendNull(b)
		}
		return resp.AppendBulk(b, key)
	})
	return r.out
}

// parseCursor reads a cursor as Redis does (C's strtoul): decimal, with
// an optional sign (a negative one wraps around), nothing else.
func parseCursor(b []byte) (uint64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		b = b[1:]
	}
	n, err := strconv.ParseUint(string(clip(b, 32)), 10, 64)
	if err != nil || len(b) == 0 || b[0] == '+' || b[0] == '-' {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

func appendKeys(b []byte, keys [][]byte) []byte {
	b = resp.AppendArray(b, len(keys))
	for _, k := range keys {
		b = resp.AppendBulk(b, k)
	}
	return b
}
