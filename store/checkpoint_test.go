package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// model is what a checkpoint must bring back: key -> value, nil for deleted.
type model map[string][]byte

// churn runs n random upserts, deletes and appends over keys [0, keys)
// with prefix p, recording them in m.
func churn(t *testing.T, s *Session, m model, rng *rand.Rand, p string, keys, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("%s-%d", p, rng.IntN(keys))
		switch rng.IntN(10) {
		case 0:
			if _, err := s.Delete([]byte(k)); err != nil {
				t.Fatal(err)
			}
			m[k] = nil
		case 1:
			if _, err := s.RMW([]byte(k), []byte("+a"), Append{}); err != nil {
				t.Fatal(err)
			}
			s.CompletePending(true)
			m[k] = append(append([]byte(nil), m[k]...), "+a"...)
		default:
			v := bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(200))
			if _, err := s.Upsert([]byte(k), v); err != nil {
				t.Fatal(err)
			}
			m[k] = v
		}
	}
}

// check reads every key of m from s and compares.
func check(t *testing.T, s *Session, m model, what string) {
	t.Helper()
	for k, want := range m {
		v, status, err := completeRead(t, s, []byte(k))
		switch {
		case err != nil:
			t.Fatalf("%s: %s: %v", what, k, err)
		case want == nil && status != NotFound:
			t.Fatalf("%s: deleted key %s came back as %q", what, k, v)
		case want != nil && (status != OK || !bytes.Equal(v, want)):
			t.Fatalf("%s: %s = %v %q, want %q", what, k, status, v, want)
		}
	}
}

// TestCheckpointRecoverAfterPowerLoss: a checkpoint, more work that is not
// in it, a power loss that drops or tears everything not synced; recovery
// brings back exactly the checkpoint's state (deleted keys stay deleted,
// later writes are gone), twice in a row (the second over a log recovered
// once), for each way of losing unsynced writes.
func TestCheckpointRecoverAfterPowerLoss(t *testing.T) {
	for _, mode := range []ssd.LossMode{ssd.LoseUnsynced, ssd.TearUnsynced, ssd.KeepUnsynced} {
		t.Run(mode.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(mode), 7))
			dev := ssd.NewCrashDevice(512)
			cfg := Config{IndexBits: 6, Log: hlog.Config{PageBits: 12, MemoryBytes: 8 << 12, Device: dev}}
			st, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := model{}
			for round := 0; round < 2; round++ {
				s, err := st.NewSession()
				if err != nil {
					t.Fatal(err)
				}
				churn(t, s, m, rng, "k", 400, 3000)
				s.Suspend() // an idle session must not hold the epoch the checkpoint waits for
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				ck, err := st.Checkpoint(ctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				later := model{}
				for k, v := range m {
					later[k] = v
				}
				churn(t, s, later, rng, "k", 400, 500)   // overwrites and deletes after the checkpoint
				churn(t, s, later, rng, "new", 100, 200) // keys the checkpoint never saw
				s.Close()
				st.Close()
				dev.PowerLoss(mode, rng)

				var rs RecoveryStats
				st, rs, err = Recover(cfg, ck)
				if err != nil {
					t.Fatal(err)
				}
				if rs.Cut || rs.End != ck.End || rs.Records == 0 {
					t.Fatalf("round %d: recovery %+v of checkpoint %+v", round, rs, ck)
				}
				s, err = st.NewSession()
				if err != nil {
					t.Fatal(err)
				}
				check(t, s, m, fmt.Sprintf("round %d", round))
				for k := range later {
					if _, ok := m[k]; !ok {
						if _, status, err := completeRead(t, s, []byte(k)); err != nil || status != NotFound {
							t.Fatalf("round %d: %s, written after the checkpoint, recovered: %v %v", round, k, status, err)
						}
					}
				}
				s.Close()
			}
			st.Close()
		})
	}
}
