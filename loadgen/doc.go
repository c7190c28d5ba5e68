// Package loadgen drives fleetkv servers with YCSB-style workloads through
// the native client and reports throughput and latency.
//
// Each client thread (a goroutine) owns its sessions end to end: it draws
// keys, appends operations to its sessions' batches, and records each
// operation's latency (from being queued to its callback) in its own HDR
// histogram; histograms are merged for the report. With Verify, every
// session works on its own share of the keys and checks every read against
// what it wrote.
//
// The package owns workloads, key choice, pacing and reports. It must never
// let measurement cost more than the operations it measures: no locks, no
// allocation per operation.
package loadgen
