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
// Goroutines: Start's caller; one membership goroutine per member (reads
// the store on every change it signals, installs and persists routings,
// reports applied views, re-registers); the server's own (server/doc.go).
package node
