package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/checkpoint"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
	"github.com/fleetkv/fleetkv/store"
)

// durableServer starts a server over segment files and a checkpoint
// directory in dir; the caller shuts it down.
func durableServer(t *testing.T, dir string) (*Server, *ssd.FileDevice) {
	t.Helper()
	return durableServerWith(t, dir, nil)
}

// durableServerWith is durableServer with tune applied to its config.
func durableServerWith(t *testing.T, dir string, tune func(*Config)) (*Server, *ssd.FileDevice) {
	t.Helper()
	dev, err := ssd.OpenFile(ssd.FileConfig{Dir: dir + "/log", SegmentSize: 1 << 20, Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", RESP: "127.0.0.1:0", Loops: 2, NoPin: true,
		Checkpoints: ck, CheckpointInterval: -1}
	cfg.Store.IndexBits = 10
	cfg.Store.Log = hlog.Config{PageBits: 14, MemoryBytes: 8 << 14, Device: dev}
	if tune != nil {
		tune(&cfg)
	}
	s, err := Start(cfg, quietLog())
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	return s, dev
}

func shutdown(t *testing.T, s *Server, dev *ssd.FileDevice) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRestartRecoversTheCheckpoint: what the native and RESP clients wrote
// is there after a shutdown (which takes a checkpoint) and a restart on the
// same directory, twice; deleted keys stay deleted; SAVE, WAITAOF and POST
// /checkpoint answer once the checkpoint is durable.
func TestRestartRecoversTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	want := map[string][]byte{}
	for round := 0; round < 3; round++ {
		s, dev := durableServer(t, dir)
		c, err := client.New(client.Config{Addr: s.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for k, v := range want {
			got, found, err := c.Get(ctx, []byte(k))
			if err != nil || (v == nil) == found || !bytes.Equal(got, v) {
				t.Fatalf("round %d: %s = %q %v %v, want %q", round, k, got, found, err, v)
			}
		}
		for i := 0; i < 300; i++ {
			k := fmt.Sprintf("n%d", (i*7+round)%200)
			v := bytes.Repeat([]byte{byte(round), byte(i)}, 1+i%100)
			if err := c.Set(ctx, []byte(k), v); err != nil {
				t.Fatal(err)
			}
			want[k] = v
			if i%10 == 0 {
				if _, err := c.Delete(ctx, []byte(k)); err != nil {
					t.Fatal(err)
				}
				want[k] = nil
			}
		}
		c.Close()
		rc := goRedis(t, s, nil)
		key := fmt.Sprintf("r%d", round)
		res(rc.Set(ctx, key, "resp", 0).Result()).ok(t)
		want[key] = []byte("resp")
		equal(t, "SAVE", res(rc.Save(ctx).Result()).ok(t), "OK")
		// Commands pipelined behind a SAVE run once it answers.
		if got, want := respExchange(t, s.RESPAddr(), "SAVE\r\nGET "+key+"\r\nPING\r\n", len("+OK\r\n$4\r\nresp\r\n+PONG\r\n")), "+OK\r\n$4\r\nresp\r\n+PONG\r\n"; got != want {
			t.Errorf("SAVE, GET and PING in one write: %q, want %q", got, want)
		}
		if got := fmt.Sprint(res(rc.Do(ctx, "WAITAOF", 1, 0, 5000).Result()).ok(t)); got != "[1 0]" {
			t.Errorf("WAITAOF = %s, want [1 0]", got)
		}
		resp, err := http.Post("http://"+s.AdminAddr()+"/checkpoint", "", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /checkpoint: %v %v", resp, err)
		}
		resp.Body.Close()
		if st := s.Stats().Checkpoint; st.Taken < 3 || st.Seq == 0 {
			t.Errorf("checkpoint stats %+v", st)
		}
		rc.Close()
		shutdown(t, s, dev)
	}
}

// respExchange writes in to a new RESP connection at addr and reads n bytes
// of replies (10 s at most).
func respExchange(t *testing.T, addr, in string, n int) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, in); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out := make([]byte, n)
	got, _ := io.ReadFull(c, out)
	return string(out[:got])
}

// TestDamagedLogIsCutAndTheServerStarts: the last segment truncated at a
// random byte, or 4 KiB garbled at the start of the log's last page:
// recovery (replaying the whole log: no index snapshots) cuts the log at
// the last record that holds together, the server starts, every key it has
// reads back the value written, and it goes on taking writes and
// checkpoints. With an index snapshot, recovery replays only the log
// after it: the garbled records before it are found when they are read,
// and refused with an error, never served.
func TestDamagedLogIsCutAndTheServerStarts(t *testing.T) {
	for _, damage := range []string{"truncate", "garble", "garble-indexed"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			indexed := damage == "garble-indexed"
			if indexed { // the damaged records are read, and refused
				store.ExpectDamage(true)
				defer store.ExpectDamage(false)
			}
			tune := func(c *Config) { c.NoIndexSnapshots = !indexed }
			s, dev := durableServerWith(t, dir, tune)
			c, err := client.New(client.Config{Addr: s.Addr()})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			val := func(i int) []byte { return bytes.Repeat(fmt.Appendf(nil, "%d;", i), 30) }
			const n = 2000
			for i := 0; i < n; i++ {
				if err := c.Set(ctx, fmt.Appendf(nil, "k%d", i), val(i)); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			shutdown(t, s, dev) // the final checkpoint covers every key
			ck, _ := checkpoint.Open(dir)
			meta, _, err := ck.Latest()
			if err != nil {
				t.Fatal(err)
			}
			end := meta.Store.End
			const seg = 1 << 20
			file := fmt.Sprintf("%s/log/log.%08d", dir, (end-1)/seg)
			endOff := int64((end-1)%seg + 1)
			rng := rand.New(rand.NewPCG(uint64(end), 1))
			switch damage {
			case "truncate":
				if err := os.Truncate(file, endOff-1-rng.Int64N(min(endOff-1, 3<<14))); err != nil {
					t.Fatal(err)
				}
			default:
				f, err := os.OpenFile(file, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				junk := make([]byte, 4096)
				for i := range junk {
					junk[i] = byte(rng.IntN(256))
				}
				if _, err := f.WriteAt(junk, endOff-(1<<14)); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			s, dev = durableServerWith(t, dir, tune)
			rec := s.Stats().Checkpoint.Recovered
			switch {
			case indexed && (rec == nil || rec.Cut || rec.IndexEntries == 0):
				t.Fatalf("recovery %+v with an index snapshot", rec)
			case !indexed && (rec == nil || !rec.Cut || rec.End >= end):
				t.Fatalf("recovery %+v of a log damaged before %d", rec, end)
			}
			c, err = client.New(client.Config{Addr: s.Addr()})
			if err != nil {
				t.Fatal(err)
			}
			found, refused := 0, 0
			for i := 0; i < n; i++ {
				v, ok, err := c.Get(ctx, fmt.Appendf(nil, "k%d", i))
				switch {
				case err != nil && indexed:
					refused++
					c.Close() // the error closed the pooled session: start afresh
					if c, err = client.New(client.Config{Addr: s.Addr()}); err != nil {
						t.Fatal(err)
					}
				case err != nil:
					t.Fatalf("k%d: %v", i, err)
				case ok && !bytes.Equal(v, val(i)):
					t.Fatalf("k%d = %q, want %q", i, v, val(i))
				case ok:
					found++
				}
			}
			if found == 0 || found == n || (indexed && found+refused != n) {
				t.Fatalf("%d of %d keys read back, %d refused, after a cut at %d of %d", found, n, refused, rec.End, end)
			}
			if err := c.Set(ctx, []byte("after"), []byte("cut")); err != nil {
				t.Fatal(err)
			}
			c.Close()
			shutdown(t, s, dev)
			s, dev = durableServerWith(t, dir, tune) // a log recovered once, cut page and all, recovers again
			if rec := s.Stats().Checkpoint.Recovered; rec == nil || rec.Cut {
				t.Fatalf("second recovery: %+v", rec)
			}
			c, _ = client.New(client.Config{Addr: s.Addr()})
			if v, ok, err := c.Get(ctx, []byte("after")); err != nil || !ok || string(v) != "cut" {
				t.Fatalf("write after the cut: %q %v %v", v, ok, err)
			}
			c.Close()
			shutdown(t, s, dev)
		})
	}
}

// TestCommitPointsReachTheSession: a session learns, after a checkpoint,
// the serial up to which its operations are durable; WaitDurable asks for
// a checkpoint (the server takes none on its own here) and returns once
// one covers everything the session queued; operations after it are not
// reported durable until the next one.
func TestCommitPointsReachTheSession(t *testing.T) {
	s, dev := durableServer(t, t.TempDir())
	defer shutdown(t, s, dev)
	cs, err := client.Dial(client.Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	put := func(n int) {
		for i := 0; i < n; i++ {
			if err := cs.Upsert(fmt.Appendf(nil, "c%d", i), []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put(100)
	if err := cs.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	if cs.Durable() < 100 || cs.LastSerial() != 100 {
		t.Fatalf("commit point %d, last serial %d; want 100, 100", cs.Durable(), cs.LastSerial())
	}
	put(50)
	if err := cs.Wait(); err != nil {
		t.Fatal(err)
	}
	if cs.Durable() != 100 {
		t.Fatalf("commit point %d before a second checkpoint, want 100", cs.Durable())
	}
	if err := cs.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	if cs.Durable() < 150 {
		t.Fatalf("commit point %d after the second checkpoint, want 150", cs.Durable())
	}
}

// TestClusterWaitDurable: a routed client's WaitDurable returns once the
// server's commit point covers every operation it sent; after the server
// restarts under it (its connection lost, and the commit point of that
// connection with it) the next WaitDurable fails with ErrUnknownOutcome,
// and the one after covers the operations since.
func TestClusterWaitDurable(t *testing.T) {
	dir := t.TempDir()
	s, dev := durableServer(t, dir)
	addr := s.Addr()
	c, err := client.DialCluster(context.Background(), client.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	upsert := func(v string) error { // the operation's own error, or the wait's
		var opErr error
		if err := c.Upsert([]byte("k"), []byte(v), func(r client.Result) { opErr = r.Err }); err != nil {
			return err
		}
		return errors.Join(c.WaitContext(ctx), opErr)
	}
	put := func(v string) {
		t.Helper()
		if err := upsert(v); err != nil {
			t.Fatal(err)
		}
	}
	put("1")
	if err := c.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitDurable(ctx); err != nil {
		t.Fatalf("a second wait with nothing new: %v", err)
	}
	shutdown(t, s, dev)
	s, dev = durableServerWith(t, dir, func(cfg *Config) { cfg.Listen = addr })
	defer shutdown(t, s, dev)
	for i := 0; ; i++ { // the first tries may meet the old, closed connection
		err := upsert("2")
		if err == nil {
			break
		}
		if i == 10 {
			t.Fatal(err)
		}
	}
	if err := c.WaitDurable(ctx); !errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("after a reconnection: %v, want ErrUnknownOutcome", err)
	}
	put("3")
	if err := c.WaitDurable(ctx); err != nil {
		t.Fatalf("after the lost connection was reported: %v", err)
	}
}

// TestPeriodicCheckpointsSkipIdle: periodic checkpoints stop once nothing
// changes (after the one that records the last change), and start again
// with the next write.
func TestPeriodicCheckpointsSkipIdle(t *testing.T) {
	dir := t.TempDir()
	s, dev := durableServerWith(t, dir, func(c *Config) { c.CheckpointInterval = 5 * time.Millisecond })
	defer shutdown(t, s, dev)
	cs := dialSession(t, client.Config{Addr: s.Addr()})
	write := func() {
		t.Helper()
		if err := cs.Upsert([]byte("k"), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		if err := cs.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	write()
	taken := func() uint64 { return s.stats.checkpoints.Load() }
	deadline := time.Now().Add(5 * time.Second)
	for prev := uint64(0); ; {
		time.Sleep(60 * time.Millisecond) // a dozen intervals
		n := taken()
		if n > 0 && n == prev {
			break // idle: none taken for a dozen intervals
		}
		if time.Now().After(deadline) {
			t.Fatalf("periodic checkpoints still taken while idle: %d, then %d", prev, n)
		}
		prev = n
	}
	before := taken()
	time.Sleep(100 * time.Millisecond)
	if n := taken(); n != before {
		t.Fatalf("%d periodic checkpoints while idle", n-before)
	}
	write()
	deadline = time.Now().Add(5 * time.Second)
	for taken() == before {
		if time.Now().After(deadline) {
			t.Fatal("no periodic checkpoint after a write")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
