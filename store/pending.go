package store

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/internal/invariants"
	"github.com/fleetkv/fleetkv/ssd"
)

// firstReadSize is how much a pending read fetches first: the prefix, the
// key and a typical value, so that one I/O usually suffices.
const firstReadSize = 1 << 10

// pendingOp is one operation waiting for the device or for the fuzzy region
// to pass. Its key and input are copied into data, which it keeps for reuse.
type pendingOp struct {
	s         *Session
	kind      OpKind
	serial    uint64
	hash      uint64
	merger    Merger
	keyLen    int
	data      []byte // key, then input
	entryAddr uint64 // the chain head when the first read was issued (RMW: retry if it moved; read: copy to tail only if it did not)
	begin     uint64 // the log's begin when the chain head was read: a chain that goes below it ends
	addr      uint64 // the record being read
	buf       []byte // device read buffer
	bufOff    int    // where addr starts in buf
	n         int    // I/O result: bytes read
	ioErr     error  // I/O result: error
	upd       result // an RMW's Update: condition, wanted value, and the buffer it goes to
	hit       bool   // the device search ended at the key's record (at addr), not at the chain's end
	// ind covers the key (indirect.go): the local search stops at its
	// Since and goes on in its remote log at raddr. remote: the search is
	// there now (addr, begin and the I/O are the remote log's).
	ind    *Indirections
	raddr  uint64
	remote bool
	// noCopy: a read that never copies what it finds to the tail
	// (ReadCovered), whatever CopyReadsToTail says.
	noCopy bool
}

// cover makes the search of p follow ind (nil: none) once its local chain
// ends or goes below ind's Since.
func (p *pendingOp) cover(ind *Indirections, raddr uint64) {
	p.ind, p.raddr, p.remote = ind, raddr, false
}

// device is where p's search reads.
func (p *pendingOp) device(st *Store) ssd.Device {
	if p.remote {
		return p.ind.Remote.Dev
	}
	return st.log.Device()
}

// pageSize bounds the records p's search may meet.
func (p *pendingOp) pageSize(st *Store) uint64 {
	if p.remote && p.ind.Remote.PageSize != 0 {
		return p.ind.Remote.PageSize
	}
	return st.log.PageSize()
}

func (p *pendingOp) key() []byte   { return p.data[:p.keyLen] }
func (p *pendingOp) input() []byte { return p.data[p.keyLen:] }

// IODone implements ssd.Callback: it hands the completed read back to the
// session, whichever goroutine the device completes on.
func (p *pendingOp) IODone(n int, err error) {
	p.n, p.ioErr = n, err
	p.s.pend.ioDone(p)
}

// pendingSet is a session's pending operations.
//
// Invariant: count == operations handed out by newOp and not yet finished;
// each such operation is in exactly one place: retry, an in-flight read, or
// the done queue.
// Invariant: rmws[h] == the unfinished RMWs of hash h (newOp counts them,
// finish uncounts them); no entry is zero.
type pendingSet struct {
	s       *Session
	count   int
	free    []*pendingOp
	retry   []*pendingOp
	spare   []*pendingOp // swapped with done.ops while a batch of reads is processed
	spareR  []*pendingOp // swapped with retry while retries run
	running bool         // inside CompletePending (callbacks must not re-enter)
	inFlite int          // reads issued and not yet taken from done
	done    struct {
		sync.Mutex
		ops []*pendingOp
	}
	notify chan struct{}
	wake   func() // see Session.SetWake
	rmws   map[uint64]int
}

func (ps *pendingSet) init(s *Session) {
	ps.s = s
	ps.notify = make(chan struct{}, 1)
	ps.rmws = make(map[uint64]int)
}

// newOp takes a pendingOp for a new operation with the session's current
// serial number and private copies of key and input.
func (ps *pendingSet) newOp(kind OpKind, h uint64, key, input []byte, m Merger) *pendingOp {
	var p *pendingOp
	if n := len(ps.free); n > 0 {
		p, ps.free = ps.free[n-1], ps.free[:n-1]
	} else {
		p = &pendingOp{s: ps.s}
	}
	p.kind, p.serial, p.hash, p.merger, p.hit, p.noCopy = kind, ps.s.serial, h, m, false, false
	p.cover(nil, 0)
	p.keyLen = len(key)
	p.data = append(append(p.data[:0], key...), input...)
	ps.count++
	if kind == OpRMW {
		ps.rmws[h]++
		r := &ps.s.res
		p.upd = result{update: r.update, cond: r.cond, want: r.want, since: r.since, x: r.x, withAt: r.withAt, held: r.held, dst: p.upd.dst[:0]}
	}
	return p
}

// reuse returns p itself when an operation goes pending again, or a new one.
func (ps *pendingSet) reuse(p *pendingOp, kind OpKind, h uint64, key, input []byte, m Merger) *pendingOp {
	if p != nil {
		return p
	}
	return ps.newOp(kind, h, key, input, m)
}

func (ps *pendingSet) startRetry(p *pendingOp) { ps.retry = append(ps.retry, p) }

// startRead reads the record at addr for p.
func (ps *pendingSet) startRead(p *pendingOp, addr uint64) {
	ps.readAt(p, addr, hlog.PrefixSize+p.keyLen+firstReadSize)
}

// goRemote continues p's search in its indirection's remote log.
func (ps *pendingSet) goRemote(p *pendingOp) {
	p.remote, p.begin = true, p.ind.Remote.Begin
	ps.startRead(p, p.raddr)
}

func (ps *pendingSet) readAt(p *pendingOp, addr uint64, size int) {
	dev := p.device(ps.s.st)
	al := uint64(dev.Alignment())
	start := addr / al * al
	end := (addr + uint64(size) + al - 1) / al * al
	if cap(p.buf) < int(end-start) {
		p.buf = ioBuffer(int(end-start), al)
	}
	p.buf = p.buf[:end-start]
	p.addr, p.bufOff = addr, int(addr-start)
	ps.inFlite++
	dev.ReadAsync(p.buf, start, p)
}

// ioBuffer returns a device read buffer of n bytes whose address meets the
// device's alignment (O_DIRECT devices need sector-aligned memory).
func ioBuffer(n int, al uint64) []byte {
	if al <= 1 {
		return make([]byte, n)
	}
	if ssd.SectorSize%al != 0 {
		panic(fmt.Sprintf("store: device alignment %d does not divide %d", al, ssd.SectorSize))
	}
	return ssd.AlignedBuffer(n)
}

func (ps *pendingSet) ioDone(p *pendingOp) {
	ps.done.Lock()
	first := len(ps.done.ops) == 0
	ps.done.ops = append(ps.done.ops, p)
	ps.done.Unlock()
	if first && ps.wake != nil {
		ps.wake() // later completions find the owner already woken
	}
	select {
	case ps.notify <- struct{}{}:
	default:
	}
}

// finish delivers an operation's outcome and recycles it.
func (ps *pendingSet) finish(p *pendingOp, st Status, err error, value []byte) {
	ps.count--
	if p.kind == OpRMW {
		if ps.rmws[p.hash]--; ps.rmws[p.hash] == 0 {
			delete(ps.rmws, p.hash)
		}
	}
	if fn := ps.s.onComplete; fn != nil {
		c := Completion{Serial: p.serial, Kind: p.kind, Status: st, Err: err, Value: value}
		if p.kind == OpRead && st == NotFound && p.hit && !p.remote {
			c.Found = p.addr
		}
		fn(c)
	}
	p.merger = nil
	ps.free = append(ps.free, p)
}

// CompletePending advances the session's pending operations: it refreshes
// the epoch, continues every completed read and retries every RMW that waited
// for the fuzzy region, delivering outcomes to the completion callback. With
// wait it returns only when nothing is pending, blocking (unprotected) for
// the device when there is nothing else to do. It returns how many
// operations are still pending. Called from inside the completion callback it
// does nothing (the outer call continues).
func (s *Session) CompletePending(wait bool) int {
	s.advance(wait, func(ps *pendingSet) bool { return ps.count > 0 })
	return s.pend.count
}

// CompleteWrites is CompletePending(true) that returns once no pending
// operation writes (RMWs): reads may still be pending. A session's
// operations up to the last it issued have then all taken effect (a read
// changes nothing), which is what a checkpoint's CPR point needs.
func (s *Session) CompleteWrites() {
	s.advance(true, func(ps *pendingSet) bool { return len(ps.rmws) > 0 })
}

// advance runs CompletePending's rounds while left says operations it
// waits for are left.
func (s *Session) advance(wait bool, left func(*pendingSet) bool) {
	if s.pend.running {
		return
	}
	s.pend.running = true
	defer func() { s.pend.running = false }()
	for spins := 0; left(&s.pend); spins++ {
		if !s.protected && s.protect() != nil {
			return // closed: Close completed everything it had
		}
		s.g.Refresh()
		progressed := s.pend.continueReads() + s.pend.runRetries()
		if !wait || !left(&s.pend) {
			break
		}
		if progressed == 0 {
			s.pend.await(spins)
		}
	}
}

// await waits for progress: for a read to complete when only reads are
// outstanding, otherwise for the other workers to refresh.
func (ps *pendingSet) await(spins int) {
	if len(ps.retry) == 0 && ps.inFlite > 0 {
		ps.s.Suspend()
		<-ps.notify
		return
	}
	if spins > 4 {
		runtime.Gosched()
	}
}

// continueReads processes every read that completed since the last call.
func (ps *pendingSet) continueReads() int {
	ps.done.Lock()
	batch := ps.done.ops
	ps.done.ops = ps.spare[:0]
	ps.done.Unlock()
	for _, p := range batch {
		ps.inFlite--
		ps.continueRead(p)
	}
	ps.spare = batch[:0]
	return len(batch)
}

// runRetries re-runs every RMW that waited for the fuzzy region; those that
// must wait again are queued on the other slice of the pair. It returns
// how many finished: a round where every retry waits again is no progress,
// and a waiting CompletePending then yields the core (await).
func (ps *pendingSet) runRetries() int {
	batch := ps.retry
	ps.retry = ps.spareR[:0]
	finished := 0
	for _, p := range batch {
		if st, err := ps.rmw(p); ps.settle(p, st, err) {
			finished++
		}
	}
	clear(batch)
	ps.spareR = batch[:0]
	return finished
}

// continueRead examines the record a read brought in: the key's record ends
// the search, another key's record sends it down the chain.
func (ps *pendingSet) continueRead(p *pendingOp) {
	if !p.remote && p.addr < ps.s.st.log.Begin() {
		// Compaction moved begin past the record while it was read: its
		// bytes may be gone, and the key's live record is at the tail.
		ps.restart(p)
		return
	}
	if p.ioErr != nil {
		ps.finish(p, 0, fmt.Errorf("store: reading record at %d: %w", p.addr, p.ioErr), nil)
		return
	}
	rec := p.buf[p.bufOff:max(p.bufOff, p.n)]
	h, kl, vc, vl, ok := hlog.DecodePrefix(rec)
	if !ok { // the buffer always has room for a prefix: the device read short
		ps.finish(p, 0, fmt.Errorf("store: reading record at %d: %d bytes: %w", p.addr, len(rec), io.ErrUnexpectedEOF), nil)
		return
	}
	if !h.Final() || h.Filler() || h.Invalid() || h.Prev() >= p.addr || vl > vc ||
		hlog.RecordSize(kl, vc) > p.pageSize(ps.s.st) {
		ps.finish(p, 0, ps.corrupt(p, "impossible record header %#x (key %d, value %d of %d)", uint64(h), kl, vl, vc), nil)
		return
	}
	// The whole record (up to its used value) is read before any of it is
	// trusted, so that its checksum covers the key and the chain link a walk
	// follows as well as the value it returns.
	need := hlog.PrefixSize + kl + vl
	if len(rec) < need {
		if len(p.buf)-p.bufOff >= need { // the buffer had room: the device read short
			ps.finish(p, 0, fmt.Errorf("store: reading record at %d: %d of %d bytes: %w",
				p.addr, len(rec), need, io.ErrUnexpectedEOF), nil)
			return
		}
		ps.readAt(p, p.addr, need)
		return
	}
	if !hlog.VerifyRecord(rec[:need]) {
		ps.finish(p, 0, ps.corrupt(p, "record checksum %#x does not match its content", hlog.StoredChecksum(rec)), nil)
		return
	}
	if kl != p.keyLen || !bytes.Equal(rec[hlog.PrefixSize:hlog.PrefixSize+kl], p.key()) {
		ps.follow(p, h.Prev())
		return
	}
	p.hit = true
	old := ps.s.st.priorOf(h, rec[hlog.PrefixSize+kl:need])
	if p.remote {
		old.counted = false // see indirect.go: counted once written here
	}
	ps.found(p, old)
}

// follow continues the search at the previous record of the chain: in
// the remote log until it ends there; in the local one down to the log's
// begin or, for a covered key, the indirection's Since, then on in the
// remote log.
func (ps *pendingSet) follow(p *pendingOp, prev uint64) {
	if p.remote {
		if prev >= max(p.begin, hlog.FirstAddress) {
			ps.startRead(p, prev)
		} else {
			ps.found(p, absent)
		}
		return
	}
	switch begin := ps.s.st.log.Begin(); {
	case prev >= begin && (p.ind == nil || prev >= p.ind.Since):
		ps.startRead(p, prev)
	case prev >= begin:
		ps.goRemote(p) // below Since: an older owner's records
	case begin != p.begin:
		ps.restart(p) // begin moved: the rest of the chain may be at the tail
	case p.ind != nil:
		ps.goRemote(p)
	default:
		ps.found(p, absent) // the chain ends: the key has no record
	}
}

// restart runs p again from the index, after a compaction moved the log's
// begin past the chain it was following.
func (ps *pendingSet) restart(p *pendingOp) {
	if p.kind != OpRead {
		st, err := ps.rmw(p)
		ps.settle(p, st, err)
		return
	}
	if v, st, err := ps.s.read(p.key(), p.hash, nil, p, p.upd.withAt); st != Pending || err != nil {
		if st == NotFound && err == nil && ps.s.met != 0 {
			p.hit, p.addr, p.remote = true, ps.s.met, false // Completion.Found
		}
		ps.finish(p, st, err, v)
	}
}

// rmw runs the pending RMW p again from the index.
func (ps *pendingSet) rmw(p *pendingOp) (Status, error) {
	ps.resume(p)
	return ps.s.rmw(p.key(), p.input(), p.merger, p.hash, p)
}

// resume makes p's Update the session's running one (result's invariant).
func (ps *pendingSet) resume(p *pendingOp) {
	ps.s.res = p.upd
	ps.s.res.dst = p.upd.dst[:0]
	ps.s.res.out = ps.s.res.dst
}

// settle ends a run of the RMW p (resume came first): it delivers the
// outcome when the RMW finished, reporting what the session's result
// describes, and keeps p's value buffer for reuse; when it went pending
// again it only ends the run. Either way the session's result is zero again.
// It reports whether p finished.
func (ps *pendingSet) settle(p *pendingOp, st Status, err error) bool {
	r := &ps.s.res
	if st == Pending && err == nil {
		*r = result{}
		return false
	}
	var v []byte
	if err == nil {
		st, v = r.status(), r.out
	}
	p.upd.dst = r.out[:0]
	*r = result{}
	ps.finish(p, st, err, v)
	return true
}

// found ends the device search with what the key's newest record holds
// (absent: the key has none).
func (ps *pendingSet) found(p *pendingOp, old prior) {
	if p.kind == OpRead {
		if !old.live {
			ps.finish(p, NotFound, nil, nil)
			return
		}
		if ps.s.st.cfg.CopyReadsToTail && !p.noCopy {
			ps.s.copyToTail(p, old)
		}
		v := old.value
		if p.upd.withAt {
			p.upd.dst = AppendExpiring(p.upd.dst[:0], old.at, v)
			v = p.upd.dst
		}
		ps.finish(p, OK, nil, v)
		return
	}
	ps.resume(p)
	ps.s.res.recent = p.hit && !p.remote && p.addr >= p.upd.since
	held := p.upd.held == 0 || p.hit && !p.remote && p.addr >= p.upd.held
	p.hit = false // a search the RMW starts again begins without a hit
	if !held {
		ps.settle(p, 0, ErrNotHeld) // the key's newest record is below Held, or it has none
		return
	}
	st, err := ps.s.continueRMW(p, old)
	ps.settle(p, st, err)
}

// corrupt reports a record the device returned that cannot be valid. Under
// -tags invariants it is a bug, unless a test damaged the device on purpose.
func (ps *pendingSet) corrupt(p *pendingOp, format string, args ...any) error {
	err := fmt.Errorf("%w: record at %d: %s", ErrCorrupt, p.addr, fmt.Sprintf(format, args...))
	if invariants.Enabled && !damageExpected.Load() {
		panic(err)
	}
	return err
}

// damageExpected is set by tests that garble the device.
var damageExpected atomic.Bool

// ExpectDamage tells the invariants build (-tags invariants) that a test
// damaged the device on purpose: a corrupt record is then reported as an
// error, as in production, instead of panicking as a bug. Tests only.
func ExpectDamage(on bool) { damageExpected.Store(on) }
