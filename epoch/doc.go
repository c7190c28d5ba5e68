// Package epoch implements FASTER's epoch protection: the mechanism that lets
// workers share the hash index and the log without locks, and that defers
// global changes (flushing a page, evicting a frame, switching index tables,
// changing a view) until every worker has moved past the point where it could
// still observe the old state.
//
// Go has no thread-locals, so a worker acquires a Guard (its slot in the epoch
// table) once and passes it to every operation. A protected worker must call
// Refresh every few dozen operations and Unprotect before it blocks; a worker
// that stays protected without refreshing stalls every deferred action.
//
// The package owns only epoch numbers, slots and the drain list. It must never
// run an action before it is safe or run one twice. A Refresh runs the
// actions that became safe, on the refreshing worker: actions must be short
// (hlog's issue page writes, which an asynchronous device only queues).
package epoch
