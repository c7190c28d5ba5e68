package store

// BenchmarkYCSB runs the FASTER paper's YCSB mixes against fleetkv and, in the
// same run and on the same pre-generated key streams, against its peers:
//
//	map     256 shards of map[string][]byte, each behind an RWMutex: the
//	        naive Go key-value store with fleetkv's contract (byte-slice keys
//	        and values, a read copies the value out)
//	xsync   puzpuzpuz/xsync MapOf[string, []byte]: the best general-purpose
//	        concurrent Go map; values are immutable, so an update stores a
//	        new slice
//	mapu64  256 shards of map[uint64]uint64: a map specialized to 8-byte
//	        keys and values, which fleetkv's general path cannot be; reported
//	        so that the cost of generality is visible
//
//	go test -run '^$' -bench 'YCSB/B/zipf/10M/w1' ./store/
//
// Keys and values are 8 bytes. Loading is not timed. The workers share one
// pre-generated stream of operations and take its chunks in a fixed
// round-robin order, so a run of b.N operations performs the same
// operations at every worker count, and no operation repeats within a run
// of up to streamLen operations. (FASTER's driver also shares one array of
// operations, but hands out its chunks as workers ask for them; a fixed
// order gives each worker the same share in every run, and a descheduled
// worker lengthens the run instead of leaving its chunks to the others.)

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"golang.org/x/sys/cpu"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/keyhash"
	"github.com/fleetkv/fleetkv/loadgen/keydist"
)

// ycsbMix is the share of reads and upserts; the rest are RMWs.
type ycsbMix struct {
	name          string
	read, upsert  int // percent
	readModifyWrt int // percent
}

var ycsbMixes = []ycsbMix{
	{"A", 50, 50, 0},
	{"B", 95, 5, 0},
	{"C", 100, 0, 0},
	{"F", 0, 0, 100},
}

const (
	opRead = iota
	opUpsert
	opRMW
)

// streamLen is how many operations the shared stream holds (128 MiB): a
// run repeats operations only past it. (Each worker used to cycle through
// a stream of 1 Mi operations of its own, so the fewer the workers, the
// more often a run went over the same keys.)
const streamLen = 1 << 24

// kv is one peer under test.
type kv interface {
	session() kvSession
	close()
}

type kvSession interface {
	do(op uint8, key uint64) // one operation on an 8-byte key
	done()
}

// streams caches the one stream generated last: the sub-benchmarks run
// mix by mix, so every peer and worker count of a mix reuses it. A new mix
// rewrites the buffer in place, which is safe because benchmarks run one at
// a time and runYCSB waits for its workers before it returns.
var streams struct {
	sync.Mutex
	id string
	s  []uint64
}

// stream returns the operations of a mix: key in the low 56 bits, op above.
func stream(mix ycsbMix, dist string, keys uint64) []uint64 {
	id := fmt.Sprint(mix.name, dist, keys)
	streams.Lock()
	defer streams.Unlock()
	if streams.id == id {
		return streams.s
	}
	gen, err := keydist.New(dist, keys)
	if err != nil {
		panic(err)
	}
	rng := keydist.NewRand(7919 + keys)
	s := streams.s
	if s == nil {
		s = make([]uint64, streamLen)
	}
	for i := range s {
		op := uint64(opRMW)
		switch p := int(rng.Uint64() % 100); {
		case p < mix.read:
			op = opRead
		case p < mix.read+mix.upsert:
			op = opUpsert
		}
		s[i] = op<<56 | gen.Next(rng)
	}
	streams.id, streams.s = id, s
	return s
}

// loaded caches loaded stores by peer and key count: loading 10 M keys takes
// seconds, and the mixes only update existing keys.
var loaded = map[string]kv{}

func loadedPeer(b *testing.B, peer string, keys uint64) kv {
	id := fmt.Sprint(peer, keys)
	if s, ok := loaded[id]; ok {
		return s
	}
	var s kv
	switch peer {
	case "fleetkv":
		s = newFleetKV(b, keys)
	case "fleetkv-ttl":
		f := newFleetKV(b, keys)
		f.expireAt = time.Now().Add(24 * time.Hour).UnixMilli()
		s = f
	case "map":
		s = newBytesMap()
	case "xsync":
		s = &xsyncKV{m: xsync.NewMapOf[string, []byte](xsync.WithPresize(int(keys)))}
	case "mapu64":
		s = newShardedMap()
	}
	load(s, keys)
	loaded[id] = s
	return s
}

// load inserts keys 0..n-1 from two workers.
func load(s kv, n uint64) {
	var wg sync.WaitGroup
	for w := uint64(0); w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ss := s.session()
			defer ss.done()
			for k := w; k < n; k += 2 {
				ss.do(opUpsert, k)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkYCSB(b *testing.B) {
	eachYCSB(b, func(b *testing.B, mix ycsbMix, dist string, keys uint64, workers int) {
		for _, peer := range peers {
			b.Run(peer, func(b *testing.B) {
				runYCSB(b, loadedPeer(b, peer, keys), mix, dist, keys, workers)
			})
		}
	})
}

// eachYCSB runs fn as the sub-benchmark <mix>/<dist>/<keys>/w<workers> of
// every configuration.
func eachYCSB(b *testing.B, fn func(b *testing.B, mix ycsbMix, dist string, keys uint64, workers int)) {
	for _, mix := range ycsbMixes {
		b.Run(mix.name, func(b *testing.B) {
			for _, dist := range []string{"uniform", "zipf"} {
				b.Run(dist, func(b *testing.B) {
					for _, keys := range []uint64{1 << 20, 10_000_000} {
						b.Run(sizeName(keys), func(b *testing.B) {
							for _, workers := range benchWorkers() {
								b.Run(fmt.Sprint("w", workers), func(b *testing.B) {
									fn(b, mix, dist, keys, workers)
								})
							}
						})
					}
				})
			}
		})
	}
}

// peers: fleetkv-ttl is fleetkv with every value written with an expiry
// (a day ahead: none expires), the cost of expiry to the records that have
// one.
var peers = []string{"fleetkv", "fleetkv-ttl", "map", "xsync", "mapu64"}

// benchWorkers is the worker counts the YCSB benchmarks run: 1 and 2, or
// the comma-separated list in $FLEETKV_BENCH_WORKERS (scaling runs on a
// machine with more cores: 1,2,4,8,16).
func benchWorkers() []int {
	env := os.Getenv("FLEETKV_BENCH_WORKERS")
	if env == "" {
		return []int{1, 2}
	}
	var ws []int
	for _, f := range strings.Split(env, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || w < 1 {
			panic(fmt.Sprintf("FLEETKV_BENCH_WORKERS=%q: want worker counts such as 1,2,4", env))
		}
		ws = append(ws, w)
	}
	return ws
}

func sizeName(keys uint64) string {
	if keys == 1<<20 {
		return "1M"
	}
	return fmt.Sprintf("%dM", keys/1_000_000)
}

func runYCSB(b *testing.B, s kv, mix ycsbMix, dist string, keys uint64, workers int) {
	st := stream(mix, dist, keys)
	sessions := make([]kvSession, workers)
	for w := range sessions {
		sessions[w] = s.session()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range sessions {
		wg.Add(1)
		go func(sess kvSession, first int) {
			defer wg.Done()
			runChunks(sess, st, first, workers, b.N)
		}(sessions[w], w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	for _, sess := range sessions {
		sess.done()
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds()/1e6, "Mops/s")
}

// runChunks runs chunks first, first+step, ... of the first n operations of
// st, batchOps operations a chunk (streamLen is a multiple of batchOps).
func runChunks(sess kvSession, st []uint64, first, step, n int) {
	bs, batched := sess.(interface{ doBatch([]uint64) })
	for i := first * batchOps; i < n; i += step * batchOps {
		j := i & (streamLen - 1)
		ops := st[j : j+min(batchOps, n-i)]
		if batched {
			bs.doBatch(ops)
			continue
		}
		for _, x := range ops {
			sess.do(uint8(x>>56), x&(1<<56-1))
		}
	}
}

// fleetkv: 8-byte little-endian keys and values as byte slices.

type fleetKV struct {
	st       *Store
	expireAt int64 // the expiry upserts give their values (0: none)
}

func newFleetKV(b *testing.B, keys uint64) *fleetKV {
	bits := uint(1)
	for uint64(1)<<bits < keys/4 { // about 2.4 keys per 7-entry bucket
		bits++
	}
	st, err := Open(Config{IndexBits: bits, Log: hlog.Config{MemoryBytes: 2 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	return &fleetKV{st: st}
}

func (f *fleetKV) close() { f.st.Close() }

func (f *fleetKV) session() kvSession {
	s, err := f.st.NewSession()
	if err != nil {
		panic(err)
	}
	return &fleetSession{s: s, buf: make([]byte, 0, 64), expireAt: f.expireAt}
}

type fleetSession struct {
	s        *Session
	key, val [8]byte
	buf      []byte
	expireAt int64
}

var one = i64(1)

func (f *fleetSession) do(op uint8, k uint64) {
	binary.LittleEndian.PutUint64(f.key[:], k)
	var err error
	switch op {
	case opRead:
		f.buf, _, err = f.s.Read(f.key[:], f.buf[:0])
	case opUpsert:
		binary.LittleEndian.PutUint64(f.val[:], k)
		if f.expireAt != 0 {
			_, err = f.s.UpsertExpiring(f.key[:], keyhash.Hash(f.key[:]), f.val[:], f.expireAt)
		} else {
			_, err = f.s.Upsert(f.key[:], f.val[:])
		}
	default:
		_, err = f.s.RMW(f.key[:], one, Int64Add{})
	}
	if err != nil {
		panic(err)
	}
}

func (f *fleetSession) done() { f.s.Close() }

// map: 256 shards of map[string][]byte, each behind an RWMutex.

type bytesShard struct {
	sync.RWMutex
	m map[string][]byte
	_ [40]byte
}

type bytesMap struct {
	seed   maphash.Seed
	shards [256]bytesShard
}

func newBytesMap() *bytesMap {
	m := &bytesMap{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = map[string][]byte{}
	}
	return m
}

func (m *bytesMap) close()             {}
func (m *bytesMap) session() kvSession { return &bytesSession{m: m, buf: make([]byte, 0, 64)} }

type bytesSession struct {
	m        *bytesMap
	key, val [8]byte
	buf      []byte
}

func (s *bytesSession) done() {}

func (s *bytesSession) do(op uint8, k uint64) {
	binary.LittleEndian.PutUint64(s.key[:], k)
	sh := &s.m.shards[maphash.Bytes(s.m.seed, s.key[:])>>56]
	switch op {
	case opRead:
		sh.RLock()
		s.buf = append(s.buf[:0], sh.m[string(s.key[:])]...)
		sh.RUnlock()
	case opUpsert:
		binary.LittleEndian.PutUint64(s.val[:], k)
		sh.Lock()
		if v, ok := sh.m[string(s.key[:])]; ok && len(v) == len(s.val) {
			copy(v, s.val[:])
		} else {
			sh.m[string(s.key[:])] = append([]byte(nil), s.val[:]...)
		}
		sh.Unlock()
	default:
		sh.Lock()
		if v, ok := sh.m[string(s.key[:])]; ok && len(v) == 8 {
			binary.LittleEndian.PutUint64(v, binary.LittleEndian.Uint64(v)+1)
		} else {
			sh.m[string(s.key[:])] = i64(1)
		}
		sh.Unlock()
	}
}

// xsync: MapOf[string, []byte]; stored slices are never modified.

type xsyncKV struct{ m *xsync.MapOf[string, []byte] }

func (x *xsyncKV) close()             {}
func (x *xsyncKV) session() kvSession { return &xsyncSession{m: x.m, buf: make([]byte, 0, 64)} }

type xsyncSession struct {
	m   *xsync.MapOf[string, []byte]
	key [8]byte
	buf []byte
}

func (s *xsyncSession) done() {}

func addOneBytes(old []byte, loaded bool) ([]byte, bool) {
	var n uint64
	if loaded && len(old) == 8 {
		n = binary.LittleEndian.Uint64(old)
	}
	return binary.LittleEndian.AppendUint64(make([]byte, 0, 8), n+1), false
}

func (s *xsyncSession) do(op uint8, k uint64) {
	binary.LittleEndian.PutUint64(s.key[:], k)
	switch op {
	case opRead:
		v, _ := s.m.Load(string(s.key[:]))
		s.buf = append(s.buf[:0], v...)
	case opUpsert:
		s.m.Store(string(s.key[:]), binary.LittleEndian.AppendUint64(make([]byte, 0, 8), k))
	default:
		s.m.Compute(string(s.key[:]), addOneBytes)
	}
}

// mapu64: 256 shards of map[uint64]uint64, each behind an RWMutex.

type mapShard struct {
	sync.RWMutex
	m map[uint64]uint64
	_ [40]byte
}

type shardedMap struct{ shards [256]mapShard }

func newShardedMap() *shardedMap {
	m := &shardedMap{}
	for i := range m.shards {
		m.shards[i].m = map[uint64]uint64{}
	}
	return m
}

func (m *shardedMap) close()             {}
func (m *shardedMap) session() kvSession { return mapSession{m} }

type mapSession struct{ m *shardedMap }

func (s mapSession) done() {}

func (s mapSession) do(op uint8, k uint64) {
	sh := &s.m.shards[(k*0x9e3779b97f4a7c15)>>56]
	switch op {
	case opRead:
		sh.RLock()
		_ = sh.m[k]
		sh.RUnlock()
	case opUpsert:
		sh.Lock()
		sh.m[k] = k
		sh.Unlock()
	default:
		sh.Lock()
		sh.m[k]++
		sh.Unlock()
	}
}

// BenchmarkYCSBBatched runs fleetkv the way a server loop runs a request
// batch: the stream in chunks, each executed with the batch prefetch of
// server/exec.go (hash once, bucket prefetched batchBucketAhead operations
// ahead, record batchRecordAhead ahead). It is the engine figure the
// server's per-operation cost is compared with.
func BenchmarkYCSBBatched(b *testing.B) {
	eachYCSB(b, func(b *testing.B, mix ycsbMix, dist string, keys uint64, workers int) {
		f := loadedPeer(b, "fleetkv", keys).(*fleetKV)
		runYCSB(b, batchedFleetKV{f}, mix, dist, keys, workers)
	})
}

// The server's prefetch distances (server/exec.go) and a batch's size in
// operations (a 32 KiB batch of 8-byte keys holds about 2000).
const (
	batchBucketAhead = 8
	batchRecordAhead = 4
	batchWindow      = 16
	batchOps         = 1024
)

type batchedFleetKV struct{ *fleetKV }

func (f batchedFleetKV) session() kvSession {
	return &batchedSession{fleetSession: f.fleetKV.session().(*fleetSession)}
}

// batchedSession's pads keep the arrays every operation writes off the
// cache lines of another worker's session.
type batchedSession struct {
	_ cpu.CacheLinePad
	*fleetSession
	keys [batchWindow][8]byte
	h    [batchWindow]uint64
	_    cpu.CacheLinePad
}

// doBatch executes ops (stream entries) with the server's prefetch pipeline.
func (f *batchedSession) doBatch(ops []uint64) {
	for j := 0; j < min(batchBucketAhead, len(ops)); j++ {
		f.stage(j, ops[j])
	}
	for i, x := range ops {
		if j := i + batchBucketAhead; j < len(ops) {
			f.stage(j, ops[j])
		}
		if j := i + batchRecordAhead; j < len(ops) {
			f.s.PrefetchRecord(f.h[j&(batchWindow-1)])
		}
		f.exec(i, x)
	}
}

func (f *batchedSession) stage(j int, x uint64) {
	w := j & (batchWindow - 1)
	binary.LittleEndian.PutUint64(f.keys[w][:], x&(1<<56-1))
	f.h[w] = keyhash.Hash(f.keys[w][:])
	f.s.PrefetchBucket(f.h[w])
}

func (f *batchedSession) exec(i int, x uint64) {
	w := i & (batchWindow - 1)
	key, h := f.keys[w][:], f.h[w]
	var err error
	switch uint8(x >> 56) {
	case opRead:
		f.buf, _, err = f.s.ReadHashed(key, h, f.buf[:0])
	case opUpsert:
		binary.LittleEndian.PutUint64(f.val[:], x&(1<<56-1))
		_, err = f.s.UpsertHashed(key, h, f.val[:])
	default:
		_, err = f.s.RMWHashed(key, h, one, Int64Add{})
	}
	if err != nil {
		panic(err)
	}
}
