package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
)

var (
	simSeed  = flag.Uint64("seed", 0, "run the ownership simulation with this seed only (replays a failure)")
	simSeeds = flag.Int("seeds", 40, "how many seeds the ownership simulation runs")
)

// TestOwnershipSimulation drives servers, operators and the metadata store
// through a seeded random schedule: operators assign random ranges from
// stale reads (their swaps conflict), servers learn of changes late or not
// at all (partitions), switch their loops one at a time, crash and restart
// from what they persisted, and the metadata store goes down and up. After
// every step no slot may be served by two servers (on any of their loops);
// once the faults stop, every assigned slot must be served by its owner
// and by no one else.
func TestOwnershipSimulation(t *testing.T) {
	seeds := seedsToRun(*simSeed, *simSeeds)
	for _, seed := range seeds {
		if err := runSim(seed, 3000); err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./cluster -run TestOwnershipSimulation -seed %d -v", seed, err, seed)
		}
	}
}

type simServer struct {
	id        ServerID
	up        bool
	cut       bool // partitioned from the metadata store
	f         *Follower
	loops     []*Routing // what each loop serves by
	switching *Routing   // being installed; loops switch one at a time
	persisted *Routing
}

type simOp struct {
	st   State
	next *Map
}

type sim struct {
	rng     *rand.Rand
	md      *Mem
	servers []*simServer
	ops     []*simOp
	log     []string
}

func runSim(seed uint64, steps int) error {
	s := &sim{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), md: NewMem()}
	n := 2 + s.rng.IntN(3)
	var members []Server
	for i := range n {
		id := ServerID(fmt.Sprintf("s%d", i))
		members = append(members, Server{ID: id, Native: string(id) + ":1"})
		s.servers = append(s.servers, s.boot(&simServer{id: id, up: true}))
	}
	m, err := NewMap("sim", members)
	if err != nil {
		return err
	}
	if _, err := s.md.SwapMap(context.Background(), 0, m); err != nil {
		return err
	}
	for i := range steps {
		s.step(i < steps*3/4)
		if err := s.check(); err != nil {
			return s.fail(i, err)
		}
	}
	if err := s.settle(); err != nil {
		return s.fail(steps, err)
	}
	return nil
}

func (s *sim) fail(step int, err error) error {
	tail := s.log
	if len(tail) > 30 {
		tail = tail[len(tail)-30:]
	}
	return fmt.Errorf("step %d: %w\nlast events:\n%s", step, err, strings.Join(tail, "\n"))
}

func (s *sim) note(f string, a ...any) { s.log = append(s.log, fmt.Sprintf(f, a...)) }

// boot (re)starts a server from what it persisted.
func (s *sim) boot(v *simServer) *simServer {
	v.f = NewFollower(v.id, v.persisted)
	v.loops = make([]*Routing, 3)
	for i := range v.loops {
		v.loops[i] = v.persisted
	}
	v.switching = nil
	return v
}

// seedsToRun returns the seeds a simulation runs: one, when it is set (a
// replay), else 1..n.
func seedsToRun(one uint64, n int) []uint64 {
	if one != 0 {
		return []uint64{one}
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

// servedBy collects what servers' loops serve and finds a slot two serve.
type servedBy struct {
	seen  SlotSet
	owner [Slots / 64]ServerID // a word of seen: the last server that set a bit in it
}

// add adds what server id's loops serve (nil: none installed); an error
// names a slot that another server added serves too.
func (s *servedBy) add(id ServerID, loops []*Routing) error {
	var union SlotSet
	for _, r := range loops {
		if r != nil {
			union.union(r.Serving)
		}
	}
	for i, w := range union {
		if both := s.seen[i] & w; both != 0 {
			return fmt.Errorf("slot %d served by %s and %s (or another before it)", i*64+bits.TrailingZeros64(both), s.owner[i], id)
		}
		if w != 0 {
			s.seen[i] |= w
			s.owner[i] = id
		}
	}
	return nil
}

func (s *sim) step(faults bool) {
	v := s.servers[s.rng.IntN(len(s.servers))]
	switch p := s.rng.IntN(100); {
	case p < 8:
		s.startOp()
	case p < 16:
		s.commitOp()
	case p < 40:
		s.poll(v)
	case p < 65:
		s.ready(v)
	case p < 88:
		s.switchLoop(v)
	case !faults:
		return
	case p < 91:
		if v.up {
			v.up = false
			s.note("%s crashes", v.id)
		} else {
			v.up = true
			s.boot(v)
			s.note("%s restarts", v.id)
		}
	case p < 95:
		v.cut = !v.cut
		s.note("%s partitioned %v", v.id, v.cut)
	case p < 98:
		down := s.rng.IntN(2) == 0
		s.md.SetDown(down)
		s.note("metadata down %v", down)
	}
}

// startOp reads the state for an operator's assignment, committed later.
func (s *sim) startOp() {
	st, err := s.md.Load(context.Background())
	if err != nil || st.Map == nil {
		return
	}
	a, b := s.rng.IntN(16), s.rng.IntN(16)
	if a > b {
		a, b = b, a
	}
	r := Range{uint16(a * Slots / 16), uint16((b+1)*Slots/16 - 1)}
	if s.rng.IntN(4) == 0 { // a small range inside a chunk
		first := uint16(s.rng.IntN(Slots - 64))
		r = Range{first, first + uint16(s.rng.IntN(64))}
	}
	to := s.servers[s.rng.IntN(len(s.servers))].id
	next, err := st.Map.Assign([]Range{r}, to, st.Applied)
	if err == nil && next == nil {
		return // to owns them already
	}
	if err != nil {
		if !errors.Is(err, ErrHandoffPending) {
			s.note("assign %v to %s: unexpected %v", r, to, err)
			s.ops = append(s.ops, &simOp{st: st}) // surfaces in check
		}
		return
	}
	s.ops = append(s.ops, &simOp{st: st, next: next})
}

func (s *sim) commitOp() {
	if len(s.ops) == 0 {
		return
	}
	i := s.rng.IntN(len(s.ops))
	op := s.ops[i]
	s.ops = append(s.ops[:i], s.ops[i+1:]...)
	if op.next == nil {
		return
	}
	if _, err := s.md.SwapMap(context.Background(), op.st.MapRevision, op.next); err == nil {
		s.note("map epoch %d: %v views %v", op.next.Epoch, op.next.Ranges, op.next.Views)
	}
}

func (s *sim) poll(v *simServer) {
	if v.up && !v.cut {
		readState(s.md, v.f)
	}
}

// readState reads the metadata store and gives f its map and applied
// views; ok is false when the store is down.
func readState(md *Mem, f *Follower) (State, bool) {
	st, err := md.Load(context.Background())
	if err != nil {
		return st, false
	}
	f.StepMap(st.Map)
	f.StepApplied(st.Applied)
	return st, true
}

func (s *sim) ready(v *simServer) {
	if !v.up {
		return
	}
	rd, ok := v.f.Ready()
	switch {
	case !ok:
	case rd.Install != nil:
		if v.switching != rd.Install {
			v.switching = rd.Install
			s.note("%s installs view %d serving %v", v.id, rd.Install.View, rd.Install.Serving.Ranges())
		}
		s.finishInstall(v)
	case rd.Ack != 0 && !v.cut:
		if err := s.md.ReportApplied(context.Background(), v.id, rd.Ack); err == nil {
			v.f.Acked(rd.Ack)
			s.note("%s acks view %d", v.id, rd.Ack)
		}
	}
}

func (s *sim) switchLoop(v *simServer) {
	if !v.up || v.switching == nil {
		return
	}
	v.loops[s.rng.IntN(len(v.loops))] = v.switching
	s.finishInstall(v)
}

// finishInstall persists and confirms the routing being installed once
// every loop has it.
func (s *sim) finishInstall(v *simServer) {
	for _, r := range v.loops {
		if r != v.switching {
			return
		}
	}
	v.persisted = v.switching
	v.f.Installed(v.switching)
	v.switching = nil
}

// check fails when a slot is served by two servers.
func (s *sim) check() error {
	var served servedBy
	for _, v := range s.servers {
		if v.up {
			if err := served.add(v.id, v.loops); err != nil {
				return err
			}
		}
	}
	for _, op := range s.ops {
		if op.next == nil {
			return errors.New("an assignment failed for another reason than a pending handover")
		}
	}
	return nil
}

// settle ends the faults and runs every server until nothing changes; then
// every assigned slot must be served by its owner alone.
func (s *sim) settle() error {
	s.md.SetDown(false)
	for _, v := range s.servers {
		v.cut = false
		if !v.up {
			v.up = true
			s.boot(v)
		}
	}
	for round := 0; round < 50; round++ {
		for _, v := range s.servers {
			s.poll(v)
			for range 5 {
				s.ready(v)
				for i := range v.loops {
					if v.switching != nil {
						v.loops[i] = v.switching
					}
				}
				s.finishInstall(v)
			}
			if err := s.check(); err != nil {
				return err
			}
		}
	}
	st, _ := s.md.Load(context.Background())
	for _, a := range st.Map.Ranges {
		for _, v := range s.servers {
			for _, r := range v.loops {
				for sl := int(a.First); sl <= int(a.Last); sl++ {
					if has := r != nil && r.Serving.Has(uint16(sl)); has != (v.id == a.Owner) {
						return fmt.Errorf("after settling, slot %d (owner %s) served by %s: %v", sl, a.Owner, v.id, has)
					}
				}
			}
		}
	}
	return nil
}
