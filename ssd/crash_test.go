package ssd

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ioOutcome is what a callback reported.
type ioOutcome struct {
	n   int
	err error
}

// ioWait is a Callback a test can wait on, whichever goroutine completes it.
type ioWait struct {
	ch    chan ioOutcome
	calls atomic.Int32
}

func newIOWait() *ioWait { return &ioWait{ch: make(chan ioOutcome, 2)} }

func (w *ioWait) IODone(n int, err error) {
	w.calls.Add(1)
	w.ch <- ioOutcome{n, err}
}

// wait returns the outcome, failing the test if the callback never runs.
func (w *ioWait) wait(t *testing.T) ioOutcome {
	t.Helper()
	select {
	case o := <-w.ch:
		return o
	case <-time.After(5 * time.Second):
		t.Fatal("callback never ran")
		return ioOutcome{}
	}
}

// ioRecord is a Callback that records its outcome in place, for checks that
// the callback has run by a given point.
type ioRecord struct {
	ioOutcome
	calls int
}

func (r *ioRecord) IODone(n int, err error) { r.ioOutcome, r.calls = ioOutcome{n, err}, r.calls+1 }

// devWrite writes p at off and waits for the outcome.
func devWrite(t *testing.T, d Device, p []byte, off uint64) ioOutcome {
	t.Helper()
	w := newIOWait()
	d.WriteAsync(p, off, w)
	return w.wait(t)
}

// devRead reads n bytes at off into a buffer of 0xee and waits.
func devRead(t *testing.T, d Device, n int, off uint64) ([]byte, ioOutcome) {
	t.Helper()
	p := bytes.Repeat([]byte{0xee}, n)
	w := newIOWait()
	d.ReadAsync(p, off, w)
	return p, w.wait(t)
}

func mustWrite(t *testing.T, d Device, p []byte, off uint64) {
	t.Helper()
	if o := devWrite(t, d, p, off); o.err != nil || o.n != len(p) {
		t.Fatalf("write of %d bytes at %d: %+v", len(p), off, o)
	}
}

func mustRead(t *testing.T, d Device, n int, off uint64) []byte {
	t.Helper()
	p, o := devRead(t, d, n, off)
	if o.err != nil || o.n != n {
		t.Fatalf("read of %d bytes at %d: %+v", n, off, o)
	}
	return p
}

func randBytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

func TestCrashDeviceRoundTrip(t *testing.T) {
	const blk = 1 << crashBlockBits
	for _, align := range []int{1, 512, 4096} {
		for _, async := range []bool{false, true} {
			t.Run(fmt.Sprintf("align=%d/async=%v", align, async), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(align), 1))
				d := NewCrashDevice(align)
				d.SetAsync(async)
				data := randBytes(rng, 3*blk+4*align)
				off := uint64(blk - 2*align) // straddles blocks
				mustWrite(t, d, data, off)
				if got := mustRead(t, d, len(data), off); !bytes.Equal(got, data) {
					t.Fatal("read back differs")
				}
				if got := mustRead(t, d, 2*align, off-uint64(2*align)); !bytes.Equal(got, make([]byte, 2*align)) {
					t.Fatalf("unwritten bytes before the write read as %x", got)
				}
				if got := mustRead(t, d, align, 1<<30); !bytes.Equal(got, make([]byte, align)) {
					t.Fatalf("unwritten block read as %x", got)
				}
				patch := randBytes(rng, 2*align)
				mustWrite(t, d, patch, off+uint64(blk))
				copy(data[blk:], patch)
				if got := mustRead(t, d, len(data), off); !bytes.Equal(got, data) {
					t.Fatal("overwrite not seen by a read")
				}
				st := d.Stats()
				if st.Writes != 2 || st.Reads != 4 || st.BytesWritten != uint64(len(data)+len(patch)) || st.Unsynced != 2 {
					t.Fatalf("stats %+v", st)
				}
			})
		}
	}
}

func TestCrashDeviceRejectsMisaligned(t *testing.T) {
	cases := []struct {
		name  string
		n     int
		off   uint64
		write bool
	}{
		{"write offset", 512, 100, true},
		{"write length", 700, 512, true},
		{"read offset", 512, 4, false},
		{"read length", 1, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := NewCrashDevice(512)
			d.SetAsync(true) // rejected either way
			var r ioRecord
			p := bytes.Repeat([]byte{1}, c.n)
			if c.write {
				d.WriteAsync(p, c.off, &r)
			} else {
				d.ReadAsync(p, c.off, &r)
			}
			if r.calls != 1 || r.n != 0 || !errors.Is(r.err, ErrMisaligned) {
				t.Fatalf("got %+v, want one ErrMisaligned before the call returned", r)
			}
			if got := mustRead(t, d, 2048, 0); !bytes.Equal(got, make([]byte, 2048)) {
				t.Fatal("rejected write changed the device")
			}
			if st := d.Stats(); st.Failed != 1 || st.Writes != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestCrashDeviceLoseUnsynced(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	d := NewCrashDevice(512)
	a := randBytes(rng, 8192)
	mustWrite(t, d, a, 0)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	b := randBytes(rng, 8192)
	mustWrite(t, d, b, 4096) // half over a, half new
	mustWrite(t, d, randBytes(rng, 4096), 1<<20)
	if got := mustRead(t, d, 4096, 4096); !bytes.Equal(got, b[:4096]) {
		t.Fatal("unsynced write not visible before the crash")
	}
	d.PowerLoss(LoseUnsynced, nil)
	if got := mustRead(t, d, 8192, 0); !bytes.Equal(got, a) {
		t.Fatal("synced data changed by the power loss")
	}
	if got := mustRead(t, d, 4096, 8192); !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("unsynced write past the synced data survived")
	}
	if got := mustRead(t, d, 4096, 1<<20); !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("unsynced write far away survived")
	}
	if st := d.Stats(); st.Unsynced != 0 || st.UnsyncedBytes != 0 || st.PowerLosses != 1 || st.Syncs != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The device works again, and a second crash keeps what was synced.
	c := randBytes(rng, 512)
	mustWrite(t, d, c, 512)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d.PowerLoss(LoseUnsynced, nil)
	want := slices.Clone(a)
	copy(want[512:], c)
	if got := mustRead(t, d, 8192, 0); !bytes.Equal(got, want) {
		t.Fatal("data synced after a power loss did not survive the next")
	}
}

func TestCrashDeviceKeepUnsynced(t *testing.T) {
	d := NewCrashDevice(1)
	mustWrite(t, d, []byte("durable"), 0)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, []byte("DUR"), 0)
	d.PowerLoss(KeepUnsynced, nil)
	if got := mustRead(t, d, 7, 0); string(got) != "DURable" {
		t.Fatalf("after a process crash read %q", got)
	}
	if st := d.Stats(); st.Unsynced != 1 || st.UnsyncedBytes != 3 {
		t.Fatalf("kept write should still be unsynced: %+v", st)
	}
	d.PowerLoss(LoseUnsynced, nil)
	if got := mustRead(t, d, 7, 0); string(got) != "durable" {
		t.Fatalf("write kept by a process crash became durable: %q", got)
	}
}

// tearWrite is an unsynced write a tear test issued.
type tearWrite struct {
	off  uint64
	data []byte
}

func (w tearWrite) end() uint64 { return w.off + uint64(len(w.data)) }

// tearTally counts, over many crashes, what happened to writes that no other
// unsynced write overlapped.
type tearTally struct {
	lost, partial, whole int
	laterOverEarlier     int // a write survived while an earlier one was lost
}

func TestCrashDeviceTearUnsynced(t *testing.T) {
	const seeds = 150
	for _, align := range []int{1, 512, 4096} {
		t.Run(fmt.Sprintf("align=%d", align), func(t *testing.T) {
			var tally tearTally
			for seed := range uint64(seeds) {
				tearOnce(t, align, seed, &tally)
			}
			t.Logf("%+v", tally)
			if tally.lost == 0 || tally.partial == 0 || tally.whole == 0 || tally.laterOverEarlier == 0 {
				t.Fatalf("outcomes not all seen over %d crashes: %+v", seeds, tally)
			}
		})
	}
}

// tearOnce writes and syncs a random image, adds random unsynced writes,
// tears them, and checks the result against the model.
func tearOnce(t *testing.T, align int, seed uint64, tally *tearTally) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, uint64(align)))
	d := NewCrashDevice(align)
	sector := d.SectorSize()
	size := 24 * sector
	durable := make([]byte, size)
	for range 3 { // the synced image, with holes
		w := randomWrite(rng, size, align, sector)
		copy(durable[w.off:], w.data)
		mustWrite(t, d, w.data, w.off)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	writes := make([]tearWrite, 6)
	for i := range writes {
		writes[i] = randomWrite(rng, size, align, sector)
		mustWrite(t, d, writes[i].data, writes[i].off)
	}
	d.PowerLoss(TearUnsynced, rand.New(rand.NewPCG(seed, 99)))
	got := mustRead(t, d, size, 0)
	checkTornImage(t, got, durable, writes, sector)
	tallyTear(t, got, writes, sector, tally)
	if st := d.Stats(); st.Unsynced != 0 {
		t.Fatalf("survivors of a tear are not durable: %+v", st)
	}
	d.PowerLoss(LoseUnsynced, nil)
	if again := mustRead(t, d, size, 0); !bytes.Equal(again, got) {
		t.Fatal("a second power loss changed the torn image")
	}
}

// randomWrite makes an aligned write of 1 to 4 sectors' worth of bytes
// somewhere in [0, size).
func randomWrite(rng *rand.Rand, size, align, sector int) tearWrite {
	n := (1 + rng.IntN(4*sector)) / align * align
	n = max(n, align)
	off := rng.IntN(size-n+1) / align * align
	return tearWrite{uint64(off), randBytes(rng, n)}
}

// checkTornImage checks that each atom of got (a stretch cut by no sector
// boundary and no write's edge) holds the durable bytes or those of one of
// the writes that cover it: never anything else.
func checkTornImage(t *testing.T, got, durable []byte, writes []tearWrite, sector int) {
	t.Helper()
	cuts := []uint64{0, uint64(len(got))}
	for s := sector; s < len(got); s += sector {
		cuts = append(cuts, uint64(s))
	}
	for _, w := range writes {
		cuts = append(cuts, w.off, w.end())
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	for i := 0; i+1 < len(cuts); i++ {
		lo, hi := cuts[i], cuts[i+1]
		atom := got[lo:hi]
		ok := bytes.Equal(atom, durable[lo:hi])
		for _, w := range writes {
			if !ok && w.off <= lo && hi <= w.end() {
				ok = bytes.Equal(atom, w.data[lo-w.off:hi-w.off])
			}
		}
		if !ok {
			t.Fatalf("bytes [%d, %d) hold neither the durable data nor a covering write", lo, hi)
		}
	}
}

// tallyTear checks, for each write no other write overlaps, that what
// survived of it is a prefix of its sector pieces, and counts the outcomes.
func tallyTear(t *testing.T, got []byte, writes []tearWrite, sector int, tally *tearTally) {
	t.Helper()
	survived := make([]int, len(writes)) // -1: overlapped, not judged
	for i, w := range writes {
		if overlapsAny(w, i, writes) {
			survived[i] = -1
			continue
		}
		pieces := splitAtSectors(crashWrite{w.off, w.data}, sector)
		n := 0
		for n < len(pieces) && bytes.Equal(got[pieces[n].off:][:len(pieces[n].data)], pieces[n].data) {
			n++
		}
		for _, p := range pieces[n:] {
			if bytes.Equal(got[p.off:][:len(p.data)], p.data) && len(p.data) >= 8 { // shorter pieces may match by chance
				t.Fatalf("write at %d survived in pieces that are not a prefix", w.off)
			}
		}
		survived[i] = n
		switch {
		case n == 0:
			tally.lost++
		case n == len(pieces):
			tally.whole++
		default:
			tally.partial++
		}
	}
	for i := range writes {
		for j := i + 1; j < len(writes); j++ {
			if survived[i] == 0 && survived[j] > 0 {
				tally.laterOverEarlier++
			}
		}
	}
}

func overlapsAny(w tearWrite, i int, writes []tearWrite) bool {
	for j, o := range writes {
		if j != i && w.off < o.end() && o.off < w.end() {
			return true
		}
	}
	return false
}

func TestCrashDeviceAsyncCompletesEachOnce(t *testing.T) {
	const writers, perWriter, size = 8, 64, 512
	d := NewCrashDevice(size)
	d.SetAsync(true)
	var calls [writers * perWriter]atomic.Int32
	var bad atomic.Int32
	var wg sync.WaitGroup
	wg.Add(writers * perWriter)
	for g := range writers {
		go func() {
			for i := range perWriter {
				k := g*perWriter + i
				cb := &countingCB{calls: &calls[k], bad: &bad, wg: &wg, want: size}
				d.WriteAsync(bytes.Repeat([]byte{byte(k)}, size), uint64(k*size), cb)
			}
		}()
	}
	wg.Wait()
	if b := bad.Load(); b != 0 {
		t.Fatalf("%d writes completed with an error or short", b)
	}
	for k := range calls {
		if c := calls[k].Load(); c != 1 {
			t.Fatalf("write %d: callback ran %d times", k, c)
		}
		if got := mustRead(t, d, size, uint64(k*size)); !bytes.Equal(got, bytes.Repeat([]byte{byte(k)}, size)) {
			t.Fatalf("write %d read back wrong", k)
		}
	}
	if st := d.Stats(); st.Writes != writers*perWriter || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// countingCB counts its calls and those that reported anything but a
// complete write.
type countingCB struct {
	calls, bad *atomic.Int32
	wg         *sync.WaitGroup
	want       int
}

func (c *countingCB) IODone(n int, err error) {
	if n != c.want || err != nil {
		c.bad.Add(1)
	}
	c.calls.Add(1)
	c.wg.Done()
}

func TestCrashDeviceAsyncOrderIsShuffled(t *testing.T) {
	const n = 100
	d := NewCrashDevice(1)
	d.SetAsync(true)
	d.Pause()
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		d.WriteAsync([]byte{byte(i)}, uint64(i), callbackFunc(func(int, error) {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			wg.Done()
		}))
	}
	if p := d.Pending(); p != n {
		t.Fatalf("%d pending while paused, want %d", p, n)
	}
	if peekCurrent(d) != 0 {
		t.Fatal("a paused write reached the image")
	}
	d.Resume()
	wg.Wait()
	sorted := slices.Sorted(slices.Values(order))
	if !slices.Equal(sorted, iotaInts(n)) {
		t.Fatalf("completions are not one per write: %v", order)
	}
	if slices.Equal(order, sorted) {
		t.Fatal("completions came in issue order")
	}
}

// peekCurrent returns byte 0 of the image reads would see, without I/O (a
// paused device would queue a read).
func peekCurrent(d *CrashDevice) byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b [1]byte
	d.mu.current.read(b[:], 0)
	return b[0]
}

func iotaInts(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// callbackFunc adapts a function to Callback.
type callbackFunc func(n int, err error)

func (f callbackFunc) IODone(n int, err error) { f(n, err) }

func TestCrashDevicePowerLossFailsQueuedIO(t *testing.T) {
	d := NewCrashDevice(1)
	mustWrite(t, d, []byte("old"), 0)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d.Pause()
	var w, r ioRecord
	d.WriteAsync([]byte("new"), 0, &w)
	buf := []byte("xxx")
	d.ReadAsync(buf, 0, &r)
	d.PowerLoss(TearUnsynced, nil)
	for name, rec := range map[string]*ioRecord{"write": &w, "read": &r} {
		if rec.calls != 1 || rec.n != 0 || !errors.Is(rec.err, ErrPowerLost) {
			t.Fatalf("queued %s: %+v, want one ErrPowerLost before PowerLoss returned", name, *rec)
		}
	}
	if string(buf) != "xxx" {
		t.Fatalf("failed read filled its buffer: %q", buf)
	}
	var after ioRecord // the device is no longer paused: this completes now
	d.ReadAsync(buf, 0, &after)
	if after.calls != 1 || after.err != nil || string(buf) != "old" {
		t.Fatalf("read after the loss: %+v %q", after, buf)
	}
}

func TestCrashDeviceSyncSkipsQueuedWrites(t *testing.T) {
	d := NewCrashDevice(1)
	d.Pause()
	w := newIOWait()
	d.WriteAsync([]byte("late"), 0, w)
	if err := d.Sync(); err != nil { // before the write completed
		t.Fatal(err)
	}
	d.Resume()
	if o := w.wait(t); o.err != nil || o.n != 4 {
		t.Fatalf("write: %+v", o)
	}
	if got := mustRead(t, d, 4, 0); string(got) != "late" {
		t.Fatalf("read %q", got)
	}
	d.PowerLoss(LoseUnsynced, nil)
	if got := mustRead(t, d, 4, 0); !bytes.Equal(got, make([]byte, 4)) {
		t.Fatalf("a write that completed after Sync survived: %q", got)
	}
}

func TestCrashDeviceClose(t *testing.T) {
	d := NewCrashDevice(1)
	mustWrite(t, d, []byte("kept"), 0)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d.Pause()
	queued := newIOWait()
	d.WriteAsync([]byte("gone"), 0, queued)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if o := queued.wait(t); !errors.Is(o.err, ErrClosed) || o.n != 0 {
		t.Fatalf("write queued at Close: %+v", o)
	}
	if o := devWrite(t, d, []byte("x"), 0); !errors.Is(o.err, ErrClosed) {
		t.Fatalf("write after Close: %+v", o)
	}
	if _, o := devRead(t, d, 1, 0); !errors.Is(o.err, ErrClosed) {
		t.Fatalf("read after Close: %+v", o)
	}
	if err := d.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
	d.PowerLoss(LoseUnsynced, nil) // reopens
	if got := mustRead(t, d, 4, 0); string(got) != "kept" {
		t.Fatalf("after reopening read %q", got)
	}
	if queued.calls.Load() != 1 {
		t.Fatal("queued write completed more than once")
	}
}

func TestCrashDeviceSparse(t *testing.T) {
	d := NewCrashDevice(4096)
	p := bytes.Repeat([]byte{9}, 4096)
	for off := uint64(0); off < 1<<30; off += 64 << 20 {
		mustWrite(t, d, p, off)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, p, 4096) // copies one shared block
	d.mu.Lock()
	defer d.mu.Unlock()
	if n, m := len(d.mu.durable.blocks), len(d.mu.current.blocks); n != 16 || m != 16 {
		t.Fatalf("blocks: durable %d, current %d; want 16 each", n, m)
	}
	if o := len(d.mu.current.owned); o != 1 {
		t.Fatalf("current owns %d blocks after one write past Sync, want 1", o)
	}
}

func TestCrashDevicePowerLossRejectsUnknownMode(t *testing.T) {
	d := NewCrashDevice(1)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "LossMode(7)") {
			t.Fatalf("recovered %v, want a panic naming LossMode(7)", r)
		}
		mustWrite(t, d, []byte{1}, 0) // the lock was released
	}()
	d.PowerLoss(LossMode(7), nil)
}

// TestCrashDeviceFork: a fork holds what a power loss would leave (synced
// data; unsynced writes dropped, kept or torn as asked) and is a device of
// its own: writes to either do not reach the other, and the original still
// has its unsynced writes.
func TestCrashDeviceFork(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	d := NewCrashDevice(512)
	a := randBytes(rng, 8192)
	mustWrite(t, d, a, 0)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	b := randBytes(rng, 4096)
	mustWrite(t, d, b, 8192)
	lost, kept := d.Fork(LoseUnsynced, nil), d.Fork(KeepUnsynced, nil)
	if got := mustRead(t, lost, 8192, 0); !bytes.Equal(got, a) {
		t.Fatal("fork lost synced data")
	}
	if got := mustRead(t, lost, 4096, 8192); !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("LoseUnsynced fork kept an unsynced write")
	}
	if got := mustRead(t, kept, 4096, 8192); !bytes.Equal(got, b) {
		t.Fatal("KeepUnsynced fork lost an unsynced write")
	}
	torn := d.Fork(TearUnsynced, rng)
	got := mustRead(t, torn, 4096, 8192)
	n := 0
	for n < len(got) && got[n] == b[n] {
		n++
	}
	if n%512 != 0 && n != len(got) || !bytes.Equal(got[n/512*512:], make([]byte, len(got)-n/512*512)) {
		t.Fatalf("TearUnsynced fork: %d bytes of the write, then not zeros", n)
	}
	c := randBytes(rng, 512)
	mustWrite(t, lost, c, 0)
	if got := mustRead(t, d, 512, 0); !bytes.Equal(got, a[:512]) {
		t.Fatal("a write to the fork reached the original")
	}
	mustWrite(t, d, c, 512)
	if got := mustRead(t, lost, 512, 512); !bytes.Equal(got, a[512:1024]) {
		t.Fatal("a write to the original reached the fork")
	}
	if got := mustRead(t, d, 4096, 8192); !bytes.Equal(got, b) {
		t.Fatal("forking changed the original's unsynced write")
	}
	if st := d.Stats(); st.PowerLosses != 0 || st.Unsynced != 2 {
		t.Fatalf("original after forks: %+v", st)
	}
}
