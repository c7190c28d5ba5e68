package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
)

// command is one RESP command. A command either answers at once (reply) or
// runs store operations in steps: prepare checks its arguments and sets up
// the connection's respOp, issue starts step op.i's store operation, and
// take consumes that step's outcome (at once, or when a pending operation
// completes), appends to the reply and says whether another step follows.
type command struct {
	name    string // lower case, as Redis names it in errors
	arity   int    // Redis's convention: n exactly n arguments, -n at least n (the name counts)
	noAuth  bool   // allowed before AUTH
	reply   func(l *loop, r *respConn, args [][]byte) []byte
	prepare func(l *loop, r *respConn) bool // false: it appended the reply, no steps
	issue   func(l *loop, op *respOp) (store.Status, []byte, error)
	take    func(l *loop, r *respConn, st store.Status, v []byte, err error) (more bool)
	// fill, for a command whose steps are reads of arguments 1, 2, ... (one
	// reply element each), appends what take would for one step: such a
	// step on the device leaves a hole filled by its completion.
	fill func(l *loop, b []byte, st store.Status, v []byte, err error) []byte
	// keyStep marks a command of several keys: every keyStep-th argument
	// from the first is a key. In a cluster they must share a slot.
	keyStep int
}

func (c *command) arityOK(n int) bool {
	if c.arity >= 0 {
		return n == c.arity
	}
	return n >= -c.arity
}

// commands holds every command by name; byLen the same by name length, for
// lookup.
var (
	commands = map[string]*command{}
	byLen    [16][]*command
)

func init() {
	for _, c := range []*command{
		{name: "ping", arity: -1, reply: cmdPing},
		{name: "echo", arity: 2, reply: func(_ *loop, r *respConn, a [][]byte) []byte { return resp.AppendBulk(r.out, a[1]) }},
		{name: "quit", arity: -1, noAuth: true, reply: cmdQuit},
		{name: "hello", arity: -1, noAuth: true, reply: cmdHello},
		{name: "auth", arity: -2, noAuth: true, reply: cmdAuth},
		{name: "client", arity: -2, reply: cmdClient},
		{name: "select", arity: 2, reply: cmdSelect},
		{name: "command", arity: -1, reply: cmdCommand},
		{name: "info", arity: -1, reply: cmdInfo},
		{name: "config", arity: -2, reply: cmdConfig},
		{name: "dbsize", arity: 1, reply: cmdDBSize},
		{name: "flushall", arity: -1, reply: cmdFlushAll},
		{name: "flushdb", arity: -1, reply: cmdFlushAll},
		{name: "scan", arity: -2, reply: cmdScan},
		{name: "keys", arity: 2, reply: cmdKeys},
		{name: "randomkey", arity: 1, reply: cmdRandomKey},
		{name: "save", arity: 1, reply: cmdSave},
		{name: "bgsave", arity: -1, reply: cmdBGSave},
		{name: "waitaof", arity: 4, reply: cmdWaitAOF},
		{name: "cluster", arity: -2, reply: cmdCluster},
		{name: "readonly", arity: 1, reply: cmdReadOnly},
		{name: "readwrite", arity: 1, reply: cmdReadOnly},
		{name: "get", arity: 2, issue: readKey(1), take: takeGet, fill: fillBulk},
		{name: "set", arity: -3, prepare: prepareSet, issue: issueSet, take: takeSet},
		{name: "setnx", arity: 3, prepare: prepareSetNX, issue: issueSet, take: takeSetNX},
		{name: "setex", arity: 4, prepare: prepareSetEx(ttlEX, "setex"), issue: issueSetEx, take: takeOK},
		{name: "psetex", arity: 4, prepare: prepareSetEx(ttlPX, "psetex"), issue: issueSetEx, take: takeOK},
		{name: "getex", arity: -2, prepare: prepareGetEx, issue: issueGetEx, take: takeGetEx},
		{name: "expire", arity: -3, prepare: prepareExpire(ttlEX, "expire"), issue: issueExpire, take: takeExpire},
		{name: "pexpire", arity: -3, prepare: prepareExpire(ttlPX, "pexpire"), issue: issueExpire, take: takeExpire},
		{name: "expireat", arity: -3, prepare: prepareExpire(ttlEXAT, "expireat"), issue: issueExpire, take: takeExpire},
		{name: "pexpireat", arity: -3, prepare: prepareExpire(ttlPXAT, "pexpireat"), issue: issueExpire, take: takeExpire},
		{name: "persist", arity: 2, issue: issuePersist, take: takePersist},
		{name: "ttl", arity: 2, issue: issueReadExpiry, take: takeTTL(false)},
		{name: "pttl", arity: 2, issue: issueReadExpiry, take: takeTTL(true)},
		{name: "expiretime", arity: 2, issue: issueReadExpiry, take: takeExpireTime(false)},
		{name: "pexpiretime", arity: 2, issue: issueReadExpiry, take: takeExpireTime(true)},
		{name: "getdel", arity: 2, issue: issueGetDel, take: takeGetDel},
		{name: "del", arity: -2, prepare: prepareDel, issue: issueDel, take: takeDel, keyStep: 1},
		{name: "unlink", arity: -2, prepare: prepareDel, issue: issueDel, take: takeDel, keyStep: 1},
		{name: "exists", arity: -2, issue: readEach, take: takeExists, keyStep: 1},
		{name: "mget", arity: -2, prepare: prepareMGet, issue: readEach, take: takeMGet, fill: fillBulk, keyStep: 1},
		{name: "mset", arity: -3, prepare: prepareMSet, issue: issueMSet, take: takeMSet, keyStep: 2},
		{name: "incr", arity: 2, prepare: prepareIncr(1, false), issue: issueIncr, take: takeIncr},
		{name: "decr", arity: 2, prepare: prepareIncr(-1, false), issue: issueIncr, take: takeIncr},
		{name: "incrby", arity: 3, prepare: prepareIncr(1, true), issue: issueIncr, take: takeIncr},
		{name: "decrby", arity: 3, prepare: prepareIncr(-1, true), issue: issueIncr, take: takeIncr},
		{name: "append", arity: 3, issue: issueAppend, take: takeAppend},
		{name: "strlen", arity: 2, issue: readKey(1), take: takeStrlen, fill: fillStrlen},
		{name: "type", arity: 2, issue: readKey(1), take: takeType, fill: fillType},
	} {
		commands[c.name] = c
		byLen[len(c.name)] = append(byLen[len(c.name)], c)
	}
}

// lookup finds a command by name, in any case: a scan of the few commands
// of the name's length.
func lookup(name []byte) *command {
	if len(name) >= len(byLen) {
		return nil
	}
next:
	for _, c := range byLen[len(name)] {
		for i, b := range name {
			if b >= 'A' && b <= 'Z' {
				b += 'a' - 'A'
			}
			if b != c.name[i] {
				continue next
			}
		}
		return c
	}
	return nil
}

// errReply appends the reply for an error of the gateway (or of a RESP
// merger) and ends the command.
func (r *respConn) failed(err error) bool {
	r.out = r.l.appendFailure(r.out, err)
	return false
}

// appendFailure appends the error reply for err.
func (l *loop) appendFailure(b []byte, err error) []byte {
	switch {
	case errors.Is(err, errNotInteger), errors.Is(err, errOverflow):
		return resp.AppendError(b, err.Error())
	case errors.Is(err, errNotOwner):
		return l.respNotOwner(b)
	}
	return resp.AppendError(b, sanitize(classify(err).msg))
}

// readArg reads the key in argument k.
func (l *loop) readArg(op *respOp, k int) (store.Status, []byte, error) {
	return l.read(op.args[k], op.hash(k))
}

// ---- connection and server commands

func cmdPing(_ *loop, r *respConn, a [][]byte) []byte {
	switch len(a) {
	case 1:
		return resp.AppendSimple(r.out, "PONG")
	case 2:
		return resp.AppendBulk(r.out, a[1])
	}
	return resp.AppendError(r.out, "ERR wrong number of arguments for 'ping' command")
}

func cmdQuit(_ *loop, r *respConn, _ [][]byte) []byte {
	r.quit = true
	return resp.AppendSimple(r.out, "OK")
}

// checkPass compares a password with --requirepass in constant time.
func (l *loop) checkPass(user, pass []byte) bool {
	want := l.s.cfg.RequirePass
	return (user == nil || string(user) == "default") &&
		subtle.ConstantTimeCompare(pass, []byte(want)) == 1
}

func cmdAuth(l *loop, r *respConn, a [][]byte) []byte {
	if len(a) > 3 {
		return resp.AppendError(r.out, "ERR syntax error")
	}
	if l.s.cfg.RequirePass == "" {
		return resp.AppendError(r.out, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	}
	var user []byte
	if len(a) == 3 {
		user = a[1]
	}
	if !l.checkPass(user, a[len(a)-1]) {
		return resp.AppendError(r.out, "WRONGPASS invalid username-password pair or user is disabled.")
	}
	r.authed = true
	return resp.AppendSimple(r.out, "OK")
}

// cmdHello answers HELLO in RESP2 only: HELLO 3 gets NOPROTO, and clients
// (go-redis v9 among them) go on in RESP2.
func cmdHello(l *loop, r *respConn, a [][]byte) []byte {
	if len(a) > 1 {
		v, ok := resp.ParseInt(a[1])
		if !ok {
			return resp.AppendError(r.out, "ERR Protocol version is not an integer or out of range")
		}
		if v != 2 {
			return resp.AppendError(r.out, "NOPROTO sorry, this protocol version is not supported")
		}
	}
	var name []byte
	for i := 2; i < len(a); i++ {
		switch opt := strings.ToLower(string(a[i])); {
		case opt == "auth" && i+2 < len(a):
			if l.s.cfg.RequirePass != "" && !l.checkPass(a[i+1], a[i+2]) {
				return resp.AppendError(r.out, "WRONGPASS invalid username-password pair or user is disabled.")
			}
			r.authed = true
			i += 2
		case opt == "setname" && i+1 < len(a):
			name = a[i+1]
			i++
		default:
			return resp.AppendError(r.out, "ERR Syntax error in HELLO option '"+sanitize(string(clip(a[i], 64)))+"'")
		}
	}
	if !r.authed {
		return resp.AppendError(r.out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
	}
	if name != nil {
		r.name = append(r.name[:0], name...)
	}
	b := resp.AppendArray(r.out, 14)
	b = resp.AppendBulkString(b, "server")
	b = resp.AppendBulkString(b, "fleetkv")
	b = resp.AppendBulkString(b, "version")
	b = resp.AppendBulkString(b, redisVersion)
	b = resp.AppendBulkString(b, "proto")
	b = resp.AppendInt(b, 2)
	b = resp.AppendBulkString(b, "id")
	b = resp.AppendInt(b, int64(r.id))
	b = resp.AppendBulkString(b, "mode")
	b = resp.AppendBulkString(b, redisMode(l))
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, "master")
	b = resp.AppendBulkString(b, "modules")
	return resp.AppendArray(b, 0)
}

// redisVersion is the Redis version whose commands fleetkv answers, for
// clients that look at it.
const redisVersion = "7.0.0"

func cmdClient(_ *loop, r *respConn, a [][]byte) []byte {
	sub := strings.ToLower(string(clip(a[1], 16)))
	switch {
	case sub == "setinfo" && len(a) == 4:
		return resp.AppendSimple(r.out, "OK")
	case sub == "setname" && len(a) == 3:
		for _, c := range a[2] {
			if c <= ' ' || c > '~' {
				return resp.AppendError(r.out, "ERR Client names cannot contain spaces, newlines or special characters.")
			}
		}
		r.name = append(r.name[:0], a[2]...)
		return resp.AppendSimple(r.out, "OK")
	case sub == "getname" && len(a) == 2:
		if len(r.name) == 0 {
			return resp.AppendNull(r.out)
		}
		return resp.AppendBulk(r.out, r.name)
	case sub == "id" && len(a) == 2:
		return resp.AppendInt(r.out, int64(r.id))
	case sub == "setinfo" || sub == "setname" || sub == "getname" || sub == "id":
		return resp.AppendError(r.out, "ERR wrong number of arguments for 'client|"+sub+"' command")
	}
	return resp.AppendError(r.out, "ERR unknown subcommand '"+sanitize(string(clip(a[1], 64)))+"'. Try CLIENT HELP.")
}

func cmdSelect(_ *loop, r *respConn, a [][]byte) []byte {
	n, ok := resp.ParseInt(a[1])
	switch {
	case !ok:
		return resp.AppendError(r.out, "ERR value is not an integer or out of range")
	case n != 0:
		return resp.AppendError(r.out, "ERR DB index is out of range")
	}
	return resp.AppendSimple(r.out, "OK")
}

// cmdCommand answers COMMAND (every command's info), COMMAND INFO name...,
// COMMAND COUNT, and COMMAND DOCS with an empty list (redis-cli asks for
// DOCS for its hints and does without). Cluster clients (go-redis) read
// the key positions from the info.
func cmdCommand(_ *loop, r *respConn, a [][]byte) []byte {
	if len(a) == 1 {
		names := make([]string, 0, len(commands))
		for name := range commands {
			names = append(names, name)
		}
		sort.Strings(names)
		b := resp.AppendArray(r.out, len(names))
		for _, name := range names {
			b = commands[name].appendInfo(b)
		}
		return b
	}
	switch strings.ToLower(string(clip(a[1], 16))) {
	case "count":
		return resp.AppendInt(r.out, int64(len(commands)))
	case "docs":
		return resp.AppendArray(r.out, 0)
	case "info":
		b := resp.AppendArray(r.out, len(a)-2)
		for _, name := range a[2:] {
			if c := lookup(name); c != nil {
				b = c.appendInfo(b)
			} else {
				b = resp.AppendNull(b)
			}
		}
		return b
	}
	return resp.AppendError(r.out, "ERR unknown subcommand '"+sanitize(string(clip(a[1], 64)))+"'. Try COMMAND HELP.")
}

// readOnly names the commands that only read.
var readOnly = map[string]bool{"get": true, "strlen": true, "type": true, "exists": true, "mget": true,
	"ttl": true, "pttl": true, "expiretime": true, "pexpiretime": true}

// appendInfo appends the command's COMMAND reply in Redis 7's form: name,
// arity, flags, first key, last key, step, then empty ACL categories,
// tips, key specifications and subcommands.
func (c *command) appendInfo(b []byte) []byte {
	b = resp.AppendArray(b, 10)
	b = resp.AppendBulkString(b, c.name)
	b = resp.AppendInt(b, int64(c.arity))
	var first, last, step int64
	switch {
	case c.issue == nil:
		b = resp.AppendArray(b, 1)
		b = resp.AppendSimple(b, "fast")
	case readOnly[c.name]:
		b = resp.AppendArray(b, 1)
		b = resp.AppendSimple(b, "readonly")
	default:
		b = resp.AppendArray(b, 1)
		b = resp.AppendSimple(b, "write")
	}
	if c.issue != nil {
		first, last, step = 1, 1, 1
		if c.keyStep != 0 {
			last, step = -1, int64(c.keyStep)
		}
	}
	b = resp.AppendInt(resp.AppendInt(resp.AppendInt(b, first), last), step)
	for range 4 {
		b = resp.AppendArray(b, 0)
	}
	return b
}

// configValues are the parameters CONFIG GET answers: what clients and
// redis-benchmark ask about, with fleetkv's true state.
func (l *loop) configValues() map[string]string {
	return map[string]string{
		"save":        "",
		"appendonly":  "no",
		"databases":   "1",
		"maxmemory":   fmt.Sprint(l.s.st.Log().Frames() * l.s.st.Log().PageSize()),
		"port":        strconv.Itoa(l.s.respPort),
		"requirepass": "",
		"io-threads":  fmt.Sprint(l.s.cfg.Loops),
	}
}

func cmdConfig(l *loop, r *respConn, a [][]byte) []byte {
	if strings.ToLower(string(clip(a[1], 16))) != "get" {
		return resp.AppendError(r.out, "ERR unknown subcommand '"+sanitize(string(clip(a[1], 64)))+"'. Try CONFIG HELP.")
	}
	if len(a) < 3 {
		return resp.AppendError(r.out, "ERR wrong number of arguments for 'config|get' command")
	}
	vals := l.configValues()
	var keys []string
	for k := range vals {
		for _, p := range a[2:] {
			if globMatch(bytes.ToLower(p), []byte(k)) { // Redis matches without case; the names are lower case
				keys = append(keys, k)
				break
			}
		}
	}
	sort.Strings(keys)
	b := resp.AppendArray(r.out, 2*len(keys))
	for _, k := range keys {
		b = resp.AppendBulkString(b, k)
		b = resp.AppendBulkString(b, vals[k])
	}
	return b
}

// cmdDBSize answers with the number of live keys the store holds, served
// here or not (store.Keys: exact, after it resolved the blind writes over
// keys on the device, which may read the device: it runs aside).
func cmdDBSize(l *loop, r *respConn, _ [][]byte) []byte {
	l.withKeyCount(r, resp.AppendInt)
	return r.out
}

// withKeyCount counts the live keys aside (store.Keys) and appends the
// reply reply makes of the count, or the error.
func (l *loop) withKeyCount(r *respConn, reply func(b []byte, keys int64) []byte) {
	var n int64
	l.respAside(r, 0, func(ctx context.Context) (err error) {
		n, err = l.s.st.Keys(ctx)
		return err
	}, func(b []byte, err error) []byte {
		if err != nil {
			return resp.AppendError(b, sanitize("ERR counting the keys failed: "+err.Error()))
		}
		return reply(b, n)
	})
}

// ---- data commands

// readKey issues a read of argument k.
func readKey(k int) func(*loop, *respOp) (store.Status, []byte, error) {
	return func(l *loop, op *respOp) (store.Status, []byte, error) { return l.readArg(op, k) }
}

func takeGet(_ *loop, r *respConn, st store.Status, v []byte, err error) bool {
	switch {
	case err != nil:
		r.failed(err)
	case st == store.NotFound:
		r.out = resp.AppendNull(r.out)
	default:
		r.out = resp.AppendBulk(r.out, v)
	}
	return false
}

func takeStrlen(_ *loop, r *respConn, st store.Status, v []byte, err error) bool {
	if err != nil {
		r.failed(err)
	} else {
		r.out = resp.AppendInt(r.out, int64(len(v)*btoi(st == store.OK)))
	}
	return false
}

func takeType(_ *loop, r *respConn, st store.Status, _ []byte, err error) bool {
	switch {
	case err != nil:
		r.failed(err)
	case st == store.NotFound:
		r.out = resp.AppendSimple(r.out, "none")
	default:
		r.out = resp.AppendSimple(r.out, "string")
	}
	return false
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// prepareSet parses SET's options. Plain SET is a blind upsert (with an
// expiry when it has one); NX, XX, GET and KEEPTTL make it a store Update
// (Replace under a condition), so that the condition, the old value and
// the expiry kept are those of the record it replaces.
func prepareSet(l *loop, r *respConn) bool {
	r.op.set = setOptions{}
	return parseTTLOptions(l, r, 3, true)
}

func syntaxError(r *respConn) bool {
	r.out = resp.AppendError(r.out, "ERR syntax error")
	return false
}

func prepareSetNX(_ *loop, r *respConn) bool {
	r.op.set = setOptions{mode: setNX}
	r.op.exp = expireOptions{}
	return true
}

func issueSet(l *loop, op *respOp) (store.Status, []byte, error) {
	if op.set.mode == setAlways && !op.set.get && op.exp.kind != ttlKeep {
		st, err := l.upsertExpiring(op.args[1], op.hash(1), op.args[2], op.exp.at)
		return st, nil, err
	}
	u := store.Update{If: op.set.mode.cond(), Merge: store.Replace{}, Input: op.args[2], Expire: op.exp.expiry()}
	if op.set.get {
		u.Want = store.WantOld
	}
	return l.update(op.args[1], op.hash(1), &u)
}

// takeSet replies to SET: with GET the old value (or nil), otherwise OK, or
// nil when the condition kept the key. An Update reports OK when the key
// existed; a plain SET's upsert reports OK.
func takeSet(_ *loop, r *respConn, st store.Status, v []byte, err error) bool {
	o := r.op.set
	existed := st == store.OK
	switch {
	case err != nil:
		r.failed(err)
	case o.get && existed:
		r.out = resp.AppendBulk(r.out, v)
	case o.get || !o.mode.written(existed):
		r.out = resp.AppendNull(r.out)
	default:
		r.out = resp.AppendSimple(r.out, "OK")
	}
	return false
}

func takeSetNX(_ *loop, r *respConn, st store.Status, _ []byte, err error) bool {
	if err != nil {
		return r.failed(err)
	}
	r.out = resp.AppendInt(r.out, int64(btoi(st == store.NotFound)))
	return false
}

// GETDEL removes the key and returns the value it removed, in one Update.
func issueGetDel(l *loop, op *respOp) (store.Status, []byte, error) {
	return l.update(op.args[1], op.hash(1), &store.Update{If: store.Remove, Want: store.WantOld})
}

// takeGetDel replies as GET does: the removed value, or nil.
func takeGetDel(l *loop, r *respConn, st store.Status, v []byte, err error) bool {
	return takeGet(l, r, st, v, err)
}

// prepareDel refuses a DEL or UNLINK whole when one of its keys (all of
// one slot) has not arrived at this migration target yet (mayMiss, which
// has each such key fetched): deleting the others first would answer the
// retry a smaller count. (A key that mayMiss lets through because its
// chain goes on to the device, and whose record there turns out older, is
// still refused at its step, after the keys before it.)
func prepareDel(l *loop, r *respConn) bool {
	if l.rt.Misses == nil || !l.rt.Misses.Has(keyhash.SlotOf(r.op.hash(1))) {
		return true
	}
	refused := 0
	for k := 1; k < len(r.op.args); k++ {
		if l.mayMiss(r.op.args[k], r.op.hash(k)) {
			refused++
		}
	}
	if refused == 0 {
		return true
	}
	_ = l.refuse(keyhash.SlotOf(r.op.hash(1))) // one refused command
	r.out = l.respNotOwner(r.out)
	return false
}

// DEL and UNLINK remove each key with an Update that reports whether it
// held a live value: step j removes key j.
func issueDel(l *loop, op *respOp) (store.Status, []byte, error) {
	return l.update(op.args[1+op.i], op.hash(1+op.i), &store.Update{If: store.Remove})
}

func takeDel(_ *loop, r *respConn, st store.Status, _ []byte, err error) bool {
	op := &r.op
	if err != nil {
		return r.failed(err)
	}
	if st == store.OK {
		op.n++
	}
	if op.i++; 1+op.i < len(op.args) {
		return true
	}
	r.out = resp.AppendInt(r.out, op.n)
	return false
}

// readEach reads argument 1+op.i.
func readEach(l *loop, op *respOp) (store.Status, []byte, error) { return l.readArg(op, 1+op.i) }

func takeExists(_ *loop, r *respConn, st store.Status, _ []byte, err error) bool {
	op := &r.op
	if err != nil {
		return r.failed(err)
	}
	if st == store.OK {
		op.n++
	}
	if op.i++; 1+op.i < len(op.args) {
		return true
	}
	r.out = resp.AppendInt(r.out, op.n)
	return false
}

func prepareMGet(_ *loop, r *respConn) bool {
	r.out = resp.AppendArray(r.out, len(r.op.args)-1)
	return true
}

// takeMGet appends one element; a key that fails gets an error element.
func takeMGet(l *loop, r *respConn, st store.Status, v []byte, err error) bool {
	op := &r.op
	switch {
	case err != nil:
		r.failed(err)
	case st == store.NotFound:
		r.out = resp.AppendNull(r.out)
	default:
		r.out = resp.AppendBulk(r.out, v)
	}
	op.i++
	return 1+op.i < len(op.args)
}

// MSET upserts its pairs one after the other: unlike Redis's, it is not
// atomic, and a failure leaves the pairs before it written.
func prepareMSet(_ *loop, r *respConn) bool {
	if len(r.op.args)%2 == 0 {
		r.out = resp.AppendError(r.out, "ERR wrong number of arguments for 'mset' command")
		return false
	}
	return true
}

func issueMSet(l *loop, op *respOp) (store.Status, []byte, error) {
	k := 1 + 2*op.i
	st, err := l.upsert(op.args[k], op.hash(k), op.args[k+1])
	return st, nil, err
}

func takeMSet(_ *loop, r *respConn, _ store.Status, _ []byte, err error) bool {
	op := &r.op
	if err != nil {
		return r.failed(err)
	}
	if op.i++; 1+2*op.i < len(op.args) {
		return true
	}
	r.out = resp.AppendSimple(r.out, "OK")
	return false
}

// prepareIncr sets the counter's delta: sign times 1, or times the
// command's argument.
func prepareIncr(sign int64, byArg bool) func(*loop, *respConn) bool {
	return func(_ *loop, r *respConn) bool {
		d := int64(1)
		if byArg {
			var ok bool
			if d, ok = resp.ParseInt(r.op.args[2]); !ok {
				r.out = resp.AppendError(r.out, errNotInteger.Error())
				return false
			}
			if sign < 0 && d == math.MinInt64 {
				r.out = resp.AppendError(r.out, "ERR decrement would overflow")
				return false
			}
		}
		binary.LittleEndian.PutUint64(r.op.delta[:], uint64(sign*d))
		return true
	}
}

// issueIncr adds the delta and asks for the value it produced.
func issueIncr(l *loop, op *respOp) (store.Status, []byte, error) {
	return l.update(op.args[1], op.hash(1), &store.Update{Want: store.WantNew, Merge: decimalAdd{}, Input: op.delta[:]})
}

func takeIncr(_ *loop, r *respConn, _ store.Status, v []byte, err error) bool {
	if err != nil {
		return r.failed(err)
	}
	n, ok := resp.ParseInt(v)
	if !ok {
		return r.failed(fmt.Errorf("server: counter update returned %q", clip(v, 32)))
	}
	r.out = resp.AppendInt(r.out, n)
	return false
}

func issueAppend(l *loop, op *respOp) (store.Status, []byte, error) {
	st, err := l.rmw(op.args[1], op.hash(1), op.args[2], &op.app)
	return st, nil, err
}

func takeAppend(_ *loop, r *respConn, _ store.Status, _ []byte, err error) bool {
	if err != nil {
		r.failed(err)
	} else {
		r.out = resp.AppendInt(r.out, int64(r.op.app.length))
	}
	return false
}
