package server

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"

	"github.com/fleetkv/fleetkv/client"
)

var linSeed = flag.Uint64("lin-seed", 0, "TestLinearizable: the seed of the clients' operation choices (0: from the clock)")

// The linearizability test: clients on both fronts run conditional and
// plain operations concurrently on a few keys while a writer pushes every
// record out of memory again and again, checkpoints and compactions run,
// and the history each key sees is checked against a sequential model of
// a key-value map with porcupine. Keys come in two kinds so that every
// operation is valid on its key: "bin" keys hold 8-byte little-endian
// integers (native ADD), "dec" keys decimal strings (RESP INCRBY).

// linInput is one operation on one key.
type linInput struct {
	op  linOp
	key string
	val string // set's value
	arg int64  // add's delta
}

type linOp uint8

const (
	linGet      linOp = iota // native Get, RESP GET
	linSet                   // native Set, RESP SET
	linSetNX                 // RESP SETNX: 1 when it set
	linSetXXGet              // RESP SET XX GET: the old value; sets only if present
	linDel                   // native Delete (existed), RESP DEL (count)
	linGetDel                // RESP GETDEL
	linAdd                   // native Incr on a bin key: the new value
	linIncrBy                // RESP INCRBY on a dec key: the new value
)

var linOpNames = [...]string{"get", "set", "setnx", "set-xx-get", "del", "getdel", "add", "incrby"}

// linOutput is what an operation answered.
type linOutput struct {
	found bool   // get/getdel/set-xx-get: a value came back; del: it existed; setnx: it set
	val   string // the value that came back
	n     int64  // add/incrby: the new value
}

// linState is one key's state in the model.
type linState struct {
	present bool
	val     string
}

func bin(n int64) string { return string(binary.LittleEndian.AppendUint64(nil, uint64(n))) }

// linStep is the sequential specification of one key.
func linStep(state, input, output any) (bool, any) {
	s, in, out := state.(linState), input.(linInput), output.(linOutput)
	switch in.op {
	case linGet:
		return out.found == s.present && out.val == s.val, s
	case linSet:
		return true, linState{true, in.val}
	case linSetNX:
		if s.present {
			return !out.found, s
		}
		return out.found, linState{true, in.val}
	case linSetXXGet:
		if s.present {
			return out.found && out.val == s.val, linState{true, in.val}
		}
		return !out.found, s
	case linDel:
		return out.found == s.present, linState{}
	case linGetDel:
		return out.found == s.present && out.val == s.val, linState{}
	case linAdd:
		var cur int64
		if s.present {
			cur = int64(binary.LittleEndian.Uint64([]byte(s.val)))
		}
		return out.n == cur+in.arg, linState{true, bin(cur + in.arg)}
	case linIncrBy:
		var cur int64
		if s.present {
			cur, _ = strconv.ParseInt(s.val, 10, 64)
		}
		n := cur + in.arg
		return out.n == n, linState{true, strconv.FormatInt(n, 10)}
	}
	return false, s
}

var linModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, o := range h {
			k := o.Input.(linInput).key
			byKey[k] = append(byKey[k], o)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return linState{} },
	Step: linStep,
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		return fmt.Sprintf("%s(%s %q %d) -> %v %q %d", linOpNames[in.op], in.key, in.val, in.arg, out.found, out.val, out.n)
	},
	DescribeState: func(state any) string {
		s := state.(linState)
		return fmt.Sprintf("%v %q", s.present, s.val)
	},
}

// linHistory collects operations from every client.
type linHistory struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *linHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *linHistory) add(client int, in linInput, call int64, out linOutput) {
	ret := h.now()
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

// TestLinearizable fails on read-then-write commands (a DEL that reads the
// key and then deletes it counts a key that two connections delete at
// once twice), on an increment that reads back its value (it can return
// another client's), and on any lost or resurrected write.
func TestLinearizable(t *testing.T) {
	seed := *linSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay the clients' choices with -lin-seed %d)", seed, seed)
	dir := t.TempDir()
	s, dev := durableServerWith(t, dir, func(c *Config) {
		c.CheckpointInterval = 40 * time.Millisecond
		c.CompactInterval, c.CompactThreshold, c.CompactChunk = 20*time.Millisecond, 0.05, 1<<20
	})
	defer shutdown(t, s, dev)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stopFill := fillLog(t, s.Addr())
	const nativeClients, respClients, opsPerClient = 3, 3, 300
	h := &linHistory{start: time.Now()}
	// A round of every client; more rounds while the history has not met
	// a device read, a checkpoint and a compaction yet (a loaded machine
	// may run the first round before any compaction), at most 30 s.
	covered := func() bool {
		st := s.Stats()
		return st.Pending > 0 && st.Checkpoint.Taken > 0 && st.Compaction.Runs > 0
	}
	for round, until := 0, time.Now().Add(30*time.Second); round == 0 || !covered() && time.Now().Before(until) && !t.Failed(); round++ {
		var wg sync.WaitGroup
		for i := range nativeClients + respClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(round<<8|i)))
				var err error
				if i < nativeClients {
					err = runNativeClient(ctx, s.Addr(), i, rng, opsPerClient, h)
				} else {
					err = runRESPClient(ctx, s.RESPAddr(), i, rng, opsPerClient, h)
				}
				if err != nil {
					t.Errorf("client %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
	}
	fills := stopFill()
	st := s.Stats()
	t.Logf("%d operations, %d filler writes; %d pending store operations (device reads), %d checkpoints, %d compactions",
		len(h.ops), fills, st.Pending, st.Checkpoint.Taken, st.Compaction.Runs)
	if t.Failed() {
		return
	}
	if st.Pending == 0 || st.Checkpoint.Taken == 0 || st.Compaction.Runs == 0 {
		t.Errorf("the history did not cover device reads, checkpoints and compactions: %+v", st)
	}
	res, info := porcupine.CheckOperationsVerbose(linModel, h.ops, 60*time.Second)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("fleetkv-linearizability-%d.html", seed))
		if err := porcupine.VisualizePath(linModel, info, path); err != nil {
			t.Logf("visualization: %v", err)
		}
		t.Fatalf("the history is not linearizable (seed %d); see %s", seed, path)
	default:
		t.Fatalf("the checker did not decide within its time (%v)", res)
	}
}

// linKeys are the checked keys: bin keys first, then dec keys.
var linKeys = []string{"lin:bin:0", "lin:bin:1", "lin:bin:2", "lin:dec:0", "lin:dec:1", "lin:dec:2"}

func isBin(k string) bool { return k[4] == 'b' }

// linValue is a value a set writes: valid for the key's kind.
func linValue(rng *rand.Rand, k string) string {
	n := rng.Int64N(1000)
	if isBin(k) {
		return bin(n)
	}
	return strconv.FormatInt(n, 10)
}

func runNativeClient(ctx context.Context, addr string, id int, rng *rand.Rand, ops int, h *linHistory) error {
	c, err := client.New(client.Config{Addr: addr})
	if err != nil {
		return err
	}
	defer c.Close()
	for range ops {
		k := linKeys[rng.IntN(len(linKeys))]
		in := linInput{key: k}
		var out linOutput
		call := h.now()
		switch r := rng.IntN(10); {
		case r < 3:
			in.op = linGet
			var v []byte
			v, out.found, err = c.Get(ctx, []byte(k))
			out.val = string(v)
		case r < 5:
			in.op, in.val = linSet, linValue(rng, k)
			err = c.Set(ctx, []byte(k), []byte(in.val))
		case r < 7 || !isBin(k):
			in.op = linDel
			out.found, err = c.Delete(ctx, []byte(k))
		default:
			in.op, in.arg = linAdd, rng.Int64N(10)+1
			out.n, err = c.Incr(ctx, []byte(k), in.arg)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", linOpNames[in.op], k, err)
		}
		h.add(id, in, call, out)
	}
	return nil
}

func runRESPClient(ctx context.Context, addr string, id int, rng *rand.Rand, ops int, h *linHistory) error {
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1})
	defer c.Close()
	for range ops {
		k := linKeys[rng.IntN(len(linKeys))]
		in := linInput{key: k}
		var out linOutput
		var err error
		call := h.now()
		switch r := rng.IntN(14); {
		case r < 3:
			in.op = linGet
			out.val, err = c.Get(ctx, k).Result()
		case r < 5:
			in.op, in.val = linSet, linValue(rng, k)
			err = c.Set(ctx, k, in.val, 0).Err()
		case r < 7:
			in.op, in.val = linSetNX, linValue(rng, k)
			out.found, err = c.SetNX(ctx, k, in.val, 0).Result()
		case r < 8:
			in.op, in.val = linSetXXGet, linValue(rng, k)
			out.val, err = c.SetArgs(ctx, k, in.val, redis.SetArgs{Mode: "XX", Get: true}).Result()
		case r < 10:
			in.op = linDel
			var n int64
			n, err = c.Del(ctx, k).Result()
			out.found = n == 1
		case r < 12 || isBin(k):
			in.op = linGetDel
			out.val, err = c.GetDel(ctx, k).Result()
		default:
			in.op, in.arg = linIncrBy, rng.Int64N(10)+1
			out.n, err = c.IncrBy(ctx, k, in.arg).Result()
		}
		switch {
		case errors.Is(err, redis.Nil):
			out.val = ""
		case err != nil:
			return fmt.Errorf("%s %s: %w", linOpNames[in.op], k, err)
		case in.op == linGet || in.op == linSetXXGet || in.op == linGetDel:
			out.found = true
		}
		h.add(id, in, call, out)
	}
	return nil
}

// fillLog writes filler records, 64 to a batch, until stopped, so that the
// checked keys' records keep leaving memory (and their old copies become
// compaction's garbage). stop returns how many it wrote.
func fillLog(t *testing.T, addr string) (stop func() int) {
	c, err := client.Dial(client.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	quit, done := make(chan struct{}), make(chan int)
	go func() {
		defer c.Close()
		v := make([]byte, 4000)
		failed := func(r client.Result) {
			if r.Err != nil {
				t.Errorf("filler: %v", r.Err)
			}
		}
		n := 0
		for {
			select {
			case <-quit:
				done <- n
				return
			default:
			}
			for range 64 {
				if err := c.Upsert(fmt.Appendf(nil, "fill:%d", n%500), v, failed); err != nil {
					t.Errorf("filler: %v", err)
				}
				n++
			}
			if err := c.Wait(); err != nil {
				t.Errorf("filler: %v", err)
			}
		}
	}()
	return func() int { close(quit); return <-done }
}
