package store

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/keyhash"
)

// TestHashedOperationsWithPrefetch runs the batched executor's pattern
// (hash once, prefetch the bucket, prefetch the record, then the *Hashed
// operation) from two sessions while the index grows from 2^4 buckets and
// records leave memory, and checks every key against plain Read.
func TestHashedOperationsWithPrefetch(t *testing.T) {
	st := openTest(t, Config{IndexBits: 4, Log: hlog.Config{PageBits: 12, MemoryBytes: 16 << 12}})
	const perWorker = 3000
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := st.NewSession()
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			key := func(i int) []byte { return []byte(fmt.Sprintf("w%d-key-%d", w, i)) }
			var hs [8]uint64
			for i := 0; i < perWorker+4; i++ {
				if i < perWorker {
					hs[i%8] = keyhash.Hash(key(i))
					s.PrefetchBucket(hs[i%8])
				}
				j := i - 4
				if j < 0 {
					continue
				}
				s.PrefetchRecord(hs[j%8])
				k := key(j)
				if _, err := s.UpsertHashed(k, hs[j%8], bytes.Repeat(k[:1], 1+j%40)); err != nil {
					t.Error(err)
					return
				}
				if j%3 == 0 {
					if _, err := s.RMWHashed(k, hs[j%8], []byte("+"), Append{}); err != nil {
						t.Error(err)
						return
					}
				}
				if j%5 == 0 {
					if _, err := s.DeleteHashed(k, hs[j%8]); err != nil {
						t.Error(err)
						return
					}
				}
				s.CompletePending(true)
			}
		}()
	}
	wg.Wait()
	if st.index.Bits() <= 4 {
		t.Fatalf("index did not grow (%d bits)", st.index.Bits())
	}
	s := newSession(t, st)
	for w := 0; w < 2; w++ {
		for j := 0; j < perWorker; j++ {
			k := []byte(fmt.Sprintf("w%d-key-%d", w, j))
			want := bytes.Repeat(k[:1], 1+j%40)
			if j%3 == 0 {
				want = append(want, '+')
			}
			got, status := syncRead(t, s, k)
			switch {
			case j%5 == 0 && status != NotFound:
				t.Fatalf("%s: %v %q after delete", k, status, got)
			case j%5 != 0 && (status != OK || !bytes.Equal(got, want)):
				t.Fatalf("%s = %v %q, want %q", k, status, got, want)
			}
			if v, st2, err := s.ReadHashed(k, keyhash.Hash(k), nil); err == nil && st2 == OK && !bytes.Equal(v, got) {
				t.Fatalf("ReadHashed(%s) = %q, Read = %q", k, v, got)
			}
		}
	}
}
