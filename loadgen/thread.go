package loadgen

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/loadgen/keydist"
)

const (
	kindRead = iota
	kindUpsert
	kindAdd
)

// slot is the context of one outstanding operation; its callback is a method
// value made once, so issuing an operation allocates nothing.
type slot struct {
	t      *thread
	busy   bool
	start  int64 // ns since the run's base time
	kind   uint8
	key    uint64
	expect uint64 // verify: the version a read must see (0: none written by this run)
	cb     client.Callback
}

// thread is one client goroutine and everything it owns.
type thread struct {
	id        int
	cfg       *Config
	mix       [3]int
	gen       keydist.Generator
	drawn     []uint64 // for costly generators: a precomputed cycle of draws
	next      int
	rng       *keydist.Rand
	sessions  []pipe // the thread's sessions: routed Clusters, or plain Sessions with NoRoute
	slots     []slot
	mask      uint64
	seq       uint64
	base      time.Time
	measure   int64 // ns since base when measuring starts (after warm-up)
	hist      *hdr.Histogram
	interval  *hdr.Histogram
	intervals chan<- *hdr.Histogram
	done      atomic.Uint64 // operations completed (progress)
	errs      atomic.Uint64
	measured  uint64
	lastDone  int64 // ns since base of the last measured completion
	key, val  []byte
	want      []byte
	model     *model // verify: what the thread wrote to its share of the keys
	bad       atomic.Uint64
	firstBad  atomic.Pointer[string]
}

func newThread(id int, cfg *Config, base time.Time, measure time.Duration, intervals chan<- *hdr.Histogram) (*thread, error) {
	gen, err := keydist.New(cfg.Dist, cfg.Keys)
	if err != nil {
		return nil, err
	}
	t := &thread{id: id, cfg: cfg, mix: workloads[cfg.Workload], gen: gen,
		rng: keydist.NewRand(cfg.Seed + uint64(id)*0x9e3779b97f4a7c15 + 1), base: base, measure: int64(measure),
		hist: newHist(), interval: newHist(), intervals: intervals,
		key: make([]byte, 8), val: make([]byte, cfg.ValueSize), want: make([]byte, cfg.ValueSize)}
	if cfg.Verify {
		t.model = newModel(cfg, id, t.mix[2] > 0)
	}
	if cfg.Dist != keydist.DistUniform && cfg.Workload != "load" {
		// A scrambled Zipf draw costs ~70 ns, as much as the operation it
		// picks, so the generator would bound the rate it measures. Draw a
		// cycle of drawCycle keys up front instead (the engine benchmarks
		// replay streams the same way).
		t.drawn = make([]uint64, drawCycle)
		for i := range t.drawn {
			t.drawn[i] = gen.Next(t.rng)
		}
	}
	perBatch := cfg.BatchBytes/16 + 1
	n := 1
	for n < perBatch*(cfg.InFlight+2)*cfg.Sessions*len(cfg.Servers) { // the servers of a cluster: at least those given
		n <<= 1
	}
	t.slots, t.mask = make([]slot, n), uint64(n-1)
	for i := range t.slots {
		s := &t.slots[i]
		s.t, s.cb = t, s.done
	}
	return t, t.connect()
}

func newHist() *hdr.Histogram { return hdr.New(1, 60_000_000, 3) } // 1 µs .. 60 s

// pipe is what a thread sends operations through: a routed
// client.Cluster, or a client.Session to one server.
type pipe interface {
	Read(key []byte, cb client.Callback) error
	Upsert(key, value []byte, cb client.Callback) error
	UpsertExpiring(key, value []byte, expireAt int64, cb client.Callback) error
	Add(key []byte, delta int64, cb client.Callback) error
	Wait() error
	Close() error
}

func (t *thread) connect() error {
	ccfg := client.Config{Addr: t.cfg.Servers[0], Seeds: t.cfg.Servers[1:], AuthToken: t.cfg.AuthToken,
		BatchBytes: t.cfg.BatchBytes, InFlight: t.cfg.InFlight, Transport: t.cfg.Transport}
	for range t.cfg.Sessions {
		var p pipe
		var err error
		if t.cfg.NoRoute {
			p, err = client.Dial(ccfg)
		} else {
			p, err = client.DialCluster(context.Background(), ccfg)
		}
		if err != nil {
			t.close()
			return err
		}
		t.sessions = append(t.sessions, p)
	}
	return nil
}

func (t *thread) close() {
	for _, s := range t.sessions {
		s.Close()
	}
}

// routeStats sums what the thread's Clusters counted.
func (t *thread) routeStats() client.ClusterStats {
	var st client.ClusterStats
	for _, s := range t.sessions {
		if c, ok := s.(*client.Cluster); ok {
			cs := c.Stats()
			st.Fetches += cs.Fetches
			st.Rerouted += cs.Rerouted
			st.ViewMoves += cs.ViewMoves
		}
	}
	return st
}

// drawCycle is how many precomputed draws a thread replays (16 MiB, about
// 0.15 s to draw); a power of two.
const drawCycle = 1 << 21

// globalSessions is how many sessions share the keys in verify mode.
func (t *thread) globalSessions() uint64 { return uint64(t.cfg.Threads * t.cfg.Sessions) }

// pick draws the next key and operation and the session that owns them.
func (t *thread) pick(j int) (uint64, uint8) {
	var k uint64
	if t.drawn != nil {
		k = t.drawn[t.next&(drawCycle-1)]
		t.next++
	} else {
		k = t.gen.Next(t.rng)
	}
	if t.cfg.Verify { // move the key into this session's share
		g := t.globalSessions()
		k = k - k%g + uint64(t.id*t.cfg.Sessions+j)
		if k >= t.cfg.Keys {
			k -= g
		}
	}
	p := int(t.rng.Uint64() % 100)
	switch {
	case p < t.mix[0]:
		return k, kindRead
	case p < t.mix[0]+t.mix[1]:
		return k, kindUpsert
	}
	return k, kindAdd
}

// session returns session j for key k, with the key encoded in t.key:
// a Cluster routes it to the server owning its slot.
func (t *thread) session(k uint64, j int) pipe {
	binary.LittleEndian.PutUint64(t.key, k+t.cfg.KeyOffset)
	return t.sessions[j]
}

// issue queues one operation on key k.
func (t *thread) issue(k uint64, kind uint8, j int) error {
	s := t.session(k, j)
	sl := &t.slots[t.seq&t.mask]
	for sl.busy { // the ring wrapped onto an unanswered operation: drain
		if err := s.Wait(); err != nil {
			return err
		}
		if sl.busy {
			t.waitAll()
		}
	}
	t.seq++
	sl.busy, sl.kind, sl.key, sl.expect = true, kind, k, 0
	sl.start = int64(time.Since(t.base))
	switch kind {
	case kindRead:
		if t.model != nil {
			sl.expect = t.model.vers[t.model.at(k)]
		}
		return s.Read(t.key, sl.cb)
	case kindUpsert:
		ver := uint64(0) // the load phase writes version 0
		if t.model != nil && t.cfg.Workload != "load" {
			i := t.model.at(k)
			ver = t.model.vers[i] + 1
			t.model.vers[i] = ver
		}
		fillValue(t.val, k, ver)
		if t.cfg.TTL > 0 {
			return s.UpsertExpiring(t.key, t.val, time.Now().Add(t.cfg.TTL).UnixMilli(), sl.cb)
		}
		return s.Upsert(t.key, t.val, sl.cb)
	}
	if t.model != nil {
		t.model.adds[t.model.at(k)]++
	}
	return s.Add(t.key, 1, sl.cb)
}

// waitAll completes every outstanding operation of the thread.
func (t *thread) waitAll() error {
	for _, s := range t.sessions {
		if err := s.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// done is every operation's callback.
func (sl *slot) done(r client.Result) {
	t := sl.t
	sl.busy = false
	now := int64(time.Since(t.base))
	t.done.Add(1)
	if r.Err != nil {
		t.errs.Add(1)
		t.report("operation on key %d failed: %v", sl.key, r.Err)
	} else if t.cfg.Verify && sl.kind == kindRead {
		t.check(sl, r)
	}
	if sl.start >= t.measure {
		us := (now - sl.start) / 1000
		t.hist.RecordValue(max(us, 1))
		t.interval.RecordValue(max(us, 1))
		t.measured++
		t.lastDone = now
	}
}

// fillValue writes the value of version ver of key k: a mix of both, then
// the version when there is room, then that pattern repeated. A value thus
// names its key and version, so a reader can tell a value of its key from
// anything else even when it does not know the version.
func fillValue(v []byte, k, ver uint64) {
	binary.LittleEndian.PutUint64(v, mixKey(k, ver))
	n := 8
	if len(v) >= 16 {
		binary.LittleEndian.PutUint64(v[8:], ver)
		n = 16
	}
	for i := n; i < len(v); i += copy(v[i:], v[:n]) {
	}
}

func mixKey(k, ver uint64) uint64 {
	x := k*0x9e3779b97f4a7c15 ^ ver*0xc2b2ae3d27d4eb4f
	x ^= x >> 31
	return x*0x94d049bb133111eb ^ x>>29
}
