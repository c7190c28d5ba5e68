// Package session is the server side of one client session, as a plain type
// that tests drive without sockets: the session id, the serial number the
// next batch must start at, the view check, the table of operations still
// pending, and the assembly of response batches.
//
// A Session belongs to the event loop that owns its connection; none of its
// methods may be called from another goroutine. It never executes an
// operation and never touches the network: the server does both.
package session
