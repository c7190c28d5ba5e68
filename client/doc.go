// Package client is fleetkv's native Go client.
//
// A Session is one client thread's session with one server: operations are
// appended to a batch, a batch is sent when it reaches BatchBytes or on
// Flush, and up to InFlight batches stay unanswered at a time. Results come
// back through the callback given with each operation, on the session's own
// goroutine, during the session's calls (an operation's callback runs when a
// later call needs room in the pipeline, or on Flush/Wait). Batches the
// server rejects with VIEW_CHANGED are re-issued from the server's re-issue
// point with the new view; the server's serial check means nothing is
// skipped or applied twice. When the connection breaks, every operation
// that was sent and not answered fails with ErrUnknownOutcome and the
// session reconnects for the rest.
//
// Client is the synchronous API on top: Get, Set, Delete, Incr with context
// deadlines, safe from any goroutine, over a pool of sessions.
package client
