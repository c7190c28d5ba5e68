package hlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/epoch"
	"github.com/fleetkv/fleetkv/ssd"
)

func newTestLog(t *testing.T, cfg Config) (*Log, *epoch.Manager, *ssd.MemDevice) {
	t.Helper()
	dev := ssd.NewMemDevice()
	l, em := newTestLogOn(t, cfg, dev)
	return l, em, dev
}

// newTestLogOn is newTestLog over dev, which it closes at the end.
func newTestLogOn(t *testing.T, cfg Config, dev ssd.Device) (*Log, *epoch.Manager) {
	t.Helper()
	cfg.Device = dev
	em := epoch.New(16)
	l, err := New(cfg, em)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); dev.Close() })
	return l, em
}

// appendRecord allocates and publishes one record, refreshing and retrying
// while the tail waits for a frame, as a store operation does.
func appendRecord(t testing.TB, l *Log, g *epoch.Guard, key, value []byte, prev uint64) uint64 {
	size := RecordSize(len(key), len(value))
	for spins := 0; ; spins++ {
		addr, err := l.Allocate(size)
		if errors.Is(err, ErrRetryLater) {
			if spins > 1_000_000 {
				t.Fatalf("allocation never succeeded: %+v", l.Markers())
			}
			g.Refresh()
			runtime.Gosched() // let a descheduled protected worker reach its refresh
			continue
		}
		if err != nil {
			t.Fatalf("Allocate(%d): %v", size, err)
		}
		r := l.Record(addr)
		copy(r.Init(key, len(value), len(value)), value)
		r.Publish(MakeHeader(prev, 0, false))
		return addr
	}
}

type written struct {
	addr       uint64
	key, value []byte
}

// readBack returns the record at addr from memory or, below head, from the
// device.
func readBack(t *testing.T, l *Log, dev *ssd.MemDevice, addr uint64) (Header, []byte, []byte) {
	t.Helper()
	if addr >= l.Head() {
		r := l.Record(addr)
		v, h := r.ReadValue(nil)
		return h, append([]byte(nil), r.Key()...), v
	}
	buf := make([]byte, l.PageSize())
	var res ioResult
	dev.ReadAsync(buf, addr, &res)
	if res.err != nil {
		t.Fatal(res.err)
	}
	h, kl, vc, vl, ok := DecodePrefix(buf)
	if !ok || PrefixSize+kl+vc > len(buf) {
		t.Fatalf("bad prefix at %d", addr)
	}
	return h, buf[PrefixSize : PrefixSize+kl], buf[PrefixSize+kl : PrefixSize+kl+vl]
}

type ioResult struct {
	n   int
	err error
}

func (r *ioResult) IODone(n int, err error) { *r = ioResult{n, err} }

func TestConfigValidation(t *testing.T) {
	em := epoch.New(1)
	for _, cfg := range []Config{
		{PageBits: 11},
		{PageBits: 31},
		{PageBits: 12, MemoryBytes: 3 << 12},
		{PageBits: 12, MemoryBytes: 1 << 16, MutableFraction: 1.5},
	} {
		if l, err := New(cfg, em); err == nil {
			l.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestAllocateRejectsRecordsLargerThanAPage(t *testing.T) {
	l, _, _ := newTestLog(t, Config{PageBits: 12, MemoryBytes: 4 << 12})
	if _, err := l.Allocate(1<<12 + 8); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if _, err := l.Allocate(1 << 12); err != nil {
		t.Fatalf("a record of exactly one page: %v", err)
	}
}

// TestPageTurnsFlushAndEvict writes many pages through a 4-frame buffer and
// checks every record, in memory or on the device, and the marker order.
func TestPageTurnsFlushAndEvict(t *testing.T) {
	for _, frac := range []float64{0.1, 0.5, 0.9, 1} {
		t.Run(fmt.Sprint(frac), func(t *testing.T) {
			l, em, dev := newTestLog(t, Config{PageBits: 12, MemoryBytes: 4 << 12, MutableFraction: frac})
			g, _ := em.Acquire()
			g.Protect()
			defer g.Release()
			rng := rand.New(rand.NewPCG(1, 2))
			var ws []written
			for i := 0; l.Tail() < 40<<12; i++ {
				key := binary.LittleEndian.AppendUint64(nil, uint64(i))
				value := bytes.Repeat([]byte{byte(i)}, rng.IntN(600))
				ws = append(ws, written{appendRecord(t, l, g, key, value, uint64(i)), key, value})
				if i%8 == 0 {
					g.Refresh()
				}
			}
			l.checkMarkers()
			m := l.Markers()
			if m.Head < 30<<12 || m.FlushedUntil < m.Head || m.ReadOnly+uint64(l.MutablePages())<<12 < m.Tail {
				t.Fatalf("markers did not follow the tail: %+v (mutable pages %d)", m, l.MutablePages())
			}
			for i, w := range ws {
				h, k, v := readBack(t, l, dev, w.addr)
				if h.Prev() != uint64(i) || !bytes.Equal(k, w.key) || !bytes.Equal(v, w.value) {
					t.Fatalf("record %d at %d (head %d): prev %d key %x value len %d", i, w.addr, m.Head, h.Prev(), k, len(v))
				}
				if w.addr&l.pageMask+RecordSize(len(w.key), len(w.value)) > l.PageSize() {
					t.Fatalf("record %d crosses a page", i)
				}
			}
			var seen int
			if err := l.ScanMemory(l.Head(), l.Tail(), func(addr uint64, r Record) bool { seen++; return true }); err != nil {
				t.Fatal(err)
			}
			if seen == 0 {
				t.Fatal("scan of memory found no record")
			}
		})
	}
}

// TestProtectedReaderHoldsItsFrame: a worker that stays in its epoch keeps the
// page it reads in memory; the allocator waits instead of reusing the frame.
func TestProtectedReaderHoldsItsFrame(t *testing.T) {
	l, em, _ := newTestLog(t, Config{PageBits: 12, MemoryBytes: 4 << 12})
	writer, _ := em.Acquire()
	reader, _ := em.Acquire()
	writer.Protect()
	addr := appendRecord(t, l, writer, []byte("pinned"), []byte("value"), 0)
	reader.Protect()
	r := l.Record(addr)
	filled := false
	for i := 0; i < 100_000; i++ {
		size := RecordSize(8, 500)
		a, err := l.Allocate(size)
		if errors.Is(err, ErrRetryLater) {
			writer.Refresh()
			if l.Tail() >= 3<<12 {
				filled = true
				break
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		rec := l.Record(a)
		rec.Init([]byte("filler!!"), 500, 500)
		rec.Publish(MakeHeader(0, 0, false))
	}
	if !filled {
		t.Fatalf("allocator never reached the frame held by the reader: %+v", l.Markers())
	}
	if l.safeHead.Load() > addr {
		t.Fatalf("frame of %d freed while a reader is protected: %+v", addr, l.Markers())
	}
	if v, _ := r.ReadValue(nil); string(v) != "value" || string(r.Key()) != "pinned" {
		t.Fatalf("protected record changed: %q=%q", r.Key(), v)
	}
	reader.Release()
	appendRecord(t, l, writer, []byte("after"), make([]byte, 500), 0)
	writer.Release()
}

func TestConcurrentAppendersNeverOverlap(t *testing.T) {
	const workers, perWorker = 4, 3000
	l, em, dev := newTestLog(t, Config{PageBits: 13, MemoryBytes: 8 << 13, MutableFraction: 0.5})
	addrs := make([][]written, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		g, _ := em.Acquire()
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			defer g.Release()
			g.Protect()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < perWorker; i++ {
				key := fmt.Appendf(nil, "w%d-k%d", w, i)
				value := bytes.Repeat([]byte{byte(w*31 + i)}, rng.IntN(300))
				addrs[w] = append(addrs[w], written{appendRecord(t, l, g, key, value, uint64(w)), key, value})
				if i%16 == 0 {
					g.Refresh()
				}
			}
		}(w)
	}
	wg.Wait()
	l.checkMarkers()
	seen := map[uint64]bool{}
	for w := range addrs {
		for _, x := range addrs[w] {
			if seen[x.addr] {
				t.Fatalf("address %d handed out twice", x.addr)
			}
			seen[x.addr] = true
			h, k, v := readBack(t, l, dev, x.addr)
			if h.Prev() != uint64(w) || !bytes.Equal(k, x.key) || !bytes.Equal(v, x.value) {
				t.Fatalf("worker %d record %q at %d damaged", w, x.key, x.addr)
			}
		}
	}
	var scanned int
	if err := l.ScanMemory(l.Head(), l.Tail(), func(addr uint64, r Record) bool {
		if !seen[addr] {
			t.Errorf("scan found a record at %d nobody wrote", addr)
		}
		scanned++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if scanned == 0 {
		t.Fatal("no record left in memory")
	}
}

func TestInPlaceUpdateNeverTearsAReader(t *testing.T) {
	l, em, _ := newTestLog(t, Config{PageBits: 12, MemoryBytes: 4 << 12})
	g, _ := em.Acquire()
	g.Protect()
	addr := appendRecord(t, l, g, []byte("k"), bytes.Repeat([]byte{0}, 256), 0)
	g.Release()
	r := l.Record(addr)
	var stop atomic.Bool
	var updates atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; !stop.Load(); i++ {
			h, ok := r.Lock()
			if !ok {
				t.Error("lock failed on a valid record")
				return
			}
			n := 1 + i%256
			v := r.Value()[:n]
			for j := range v {
				v[j] = byte(i)
			}
			r.Unlock(h, n)
			updates.Store(int64(i))
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	var buf []byte
	reads := 0
	for start := time.Now(); time.Since(start) < 300*time.Millisecond || reads < 1000; reads++ {
		buf, _ = r.ReadValue(buf[:0])
		for _, c := range buf {
			if c != buf[0] {
				t.Fatalf("torn value after %d reads and %d updates: %v", reads, updates.Load(), buf)
			}
		}
	}
	if updates.Load() < 1000 {
		t.Fatalf("only %d updates overlapped %d reads", updates.Load(), reads)
	}
}

// flushedLog returns a log of 4 KiB pages whose records (key i, a value
// of valueLen(i) bytes i, chained to address i) reach past until, with
// every page below FlushedUntil on its device.
func flushedLog(t *testing.T, until uint64, valueLen func(i int) int) (*Log, *ssd.MemDevice, []written) {
	t.Helper()
	l, em, dev := newTestLog(t, Config{PageBits: 12, MemoryBytes: 4 << 12})
	g, _ := em.Acquire()
	g.Protect()
	var ws []written
	for i := 0; l.FlushedUntil() < until; i++ {
		key := binary.LittleEndian.AppendUint64(nil, uint64(i))
		value := bytes.Repeat([]byte{byte(i)}, valueLen(i))
		ws = append(ws, written{appendRecord(t, l, g, key, value, uint64(i)), key, value})
		g.Refresh()
	}
	g.Release()
	for !l.flush.settled() { // the flusher may still be writing requested pages
		time.Sleep(time.Millisecond)
	}
	return l, dev, ws
}

// TestScanDeviceStopsAtDamage: a device scan returns every flushed record,
// each with a holding checksum, and stops at the first damaged one: bytes
// never written, a garbled byte, a torn page.
func TestScanDeviceStopsAtDamage(t *testing.T) {
	l, dev, ws := flushedLog(t, 20<<12, func(i int) int { return 10 + i%300 })
	flushed := l.FlushedUntil()
	scan := func(to uint64) (int, uint64, error) {
		i := 0
		end, err := ScanDevice(dev, 12, FirstAddress, to, func(addr uint64, rec []byte) error {
			w := ws[i]
			_, kl, _, _, _ := DecodePrefix(rec)
			if addr != w.addr || !bytes.Equal(rec[PrefixSize:PrefixSize+kl], w.key) || !bytes.Equal(rec[PrefixSize+kl:], w.value) {
				return fmt.Errorf("record %d: at %d, want %d", i, addr, w.addr)
			}
			i++
			return nil
		})
		return i, end, err
	}
	n, end, err := scan(flushed)
	if err != nil || end != flushed || n == 0 || ws[n-1].addr >= flushed || (n < len(ws) && ws[n].addr < flushed) {
		t.Fatalf("clean scan: %d records, end %d of %d: %v", n, end, flushed, err)
	}
	if _, end, err := scan(flushed + 3<<12); !errors.Is(err, ErrTorn) || end != flushed {
		t.Fatalf("scan past the flushed log: end %d (want %d): %v", end, flushed, err)
	}
	write := func(p []byte, off uint64) {
		done := make(scanWait, 1)
		dev.WriteAsync(p, off, done)
		if r := <-done; r.err != nil {
			t.Fatal(r.err)
		}
	}
	victim := ws[n/2]
	write([]byte{0xff}, victim.addr+PrefixSize+1) // a key byte
	if got, end, err := scan(flushed); !errors.Is(err, ErrTorn) || end != victim.addr || got != n/2 {
		t.Fatalf("garbled record %d at %d: scan saw %d, stopped at %d: %v", n/2, victim.addr, got, end, err)
	}
	tornPage := (ws[n/4].addr >> 12) << 12
	write(make([]byte, 2048), tornPage+2048) // the second half of a page lost
	got, end, err := scan(flushed)
	if !errors.Is(err, ErrTorn) || end <= tornPage || end > tornPage+2048 || ws[got].addr != end {
		t.Fatalf("torn page at %d: scan saw %d records, stopped at %d: %v", tornPage, got, end, err)
	}
}

// TestParseRecordAgreesWithReadRecord: over the bytes of a flushed log,
// ParseRecord returns each record as ReadRecord reads it, asks for the
// bytes it lacks when given part of one (the prefix first), and finds a
// garbled record corrupt.
func TestParseRecordAgreesWithReadRecord(t *testing.T) {
	l, dev, ws := flushedLog(t, 8<<12, func(i int) int { return 1 + i%900 })
	flushed := l.FlushedUntil()
	logBytes := make([]byte, flushed)
	if err := ReadPage(dev, logBytes[FirstAddress:], FirstAddress); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, w := range ws {
		if w.addr+PrefixSize >= flushed {
			break
		}
		want, _, err := ReadRecord(dev, w.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		rest := logBytes[w.addr:]
		rec, need, err := ParseRecord(rest, w.addr)
		if err != nil || !bytes.Equal(rec, want) || need != len(want) {
			t.Fatalf("record at %d: %d bytes, need %d, %v; ReadRecord read %d", w.addr, len(rec), need, err, len(want))
		}
		if rec, need, err := ParseRecord(rest[:len(want)-1], w.addr); rec != nil || need != len(want) || err != nil {
			t.Fatalf("all but a byte of the record at %d: %d bytes, need %d (want %d), %v", w.addr, len(rec), need, len(want), err)
		}
		if rec, need, err := ParseRecord(rest[:PrefixSize-1], w.addr); rec != nil || need != PrefixSize || err != nil {
			t.Fatalf("part of the prefix at %d: %d bytes, need %d, %v", w.addr, len(rec), need, err)
		}
		garbled := append([]byte(nil), want...)
		garbled[len(garbled)-1] ^= 0xff
		if _, _, err := ParseRecord(garbled, w.addr); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("a garbled record at %d: %v, want ErrCorrupt", w.addr, err)
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("only %d records checked", checked)
	}
}
