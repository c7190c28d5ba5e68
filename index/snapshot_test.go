package index

import "testing"

// TestExportImport fills an index, exports it, and imports the export into
// a table of the same size and into one four times larger: every key's
// entry is found with the address it had.
func TestExportImport(t *testing.T) {
	const keys = 5000
	src, em := newTestIndex(t, 6, newFakeLog(1), 1)
	g, _ := em.Acquire()
	g.Protect()
	want := map[uint64]uint64{}
	for k := range uint64(keys) {
		h := hashOf(k)
		s, e, _ := src.FindOrCreate(g, h)
		if e.Address() == 0 && !s.CompareAndSwap(e, 1000+k) {
			t.Fatal("CAS lost without contention")
		}
		want[h] = s.Load().Address()
	}
	g.Unprotect()
	type exported struct {
		bucket uint64
		e      Entry
	}
	var out []exported
	bits, err := src.Export(func(_ uint, b uint64, e Entry) error { out = append(out, exported{b, e}); return nil })
	if err != nil || bits != 6 {
		t.Fatalf("export: %d bits, %v", bits, err)
	}
	for _, extra := range []uint{0, 2} {
		dst, em2 := newTestIndex(t, bits+extra, newFakeLog(1), 1)
		for _, x := range out {
			if err := dst.Import(bits, x.bucket, x.e); err != nil {
				t.Fatal(err)
			}
		}
		g2, _ := em2.Acquire()
		g2.Protect()
		for h, addr := range want {
			if _, e, ok := dst.Find(g2, h); !ok || e.Address() != addr {
				t.Fatalf("+%d bits: hash %#x: %v %d, want %d", extra, h, ok, e.Address(), addr)
			}
		}
		g2.Unprotect()
		if extra == 0 && dst.entries.Load() != int64(len(out)) {
			t.Fatalf("%d entries counted, %d imported", dst.entries.Load(), len(out))
		}
	}
	if err := src.Import(bits+1, 0, out[0].e); err == nil {
		t.Fatal("import from a larger table accepted")
	}
}
