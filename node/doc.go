// Package node composes one fleetkv process: the log device and the
// checkpoint directory under its data directory, the server over them, and,
// in a cluster, its membership: its id, its registration with the metadata
// store, the slot map it watches and the routing its loops install.
// cmd/fleetkv, in-process multi-server tests and `fleetkv cluster local`
// all start servers through Start.
//
// A member never lets the data path wait for the metadata store: the
// routing it persisted (DIR/cluster/routing.json) is served from the
// start, and while the store is unreachable the server keeps serving what
// it serves; only changes of the map wait (cluster.Follower has the rules).
//
// A member also takes part in live migrations (migration.go): it drives
// a cluster.Migrator, persists its holds (DIR/cluster/holds.json) before
// its loops take them, counts its starts (DIR/cluster/incarnation), runs
// the migrator's tasks (migrate.Drop and checkpoints here, migrate.Send to
// the peer) and exchanges its messages with peers as MIGRATOR operations.
//
// Goroutines: Start's caller; one membership goroutine per member (reads
// the store on every change it signals, installs and persists routings and
// holds, reports applied views, re-registers, ticks and steps the
// migrator, stores its records); one per running migration task and one
// sender per peer it messages (both report back to the membership
// goroutine through one queue, and end before close returns); the
// fetcher, which gets from the source the keys the target's loops park
// reads on, and reads those the source answers with an address in its
// log in the shared tier with 16 workers for each batch, and hands the
// records to the loops in process (server.Deliver; fetch.go); with a
// shared tier, the sealer, which uploads the
// log's final segments and deletes those no one needs (tier.go), and one
// resolver per installed indirection table, each with 16 workers
// (indirect.go); the planner goroutine (unless ClusterConfig.NoPlanner),
// which campaigns in the store's election and, while it leads, carries out
// the cluster's plans (package planner), touching only the store; the
// server's own (server/doc.go), whose loops hand peers' messages to that
// queue.
package node
