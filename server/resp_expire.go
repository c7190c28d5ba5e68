package server

import (
	"math"
	"strings"

	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
)

// Key expiry on the RESP front: SET's EX|PX|EXAT|PXAT|KEEPTTL, SETEX,
// PSETEX, GETEX, the EXPIRE family, TTL, PTTL, EXPIRETIME, PEXPIRETIME and
// PERSIST, with Redis 7's replies and errors. Each is one store operation
// (store/expiry.go): an expiry changes under the same rules as a value,
// so EXPIRE's conditions are decided on the expiry it replaces.

// ttlKind names how an expiry argument counts.
type ttlKind uint8

const (
	ttlNone    ttlKind = iota
	ttlEX              // seconds from now
	ttlPX              // milliseconds from now
	ttlEXAT            // Unix seconds
	ttlPXAT            // Unix milliseconds
	ttlKeep            // SET KEEPTTL
	ttlPersist         // GETEX PERSIST
)

// expireOptions is what a command does with the key's expiry.
type expireOptions struct {
	kind ttlKind
	at   int64 // ttlEX..ttlPXAT: the absolute expiry, Unix milliseconds
	only store.ExpiryCond
	// bad is GETEX's error for an invalid time, answered only when the
	// key exists (Redis looks the key up first).
	bad string
}

// expiry is the store's Expiry for o; a command without expiry options
// clears it (SET), unless keep.
func (o expireOptions) expiry() store.Expiry {
	switch o.kind {
	case ttlNone, ttlPersist:
		return store.Expiry{Mode: store.ClearExpiry}
	case ttlKeep:
		return store.Expiry{Mode: store.KeepExpiry}
	}
	return store.Expiry{Mode: store.SetExpiry, At: o.at, Only: o.only}
}

// ttlOption parses SET's and GETEX's expiry option names.
func ttlOption(a []byte) ttlKind {
	switch strings.ToUpper(string(clip(a, 8))) {
	case "EX":
		return ttlEX
	case "PX":
		return ttlPX
	case "EXAT":
		return ttlEXAT
	case "PXAT":
		return ttlPXAT
	case "KEEPTTL":
		return ttlKeep
	case "PERSIST":
		return ttlPersist
	}
	return ttlNone
}

// respExpiry turns an expiry argument of the given kind into Unix
// milliseconds as Redis does, or returns the error, which names the
// command cmd. positive: SET's, SETEX's and GETEX's, which must be a
// positive integer (getExpireMillisecondsOrReply); otherwise the EXPIRE
// family's, any integer (a time already past deletes the key), as long as
// the arithmetic does not overflow. now is the store's clock.
func respExpiry(kind ttlKind, arg []byte, cmd string, now int64, positive bool) (int64, string) {
	n, ok := resp.ParseInt(arg)
	if !ok {
		return 0, errNotInteger.Error()
	}
	if positive && n <= 0 {
		return 0, invalidExpire(cmd)
	}
	if kind == ttlEX || kind == ttlEXAT {
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return 0, invalidExpire(cmd)
		}
		n *= 1000
	}
	if kind == ttlEX || kind == ttlPX {
		if n > math.MaxInt64-now {
			return 0, invalidExpire(cmd)
		}
		n += now
	}
	return n, ""
}

func invalidExpire(cmd string) string { return "ERR invalid expire time in '" + cmd + "' command" }

// parseTTLOptions parses the options of SET (from argument 3) or GETEX
// (from argument 2), set says which: NX, XX, GET for SET, one expiry
// option for either, KEEPTTL for SET and PERSIST for GETEX only.
func parseTTLOptions(l *loop, r *respConn, from int, set bool) bool {
	op := &r.op
	op.exp = expireOptions{}
	var arg []byte
	for j := from; j < len(op.args); j++ {
		a := op.args[j]
		k := ttlOption(a)
		switch {
		case k == ttlNone && set:
			if !parseSetFlag(r, a) {
				return syntaxError(r)
			}
			continue
		case k == ttlNone, k == ttlKeep && !set, k == ttlPersist && set:
			return syntaxError(r)
		case op.exp.kind != ttlNone && op.exp.kind != k:
			return syntaxError(r) // one kind of expiry; Redis lets a repeated one win
		case k == ttlKeep, k == ttlPersist:
		case j+1 == len(op.args):
			return syntaxError(r)
		default:
			j++
			arg = op.args[j]
		}
		op.exp.kind = k
	}
	if op.exp.kind == ttlNone || op.exp.kind == ttlKeep || op.exp.kind == ttlPersist {
		return true
	}
	if !set {
		op.exp.at, op.exp.bad = respExpiry(op.exp.kind, arg, "getex", l.s.st.Now(), true)
		return true // GETEX answers a bad time only for a key it has
	}
	var bad string
	if op.exp.at, bad = respExpiry(op.exp.kind, arg, "set", l.s.st.Now(), true); bad != "" {
		r.out = resp.AppendError(r.out, bad)
		return false
	}
	return true
}

// parseSetFlag takes SET's NX, XX and GET; false for anything else, or NX
// with XX.
func parseSetFlag(r *respConn, a []byte) bool {
	o := &r.op.set
	switch strings.ToUpper(string(clip(a, 8))) {
	case "NX":
		if o.mode == setXX {
			return false
		}
		o.mode = setNX
	case "XX":
		if o.mode == setNX {
			return false
		}
		o.mode = setXX
	case "GET":
		o.get = true
	default:
		return false
	}
	return true
}

// prepareSetEx parses SETEX and PSETEX (key, time, value): an EX or PX.
func prepareSetEx(kind ttlKind, cmd string) func(*loop, *respConn) bool {
	return func(l *loop, r *respConn) bool {
		r.op.set = setOptions{}
		r.op.exp = expireOptions{kind: kind}
		var bad string
		if r.op.exp.at, bad = respExpiry(kind, r.op.args[2], cmd, l.s.st.Now(), true); bad != "" {
			r.out = resp.AppendError(r.out, bad)
			return false
		}
		return true
	}
}

func issueSetEx(l *loop, op *respOp) (store.Status, []byte, error) {
	st, err := l.upsertExpiring(op.args[1], op.hash(1), op.args[3], op.exp.at)
	return st, nil, err
}

func takeOK(_ *loop, r *respConn, _ store.Status, _ []byte, err error) bool {
	if err != nil {
		return r.failed(err)
	}
	r.out = resp.AppendSimple(r.out, "OK")
	return false
}

func prepareGetEx(l *loop, r *respConn) bool { return parseTTLOptions(l, r, 2, false) }

// issueGetEx reads the key, changing its expiry in the same Update when an
// option asks (a time already past deletes it). With a bad time it only
// reads: takeGetEx answers the error if the key exists.
func issueGetEx(l *loop, op *respOp) (store.Status, []byte, error) {
	if op.exp.kind == ttlNone || op.exp.bad != "" {
		return l.read(op.args[1], op.hash(1))
	}
	u := store.Update{If: store.IfPresent, Want: store.WantOld, Merge: store.Keep{}, Expire: op.exp.expiry()}
	return l.update(op.args[1], op.hash(1), &u)
}

func takeGetEx(l *loop, r *respConn, st store.Status, v []byte, err error) bool {
	if bad := r.op.exp.bad; bad != "" && err == nil && st == store.OK {
		r.out = resp.AppendError(r.out, bad)
		return false
	}
	return takeGet(l, r, st, v, err)
}

// prepareExpire parses the EXPIRE family's options (NX, XX, GT, LT) and
// time as Redis's expireGenericCommand does, in that order; the time
// counts as kind.
func prepareExpire(kind ttlKind, cmd string) func(*loop, *respConn) bool {
	return func(l *loop, r *respConn) bool {
		op := &r.op
		op.exp = expireOptions{kind: kind}
		for _, a := range op.args[3:] {
			switch strings.ToUpper(string(clip(a, 8))) {
			case "NX":
				op.exp.only |= store.IfNoExpiry
			case "XX":
				op.exp.only |= store.IfExpiry
			case "GT":
				op.exp.only |= store.IfLater
			case "LT":
				op.exp.only |= store.IfEarlier
			default:
				r.out = resp.AppendError(r.out, "ERR Unsupported option "+sanitize(string(clip(a, 64))))
				return false
			}
		}
		switch o := op.exp.only; {
		case o&store.IfNoExpiry != 0 && o != store.IfNoExpiry:
			r.out = resp.AppendError(r.out, "ERR NX and XX, GT or LT options at the same time are not compatible")
			return false
		case o&store.IfLater != 0 && o&store.IfEarlier != 0:
			r.out = resp.AppendError(r.out, "ERR GT and LT options at the same time are not compatible")
			return false
		}
		var bad string
		if op.exp.at, bad = respExpiry(kind, op.args[2], cmd, l.s.st.Now(), false); bad != "" {
			r.out = resp.AppendError(r.out, bad)
			return false
		}
		return true
	}
}

// issueExpire sets the expiry of a live key, under its conditions, and
// asks for the expiry it had: takeExpire judges from it whether the
// conditions let it change (store.Expiry.Allows).
func issueExpire(l *loop, op *respOp) (store.Status, []byte, error) {
	u := store.Update{If: store.IfPresent, Want: store.WantOld, WithExpiry: true, Merge: store.Keep{}, Expire: op.exp.expiry()}
	return l.update(op.args[1], op.hash(1), &u)
}

func takeExpire(_ *loop, r *respConn, st store.Status, v []byte, err error) bool {
	if err != nil {
		return r.failed(err)
	}
	old, _, ok := store.SplitExpiring(v)
	r.out = resp.AppendInt(r.out, int64(btoi(st == store.OK && ok && r.op.exp.expiry().Allows(old))))
	return false
}

// issuePersist removes a live key's expiry, asking for the one it had.
func issuePersist(l *loop, op *respOp) (store.Status, []byte, error) {
	u := store.Update{If: store.IfPresent, Want: store.WantOld, WithExpiry: true, Merge: store.Keep{}, Expire: store.Expiry{Mode: store.ClearExpiry}}
	return l.update(op.args[1], op.hash(1), &u)
}

func takePersist(_ *loop, r *respConn, st store.Status, v []byte, err error) bool {
	if err != nil {
		return r.failed(err)
	}
	old, _, ok := store.SplitExpiring(v)
	r.out = resp.AppendInt(r.out, int64(btoi(st == store.OK && ok && old != 0)))
	return false
}

// issueReadExpiry reads the key with its expiry (TTL and the like).
func issueReadExpiry(l *loop, op *respOp) (store.Status, []byte, error) {
	return l.readExpiring(op.args[1], op.hash(1))
}

// takeTTL replies to TTL (ms false) and PTTL: -2 for a missing key, -1
// for one without expiry, otherwise the time left, in seconds rounded as
// Redis does.
func takeTTL(ms bool) func(*loop, *respConn, store.Status, []byte, error) bool {
	return func(l *loop, r *respConn, st store.Status, v []byte, err error) bool {
		at, ok := expiryReply(r, st, v, err)
		if !ok {
			return false
		}
		left := max(at-l.s.st.Now(), 0)
		if !ms {
			left = (left + 500) / 1000
		}
		r.out = resp.AppendInt(r.out, left)
		return false
	}
}

// takeExpireTime replies to EXPIRETIME (ms false) and PEXPIRETIME: -2, -1,
// or the absolute expiry (in seconds rounded as TTL's, as Redis does).
func takeExpireTime(ms bool) func(*loop, *respConn, store.Status, []byte, error) bool {
	return func(_ *loop, r *respConn, st store.Status, v []byte, err error) bool {
		at, ok := expiryReply(r, st, v, err)
		if !ok {
			return false
		}
		if !ms {
			at = (at + 500) / 1000
		}
		r.out = resp.AppendInt(r.out, at)
		return false
	}
}

// expiryReply answers the cases every expiry query shares (an error, a
// missing key: -2, no expiry: -1) and otherwise returns the expiry.
func expiryReply(r *respConn, st store.Status, v []byte, err error) (int64, bool) {
	at, _, ok := store.SplitExpiring(v)
	switch {
	case err != nil:
		r.failed(err)
	case st != store.OK || !ok:
		r.out = resp.AppendInt(r.out, -2)
	case at == 0:
		r.out = resp.AppendInt(r.out, -1)
	default:
		return at, true
	}
	return 0, false
}
