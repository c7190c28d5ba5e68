package server

import (
	"math"
	"strings"
	"time"

	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
)

// Key expiry on the RESP front: SET's EX|PX|EXAT|PXAT|KEEPTTL, SETEX,
// PSETEX, GETEX, the EXPIRE family, TTL, PTTL, EXPIRETIME, PEXPIRETIME and
// PERSIST, with Redis 7's replies and errors. Each is one store operation
// (store/expiry.go): an expiry changes under the same rules as a value,
// so EXPIRE's conditions are decided on the expiry it replaces.

// nowMS is the wall clock expiry is judged by, in Unix milliseconds: the
// store's default clock (store.Config.Now).
func nowMS() int64 { return time.Now().UnixMilli() }

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

// absoluteExpiry turns SET's, SETEX's and GETEX's expiry argument into
// Unix milliseconds as Redis does (getExpireMillisecondsOrReply): a
// positive integer, whose result must stay positive; cmd names the command
// in the error.
func absoluteExpiry(r *respConn, kind ttlKind, arg []byte, cmd string) (int64, bool) {
	n, ok := resp.ParseInt(arg)
	if !ok {
		r.out = resp.AppendError(r.out, errNotInteger.Error())
		return 0, false
	}
	seconds := kind == ttlEX || kind == ttlEXAT
	if n <= 0 || (seconds && n > math.MaxInt64/1000) {
		return 0, invalidExpire(r, cmd)
	}
	if seconds {
		n *= 1000
	}
	if kind == ttlEX || kind == ttlPX {
		if n > math.MaxInt64-nowMS() {
			return 0, invalidExpire(r, cmd)
		}
		n += nowMS()
	}
	return n, true
}

func invalidExpire(r *respConn, cmd string) bool {
	r.out = resp.AppendError(r.out, "ERR invalid expire time in '"+cmd+"' command")
	return false
}

// parseTTLOptions parses the options of SET (from argument 3) or GETEX
// (from argument 2), set says which: NX, XX, GET for SET, one expiry
// option for either, KEEPTTL for SET and PERSIST for GETEX only.
func parseTTLOptions(r *respConn, from int, set bool) bool {
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
	cmd := "getex"
	if set {
		cmd = "set"
	}
	at, ok := absoluteExpiry(r, op.exp.kind, arg, cmd)
	op.exp.at = at
	return ok
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
	return func(_ *loop, r *respConn) bool {
		r.op.set = setOptions{}
		r.op.exp = expireOptions{kind: kind}
		at, ok := absoluteExpiry(r, kind, r.op.args[2], cmd)
		r.op.exp.at = at
		return ok
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

func prepareGetEx(_ *loop, r *respConn) bool { return parseTTLOptions(r, 2, false) }

// issueGetEx reads the key, changing its expiry in the same Update when an
// option asks (a time already past deletes it).
func issueGetEx(l *loop, op *respOp) (store.Status, []byte, error) {
	if op.exp.kind == ttlNone {
		return l.read(op.args[1], op.hash(1))
	}
	u := store.Update{If: store.IfPresent, Want: store.WantOld, Merge: store.Keep{}, Expire: op.exp.expiry()}
	return l.update(op.args[1], op.hash(1), u)
}

// prepareExpire parses the EXPIRE family's options (NX, XX, GT, LT) and
// time as Redis's expireGenericCommand does, in that order; the time
// counts as kind.
func prepareExpire(kind ttlKind, cmd string) func(*loop, *respConn) bool {
	return func(_ *loop, r *respConn) bool {
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
		at, ok := relativeExpiry(r, kind, op.args[2], cmd)
		op.exp.at = at
		return ok
	}
}

// relativeExpiry turns the EXPIRE family's time into Unix milliseconds:
// any integer (a time already past deletes the key), as long as the
// arithmetic does not overflow.
func relativeExpiry(r *respConn, kind ttlKind, arg []byte, cmd string) (int64, bool) {
	n, ok := resp.ParseInt(arg)
	if !ok {
		r.out = resp.AppendError(r.out, errNotInteger.Error())
		return 0, false
	}
	if kind == ttlEX || kind == ttlEXAT {
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return 0, invalidExpire(r, cmd)
		}
		n *= 1000
	}
	if kind == ttlEX || kind == ttlPX {
		base := nowMS()
		if n > math.MaxInt64-base {
			return 0, invalidExpire(r, cmd)
		}
		n += base
	}
	return n, true
}

// issueExpire sets the expiry of a live key, under its conditions, and
// asks for the expiry it had: takeExpire judges from it whether the
// conditions let it change (store.Expiry.Allows).
func issueExpire(l *loop, op *respOp) (store.Status, []byte, error) {
	u := store.Update{If: store.IfPresent, Want: store.WantOld, WithExpiry: true, Merge: store.Keep{}, Expire: op.exp.expiry()}
	return l.update(op.args[1], op.hash(1), u)
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
	return l.update(op.args[1], op.hash(1), u)
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
	return func(_ *loop, r *respConn, st store.Status, v []byte, err error) bool {
		at, ok := expiryReply(r, st, v, err)
		if !ok {
			return false
		}
		left := max(at-nowMS(), 0)
		if !ms {
			left = (left + 500) / 1000
		}
		r.out = resp.AppendInt(r.out, left)
		return false
	}
}

// takeExpireTime replies to EXPIRETIME (ms false) and PEXPIRETIME: -2, -1,
// or the absolute expiry.
func takeExpireTime(ms bool) func(*loop, *respConn, store.Status, []byte, error) bool {
	return func(_ *loop, r *respConn, st store.Status, v []byte, err error) bool {
		at, ok := expiryReply(r, st, v, err)
		if !ok {
			return false
		}
		if !ms {
			at /= 1000
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
