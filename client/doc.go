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
// Transports: TransportStd (Go's net package, the default),
// TransportNetpoll (cloudwego/netpoll) or TransportBlocking (Go's net
// package with the socket in blocking mode while no deadline is set: a
// session waits for a response asleep in read(2) on its own OS thread,
// which takes a Go netpoller hand-off out of every round trip, at the cost
// of a thread per waiting session; a wait bounded by a context deadline
// goes through the netpoller as with std). With netpoll, a deadline set
// before a call is honoured but cancelling a context without a deadline
// does not interrupt a read already waiting (netpoll reads its deadline
// when a wait starts); the blocking transport's cancellation shuts the
// connection down. BENCHMARKS.md has the measurements between them.
//
// Client is the synchronous API on top: Get, Set, Delete, Incr with context
// deadlines, safe from any goroutine, over a pool of sessions.
package client
