package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/checkpoint"
	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// durableServer starts a server over segment files and a checkpoint
// directory in dir; the caller shuts it down.
func durableServer(t *testing.T, dir string) (*Server, *ssd.FileDevice) {
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
