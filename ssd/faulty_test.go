package ssd

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// faultUnit is the I/O size of the fault tests: aligned for every inner
// device below.
const faultUnit = 512

// faultInners are the devices the fault tests wrap.
var faultInners = []struct {
	name string
	make func() Device
}{
	{"mem", func() Device { return NewMemDevice() }},
	{"crash", func() Device { return NewCrashDevice(faultUnit) }},
	{"crash-async", func() Device {
		d := NewCrashDevice(faultUnit)
		d.SetAsync(true)
		return d
	}},
}

// forEachInner runs test over a FaultyDevice around each inner device.
func forEachInner(t *testing.T, test func(t *testing.T, f *FaultyDevice)) {
	for _, in := range faultInners {
		t.Run(in.name, func(t *testing.T) { test(t, NewFaultyDevice(in.make())) })
	}
}

// unitFill is one unit of bytes all equal to b.
func unitFill(b byte) []byte { return bytes.Repeat([]byte{b}, faultUnit) }

var errInjected = errors.New("injected")

func TestFaultyDeviceRules(t *testing.T) {
	const ios = 10
	u := uint64(faultUnit)
	cases := []struct {
		name   string
		add    func(f *FaultyDevice)
		reads  bool     // the rule is for reads; writes are set up beforehand
		offs   []uint64 // I/O i (one unit) is at offs[i]; nil: at i units
		fail   []int    // the I/Os that must fail
		err    error    // what they report
		faults FaultStats
	}{
		{"all writes", func(f *FaultyDevice) { f.FailWrites(FaultRule{}) },
			false, nil, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, syscall.EIO, FaultStats{WriteFaults: 10}},
		{"next 3 writes", func(f *FaultyDevice) { f.FailWrites(FaultRule{Count: 3, Err: errInjected}) },
			false, nil, []int{0, 1, 2}, errInjected, FaultStats{WriteFaults: 3}},
		{"every 3rd write", func(f *FaultyDevice) { f.FailWrites(FaultRule{Every: 3}) },
			false, nil, []int{2, 5, 8}, syscall.EIO, FaultStats{WriteFaults: 3}},
		{"only the 5th write", func(f *FaultyDevice) { f.FailWrites(FaultRule{Every: 5, Count: 1}) },
			false, nil, []int{4}, syscall.EIO, FaultStats{WriteFaults: 1}},
		{"writes in a range", func(f *FaultyDevice) { f.FailWrites(FaultRule{From: 3*u + 1, To: 5 * u}) },
			false, nil, []int{3, 4}, syscall.EIO, FaultStats{WriteFaults: 2}},
		{"range and count", func(f *FaultyDevice) { f.FailWrites(FaultRule{From: 2 * u, To: 8 * u, Count: 2}) },
			false, nil, []int{2, 3}, syscall.EIO, FaultStats{WriteFaults: 2}},
		{"range counts only its own", func(f *FaultyDevice) { f.FailWrites(FaultRule{From: 0, To: 4 * u, Every: 2}) },
			false, []uint64{9 * u, 0, 9 * u, u, 2 * u, 9 * u, 3 * u, 9 * u, 9 * u, 9 * u}, []int{3, 6}, syscall.EIO, FaultStats{WriteFaults: 2}},
		{"all reads", func(f *FaultyDevice) { f.FailReads(FaultRule{Err: errInjected}) },
			true, nil, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, errInjected, FaultStats{ReadFaults: 10}},
		{"next 2 reads", func(f *FaultyDevice) { f.FailReads(FaultRule{Count: 2}) },
			true, nil, []int{0, 1}, syscall.EIO, FaultStats{ReadFaults: 2}},
		{"every 4th read", func(f *FaultyDevice) { f.FailReads(FaultRule{Every: 4}) },
			true, nil, []int{3, 7}, syscall.EIO, FaultStats{ReadFaults: 2}},
		{"reads in a range", func(f *FaultyDevice) { f.FailReads(FaultRule{From: 6 * u, To: 6*u + 1}) },
			true, nil, []int{6}, syscall.EIO, FaultStats{ReadFaults: 1}},
		{"read rule spares writes", func(f *FaultyDevice) { f.FailReads(FaultRule{}) },
			false, nil, nil, nil, FaultStats{}},
		{"write rule spares reads", func(f *FaultyDevice) { f.FailWrites(FaultRule{}) },
			true, nil, nil, nil, FaultStats{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEachInner(t, func(t *testing.T, f *FaultyDevice) {
				offs := c.offs
				if offs == nil {
					for i := range ios {
						offs = append(offs, uint64(i)*u)
					}
				}
				if c.reads {
					for i := range ios {
						mustWrite(t, f, unitFill(byte(i+1)), uint64(i)*u)
					}
				}
				c.add(f)
				for i, off := range offs {
					want := unitFill(byte(off/u + 1))
					var o ioOutcome
					if c.reads {
						var got []byte
						got, o = devRead(t, f, faultUnit, off)
						if o.err == nil && !bytes.Equal(got, want) {
							t.Fatalf("read %d returned wrong bytes", i)
						}
					} else {
						o = devWrite(t, f, want, off)
					}
					checkFault(t, i, o, contains(c.fail, i), c.err)
				}
				if !c.reads {
					checkWritten(t, f.Inner(), offs, c.fail)
				}
				if got := f.Stats(); got != c.faults {
					t.Fatalf("stats %+v, want %+v", got, c.faults)
				}
			})
		})
	}
}

// checkFault checks I/O i's outcome: failed with err (any error if nil) and
// no bytes, or a whole unit without error.
func checkFault(t *testing.T, i int, o ioOutcome, fail bool, err error) {
	t.Helper()
	switch {
	case fail && (o.err == nil || o.n != 0):
		t.Fatalf("I/O %d: %+v, want a fault", i, o)
	case fail && err != nil && !errors.Is(o.err, err):
		t.Fatalf("I/O %d: error %v, want %v", i, o.err, err)
	case !fail && (o.err != nil || o.n != faultUnit):
		t.Fatalf("I/O %d: %+v, want a whole unit", i, o)
	}
}

// checkWritten checks that each unit written by the I/Os at offs holds its
// data exactly when some I/O that did not fail wrote it, and zeros otherwise.
func checkWritten(t *testing.T, inner Device, offs []uint64, fail []int) {
	t.Helper()
	landed := map[uint64]bool{}
	for i, off := range offs {
		landed[off] = landed[off] || !contains(fail, i)
	}
	for off, ok := range landed {
		want := make([]byte, faultUnit)
		if ok {
			want = unitFill(byte(off/faultUnit + 1))
		}
		if got := mustRead(t, inner, faultUnit, off); !bytes.Equal(got, want) {
			t.Fatalf("unit at %d: landed=%v but holds %x...", off, ok, got[:4])
		}
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestFaultyDeviceFirstRuleDecides(t *testing.T) {
	f := NewFaultyDevice(NewMemDevice())
	f.FailWrites(FaultRule{Count: 1, Err: errInjected})
	f.FailWrites(FaultRule{Count: 1})
	for i, want := range []error{errInjected, syscall.EIO, nil} {
		if o := devWrite(t, f, []byte{1}, 0); !errors.Is(o.err, want) || (want == nil) != (o.err == nil) {
			t.Fatalf("write %d: %v, want %v", i, o.err, want)
		}
	}
}

func TestFaultyDeviceNoSpace(t *testing.T) {
	u := uint64(faultUnit)
	forEachInner(t, func(t *testing.T, f *FaultyDevice) {
		f.NoSpaceAfter(3*u + u/2)
		for i := range 3 {
			mustWrite(t, f, unitFill(1), uint64(i)*u)
		}
		if o := devWrite(t, f, unitFill(2), 3*u); !errors.Is(o.err, syscall.ENOSPC) || o.n != 0 {
			t.Fatalf("write past the budget: %+v", o)
		}
		f.NoSpaceAfter(u) // a new budget replaces the old
		mustWrite(t, f, unitFill(1), 3*u)
		if o := devWrite(t, f, unitFill(2), 4*u); !errors.Is(o.err, syscall.ENOSPC) {
			t.Fatalf("write past the new budget: %+v", o)
		}
		f.Clear()
		f.NoSpaceBeyond(8 * u)
		mustWrite(t, f, unitFill(1), 7*u)
		for _, off := range []uint64{7 * u, 20 * u} {
			if o := devWrite(t, f, bytes.Repeat([]byte{2}, 2*faultUnit), off); !errors.Is(o.err, syscall.ENOSPC) || o.n != 0 {
				t.Fatalf("write at %d reaching past the limit: %+v", off, o)
			}
		}
		want := make([]byte, 10*faultUnit) // units 0-3 and 7 were written
		for _, i := range []int{0, 1, 2, 3, 7} {
			copy(want[i*faultUnit:], unitFill(1))
		}
		if got := mustRead(t, f.Inner(), 10*faultUnit, 0); !bytes.Equal(got, want) {
			t.Fatal("a write refused for space changed the device")
		}
		if got := mustRead(t, f.Inner(), faultUnit, 20*u); !bytes.Equal(got, make([]byte, faultUnit)) {
			t.Fatal("a write refused beyond the limit changed the device")
		}
		if st := f.Stats(); st != (FaultStats{WriteFaults: 4, NoSpace: 4}) {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestFaultyDeviceShortWrites(t *testing.T) {
	cases := []struct {
		name     string
		keep     int
		inner    func() Device
		n        int // bytes written
		reported int // bytes that land and are reported
	}{
		{"keep rounded to alignment", faultUnit + 100, func() Device { return NewCrashDevice(faultUnit) }, 4 * faultUnit, faultUnit},
		{"default half", 0, func() Device { return NewCrashDevice(faultUnit) }, 4 * faultUnit, 2 * faultUnit},
		{"keep too large", 10 * faultUnit, func() Device { return NewCrashDevice(faultUnit) }, 4 * faultUnit, 3 * faultUnit},
		{"one sector cut to nothing", 0, func() Device { return NewCrashDevice(faultUnit) }, faultUnit, 0},
		{"byte exact without alignment", 7, func() Device { return NewMemDevice() }, 100, 7},
		{"async inner", 1000, func() Device {
			d := NewCrashDevice(faultUnit)
			d.SetAsync(true)
			return d
		}, 3 * faultUnit, faultUnit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := NewFaultyDevice(c.inner())
			f.ShortWrites(FaultRule{Keep: c.keep, Count: 1})
			data := bytes.Repeat([]byte{0xab}, c.n)
			o := devWrite(t, f, data, 0)
			if o.err != nil || o.n != c.reported {
				t.Fatalf("short write reported %+v, want %d bytes", o, c.reported)
			}
			want := append(data[:c.reported:c.reported], make([]byte, c.n-c.reported)...)
			if got := mustRead(t, f.Inner(), c.n, 0); !bytes.Equal(got, want) {
				t.Fatal("a short write landed more or less than its prefix")
			}
			mustWrite(t, f, data, 0) // Count 1: the rule is gone
			if st := f.Stats(); st != (FaultStats{ShortWrites: 1}) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestFaultyDeviceFailSync(t *testing.T) {
	inner := NewCrashDevice(1)
	f := NewFaultyDevice(inner)
	f.FailSyncs(FaultRule{Count: 1, Err: errInjected})
	mustWrite(t, f, []byte("a"), 0)
	if err := f.Sync(); !errors.Is(err, errInjected) {
		t.Fatalf("Sync: %v, want the injected error", err)
	}
	inner.PowerLoss(LoseUnsynced, nil)
	if got := mustRead(t, f, 1, 0); got[0] != 0 {
		t.Fatal("a failed Sync made the write durable")
	}
	mustWrite(t, f, []byte("b"), 0)
	if err := f.Sync(); err != nil {
		t.Fatalf("second Sync: %v", err)
	}
	inner.PowerLoss(LoseUnsynced, nil)
	if got := mustRead(t, f, 1, 0); string(got) != "b" {
		t.Fatalf("synced write lost: %q", got)
	}
	f.FailSyncs(FaultRule{Every: 2})
	for i, fail := range []bool{false, true, false, true} {
		if err := f.Sync(); (err != nil) != fail || (fail && !errors.Is(err, syscall.EIO)) {
			t.Fatalf("Sync %d: %v", i, err)
		}
	}
	if st := f.Stats(); st != (FaultStats{SyncFaults: 3}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestFaultyDeviceClear(t *testing.T) {
	forEachInner(t, func(t *testing.T, f *FaultyDevice) {
		f.FailWrites(FaultRule{})
		f.FailReads(FaultRule{})
		f.ShortWrites(FaultRule{})
		f.FailSyncs(FaultRule{})
		f.NoSpaceAfter(0)
		if o := devWrite(t, f, unitFill(1), 0); o.err == nil {
			t.Fatal("write passed the rules")
		}
		before := f.Stats()
		f.Clear()
		mustWrite(t, f, unitFill(3), 0)
		if got := mustRead(t, f, faultUnit, 0); !bytes.Equal(got, unitFill(3)) {
			t.Fatal("read after Clear")
		}
		if err := f.Sync(); err != nil {
			t.Fatalf("Sync after Clear: %v", err)
		}
		if after := f.Stats(); after != before {
			t.Fatalf("counters changed by Clear or by clean I/O: %+v, then %+v", before, after)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if o := devWrite(t, f, unitFill(1), 0); !errors.Is(o.err, ErrClosed) {
			t.Fatalf("write after Close: %+v", o)
		}
	})
}

// TestFaultyDeviceConcurrent counts faults exactly while many goroutines do
// I/O, then changes rules while they run (for the race detector).
func TestFaultyDeviceConcurrent(t *testing.T) {
	const workers, each = 8, 40
	forEachInner(t, func(t *testing.T, f *FaultyDevice) {
		f.FailWrites(FaultRule{Every: 4})
		f.FailReads(FaultRule{Every: 5})
		failed := runFaultWorkers(f, workers, each, nil)
		if want := uint64(workers * each / 4); failed.writes != want || f.Stats().WriteFaults != want {
			t.Fatalf("%d writes failed (stats %+v), want %d", failed.writes, f.Stats(), want)
		}
		if want := uint64(workers * each / 5); failed.reads != want || f.Stats().ReadFaults != want {
			t.Fatalf("%d reads failed (stats %+v), want %d", failed.reads, f.Stats(), want)
		}
		runFaultWorkers(f, workers, each, func(rng *rand.Rand) {
			switch rng.IntN(5) {
			case 0:
				f.Clear()
			case 1:
				f.FailWrites(FaultRule{Count: 2})
			case 2:
				f.ShortWrites(FaultRule{Every: 3})
			case 3:
				f.NoSpaceAfter(uint64(rng.IntN(4 * faultUnit)))
			default:
				_ = f.Sync()
			}
		})
	})
}

// faultCounts is how many I/Os of a run failed.
type faultCounts struct{ reads, writes uint64 }

// runFaultWorkers has workers goroutines each write and read each units,
// with churn (if not nil) called between I/Os by one more goroutine, and
// waits for every callback. Each callback must run exactly once.
func runFaultWorkers(f *FaultyDevice, workers, each int, churn func(*rand.Rand)) faultCounts {
	var reads, writes atomic.Uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	if churn != nil {
		go func() {
			rng := rand.New(rand.NewPCG(1, 2))
			for {
				select {
				case <-stop:
					return
				default:
					churn(rng)
				}
			}
		}()
	}
	var io sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				off := uint64((w*each + i) * faultUnit)
				io.Add(2)
				f.WriteAsync(unitFill(byte(i)), off, callbackFunc(func(_ int, err error) {
					if err != nil {
						writes.Add(1)
					}
					io.Done()
				}))
				f.ReadAsync(make([]byte, faultUnit), off, callbackFunc(func(_ int, err error) {
					if err != nil {
						reads.Add(1)
					}
					io.Done()
				}))
			}
		}()
	}
	wg.Wait()
	io.Wait()
	close(stop)
	return faultCounts{reads.Load(), writes.Load()}
}

func TestFaultyDeviceZeroLengthIO(t *testing.T) {
	f := NewFaultyDevice(NewCrashDevice(faultUnit))
	if a := f.Alignment(); a != faultUnit {
		t.Fatalf("alignment %d, want the inner device's", a)
	}
	f.ShortWrites(FaultRule{}) // nothing to cut: never fires
	f.FailReads(FaultRule{From: 2 * faultUnit, To: 3 * faultUnit})
	mustWrite(t, f, nil, faultUnit)
	mustRead(t, f, 0, faultUnit)
	if _, o := devRead(t, f, 0, 2*faultUnit); !errors.Is(o.err, syscall.EIO) {
		t.Fatalf("empty read inside the range: %+v", o)
	}
	if st := f.Stats(); st != (FaultStats{ReadFaults: 1}) {
		t.Fatalf("stats %+v", st)
	}
}
