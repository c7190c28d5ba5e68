package client

import (
	"errors"
	"fmt"

	"github.com/fleetkv/fleetkv/wire"
)

var (
	// ErrUnknownOutcome fails an operation that was sent but whose answer
	// was lost with its connection: it may or may not have been applied.
	ErrUnknownOutcome = errors.New("client: connection lost before the answer; the operation may or may not have been applied")
	// ErrClosed is returned by a closed session or client.
	ErrClosed = errors.New("client: closed")
	// ErrTooLarge is returned for a key or value over the session's limits,
	// before anything is sent.
	ErrTooLarge = errors.New("client: key or value over the limits")
)

// OpError is the server's refusal of one operation (a value that is not an
// int64, a record too large for the log, ...). It is comparable with ==.
type OpError struct{ Code wire.Code }

func (e *OpError) Error() string { return "fleetkv: " + e.Code.String() }

// opErrors holds one OpError per code so that reporting one never allocates.
var opErrors = func() (t [256]*OpError) {
	for i := range t {
		t[i] = &OpError{Code: wire.Code(i)}
	}
	return t
}()

// ErrNotInt64 is the OpError of an Incr on a value that is not 8 bytes.
var ErrNotInt64 error = opErrors[wire.CodeNotInt64]

// ErrNotOwner is the OpError of an operation sent to a server that does
// not serve its key's slot. A Session reports it; a cluster client
// re-routes the operation instead.
var ErrNotOwner error = opErrors[wire.CodeNotOwner]

// ServerError is the server's ERROR batch: it closed the connection after
// it. Operations of the batch it names and of later batches did not run.
type ServerError struct {
	Code wire.Code
	Msg  string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("fleetkv server error (%v): %s", e.Code, e.Msg)
}
