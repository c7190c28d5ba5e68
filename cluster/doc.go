// Package cluster is the cluster's model: the slot map (which server owns
// which of the 16384 Redis Cluster slots), every server's view, the rules
// by which a server learns what to serve (Follower), and the interface of
// the metadata store that holds them (Metadata; etcd in production through
// package cluster/etcdmeta, Mem in tests).
//
// Ownership. A key's slot is keyhash.Slot: CRC16 of the key or its {tag},
// mod 16384, also the top 14 bits of the key's hash, so a slot range is one
// contiguous run of index buckets. The map assigns ranges of slots to
// servers. Every change is one compare-and-swap of the whole map on the
// revision it was read at (Change), so concurrent changes serialise.
//
// Views. Each server has a view number in the map, grown by one in the same
// swap that changes the slots it owns: a view names one owned set, and a
// batch sent under an older view is rejected whole (VIEW_CHANGED). A
// server's loops install a new view each at its own point; once all have, it
// persists what it serves and reports the view as applied.
//
// Handover. When a slot changes owner, the new owner serves it only after
// the previous owner has reported (applied) the view that no longer has
// it, and the slot cannot change owner again before that. So no slot is
// ever served by two servers, whatever the order in which servers learn of
// changes, crash or lose the metadata store (TestOwnershipSimulation). The
// data path never waits for the metadata store: a server that cannot reach
// it keeps serving what it serves; only changes wait.
//
// Migration. A migration moves ranges of slots from a source to a target
// while both serve (Migrator; the record is Migration, its phases Phase).
// The source drives it and stores every phase in the metadata store before
// acting on it; Transfer gives the ranges to the target in the map by the
// handover above, in the same transaction, and a cancel after it gives them
// back the same way. The target holds the ranges' operations from Prepare
// until the hot records arrived, then only reads of keys it lacks until
// every record was sent to it; what it is sent never replaces what it
// holds. The source keeps its copies until the target has checkpointed
// everything; a cancelled migration's target ships everything back, and
// the source serves again once it has checkpointed it. Records are moved by
// the server (tasks); the machine says when, and which records the loops
// may take (Holds). TestMigrationSimulation drives both sides through lost,
// duplicated and reordered messages, partitions, crashes at every step and
// cancels, and checks one owner per slot and every acknowledged write.
//
// The package is pure: no sockets, no clock, no goroutines, no etcd. The
// server glues it to its loops, the node package to etcd.
package cluster
