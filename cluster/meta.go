package cluster

import (
	"context"
	"errors"
)

// State is one consistent read of a cluster's metadata.
type State struct {
	// Map is the slot map (nil before init) and MapRevision the revision
	// it was stored at, which a SwapMap of a map made from it names.
	Map         *Map
	MapRevision int64
	// Live holds the servers whose registration is alive.
	Live map[ServerID]Server
	// Applied holds the newest view each server reported as applied.
	Applied map[ServerID]uint64
	// Migrations holds every migration record, final ones included, in
	// the order of their ids, each with its revision.
	Migrations []Migration
	// Plans holds every plan, ended ones included, in the order of their
	// ids, each with its revision.
	Plans []Plan
	// Loads holds the latest load each live server reported.
	Loads map[ServerID]ServerLoad
	// Cleaned holds each server's clean-up floor (ReportCleaned): it needs
	// no migration record with a lower id any more.
	Cleaned map[ServerID]MigrationID
}

// ServerLoad is a server's load over its latest report interval: its data
// operations a second, and those of its busiest slots.
type ServerLoad struct {
	OpsPerSec float64    `json:"ops_per_sec"`
	Slots     []SlotLoad `json:"slots,omitempty"` // at most MaxReportedSlots, the busiest, sorted by slot
	Seq       uint64     `json:"seq"`             // one more at every report of the server's process
}

// SlotLoad is one slot's data operations a second.
type SlotLoad struct {
	Slot      uint16  `json:"slot"`
	OpsPerSec float64 `json:"ops"`
}

// MaxReportedSlots bounds the slots of a ServerLoad (its busiest).
const MaxReportedSlots = 64

// Metadata is where a cluster's map, registrations and applied views live:
// etcd in production (package cluster/etcdmeta), Mem in tests.
// Implementations are safe from any goroutine.
type Metadata interface {
	// Load reads the whole state at one revision.
	Load(ctx context.Context) (State, error)
	// SwapMap stores m if the map is still at revision prev (0: no map
	// yet) and returns its new revision; ErrConflict when it moved.
	SwapMap(ctx context.Context, prev int64, m *Map) (int64, error)
	// SwapMigration stores a migration record, and a map with it, in one
	// transaction (MigrationSwap) and returns the new revision;
	// ErrConflict when either moved.
	SwapMigration(ctx context.Context, w MigrationSwap) (int64, error)
	// SwapPlan stores a plan, and a migration record with it, in one
	// transaction (PlanSwap) and returns the new revision; ErrConflict
	// when either moved.
	SwapPlan(ctx context.Context, w PlanSwap) (int64, error)
	// DeletePlan removes plan id if it is still at revision rev;
	// ErrConflict when it moved or is gone. The planner deletes ended
	// plans only (planner.Run keeps the newest few).
	DeletePlan(ctx context.Context, id PlanID, rev int64) error
	// Register records s as alive until ctx ends or the process stops
	// renewing it (a lease).
	Register(ctx context.Context, s Server) error
	// ReportLoad records server id's latest load, kept while its
	// registration lives; it signals no change (Changes).
	ReportLoad(ctx context.Context, id ServerID, l ServerLoad) error
	// ReportApplied records that server id serves under view (views only
	// grow: a lower one than recorded changes nothing).
	ReportApplied(ctx context.Context, id ServerID, view uint64) error
	// ReportCleaned records that server id needs no migration record with
	// an id below floor (Migrator's Ready.Cleaned); floors only grow, a
	// lower one than recorded changes nothing. Like an applied view, it
	// outlives the server's registration.
	ReportCleaned(ctx context.Context, id ServerID, floor MigrationID) error
	// DeleteMigration removes migration record id if it is still at
	// revision rev; ErrConflict when it moved or is gone. The planner
	// deletes only records no server needs (Collectable).
	DeleteMigration(ctx context.Context, id MigrationID, rev int64) error
	// Lead campaigns for the cluster's one planner as id: it returns once
	// id leads, with a channel closed when it no longer does (ctx ended,
	// which resigns; its lease lapsed; the store closed), or ctx's error
	// first. A leader acts only through compare-and-swaps, so a lost lead
	// noticed late costs races, not safety.
	Lead(ctx context.Context, id ServerID) (<-chan struct{}, error)
	// Changes is signalled (coalesced) after any change of the state.
	// Each call subscribes a new channel for the store's life: a
	// follower subscribes once, not once per wait.
	Changes() <-chan struct{}
	Close() error
}

// ErrConflict is the swaps' answer when the map or a record changed since
// it was read.
var ErrConflict = errors.New("cluster: the slot map or migration changed meanwhile; read it again")

// Change reads the map, lets change make a new one from it and stores that
// with a compare-and-swap, again from a fresh read when another change got
// there first (up to tries times). change returns nil for "nothing to do".
func Change(ctx context.Context, md Metadata, tries int, change func(State) (*Map, error)) (*Map, error) {
	for range tries {
		st, err := md.Load(ctx)
		if err != nil {
			return nil, err
		}
		m, err := change(st)
		if err != nil || m == nil {
			return st.Map, err
		}
		if err := m.Validate(); err != nil {
			return nil, err
		}
		switch _, err := md.SwapMap(ctx, st.MapRevision, m); {
		case err == nil:
			return m, nil
		case !errors.Is(err, ErrConflict):
			return nil, err
		}
	}
	return nil, ErrConflict
}
