package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/index"
	"github.com/fleetkv/fleetkv/keyhash"
)

// Config sets up a Store. The zero value is a usable in-memory store.
type Config struct {
	// IndexBits is log2 of the initial number of index buckets. Default 20.
	IndexBits uint
	// MaxIndexBits bounds automatic growth. Default 28 (16 GiB of buckets).
	MaxIndexBits uint
	// NoAutoGrow turns off doubling the index when it holds more than
	// GrowLoadFactor entries per bucket.
	NoAutoGrow bool
	// MaxSessions bounds concurrent sessions (epoch slots). Default 128.
	MaxSessions int
	// RefreshEvery is how many operations a session runs between epoch
	// refreshes. Default 64.
	RefreshEvery int
	// MaxKeyLen bounds key length. Default 64 KiB.
	MaxKeyLen int
	// CopyReadsToTail appends a copy of every record a read brings in from
	// the device at the tail (FASTER's read-copy option), so that keys read
	// often stay in memory. The copy is skipped when the key's chain changed
	// while the read was in flight.
	CopyReadsToTail bool
	// MaxDoubts is how many blind writes over keys on the device may wait
	// to be resolved for the key count (keycount.go) before the store
	// resolves them in the background. Default 64 Ki (512 KiB of
	// addresses, about 2 s of chain walks on a disk that reads one record
	// in 30 µs with 8 walkers).
	MaxDoubts int
	// Now returns the wall-clock time in Unix milliseconds that expiry is
	// judged by (expiry.go). Default time.Now; tests give a clock they
	// move.
	Now func() int64
	// Log shapes the HybridLog (page size, memory budget, device).
	Log hlog.Config
}

const (
	defaultIndexBits    = 20
	defaultMaxIndexBits = 28
	defaultRefreshEvery = 64
	defaultMaxKeyLen    = 64 << 10
	defaultMaxDoubts    = 64 << 10
	// growLoadFactor is the entries per 7-entry bucket above which the index
	// doubles: at 4, about 5 % of buckets need an overflow bucket.
	growLoadFactor = 4
)

func (c *Config) fill() error {
	if c.IndexBits == 0 {
		c.IndexBits = defaultIndexBits
	}
	if c.MaxIndexBits == 0 {
		c.MaxIndexBits = defaultMaxIndexBits
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = epoch.DefaultSlots
	}
	if c.RefreshEvery == 0 {
		c.RefreshEvery = defaultRefreshEvery
	}
	if c.MaxKeyLen == 0 {
		c.MaxKeyLen = defaultMaxKeyLen
	}
	if c.Now == nil {
		c.Now = wallClock
	}
	if c.MaxDoubts <= 0 {
		c.MaxDoubts = defaultMaxDoubts
	}
	switch {
	case c.MaxIndexBits > index.MaxBits || c.IndexBits > c.MaxIndexBits:
		return fmt.Errorf("store: index bits %d / max %d outside 1..%d", c.IndexBits, c.MaxIndexBits, index.MaxBits)
	case c.RefreshEvery < 1 || c.MaxSessions < 1 || c.MaxKeyLen < 1:
		return fmt.Errorf("store: RefreshEvery, MaxSessions and MaxKeyLen must be positive")
	case c.MaxKeyLen > hlog.MaxKeyLen:
		return fmt.Errorf("store: MaxKeyLen %d above the record format's %d", c.MaxKeyLen, hlog.MaxKeyLen)
	}
	return nil
}

// Store is one FASTER instance: an index over a HybridLog shared by all
// sessions. Its methods are safe from any goroutine (GrowIndex with the
// caveat in its comment).
type Store struct {
	cfg    Config
	epochs *epoch.Manager
	log    *hlog.Log
	index  *index.Index
	// indirections are the installed indirection tables (indirect.go),
	// loaded by every lookup: kept beside the other read-mostly fields.
	indirections atomic.Pointer[indirections]

	growing atomic.Bool  // a growth runs; it owns grower
	grower  *epoch.Guard // the slot growth uses, reserved so sessions cannot take it
	ckpt    struct {
		sync.Mutex              // one checkpoint at a time
		g          *epoch.Guard // the slot checkpoints use, reserved like grower's
	}
	compact struct {
		sync.Mutex          // one compaction (or garbage estimate) at a time
		s          *Session // on a slot reserved like grower's
	}
	// reaping is held shared by the writers outside the sessions a Pause
	// stops that delete expired keys (ReapExpired, compaction's reaps),
	// each delete with its key count change, and exclusively by a paused
	// checkpoint and by Flush around their pause: the count they read
	// then and the records agree.
	reaping sync.RWMutex
	// mayExpire is set by writes of values with an expiry (MayExpire).
	mayExpire atomic.Bool
	// replaying is set while recovery replays the log: the log has not
	// restarted yet, so its head does not say which records are in memory,
	// and a growth (which reads in-memory records to split chains) must
	// wait until it has.
	replaying atomic.Bool
	// flushedAt is where the last Flush cut the log: no record below it is
	// reachable (see Begin).
	flushedAt atomic.Uint64
	keys      keyCount   // live keys (keycount.go)
	indirect  sync.Mutex // serialises replacing indirections
	growErr   atomic.Pointer[error]
	growAfter atomic.Int64   // unix nanos before which automatic growth does not retry
	bg        sync.WaitGroup // background growth
	closed    atomic.Bool
}

// Open creates an empty store.
func Open(cfg Config) (*Store, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	st := &Store{cfg: cfg, epochs: epoch.New(cfg.MaxSessions + 3)} // +3: the grower, the checkpointer, the compactor
	grower, err := st.epochs.Acquire()
	if err != nil {
		return nil, err
	}
	st.grower = grower
	if st.ckpt.g, err = st.epochs.Acquire(); err != nil {
		return nil, err
	}
	cg, err := st.epochs.Acquire()
	if err != nil {
		return nil, err
	}
	st.compact.s = &Session{st: st, g: cg}
	st.compact.s.pend.init(st.compact.s)
	st.keys.register(st.compact.s) // it uncounts the expired keys it reaps
	l, err := hlog.New(cfg.Log, st.epochs)
	if err != nil {
		return nil, err
	}
	ix, err := index.New(cfg.IndexBits, st.epochs, st)
	if err != nil {
		l.Close()
		return nil, err
	}
	st.log, st.index = l, ix
	return st, nil
}

// Close waits for background work and frees memory. Every session must be
// closed first. The log's device stays open: its owner closes it.
func (st *Store) Close() error {
	if st.closed.Swap(true) {
		return ErrClosed
	}
	st.bg.Wait()
	st.compact.Lock() // a compaction still running ends first: callers cancel its context before
	defer st.compact.Unlock()
	st.grower.Release()
	st.ckpt.g.Release()
	st.compact.s.g.Release()
	st.index.Close()
	return st.log.Close()
}

// Log returns the store's HybridLog, for stats and tests.
func (st *Store) Log() *hlog.Log { return st.log }

// Step implements index.Chain: the hash and chain link of an in-memory record.
func (st *Store) Step(addr uint64) (hash, prev uint64, inMemory bool) {
	if addr < st.log.Head() {
		return 0, 0, false
	}
	r := st.log.Record(addr)
	return keyhash.Hash(r.Key()), r.Header().Prev(), true
}

// GrowIndex doubles the index now, while sessions keep working, and returns
// when it is done (or index.ErrGrowing if a growth is already running). It
// waits for every protected session to refresh, so the calling goroutine
// must not hold a protected Session of its own (Suspend it first).
func (st *Store) GrowIndex() error {
	if st.closed.Load() {
		return ErrClosed
	}
	if !st.growing.CompareAndSwap(false, true) {
		return index.ErrGrowing
	}
	defer st.growing.Store(false)
	return st.index.Grow(st.grower)
}

// maybeGrow starts a background doubling when the index is crowded. After a
// failed growth (no memory for the new table) it waits a minute before it
// tries again.
func (st *Store) maybeGrow() {
	if st.cfg.NoAutoGrow || st.growing.Load() || st.closed.Load() || st.replaying.Load() {
		return
	}
	if !st.indexFull() || st.index.Bits() >= st.cfg.MaxIndexBits || time.Now().UnixNano() < st.growAfter.Load() {
		return
	}
	if !st.growing.CompareAndSwap(false, true) {
		return
	}
	st.bg.Add(1)
	go func() {
		defer st.bg.Done()
		defer st.growing.Store(false)
		switch err := st.index.Grow(st.grower); {
		case errors.Is(err, index.ErrGrowing): // an index snapshot holds growth off: retry soon
			st.growAfter.Store(time.Now().Add(10 * time.Millisecond).UnixNano())
		case err != nil:
			st.growErr.Store(&err)
			st.growAfter.Store(time.Now().Add(time.Minute).UnixNano())
		}
	}()
}

// indexFull reports whether the index should double: on average more than
// growLoadFactor entries per bucket, or crowded where keys are. Buckets come
// from the hash's high bits, its slot, so a server that owns a third of the
// slots fills a third of its buckets (and keys sharing a {tag} share a
// slot's buckets): when overflow buckets pass an eighth of the main ones,
// the index doubles too, as long as it has fewer buckets than entries (a
// bound on the memory a few crowded slots can claim).
func (st *Store) indexFull() bool {
	if st.index.LoadFactor() >= growLoadFactor {
		return true
	}
	s := st.index.Stats()
	return s.OverflowBuckets > s.Buckets/8 && int64(s.Buckets) < s.Entries
}

// Stats is a snapshot of the store's shape.
type Stats struct {
	Index     index.Stats
	Log       hlog.Markers
	Epoch     EpochStats
	GrowError string `json:",omitempty"` // the last automatic growth's failure
	// Keys is the live-key count as it stands, without resolving doubts
	// (blind writes over keys on the device, counted as new keys until
	// resolved; Store.Keys resolves them); Doubts how many wait.
	Keys      int64
	Doubts    int
	KeysError string `json:",omitempty"` // why the recovered count may be off
	// IndirectionTables and IndirectionChains: the installed tables of
	// indirection records (indirect.go) and the chains they send into
	// other logs; both 0 once every move is resolved.
	IndirectionTables int `json:",omitempty"`
	IndirectionChains int `json:",omitempty"`
}

// EpochStats show how far the slowest session lags: Current - Safe epochs,
// and the actions (page flushes, evictions, growth phases) waiting for it.
type EpochStats struct {
	Current, Safe  uint64
	PendingActions int
}

// Stats returns the index shape, log markers and epoch state.
func (st *Store) Stats() Stats {
	s := Stats{Index: st.index.Stats(), Log: st.log.Markers(), Epoch: EpochStats{
		Current: st.epochs.Current(), Safe: st.epochs.Safe(), PendingActions: st.epochs.Pending()}}
	if e := st.growErr.Load(); e != nil {
		s.GrowError = (*e).Error()
	}
	s.Keys, s.Doubts = st.keys.stats()
	s.KeysError = st.keys.err
	for _, t := range st.tables() {
		s.IndirectionTables++
		s.IndirectionChains += t.Len()
	}
	return s
}
