// Package chaos runs a fleetkv cluster of real processes, servers and a
// three-member etcd (fleetkv meta), each in its own network namespace, and
// injects faults on a seeded schedule while clients run a history of
// reads, writes, deletes and increments: kill -9 and restart of any server
// or meta member, partitions (a server from the metadata store, a
// migration's source from its target, the clients from one server) and
// packet loss and delay, with migrations between servers running all the
// while. The history is checked with porcupine against a model of a
// key-value map on servers that commit by checkpoints (model.go); the
// cluster, once quiet, must have every migration ended and every slot
// served by exactly one server.
//
// The servers checkpoint by fold-over for even seeds and by snapshot for
// odd ones (-chaos-checkpoint-mode picks one). make chaos runs the long
// schedule; make test runs a short one. A failing run prints its seed;
// -chaos-seed replays it.
package chaos
