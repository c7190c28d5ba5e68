package cluster

import (
	"errors"
	"maps"
	"slices"
)

// TaskKind names the work a Migrator asks its server to do over the data
// (the server runs it off the machine and reports TaskDone or TaskFailed).
type TaskKind uint8

const (
	// TaskSample (source): remember the keys clients touch in the ranges
	// while the phase lasts (Holds.Sample), until TaskSendHot.
	TaskSample TaskKind = iota + 1
	// TaskPrepare (target): drop every record held for the ranges, then
	// checkpoint, so the target holds nothing of them that it did not get
	// from this migration or from a client after it. Its result (TaskDone)
	// is the log's tail after the drop: the records sent are inserted
	// unless the key has one from there on (Accepting.Since).
	TaskPrepare
	// TaskSendHot (source): send the records of the sampled keys to the
	// target, which inserts each unless it holds a record of the key
	// already.
	TaskSendHot
	// TaskMove (source): send every record of the ranges the same way.
	TaskMove
	// TaskShipBack (target, cancelling): send every record of the ranges,
	// deletions included, to the source, which stores each as it comes.
	TaskShipBack
	// TaskCheckpoint: take a checkpoint that covers everything received.
	TaskCheckpoint
	// TaskDrop: drop every record held for the ranges (garbage once the
	// migration is final), then checkpoint.
	TaskDrop
)

var taskNames = [...]string{"", "sample", "prepare", "send-hot", "move", "ship-back", "checkpoint", "drop"}

func (k TaskKind) String() string {
	if int(k) < len(taskNames) && k != 0 {
		return taskNames[k]
	}
	return "task?"
}

// Task is one piece of work for the server. The data tasks (SendHot, Move,
// ShipBack) tag every batch with Migration; the receiver inserts a batch
// only where its installed Holds accept that migration's slots.
type Task struct {
	Kind      TaskKind
	Migration MigrationID
	Ranges    []Range
	Peer      ServerID // where the data tasks send
	// Since (TaskShipBack): ship back only the records from this log
	// address on, where the target prepared: what it has not written or
	// taken since, its drop's deletions among it, stays the source's.
	Since uint64
}

// MsgKind names a message between a migration's source and target.
type MsgKind uint8

const (
	MsgPrepare     MsgKind = iota + 1 // source → target: prepare for the ranges
	MsgPrepared                       // target → source: dropped, durable, holding their operations
	MsgRefused                        // target → source: it serves the ranges already (a stale migration)
	MsgPhase                          // source → target: the record changed (Migration carries it)
	MsgFinish                         // source → target: every record sent; PeerInc is the target incarnation that took them
	MsgFinished                       // target → source: every record taken and checkpointed
	MsgRestart                        // target → source: an earlier incarnation took the records: move them again
	MsgShippedBack                    // target → source: every record shipped back to the source incarnation PeerInc
	MsgResend                         // source → target: ship back again (an earlier incarnation took them)
)

var msgNames = [...]string{"", "prepare", "prepared", "refused", "phase", "finish", "finished", "restart", "shipped-back", "resend"}

func (k MsgKind) String() string {
	if int(k) < len(msgNames) && k != 0 {
		return msgNames[k]
	}
	return "msg?"
}

// Message is what one Migrator sends another. Messages may be lost,
// duplicated or reordered; the machines re-send what is not answered.
type Message struct {
	Kind      MsgKind
	From, To  ServerID
	Migration Migration // the sender's newest copy of the record
	Inc       uint64    // the sender's incarnation
	PeerInc   uint64    // Finish, ShippedBack: the receiver incarnation that took the records
}

// Accepting lets the loops insert the records of migration ID's data
// tasks for Slots. On the target, a record sent is inserted unless the key
// has a record at or above Since (store.IfNoneSince); on the source, what
// the target ships back is stored as it comes (Since 0).
//
// Invariant (kept by the server that runs TaskPrepare: its checkpoint
// after the drop is a fold-over in every checkpoint mode, node/migration.go
// and server.Server.FoldOver): on the target, no record below Since is
// updated in place once the migration is prepared, so a record of a key
// at or above Since was written or inserted since and is newer than any
// the source holds. The conditional insert, the ship-back (Task.Since),
// and the target's parked reads and refusals (server/gateway.go,
// parking.go) rely on it.
type Accepting struct {
	ID    MigrationID
	Slots *SlotSet
	Since uint64
}

// Holds is what the loops must apply besides their routing, and what the
// server persists with it (its data directory), so that it holds the same
// after a restart before it can read the metadata store.
//
// The loops route by routing and holds from one snapshot: a slot the
// routing serves and Hold holds is not served; an operation that reads a
// key of a Misses slot the store lacks waits (the record may not have
// arrived yet); a blind write goes through.
type Holds struct {
	Version uint64
	Hold    *SlotSet
	Misses  *SlotSet
	Accept  []Accepting
	// Sample names the migrations whose source samples the keys clients
	// touch in their slots (TaskSample: the loops remember them; TaskSendHot
	// sends their records first).
	Sample []Accepting
	// Lend names the migrations whose target may read records here
	// (wire.MigrateFetch), and for which slots: a source in Move lends
	// what it no longer serves and holds until the end.
	Lend []Accepting
	// Prepared holds, for each migration this server is the target of,
	// the log address it prepared at (TaskPrepare's result).
	Prepared map[MigrationID]uint64
	// Save are the records the server persists with the holds (the whole
	// Holds) and gives back to NewMigrator at its next start.
	Save []Migration
}

// MigratorReady is what a Migrator asks its server to do next.
type MigratorReady struct {
	// Holds, when set, is to be installed on every loop and persisted;
	// then the server calls HoldsInstalled.
	Holds *Holds
	// Persist, when set, is to be stored with Metadata.SwapMigration; then
	// the server calls Persisted with the outcome.
	Persist *MigrationSwap
	// Messages are to be sent, each to its To.
	Messages []Message
	// Tasks are to be started; each ends with TaskDone or TaskFailed.
	Tasks []Task
	// Abort are tasks to stop (their phase ended); the server still
	// reports how each ended.
	Abort []Task
	// Cleaned, when not 0, is a new clean-up floor to report with
	// Metadata.ReportCleaned: this server needs no migration record with
	// a lower id any more. Then the server calls CleanedReported.
	Cleaned MigrationID
}

// MigratorConfig sets a Migrator up. Ticks are the server's timer beats.
type MigratorConfig struct {
	Self ServerID
	// Incarnation differs at every start of the server (a boot counter
	// kept in its data directory, or a random number).
	Incarnation uint64
	SampleTicks int // how long the source samples; default 10
	RetryTicks  int // how long before an unanswered message or a failed task is tried again; default 3
	CancelTicks int // how long the source waits for progress from the target before it cancels; default 100
}

// Migrator drives the migrations one server takes part in, as source or
// target. It is a pure state machine in the shape of raft's RawNode: the
// server feeds it what it reads from the metadata store (StepState), what
// its loops serve (StepRouting), the peer's messages (Step), its timer
// (Tick) and how the work it was given ended (Persisted, HoldsInstalled,
// TaskDone, TaskFailed), and does what Ready says.
//
// The source drives: it persists every phase before acting on it, and the
// phases that move ownership change the map in the same transaction. The
// target follows the record and the source's messages. It remembers the
// migrations it took part in since the server started (a few hundred
// bytes each) until their records are deleted; one it first sees final,
// it takes as cleaned up.
//
// Invariant (records are deleted only when no one needs them): the
// clean-up floor this server reports (Ready.Cleaned) is the lowest id of
// a migration it needs the record of (one not final, or whose drop is to
// run or a task still running: its holds save all but the last), or one
// above the highest id of a migration it read that it takes part in; it
// reports none while the holds it handed out are not installed
// (persisted), so a restart never finds a saved migration below its
// floor. A migration it has not read yet has a higher id than any it
// read (ids grow and the newest record is never deleted: Collectable).
// Floors only grow. A message about a migration it does not know is
// taken only when the migration is newer than every record it read (and
// it read one): a late copy of a message must not bring back one it
// forgot, or whose record was deleted.
//
// Invariant (one owner): the map moves the ranges to the target only in
// Map.Assign's handover, so the target serves them only after the source
// reported a view without them (Follower); when cancelled, back the same
// way.
// Invariant (no acknowledged write lost): the target holds every operation
// on the ranges in Prepare (it does not serve them yet), then, once it
// serves them (Transfer, Move: the source applied a view without them and
// writes them no more), every read of a key it lacks until the source said
// that everything was sent to this incarnation; its inserts of sent
// records never replace a record it holds. The source keeps its copies until the
// target checkpointed all of them (Finished); only then is the migration
// Complete. When cancelled after Transfer, the source holds the ranges
// until the target shipped back everything to this incarnation and it
// checkpointed it; only then is it Cancelled and the target drops its
// copies. Both holds are installed (HoldsInstalled) before anything that
// relies on them is sent or persisted.
// Invariant (termination): a source that hears nothing from the target for
// CancelTicks before the target has everything cancels; after that only
// the target's return is awaited (it holds the only copy of what it
// acknowledged).
type Migrator struct {
	cfg     MigratorConfig
	migs    map[MigrationID]*mig
	st      State    // newest map (with the map of its own swaps) and applied views
	read    State    // newest read of the store as it was read: its map and records agree
	routing *Routing // installed on every loop
	blocked bool     // a persist failed: wait for a tick or a new state
	pending *pendingPersist
	out     MigratorReady
	holds   Holds // newest handed out
	applied uint64
	maxID   MigrationID // the highest id read from the store (0: no record read yet)
	maxMine MigrationID // the highest id read of a migration this server takes part in
	cleaned MigrationID // the clean-up floor reported
	// cleanWait counts the ticks until a failed report of the floor is
	// tried again; cleanFails the reports failed in a row.
	cleanWait, cleanFails int
}

type pendingPersist struct {
	mig  *mig
	swap MigrationSwap
}

type role uint8

const (
	source role = iota + 1
	target
)

// mig is one migration as this server sees it.
type mig struct {
	rec        Migration
	role       role
	phaseTicks int     // ticks in the current phase
	idle       int     // source: ticks since the target last showed progress
	retry      int     // ticks until the next periodic message
	lastSent   MsgKind // the kind of the last periodic message
	taskWait   int     // ticks until failed tasks may start again
	running    map[TaskKind]bool
	done       map[TaskKind]uint64 // task → the peer incarnation that took its data (1 when none)
	cancelling string              // source: the reason it decided to cancel ("": not deciding)
	// source
	prepared  bool    // the target answered Prepared
	finished  bool    // the target answered Finished
	shipped   bool    // cancelling: everything shipped back to this incarnation
	announced int     // final: how often the phase was sent to the target
	drop      []Range // final: the slots its clean-up drops
	// target
	refused   bool // it serves the ranges already: not a migration to prepare for
	finishGot bool // the source said everything was sent to this incarnation
}

// NewMigrator returns a migrator for cfg.Self. saved are the last Holds
// the server persisted (nil: none).
func NewMigrator(cfg MigratorConfig, saved *Holds) *Migrator {
	if cfg.SampleTicks <= 0 {
		cfg.SampleTicks = 10
	}
	if cfg.RetryTicks <= 0 {
		cfg.RetryTicks = 3
	}
	if cfg.CancelTicks <= 0 {
		cfg.CancelTicks = 100
	}
	g := &Migrator{cfg: cfg, migs: map[MigrationID]*mig{}}
	if saved != nil {
		for _, rec := range saved.Save {
			m := g.learn(rec, fromSaved)
			if since := saved.Prepared[rec.ID]; since != 0 && m != nil && m.role == target {
				m.done[TaskPrepare] = since // dropped and checkpointed before it answered Prepared
			}
		}
	}
	g.holds = g.computeHolds()
	if saved != nil {
		g.holds.Version = saved.Version // versions go on growing across restarts
	}
	g.applied = g.holds.Version // restored: installed before the server serves
	return g
}

// InitialHolds returns the holds to install before the server serves
// anything after a start.
func (g *Migrator) InitialHolds() Holds { return g.holds }

// StepState takes a consistent read of the metadata store.
func (g *Migrator) StepState(st State) {
	if st.Map != nil && (g.st.Map == nil || st.MapRevision >= g.st.MapRevision) {
		g.st.Map, g.st.MapRevision = st.Map, st.MapRevision
	}
	if g.st.Applied == nil {
		g.st.Applied = map[ServerID]uint64{}
	}
	for id, v := range st.Applied {
		g.st.Applied[id] = max(g.st.Applied[id], v)
	}
	stored := map[MigrationID]bool{}
	for _, rec := range st.Migrations {
		if g.learn(rec, fromStore) != nil {
			g.maxMine = max(g.maxMine, rec.ID)
		}
		g.maxID = max(g.maxID, rec.ID)
		stored[rec.ID] = true
	}
	// The floor as stored may come from an earlier start: every id below
	// it is at most the highest this read holds.
	g.cleaned = max(g.cleaned, st.Cleaned[g.cfg.Self])
	for id, m := range g.migs {
		// Below the floor, a late message about it is ignored (Step).
		if id < g.cleaned && !stored[id] && g.clean(m) {
			delete(g.migs, id) // its record was deleted: no one needs it
		}
	}
	if st.Map != nil && (g.read.Map == nil || st.MapRevision >= g.read.MapRevision) {
		g.read = st
	}
	g.blocked = false
}

// clean reports whether this server needs m's record no more: m is final,
// its clean-up here, if it has one, is done (computeHolds saves the
// migrations for which either is not so), and none of its tasks runs (a
// prepare's drop runs to its end behind its hold).
func (g *Migrator) clean(m *mig) bool {
	return m.rec.Phase.Final() && (m.done[TaskDrop] != 0 || !g.dropsWhenFinal(m)) && len(m.running) == 0
}

// floor returns the clean-up floor to report (see the invariant on
// Migrator): the lowest id of a migration that is not clean, else one
// above the highest id read of one this server takes part in (the floor
// moves only when one of its own migrations ends); the floor reported
// while the newest holds are not installed.
func (g *Migrator) floor() MigrationID {
	if g.applied < g.holds.Version {
		return g.cleaned
	}
	f := g.maxMine + 1
	for id, m := range g.migs {
		if id < f && !g.clean(m) {
			f = id
		}
	}
	return f
}

// CleanedReported reports how the report of Ready's Cleaned floor ended.
// A failed one is tried again after RetryTicks, twice as long after each
// further failure (up to 32 times).
func (g *Migrator) CleanedReported(floor MigrationID, err error) {
	if err != nil {
		g.cleanWait = g.cfg.RetryTicks << min(g.cleanFails, 5)
		g.cleanFails++
		return
	}
	g.cleaned, g.cleanFails = max(g.cleaned, floor), 0
}

// StepRouting takes the routing installed on every loop.
func (g *Migrator) StepRouting(r *Routing) { g.routing = r }

// origin is where a copy of a record comes from.
type origin uint8

const (
	fromStore origin = iota // the metadata store: authoritative, its revision grows
	fromSaved               // the data directory (Holds.Save)
	fromPeer                // a message
)

// learn merges a copy of a record (phases only grow). A migration first
// seen final (not from the data directory) was cleaned up before this
// start, or never needed it.
func (g *Migrator) learn(rec Migration, from origin) *mig {
	var r role
	switch g.cfg.Self {
	case rec.Source:
		r = source
	case rec.Target:
		r = target
	default:
		return nil
	}
	m := g.migs[rec.ID]
	if m == nil {
		m = &mig{rec: rec, role: r, running: map[TaskKind]bool{}, done: map[TaskKind]uint64{}}
		if from != fromStore {
			m.rec.Revision = 0
		}
		if from != fromSaved && rec.Phase.Final() {
			m.done[TaskDrop], m.announced = 1, announcements
		}
		g.migs[rec.ID] = m
		return m
	}
	old := m.rec.Phase
	switch {
	case from == fromStore && rec.Revision > m.rec.Revision:
		phase := max(rec.Phase, m.rec.Phase)
		m.rec = rec
		m.rec.Phase = phase
	case rec.Phase > m.rec.Phase:
		m.rec.Phase = rec.Phase
	}
	if m.rec.Phase != old {
		g.enterPhase(m)
	}
	return m
}

// enterPhase resets what belongs to the phase before and stops its tasks.
func (g *Migrator) enterPhase(m *mig) {
	m.phaseTicks, m.idle, m.retry, m.refused = 0, 0, 0, false
	for _, k := range slices.Sorted(maps.Keys(m.running)) {
		if k == TaskPrepare {
			continue // a drop runs to its end: it is held behind (holds)
		}
		g.out.Abort = append(g.out.Abort, g.task(m, k))
		delete(m.running, k)
	}
	for k := range m.done {
		if k != TaskPrepare {
			delete(m.done, k)
		}
	}
}

// Tick advances time by one beat.
func (g *Migrator) Tick() {
	for _, m := range g.migs {
		m.phaseTicks++
		m.idle++
		m.retry--
		m.taskWait--
	}
	g.blocked = false
	g.cleanWait--
}

// Persisted reports how the last Ready's Persist ended: its new revision,
// or an error (ErrConflict: the state is to be read again).
func (g *Migrator) Persisted(rev int64, err error) {
	p := g.pending
	g.pending = nil
	if p == nil {
		return
	}
	if err != nil {
		g.blocked = true
		return
	}
	if p.swap.Map != nil && rev >= g.st.MapRevision {
		g.st.Map, g.st.MapRevision = p.swap.Map, rev
	}
	rec := p.swap.Migration
	rec.Revision = rev
	old := p.mig.rec.Phase
	p.mig.rec = rec
	if rec.Phase != old {
		g.enterPhase(p.mig)
	}
	if rec.Phase == PhaseCancelling || rec.Phase == PhaseCancelled {
		p.mig.cancelling = ""
	}
}

// HoldsInstalled confirms that the holds of version v are on every loop
// and persisted.
func (g *Migrator) HoldsInstalled(v uint64) { g.applied = max(g.applied, v) }

// TaskDone reports that a task ended well with its result: for the data
// tasks the incarnation of the peer that took their records, for
// TaskPrepare the log's tail after the drop, else 0.
func (g *Migrator) TaskDone(t Task, result uint64) {
	m := g.migs[t.Migration]
	if m == nil || !m.running[t.Kind] {
		return // aborted, or from before a restart
	}
	delete(m.running, t.Kind)
	m.done[t.Kind] = max(result, 1)
	m.idle = 0
}

// TaskFailed reports that a task ended without doing its work (the peer
// was unreachable, the disk refused).
func (g *Migrator) TaskFailed(t Task) {
	if m := g.migs[t.Migration]; m != nil && m.running[t.Kind] {
		delete(m.running, t.Kind)
		m.taskWait = g.cfg.RetryTicks
	}
}

// TaskProgress reports that a long task moved on (the target took a
// batch): the source does not time out meanwhile.
func (g *Migrator) TaskProgress(t Task) {
	if m := g.migs[t.Migration]; m != nil {
		m.idle = 0
	}
}

// Step takes a message from a peer.
func (g *Migrator) Step(msg Message) {
	if msg.To != g.cfg.Self {
		return
	}
	if _, known := g.migs[msg.Migration.ID]; !known && (g.maxID == 0 || msg.Migration.ID <= g.maxID) {
		// A late copy of a message about a migration this server forgot
		// (a restart forgets the clean ones, and a deleted record its
		// migration), or not its own: a migration it did not read is
		// newer than every one it read. Before the first read of the
		// store it cannot tell: that read brings a new migration, and its
		// source sends again.
		return
	}
	m := g.learn(msg.Migration, fromPeer)
	if m == nil {
		return
	}
	if m.role == source {
		g.stepSource(m, msg)
	} else {
		g.stepTarget(m, msg)
	}
}

func (g *Migrator) stepSource(m *mig, msg Message) {
	m.idle = 0
	switch msg.Kind {
	case MsgPrepared:
		m.prepared = m.rec.Phase == PhasePrepare || m.prepared
	case MsgRefused:
		if m.rec.Phase <= PhasePrepare && m.cancelling == "" {
			m.cancelling = "the target serves the slots already"
		}
	case MsgFinished:
		if m.rec.Phase == PhaseMove && m.done[TaskMove] != 0 {
			m.finished = true
		}
	case MsgRestart:
		if m.rec.Phase == PhaseMove && !m.finished {
			delete(m.done, TaskMove)
		}
	case MsgShippedBack:
		if m.rec.Phase != PhaseCancelling {
			return
		}
		if msg.PeerInc == g.cfg.Incarnation {
			m.shipped = true
		} else {
			g.reply(m, MsgResend, 0)
		}
	}
}

func (g *Migrator) stepTarget(m *mig, msg Message) {
	switch msg.Kind {
	case MsgPrepare:
		if m.rec.Phase == PhasePrepare && g.prepared(m) {
			g.reply(m, MsgPrepared, 0)
		}
	case MsgFinish:
		if m.rec.Phase != PhaseMove {
			return
		}
		if msg.PeerInc != g.cfg.Incarnation {
			g.reply(m, MsgRestart, 0)
			return
		}
		m.finishGot = true
		if m.done[TaskCheckpoint] != 0 {
			g.reply(m, MsgFinished, 0)
		}
	case MsgResend:
		if m.rec.Phase == PhaseCancelling {
			delete(m.done, TaskShipBack)
		}
	}
}

// prepared reports whether the target has done what Prepared promises:
// dropped, checkpointed, holding, and the address it prepared at persisted.
func (g *Migrator) prepared(m *mig) bool {
	return !m.refused && m.done[TaskPrepare] != 0 && g.installed(func(h *Holds) bool {
		return h.Hold.covers(m.rec.Slots()) && h.Prepared[m.rec.ID] == m.done[TaskPrepare]
	})
}

func (g *Migrator) reply(m *mig, kind MsgKind, peerInc uint64) {
	to := m.rec.Target
	if m.role == target {
		to = m.rec.Source
	}
	g.out.Messages = append(g.out.Messages, Message{Kind: kind, From: g.cfg.Self, To: to, Migration: m.rec,
		Inc: g.cfg.Incarnation, PeerInc: peerInc})
}

// every sends kind now and then again every RetryTicks while asked to; a
// kind other than the last one sent goes out at once.
func (g *Migrator) every(m *mig, kind MsgKind, peerInc uint64) {
	if m.retry <= 0 || kind != m.lastSent {
		m.retry, m.lastSent = g.cfg.RetryTicks, kind
		g.reply(m, kind, peerInc)
	}
}

func (g *Migrator) task(m *mig, k TaskKind) Task {
	peer := m.rec.Target
	if m.role == target {
		peer = m.rec.Source
	}
	rs := m.rec.Ranges
	if k == TaskDrop {
		rs = m.drop
	}
	t := Task{Kind: k, Migration: m.rec.ID, Ranges: slices.Clone(rs), Peer: peer}
	if k == TaskShipBack {
		t.Since = m.done[TaskPrepare]
	}
	return t
}

// run starts task k unless it runs or is done; it reports whether k is
// done.
func (g *Migrator) run(m *mig, k TaskKind) bool {
	switch {
	case m.done[k] != 0:
		return true
	case !m.running[k] && m.taskWait <= 0:
		m.running[k] = true
		g.out.Tasks = append(g.out.Tasks, g.task(m, k))
	}
	return false
}

// persist asks for phase (and m, when set) to be stored.
func (g *Migrator) persist(m *mig, phase Phase, next *Map, reason string) {
	if g.pending != nil || g.blocked {
		return
	}
	rec := m.rec
	rec.Ranges = slices.Clone(rec.Ranges)
	rec.Phase = phase
	if reason != "" {
		rec.Reason = reason
	}
	g.pending = &pendingPersist{mig: m, swap: MigrationSwap{Migration: rec, Map: next, MapRevision: g.st.MapRevision}}
	g.out.Persist = &g.pending.swap
}

// current reports whether the routing on every loop comes from a map at
// least as new as the newest the migrator knows. A Follower installs a
// routing for every new map, and one being installed comes from a map at
// least as new as the installed one's: then no loop serves a slot, or will
// serve it, that neither the routing nor that map gives this server.
func (g *Migrator) current() bool {
	r := g.routing
	return r != nil && r.Map != nil && g.st.Map != nil && r.Map.Epoch >= g.st.Map.Epoch
}

// stopped reports whether no loop serves a slot of m or will serve it.
func (g *Migrator) stopped(m *mig) bool {
	slots := m.rec.Slots()
	return g.current() && !g.routing.Serving.overlaps(slots) && !g.st.Map.Owned(g.cfg.Self).overlaps(slots)
}

// Ready returns what the server should do next; false when nothing.
func (g *Migrator) Ready() (MigratorReady, bool) {
	for _, id := range slices.Sorted(maps.Keys(g.migs)) {
		m := g.migs[id]
		if m.role == source {
			g.advanceSource(m)
		} else {
			g.advanceTarget(m)
		}
	}
	if h := g.computeHolds(); !sameHolds(&h, &g.holds) {
		h.Version = g.holds.Version + 1
		g.holds = h
		g.out.Holds = &h
	}
	if f := g.floor(); f > g.cleaned && g.cleanWait <= 0 {
		g.out.Cleaned = f
	}
	rd := g.out
	g.out = MigratorReady{}
	ok := rd.Holds != nil || rd.Persist != nil || len(rd.Messages)+len(rd.Tasks)+len(rd.Abort) > 0 || rd.Cleaned != 0
	return rd, ok
}

func (g *Migrator) advanceSource(m *mig) {
	p := m.rec.Phase
	if g.st.Map == nil || m.rec.Revision == 0 {
		return // known from a message only: wait for the store's record
	}
	if p.Final() || p == PhaseCancelling {
		g.finishSource(m)
		return
	}
	switch {
	case m.cancelling != "":
	case m.rec.CancelRequested && !m.finished:
		m.cancelling = "cancelled by request"
	case p >= PhasePrepare && !m.finished && m.idle > g.cfg.CancelTicks:
		m.cancelling = "no progress from the target"
	}
	if m.cancelling != "" {
		g.cancel(m)
		return
	}
	switch p {
	case PhaseSample:
		g.run(m, TaskSample)
		if m.phaseTicks >= g.cfg.SampleTicks {
			g.persist(m, PhasePrepare, nil, "")
		}
	case PhasePrepare:
		if !m.prepared {
			g.every(m, MsgPrepare, 0)
			return
		}
		next, err := g.st.Map.Assign(m.rec.Ranges, m.rec.Target, g.st.Applied)
		switch {
		case errors.Is(err, ErrHandoffPending):
		case err != nil || next == nil:
			m.cancelling = "the map no longer allows it"
		default:
			g.persist(m, PhaseTransfer, next, "")
		}
	case PhaseTransfer:
		if g.stopped(m) && g.run(m, TaskSendHot) {
			g.persist(m, PhaseMove, nil, "")
		}
	case PhaseMove:
		if !g.run(m, TaskMove) {
			g.every(m, MsgPhase, 0)
			return
		}
		if !m.finished {
			g.every(m, MsgFinish, m.done[TaskMove])
			return
		}
		g.persist(m, PhaseComplete, nil, "")
	}
}

// finishSource runs the source's part of the final phases and of
// Cancelling.
func (g *Migrator) finishSource(m *mig) {
	switch m.rec.Phase {
	case PhaseComplete:
		g.announce(m)
		g.cleanUp(m)
	case PhaseCancelling:
		if !m.shipped {
			g.every(m, MsgPhase, 0)
			return
		}
		if g.run(m, TaskCheckpoint) && g.installed(func(h *Holds) bool { _, ok := h.accepting(m.rec.ID); return !ok }) {
			g.persist(m, PhaseCancelled, nil, "")
		}
	case PhaseCancelled:
		g.announce(m)
	}
}

// announcements is how often a source tells its target of a final phase.
const announcements = 3

// announce tells the target of a final phase a few times (it also reads
// it from the metadata store).
func (g *Migrator) announce(m *mig) {
	if m.announced < announcements && m.retry <= 0 {
		m.announced++
		g.every(m, MsgPhase, 0)
	}
}

// installed reports whether the holds on every loop are the newest handed
// out and satisfy ok.
func (g *Migrator) installed(ok func(*Holds) bool) bool {
	return g.applied >= g.holds.Version && g.holds.Hold != nil && ok(&g.holds)
}

func (h *Holds) accepting(id MigrationID) (Accepting, bool) {
	for _, a := range h.Accept {
		if a.ID == id {
			return a, true
		}
	}
	return Accepting{}, false
}

// cancel takes m back to its source: before Transfer by recording it;
// from Transfer on, holding the ranges first and then giving them back in
// the same transaction.
func (g *Migrator) cancel(m *mig) {
	if m.rec.Phase < PhaseTransfer {
		g.persist(m, PhaseCancelled, nil, m.cancelling)
		return
	}
	if !g.installed(func(h *Holds) bool { return h.Hold.covers(m.rec.Slots()) }) {
		return // the hold (computeHolds) is not on every loop yet
	}
	next, err := g.st.Map.Assign(m.rec.Ranges, m.rec.Source, g.st.Applied)
	switch {
	case errors.Is(err, ErrHandoffPending):
	case err != nil || next == nil:
		// The ranges are no longer the target's: nothing this migration
		// can give back (the map was changed behind it).
		g.persist(m, PhaseCancelled, nil, m.cancelling+"; the map changed behind the migration")
	default:
		g.persist(m, PhaseCancelling, next, m.cancelling)
	}
}

func (g *Migrator) advanceTarget(m *mig) {
	switch m.rec.Phase {
	case PhasePrepare:
		if m.done[TaskPrepare] == 0 && !m.running[TaskPrepare] && g.servesOrOwns(m) {
			m.refused = true
		}
		if m.refused {
			g.every(m, MsgRefused, 0)
			return
		}
		if g.dropping(m) {
			return
		}
		if g.run(m, TaskPrepare) && g.prepared(m) {
			g.every(m, MsgPrepared, 0)
		}
	case PhaseMove:
		if m.finishGot && g.run(m, TaskCheckpoint) {
			g.every(m, MsgFinished, 0)
		}
	case PhaseCancelling:
		if !g.stopped(m) {
			return // it may still serve them: more may be written
		}
		if g.run(m, TaskShipBack) {
			g.every(m, MsgShippedBack, m.done[TaskShipBack])
		}
	case PhaseCancelled:
		g.cleanUp(m)
	}
}

// servesOrOwns reports whether the target serves a slot of m or the map
// gives it one: then m is a stale migration, and dropping its ranges would
// drop what the target serves.
func (g *Migrator) servesOrOwns(m *mig) bool {
	if g.routing != nil && g.routing.Serving.overlaps(m.rec.Slots()) {
		return true
	}
	return g.st.Map != nil && g.st.Map.Owned(g.cfg.Self).overlaps(m.rec.Slots())
}

// dropsWhenFinal reports whether this server drops m's ranges once m is
// final: the source when Complete, the target when Cancelled.
func (g *Migrator) dropsWhenFinal(m *mig) bool {
	return (m.role == source) == (m.rec.Phase == PhaseComplete)
}

// cleanUp drops the copies a final migration left behind. It decides from
// one read of the store, whose map and records agree, that shows m final:
// the slots that read's map gives here again (a later migration brought
// them back) or the loops still serve are not garbage, and while a
// migration that is not final brings any of them here, or one this
// server knows of is not final in the read, it waits. (What it
// leaves is garbage that the next migration bringing the slots here drops
// in Prepare; a migration that starts after the read waits in Prepare
// until the drop ended.)
func (g *Migrator) cleanUp(m *mig) {
	st, r := &g.read, g.routing
	if !g.dropsWhenFinal(m) || m.done[TaskDrop] != 0 || m.running[TaskDrop] || st.Map == nil ||
		r == nil || r.Map == nil || r.Map.Epoch < st.Map.Epoch {
		return
	}
	if rec, ok := st.MigrationByID(m.rec.ID); !ok || !rec.Phase.Final() {
		return
	}
	slots := m.rec.Slots()
	for _, o := range st.Migrations {
		if o.ID != m.rec.ID && !o.Phase.Final() && o.Slots().overlaps(slots) {
			return
		}
	}
	for _, o := range g.migs {
		// Every other migration over the slots that this server knows of
		// must be final in the read too: one known final from its peer's
		// messages only (this server cut off from the store) may have
		// brought the slots here after the read, whose map then does not
		// show them owned.
		if o == m || !o.rec.Slots().overlaps(slots) {
			continue
		}
		if rec, ok := st.MigrationByID(o.rec.ID); !ok || !rec.Phase.Final() {
			return
		}
	}
	garbage := slots
	garbage.subtract(st.Map.Owned(g.cfg.Self))
	garbage.subtract(r.Serving)
	if m.drop = garbage.Ranges(); len(m.drop) == 0 {
		m.done[TaskDrop] = 1
		return
	}
	g.run(m, TaskDrop)
}

// dropping reports whether a drop of another migration than m runs over
// m's slots: m waits with its own drop and takes no records meanwhile.
func (g *Migrator) dropping(m *mig) bool {
	for _, o := range g.migs {
		if o != m && o.running[TaskDrop] && o.rec.Slots().overlaps(m.rec.Slots()) {
			return true
		}
	}
	return false
}

// accepts reports whether the loops may insert m's records here.
func (g *Migrator) accepts(m *mig) bool {
	switch m.role {
	case target:
		p := m.rec.Phase
		return (p == PhaseTransfer || p == PhaseMove || p == PhasePrepare && m.done[TaskPrepare] != 0 && !m.refused) &&
			!m.running[TaskPrepare] && !g.dropping(m)
	default:
		return m.rec.Phase == PhaseCancelling && !(m.shipped && m.done[TaskCheckpoint] != 0)
	}
}

// computeHolds derives the holds from every migration.
func (g *Migrator) computeHolds() Holds {
	h := Holds{Hold: &SlotSet{}, Misses: &SlotSet{}, Prepared: map[MigrationID]uint64{}}
	for _, id := range slices.Sorted(maps.Keys(g.migs)) {
		m := g.migs[id]
		slots := m.rec.Slots()
		switch {
		case m.role == target && (m.rec.Phase == PhasePrepare && !m.refused || m.rec.Phase == PhaseCancelling || m.running[TaskPrepare]):
			h.Hold.union(slots)
		case m.role == target && (m.rec.Phase == PhaseTransfer || m.rec.Phase == PhaseMove && m.done[TaskCheckpoint] == 0):
			// Until the checkpoint after the move is done, not only until
			// the source said it finished: that task takes the move's
			// indirections (a key behind them is not absent).
			h.Misses.union(slots)
		case m.role == source && (m.rec.Phase == PhaseCancelling || m.cancelling != "" && m.rec.Phase >= PhaseTransfer):
			h.Hold.union(slots)
		}
		if m.role == source && m.rec.Phase == PhaseSample {
			h.Sample = append(h.Sample, Accepting{ID: id, Slots: slots})
		}
		if m.role == source && (m.rec.Phase == PhaseTransfer && g.stopped(m) || m.rec.Phase == PhaseMove) {
			// Stopped (Move comes after it): no loop serves, or writes,
			// the ranges here any more.
			h.Lend = append(h.Lend, Accepting{ID: id, Slots: slots})
		}
		if g.accepts(m) {
			a := Accepting{ID: id, Slots: slots}
			if m.role == target {
				a.Since = m.done[TaskPrepare]
			}
			h.Accept = append(h.Accept, a)
		}
		if m.role == target && !m.rec.Phase.Final() && m.done[TaskPrepare] != 0 {
			h.Prepared[id] = m.done[TaskPrepare]
		}
		if !m.rec.Phase.Final() || m.done[TaskDrop] == 0 && g.dropsWhenFinal(m) {
			rec := m.rec
			rec.Revision = 0
			h.Save = append(h.Save, rec)
		}
	}
	return h
}

func sameAccepting(a, b []Accepting) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Since != b[i].Since || *a[i].Slots != *b[i].Slots {
			return false
		}
	}
	return true
}

func sameHolds(a, b *Holds) bool {
	if b.Hold == nil || *a.Hold != *b.Hold || *a.Misses != *b.Misses || len(a.Save) != len(b.Save) ||
		!maps.Equal(a.Prepared, b.Prepared) || !sameAccepting(a.Accept, b.Accept) || !sameAccepting(a.Lend, b.Lend) ||
		!sameAccepting(a.Sample, b.Sample) {
		return false
	}
	for i := range a.Save {
		if a.Save[i].ID != b.Save[i].ID || a.Save[i].Phase != b.Save[i].Phase {
			return false
		}
	}
	return true
}
