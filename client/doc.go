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
// that was sent and not answered fails at once with ErrUnknownOutcome, and
// the session reconnects when it next sends the operations it still holds.
//
// Transports: TransportStd (Go's net package, the default) or
// TransportNetpoll (cloudwego/netpoll). With netpoll, a deadline set before a
// call is honoured but cancelling a context without a deadline does not
// interrupt a read already waiting (netpoll reads its deadline when a wait
// starts); BENCHMARKS.md has the measurement between the two.
//
// Client is the synchronous API on top: Get, Set, Delete, Incr with context
// deadlines, safe from any goroutine, over a pool of sessions.
package client
