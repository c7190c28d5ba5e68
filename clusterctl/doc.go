// Package clusterctl is what an operator does to a cluster (fleetkv
// cluster): create its slot map, show its state, assign slots, and run a
// whole cluster of real processes on one machine (Local, for the demo and
// for tests). It works on a cluster.Metadata the caller opens (etcd in
// cmd/fleetkv) and reaches servers through their admin HTTP endpoints; it
// never touches a server's data path.
//
// Every change requires the cluster's admin token when one is set (Admin
// checks it with the metadata store before acting).
package clusterctl
