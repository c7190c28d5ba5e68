package cluster

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

var (
	migSeed  = flag.Uint64("mig-seed", 0, "run the migration simulation with this seed only (replays a failure)")
	migSeeds = flag.Int("mig-seeds", 150, "how many seeds the migration simulation runs")
	migSteps = flag.Int("mig-steps", 4000, "steps of each migration simulation")
	migTail  = flag.Int("mig-tail", 40, "how many of the last events a failure shows")
)

// TestMigrationSimulation drives 2–3 servers (each a Follower, a Migrator,
// loops that switch routings and holds one at a time, a store with a
// volatile and a checkpointed part) and clients through seeded migrations
// of random slot ranges, with every message lost, duplicated or reordered
// at random, partitions between the servers and from the metadata store,
// the store going down, crashes and restarts of either side at any step,
// and operators asking to cancel. Clients route by maps they read at
// random times and write, delete and read 64 keys spread over the slots.
//
// After every step: no slot is served by two servers; a read returns the
// last acknowledged write of its key unless the server that acknowledged
// it crashed before a checkpoint held it (its client was never told it
// was durable: CPR), and never an older one than a write its server
// checkpointed; records only take allowed phase steps; no server needs a
// migration record the planner deleted (the sim deletes every collectable
// one but the newest now and then, and delivers late copies of old
// messages). After the faults stop: every migration is Complete or
// Cancelled, every key reads as above at its owner, no server holds a
// record of a slot it does not own, and only the newest migration record
// is left.
func TestMigrationSimulation(t *testing.T) {
	seeds := seedsToRun(*migSeed, *migSeeds)
	var done [PhaseCancelled + 1]int
	reasons := map[string]int{}
	var reached [PhaseCancelled + 1]int
	for _, seed := range seeds {
		w, err := runMigSim(seed, *migSteps)
		if err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./cluster -run TestMigrationSimulation -mig-seed %d -v", seed, err, seed)
		}
		for p, n := range w.reached {
			reached[p] += n
		}
		for _, m := range w.finals {
			done[m.Phase]++
			if m.Reason != "" {
				reasons[m.Reason]++
			}
		}
	}
	t.Logf("%d seeds: %d migrations complete, %d cancelled %v; phases stored %v", len(seeds), done[PhaseComplete], done[PhaseCancelled], reasons, reached[1:])
	if len(seeds) > 10 && (done[PhaseComplete] == 0 || done[PhaseCancelled] == 0) {
		t.Fatalf("the simulation never completed or never cancelled a migration: %v", done)
	}
}

const simKeys = 64

func keySlot(k int) uint16 { return uint16(k*(Slots/simKeys) + 7*k%13) }

// version is a record in a simulated store: the write that made it.
type version struct {
	ver  int
	tomb bool
	at   int // where it was written: the sim's log address, one clock for every store
}

type simLoop struct {
	r *Routing
	h *Holds
}

type mserver struct {
	id        ServerID
	up        bool
	inc       uint64
	cutMeta   bool
	f         *Follower
	g         *Migrator
	loops     []simLoop
	switching *Routing
	holdsNext *Holds
	persisted *Routing // its data directory: the routing
	saved     *Holds   // and its holds
	vol, dur  map[int]version
	tasks     []*simTask
}

type simTask struct {
	t       Task
	peerInc uint64
	sent    int // Move, ShipBack: keys sent so far
}

type migSim struct {
	rng       *rand.Rand
	md        *Mem
	servers   []*mserver
	net       []Message
	old       []Message // messages delivered before: one comes again, late, now and then
	deleted   map[MigrationID]bool
	cut       map[[2]ServerID]bool
	maps      []*Map // what clients route by
	incs      uint64
	gver      int
	acked     [simKeys]int  // version of the last acknowledged write
	exact     [simKeys]bool // no crash can have lost it
	durable   [simKeys]int  // newest version a checkpoint of the server that acknowledged it held
	ackedBy   map[int]ServerID
	lastDel   [simKeys]int // version of the last acknowledged delete
	phases    map[MigrationID]Phase
	ranges    map[MigrationID][]Range
	finals    []Migration
	log       []string
	faults    bool
	clock     int      // the sim's log addresses
	faultRate int      // per 1000 steps
	crashRate int      // per 1000 actions of a server
	focusMsg  MsgKind  // crash a side right after a message of this kind, often
	focusTask TaskKind // or a task of this kind
	ckptRate  int      // periodic checkpoints: tenths of 2 % of the steps
	migrated  int
	bad       error // a check that failed inside a step
	reached   [PhaseCancelled + 1]int
}

func runMigSim(seed uint64, steps int) (*migSim, error) {
	w := &migSim{rng: rand.New(rand.NewPCG(seed, seed^0x319)), md: NewMem(), cut: map[[2]ServerID]bool{},
		phases: map[MigrationID]Phase{}, ranges: map[MigrationID][]Range{}, ackedBy: map[int]ServerID{}, faults: true,
		deleted: map[MigrationID]bool{}}
	n := 2 + w.rng.IntN(2)
	w.faultRate = []int{2, 10, 40}[w.rng.IntN(3)]
	w.crashRate = []int{0, 10, 40}[w.rng.IntN(3)]
	w.ckptRate = []int{1, 10}[w.rng.IntN(2)]
	w.focusMsg = MsgKind(w.rng.IntN(int(MsgResend) + 1))
	w.focusTask = TaskKind(w.rng.IntN(int(TaskDrop) + 1))
	var members []Server
	for i := range n {
		id := ServerID(fmt.Sprintf("s%d", i))
		members = append(members, Server{ID: id, Native: string(id) + ":1"})
		v := &mserver{id: id, up: true, vol: map[int]version{}, dur: map[int]version{}}
		w.servers = append(w.servers, v)
	}
	m, err := NewMap("sim", members)
	if err != nil {
		return nil, err
	}
	if _, err := w.md.SwapMap(context.Background(), 0, m); err != nil {
		return nil, err
	}
	for _, v := range w.servers {
		v.persisted = &Routing{View: 1, Serving: m.Serving(v.id, nil), Map: m}
		w.boot(v)
	}
	for k := range w.exact {
		w.exact[k] = true
	}
	w.maps = []*Map{m}
	for i := range steps {
		w.faults = i < steps*3/4
		w.step()
		if err := w.check(); err != nil {
			return w, w.fail(i, err)
		}
	}
	if err := w.settle(); err != nil {
		return w, w.fail(steps, err)
	}
	return w, nil
}

func (w *migSim) fail(step int, err error) error {
	tail := w.log
	if len(tail) > *migTail {
		tail = tail[len(tail)-*migTail:]
	}
	return fmt.Errorf("step %d: %w\nlast events:\n%s", step, err, strings.Join(tail, "\n"))
}

func (w *migSim) note(f string, a ...any) { w.log = append(w.log, fmt.Sprintf(f, a...)) }

// boot (re)starts a server from its data directory.
func (w *migSim) boot(v *mserver) {
	w.incs++
	v.inc = w.incs
	v.f = NewFollower(v.id, v.persisted)
	v.g = NewMigrator(MigratorConfig{Self: v.id, Incarnation: v.inc, SampleTicks: 3, RetryTicks: 2, CancelTicks: 25}, v.saved)
	h := v.g.InitialHolds()
	v.loops = make([]simLoop, 3)
	for i := range v.loops {
		v.loops[i] = simLoop{r: v.persisted, h: &h}
	}
	v.switching, v.holdsNext, v.tasks = nil, nil, nil
	v.vol = maps.Clone(v.dur)
}

func (w *migSim) pick() *mserver { return w.servers[w.rng.IntN(len(w.servers))] }

func (w *migSim) step() {
	v := w.pick()
	if w.faults && w.rng.IntN(1000) < w.faultRate {
		w.fault(v)
		return
	}
	if !v.up && w.rng.IntN(50) == 0 {
		w.crashOrRestart(v) // restarts
		return
	}
	switch p := w.rng.IntN(90); {
	case p < 2:
		if v.up && w.rng.IntN(10) < w.ckptRate {
			w.checkpoint(v) // the server's own periodic checkpoints
		}
	case p < 3:
		w.startMigration()
	case p < 4:
		w.collect()
	case p < 5:
		if w.rng.IntN(40) == 0 {
			w.requestCancel()
		}
	case p < 25:
		w.client()
	case p < 33:
		w.poll(v)
	case p < 43:
		w.followerReady(v)
	case p < 53:
		w.switchLoop(v)
	case p < 63:
		w.migReady(v)
	case p < 73:
		w.runTask(v)
	case p < 81:
		w.deliver()
	default:
		if v.up {
			v.g.Tick()
		}
	}
}

// fault injects one fault.
func (w *migSim) fault(v *mserver) {
	switch p := w.rng.IntN(12); {
	case p < 3:
		w.netFault()
	case p < 5:
		w.crashOrRestart(v)
	case p < 8:
		a, b := w.pick().id, w.pick().id
		if a != b {
			w.cut[[2]ServerID{a, b}] = !w.cut[[2]ServerID{a, b}]
			w.cut[[2]ServerID{b, a}] = w.cut[[2]ServerID{a, b}]
			w.note("link %s-%s cut %v", a, b, w.cut[[2]ServerID{a, b}])
		}
	case p < 10:
		v.cutMeta = !v.cutMeta
		w.note("%s cut from the metadata store %v", v.id, v.cutMeta)
	default:
		down := w.rng.IntN(3) == 0
		w.md.SetDown(down)
	}
}

// lostByCrash reports whether v's crash may lose the last acknowledged
// write of k: v acknowledged it and no checkpoint of v holds it. Its
// client was never told that it is durable (CPR), and a migration may then
// lose it as a crash without one would: a target that crashed ships back
// what it recovered.
func (w *migSim) lostByCrash(v *mserver, k int) bool {
	return w.ackedBy[w.acked[k]] == v.id && v.dur[k].ver != w.acked[k]
}

// maybeCrash crashes v right after it did something, at the seed's rate.
func (w *migSim) maybeCrash(v *mserver) {
	if w.faults && v.up && w.rng.IntN(1000) < w.crashRate {
		w.crashOrRestart(v)
	}
}

// focusCrash crashes one of a and b, often: right after the event the
// seed focuses on.
func (w *migSim) focusCrash(a, b *mserver) {
	if v := []*mserver{a, b}[w.rng.IntN(2)]; w.faults && v != nil && v.up && w.rng.IntN(3) == 0 {
		w.note("focused crash")
		w.crashOrRestart(v)
	}
}

func (w *migSim) crashOrRestart(v *mserver) {
	if !v.up {
		v.up = true
		w.boot(v)
		w.note("%s restarts (incarnation %d)", v.id, v.inc)
		return
	}
	v.up = false
	for k := range simKeys {
		if w.exact[k] && w.lostByCrash(v, k) {
			w.exact[k] = false
		}
	}
	w.note("%s crashes", v.id)
}

func (w *migSim) netFault() {
	if len(w.net) == 0 {
		return
	}
	i := w.rng.IntN(len(w.net))
	if w.rng.IntN(2) == 0 {
		w.net = slices.Delete(w.net, i, i+1)
	} else {
		w.net = append(w.net, w.net[i])
	}
}

func (w *migSim) server(id ServerID) *mserver {
	for _, v := range w.servers {
		if v.id == id {
			return v
		}
	}
	return nil
}

func (w *migSim) deliver() {
	if len(w.net) == 0 {
		return
	}
	i := w.rng.IntN(len(w.net))
	msg := w.net[i]
	w.net = slices.Delete(w.net, i, i+1)
	late := ""
	if w.faults && len(w.old) > 0 && w.rng.IntN(20) == 0 {
		w.net = append(w.net, msg) // this one waits; an old one comes again
		msg, late = w.old[w.rng.IntN(len(w.old))], " (late copy)"
	} else if len(w.old) < 256 {
		w.old = append(w.old, msg)
	} else {
		w.old[w.rng.IntN(len(w.old))] = msg
	}
	if to := w.server(msg.To); to.up && !w.cut[[2]ServerID{msg.From, msg.To}] {
		to.g.Step(msg)
		w.note("%s→%s: %s of migration %d (inc %d, peer inc %d)%s", msg.From, msg.To, msg.Kind, msg.Migration.ID, msg.Inc, msg.PeerInc, late)
		w.maybeCrash(to)
		if msg.Kind == w.focusMsg {
			w.focusCrash(to, w.server(msg.From))
		}
	}
}

func (w *migSim) poll(v *mserver) {
	if !v.up || v.cutMeta {
		return
	}
	if st, ok := readState(w.md, v.f); ok {
		v.g.StepState(st)
	}
}

func (w *migSim) followerReady(v *mserver) {
	if !v.up {
		return
	}
	rd, ok := v.f.Ready()
	switch {
	case !ok:
	case rd.Install != nil:
		v.switching = rd.Install
		w.finishInstall(v)
	case rd.Ack != 0 && !v.cutMeta:
		if err := w.md.ReportApplied(context.Background(), v.id, rd.Ack); err == nil {
			v.f.Acked(rd.Ack)
		}
	}
}

func (w *migSim) switchLoop(v *mserver) {
	if !v.up {
		return
	}
	l := &v.loops[w.rng.IntN(len(v.loops))]
	if v.switching != nil && w.rng.IntN(2) == 0 {
		l.r = v.switching
	} else if v.holdsNext != nil {
		l.h = v.holdsNext
	}
	w.finishInstall(v)
}

// finishInstall confirms a routing or holds once every loop has it.
func (w *migSim) finishInstall(v *mserver) {
	if v.switching != nil && !slices.ContainsFunc(v.loops, func(l simLoop) bool { return l.r != v.switching }) {
		v.persisted = v.switching
		v.f.Installed(v.switching)
		v.switching = nil
	}
	if h := v.holdsNext; h != nil && !slices.ContainsFunc(v.loops, func(l simLoop) bool { return l.h != h }) {
		v.g.HoldsInstalled(h.Version)
		v.holdsNext = nil
	}
}

func (w *migSim) migReady(v *mserver) {
	if !v.up {
		return
	}
	v.g.StepRouting(v.f.Current())
	rd, ok := v.g.Ready()
	if !ok {
		return
	}
	if rd.Holds != nil {
		v.saved = rd.Holds // persisted before the loops take it
		v.holdsNext = rd.Holds
		w.finishInstall(v)
	}
	for _, t := range rd.Abort {
		v.tasks = slices.DeleteFunc(v.tasks, func(x *simTask) bool { return x.t.Migration == t.Migration && x.t.Kind == t.Kind })
		v.g.TaskFailed(t)
	}
	for _, t := range rd.Tasks {
		v.tasks = append(v.tasks, &simTask{t: t})
	}
	w.net = append(w.net, rd.Messages...)
	if rd.Persist != nil {
		w.persist(v, rd.Persist)
	}
	if rd.Cleaned != 0 {
		var err error = ErrUnavailable
		if !v.cutMeta {
			err = w.md.ReportCleaned(context.Background(), v.id, rd.Cleaned)
		}
		v.g.CleanedReported(rd.Cleaned, err)
	}
	w.maybeCrash(v)
}

// collect deletes the migration records no server needs (Collectable),
// keeping only the newest, as the elected planner does (it keeps more).
func (w *migSim) collect() {
	st, err := w.md.Load(context.Background())
	if err != nil {
		return
	}
	for _, m := range Collectable(st, 1) {
		for _, v := range w.servers {
			if v.saved != nil && slices.ContainsFunc(v.saved.Save, func(r Migration) bool { return r.ID == m.ID }) {
				w.bad = fmt.Errorf("the record of %v is collectable while %s saves it with its holds", &m, v.id)
				return
			}
			if g := v.g.migs[m.ID]; v.up && g != nil && !v.g.clean(g) {
				w.bad = fmt.Errorf("the record of %v is collectable while %s has it to clean up", &m, v.id)
				return
			}
		}
		if w.md.DeleteMigration(context.Background(), m.ID, m.Revision) == nil {
			w.deleted[m.ID] = true
			w.note("planner deletes the record of %v", &m)
		}
	}
}

func (w *migSim) persist(v *mserver, p *MigrationSwap) {
	if v.cutMeta {
		v.g.Persisted(0, ErrUnavailable)
		return
	}
	rev, err := w.md.SwapMigration(context.Background(), *p)
	v.g.Persisted(rev, err)
	if err != nil {
		return
	}
	rec := p.Migration
	if err := w.checkStep(w.phases[rec.ID], rec.Phase); err != nil {
		w.bad = fmt.Errorf("migration %d: %w", rec.ID, err)
		return
	}
	w.phases[rec.ID] = rec.Phase
	w.reached[rec.Phase]++
	if rec.Phase.Final() {
		w.finals = append(w.finals, rec) // its record may be deleted before the end
	}
	w.note("%s stores %v (%s)", v.id, &rec, rec.Reason)
	w.poll(v)
}

var allowedSteps = map[[2]Phase]bool{
	{PhaseSample, PhasePrepare}: true, {PhasePrepare, PhaseTransfer}: true, {PhaseTransfer, PhaseMove}: true,
	{PhaseMove, PhaseComplete}: true, {PhaseSample, PhaseCancelled}: true, {PhasePrepare, PhaseCancelled}: true,
	{PhaseTransfer, PhaseCancelling}: true, {PhaseMove, PhaseCancelling}: true, {PhaseCancelling, PhaseCancelled}: true,
}

func (w *migSim) checkStep(from, to Phase) error {
	if !allowedSteps[[2]Phase{from, to}] {
		return fmt.Errorf("record went from %s to %s", from, to)
	}
	return nil
}

// startMigration has an operator move part of one server's slots to
// another.
func (w *migSim) startMigration() {
	st, err := w.md.Load(context.Background())
	if err != nil || w.migrated >= 12 {
		return
	}
	from, to := w.pick().id, w.pick().id
	rs := st.Map.Serving(from, st.Applied).Ranges()
	if from == to || len(rs) == 0 {
		return
	}
	r := rs[w.rng.IntN(len(rs))]
	first := int(r.First) + w.rng.IntN(r.Len())
	last := first + w.rng.IntN(int(r.Last)-first+1)
	if w.rng.IntN(2) == 0 { // one of 8 chunks, so that migrations go over the same slots again
		first = w.rng.IntN(8) * Slots / 8
		last = first + Slots/8 - 1
	}
	rec, err := NewMigration(st, from, to, []Range{{uint16(first), uint16(last)}})
	if err != nil {
		return
	}
	if _, err := w.md.SwapMigration(context.Background(), MigrationSwap{Migration: rec}); err == nil {
		w.migrated++
		w.phases[rec.ID] = PhaseSample
		w.ranges[rec.ID] = rec.Ranges
		w.note("operator starts %v", &rec)
	}
}

func (w *migSim) requestCancel() {
	st, err := w.md.Load(context.Background())
	if err != nil {
		return
	}
	for _, m := range st.Migrations {
		if !m.Phase.Final() && !m.CancelRequested {
			m.CancelRequested = true
			if _, err := w.md.SwapMigration(context.Background(), MigrationSwap{Migration: m}); err == nil {
				w.note("operator asks to cancel migration %d", m.ID)
			}
			return
		}
	}
}

// runTask moves one of v's tasks a step on.
func (w *migSim) runTask(v *mserver) {
	if !v.up || len(v.tasks) == 0 {
		return
	}
	i := w.rng.IntN(len(v.tasks))
	st := v.tasks[i]
	switch done, ok := w.work(v, st); {
	case !ok:
		v.tasks = slices.Delete(v.tasks, i, i+1)
		v.g.TaskFailed(st.t)
	case done:
		v.tasks = slices.Delete(v.tasks, i, i+1)
		v.g.TaskDone(st.t, st.peerInc)
		w.note("%s: %s of migration %d done (peer incarnation %d)", v.id, st.t.Kind, st.t.Migration, st.peerInc)
		if st.t.Kind == w.focusTask {
			w.focusCrash(v, w.server(st.t.Peer))
		}
	}
	w.maybeCrash(v)
	if p := w.server(st.t.Peer); p != nil {
		w.maybeCrash(p) // right after it took records
	}
}

func inRanges(rs []Range, s uint16) bool {
	return slices.ContainsFunc(rs, func(r Range) bool { return r.First <= s && s <= r.Last })
}

// work does a step of task st on v: done when it finished, !ok when it
// failed.
func (w *migSim) work(v *mserver, st *simTask) (done, ok bool) {
	t := st.t
	switch t.Kind {
	case TaskSample:
		return true, true
	case TaskPrepare, TaskDrop: // deletes a live key a step (a tombstone), then a checkpoint
		for _, k := range slices.Sorted(maps.Keys(v.vol)) {
			if inRanges(t.Ranges, keySlot(k)) && !v.vol[k].tomb {
				w.put(v, k, version{tomb: true})
				return false, true
			}
		}
		st.peerInc = uint64(w.clock + 1) // the result: where the records written since begin
		w.checkpoint(v)
		return true, true
	case TaskCheckpoint:
		w.checkpoint(v)
		return true, true
	}
	peer := w.server(t.Peer)
	if !peer.up || w.cut[[2]ServerID{v.id, peer.id}] {
		return false, false
	}
	if st.peerInc == 0 {
		st.peerInc = peer.inc
	} else if st.peerInc != peer.inc {
		return false, false // the session broke with the restart
	}
	keys := slices.Sorted(maps.Keys(v.vol))
	keys = slices.DeleteFunc(keys, func(k int) bool {
		r := v.vol[k]
		return !inRanges(t.Ranges, keySlot(k)) || r.at < int(t.Since) || r.tomb && t.Kind != TaskShipBack
	})
	if t.Kind == TaskSendHot {
		keys = slices.DeleteFunc(keys, func(int) bool { return w.rng.IntN(2) == 0 })
		st.sent = 0
	}
	batch := keys[min(st.sent, len(keys)):]
	if t.Kind != TaskSendHot {
		batch = batch[:min(len(batch), 1+w.rng.IntN(3))]
	}
	for _, k := range batch {
		if !w.insert(peer, t, k, v.vol[k]) {
			return false, false
		}
	}
	st.sent += len(batch)
	v.g.TaskProgress(t)
	return st.sent >= len(keys) || t.Kind == TaskSendHot, true
}

// insert is the receiving loop's insert of a sent record: where its holds
// accept the migration's slot; a moved record only where the key has no
// record written since the target prepared, a shipped-back one always.
func (w *migSim) insert(peer *mserver, t Task, k int, r version) bool {
	l := peer.loops[w.rng.IntN(len(peer.loops))]
	i := slices.IndexFunc(l.h.Accept, func(a Accepting) bool { return a.ID == t.Migration && a.Slots.Has(keySlot(k)) })
	if i < 0 {
		return false
	}
	if old, ok := peer.vol[k]; ok && old.at >= int(l.h.Accept[i].Since) && t.Kind != TaskShipBack {
		return true
	}
	w.put(peer, k, r)
	return true
}

// put writes r as k's newest record in v's store, at the next address.
func (w *migSim) put(v *mserver, k int, r version) {
	w.clock++
	r.at = w.clock
	v.vol[k] = r
}

func (w *migSim) checkpoint(v *mserver) {
	v.dur = maps.Clone(v.vol)
	for k, r := range v.dur {
		if w.ackedBy[r.ver] == v.id { // committed by the server that acknowledged it
			w.durable[k] = max(w.durable[k], r.ver)
		}
	}
}

// client runs one operation through a map read some time ago.
func (w *migSim) client() {
	if w.rng.IntN(4) == 0 {
		if st, err := w.md.Load(context.Background()); err == nil {
			w.maps = append(w.maps, st.Map) // a client refreshes its map
		}
	}
	m := w.maps[max(0, len(w.maps)-1-w.rng.IntN(3))]
	k := w.pickKey()
	sl := keySlot(k)
	a, ok := m.Owner(sl)
	if !ok {
		return
	}
	v := w.server(a.Owner)
	if !v.up {
		return
	}
	l := v.loops[w.rng.IntN(len(v.loops))]
	if l.r == nil || !l.r.Serving.Has(sl) || l.h.Hold.Has(sl) {
		return // MOVED, or held
	}
	switch p := w.rng.IntN(10); {
	case p < 4:
		w.gver++
		w.put(v, k, version{ver: w.gver, tomb: p == 0})
		w.acked[k], w.exact[k] = w.gver, true
		w.ackedBy[w.gver] = v.id
		if p == 0 {
			w.lastDel[k] = w.gver
		}
	default:
		r, found := v.vol[k]
		if (!found || r.tomb) && l.h.Misses.Has(sl) {
			return // not found: held until the record arrives
		}
		if err := w.checkRead(k, r, found); err != nil {
			w.bad = fmt.Errorf("a read at %s: %w", v.id, err)
		}
	}
}

// pickKey returns a key, half the time one in the slots of a migration
// that is not final, where the races are.
func (w *migSim) pickKey() int {
	if w.rng.IntN(2) == 0 {
		for _, id := range slices.Sorted(maps.Keys(w.phases)) {
			if w.phases[id].Final() {
				continue
			}
			var ks []int
			for k := range simKeys {
				if inRanges(w.ranges[id], keySlot(k)) {
					ks = append(ks, k)
				}
			}
			if len(ks) > 0 {
				return ks[w.rng.IntN(len(ks))]
			}
		}
	}
	return w.rng.IntN(simKeys)
}

// checkRead checks a read of k that found r (found false: no record). A
// deleted key reads as absent whether its store holds a tombstone or
// nothing: only a value read is compared by version.
func (w *migSim) checkRead(k int, r version, found bool) error {
	ver := 0
	if found && !r.tomb {
		ver = r.ver
	}
	want := w.acked[k]
	if w.lastDel[k] == want {
		want = 0 // deleted
	}
	switch {
	case w.exact[k] && ver != want:
		return fmt.Errorf("key %d (slot %d) read version %d, last acknowledged %d", k, keySlot(k), ver, w.acked[k])
	case ver != 0 && ver < w.durable[k], ver == 0 && w.durable[k] > w.lastDel[k]:
		return fmt.Errorf("key %d (slot %d) read version %d, a checkpoint held %d", k, keySlot(k), ver, w.durable[k])
	}
	return nil
}

// check fails when a slot is served by two servers, a server needs a
// deleted migration record, or a check failed.
func (w *migSim) check() error {
	if w.bad != nil {
		return w.bad
	}
	for _, v := range w.servers {
		for id := range w.deleted {
			if m := v.g.migs[id]; v.up && m != nil && !v.g.clean(m) {
				return fmt.Errorf("%s has migration %d (%s) to clean up, whose record was deleted", v.id, id, m.rec.Phase)
			}
			if v.saved != nil && slices.ContainsFunc(v.saved.Save, func(r Migration) bool { return r.ID == id }) {
				return fmt.Errorf("%s saves migration %d, whose record was deleted", v.id, id)
			}
		}
	}
	var served servedBy
	for _, v := range w.servers {
		if !v.up {
			continue
		}
		routings := make([]*Routing, len(v.loops))
		for i, l := range v.loops {
			routings[i] = l.r
		}
		if err := served.add(v.id, routings); err != nil {
			return err
		}
	}
	return nil
}

// settle ends the faults and runs everything until every migration is
// final; then every key reads right at its owner and no server holds a
// record of a slot it does not own.
func (w *migSim) settle() error {
	w.md.SetDown(false)
	clear(w.cut)
	for _, v := range w.servers {
		v.cutMeta = false
		if !v.up {
			v.up = true
			w.boot(v)
		}
	}
	for round := 0; round < 400; round++ {
		for _, v := range w.servers {
			w.poll(v)
			w.followerReady(v)
			for i := range v.loops {
				if v.switching != nil {
					v.loops[i].r = v.switching
				}
				if v.holdsNext != nil {
					v.loops[i].h = v.holdsNext
				}
			}
			w.finishInstall(v)
			w.migReady(v)
			for len(v.tasks) > 0 {
				w.runTask(v)
			}
			v.g.Tick()
			if err := w.check(); err != nil {
				return err
			}
		}
		for len(w.net) > 0 {
			w.deliver()
		}
	}
	for id, p := range w.phases {
		if !p.Final() {
			return fmt.Errorf("after settling, migration %d is stuck in %s", id, p)
		}
	}
	w.collect()
	if err := w.check(); err != nil {
		return err
	}
	st, _ := w.md.Load(context.Background())
	if len(st.Migrations) > 1 {
		return fmt.Errorf("after settling, %d migration records are kept (floors %v), want only the newest", len(st.Migrations), st.Cleaned)
	}
	for k := range simKeys {
		a, _ := st.Map.Owner(keySlot(k))
		v := w.server(a.Owner)
		for _, l := range v.loops {
			if !l.r.Serving.Has(keySlot(k)) || l.h.Hold.Has(keySlot(k)) || l.h.Misses.Has(keySlot(k)) {
				return fmt.Errorf("after settling, %s does not serve slot %d freely", v.id, keySlot(k))
			}
		}
		r, found := v.vol[k]
		if err := w.checkRead(k, r, found); err != nil {
			return fmt.Errorf("after settling: %w", err)
		}
	}
	for _, v := range w.servers {
		for k, r := range v.vol {
			if a, _ := st.Map.Owner(keySlot(k)); a.Owner != v.id && !r.tomb {
				return fmt.Errorf("after settling, %s holds key %d of slot %d, owned by %s", v.id, k, keySlot(k), a.Owner)
			}
		}
	}
	return nil
}
