package wire

import "encoding/binary"

// HeaderSize is the size of request and response batch headers.
const HeaderSize = 32

// MagicVersion opens every batch: magic nibble 0xF, protocol version 1.
const MagicVersion = 0xF1

// FlagControl marks a request batch of control operations only.
const FlagControl = 1

// FlagRerouted marks a request batch sent after the client learned the
// answer to every operation it sent before on the connection and re-issued
// those refused NOT_OWNER. A server that refused an operation on a slot
// refuses every later one of the connection on that slot until such a
// batch arrives: a refused operation is re-issued before the operations
// the client sent after it, so the connection's order of operations on a
// key holds across re-routing.
const FlagRerouted = 2

// Op is an operation code.
type Op uint8

// Operation codes.
const (
	OpRead   Op = 1
	OpUpsert Op = 2
	OpDelete Op = 3
	OpAdd    Op = 4
	OpAppend Op = 5
	// OpMigrate inserts a record a live migration sends between servers
	// (AppendMigrateValue lays out its value).
	OpMigrate Op = 6
	// OpUpsertExpiring sets the key's value with an expiry: its value is
	// the expiry (Unix milliseconds, u64, > 0), then the value. An expiry
	// already past deletes the key.
	OpUpsertExpiring Op = 7
	// OpExpire sets the expiry of a live key's value (its value: the
	// expiry, u64; 0 removes it) and answers with the expiry it had (u64,
	// 0: none), or NOT_FOUND. An expiry already past deletes the key.
	OpExpire  Op = 8
	OpOpen    Op = 16
	OpPing    Op = 17
	OpGetView Op = 18
	// OpCheckpoint asks for a checkpoint; the session's COMMIT batch says
	// when its operations are durable.
	OpCheckpoint Op = 19
	// OpClusterMap asks for the slot map the server routes by (JSON,
	// cluster.Snapshot), so clients route without reaching the metadata
	// store.
	OpClusterMap Op = 20
	// OpMigrator carries a message between two servers' migrators (JSON
	// cluster.Message in its value; an empty value only asks) and is
	// answered with the receiving server's incarnation (8 bytes), which
	// differs at every start: a migration's data task learns from it
	// which run of its peer took the records it sent on that connection.
	OpMigrator Op = 21
	// OpScan asks for a run of the keys of the slots the server serves
	// (wire/scan.go lays out its value and result).
	OpScan Op = 22
	// OpFlush drops every key of the server (FLUSHALL): its operations
	// are each entirely before or after it. Answered once the keys are
	// gone; durable at the next checkpoint.
	OpFlush Op = 23

	// MaxOp is the largest known code: tables indexed by a known
	// operation's code need MaxOp+1 entries.
	MaxOp = OpFlush
)

// hasValue reports whether an operation carries a value; ok is false for an
// unknown code.
func (o Op) hasValue() (has, ok bool) {
	switch o {
	case OpRead, OpDelete, OpGetView, OpCheckpoint, OpClusterMap, OpFlush:
		return false, true
	case OpUpsert, OpAdd, OpAppend, OpMigrate, OpUpsertExpiring, OpExpire, OpOpen, OpPing, OpMigrator, OpScan:
		return true, true
	}
	return false, false
}

// Operation shapes, per code (opShapes): known, carries a value, control.
const (
	shapeKnown uint8 = 1 << iota
	shapeValue
	shapeControl
)

// opShapes is hasValue and Control as a table, for OpReader.Next.
var opShapes = func() (t [256]uint8) {
	for c := range t {
		o := Op(c)
		if has, ok := o.hasValue(); ok {
			t[c] = shapeKnown
			if has {
				t[c] |= shapeValue
			}
			if o.Control() {
				t[c] |= shapeControl
			}
		}
	}
	return t
}()

// Control reports whether the operation is a session control operation.
func (o Op) Control() bool { return o >= OpOpen }

func (o Op) String() string {
	switch o {
	case OpRead:
		return "READ"
	case OpUpsert:
		return "UPSERT"
	case OpDelete:
		return "DELETE"
	case OpAdd:
		return "ADD"
	case OpAppend:
		return "APPEND"
	case OpMigrate:
		return "MIGRATE"
	case OpUpsertExpiring:
		return "UPSERT_EXPIRING"
	case OpExpire:
		return "EXPIRE"
	case OpOpen:
		return "OPEN"
	case OpPing:
		return "PING"
	case OpGetView:
		return "GET_VIEW"
	case OpCheckpoint:
		return "CHECKPOINT"
	case OpClusterMap:
		return "CLUSTER_MAP"
	case OpMigrator:
		return "MIGRATOR"
	case OpScan:
		return "SCAN"
	case OpFlush:
		return "FLUSH"
	}
	return "OP?"
}

// BatchStatus is a response batch's status.
type BatchStatus uint8

// Batch statuses.
const (
	BatchOK          BatchStatus = 0
	BatchViewChanged BatchStatus = 1
	BatchRetryLater  BatchStatus = 2
	BatchError       BatchStatus = 3
	// BatchCommit is unsolicited: every operation of the session with a
	// serial up to the header's serial is durable, none after it is
	// promised. Empty body.
	BatchCommit BatchStatus = 4
)

// Status is one result's status.
type Status uint8

// Result statuses; a completion sets CompletionBit on its status byte.
const (
	StatusOK       Status = 0
	StatusNotFound Status = 1
	StatusPending  Status = 2
	StatusError    Status = 3

	CompletionBit = 0x80
)

// Code names an error, in an ERROR batch header or an ERROR result.
type Code uint16

// Error codes.
const (
	CodeNone         Code = 0
	CodeMalformed    Code = 1  // the bytes are not a valid batch
	CodeTooLarge     Code = 2  // batch, key or value over the limits
	CodeUnknownOp    Code = 3  // unknown operation code
	CodeBadVersion   Code = 4  // unknown magic or version
	CodeNotInt64     Code = 5  // ADD on a value that is not 8 bytes
	CodeRecordTooBig Code = 6  // key and value do not fit the log
	CodeAuth         Code = 7  // no session, or a wrong token
	CodeInternal     Code = 8  // I/O error or a server fault
	CodeBadSerial    Code = 9  // batch serial is not the next expected one
	CodeBadArgument  Code = 10 // an operation's arguments are invalid
	CodeIO           Code = 11 // the device failed reading or writing the log
	CodeNoSpace      Code = 12 // the device is full: the log takes no new pages
	CodeCorrupt      Code = 13 // the device returned a record that cannot be valid
	// CodeNotOwner: the server does not serve the key's slot under its
	// current view; the client refreshes its slot map and re-issues the
	// operation to the owner. A client with a current map never sees it.
	CodeNotOwner Code = 14
)

func (c Code) String() string {
	switch c {
	case CodeNone:
		return "none"
	case CodeMalformed:
		return "malformed"
	case CodeTooLarge:
		return "too large"
	case CodeUnknownOp:
		return "unknown operation"
	case CodeBadVersion:
		return "unsupported version"
	case CodeNotInt64:
		return "value is not an int64"
	case CodeRecordTooBig:
		return "record too large"
	case CodeAuth:
		return "not authorized"
	case CodeInternal:
		return "internal error"
	case CodeBadSerial:
		return "unexpected serial"
	case CodeBadArgument:
		return "bad argument"
	case CodeIO:
		return "device I/O error"
	case CodeNoSpace:
		return "device full"
	case CodeCorrupt:
		return "corrupt record on the device"
	case CodeNotOwner:
		return "not the owner of the key's slot"
	}
	return "code?"
}

// Limits bound what a decoder accepts. They are checked before anything is
// allocated or copied.
type Limits struct {
	MaxBatch int // body bytes of one batch
	MaxKey   int
	MaxValue int
}

// DefaultLimits are the server's defaults: 1 MiB batches, 64 KiB keys,
// 16 MiB values (a value that large needs a larger MaxBatch too).
var DefaultLimits = Limits{MaxBatch: 1 << 20, MaxKey: 64 << 10, MaxValue: 16 << 20}

// Error is a decoding failure with the code the server reports for it.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return "wire: " + e.Code.String() + ": " + e.Msg }

// Is makes errors.Is(err, ErrMalformed) and friends match by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Code == e.Code
}

// Sentinels to compare decoding errors with errors.Is.
var (
	ErrMalformed  = &Error{Code: CodeMalformed}
	ErrTooLarge   = &Error{Code: CodeTooLarge}
	ErrUnknownOp  = &Error{Code: CodeUnknownOp}
	ErrBadVersion = &Error{Code: CodeBadVersion}
)

// Preallocated decoding errors, so that rejecting input never allocates.
var (
	errShortHeader = &Error{CodeMalformed, "short header"}
	errVersion     = &Error{CodeBadVersion, "magic/version byte is not 0xF1"}
	errFlags       = &Error{CodeMalformed, "unknown flag bits"}
	errReserved    = &Error{CodeMalformed, "reserved header bytes are not zero"}
	errBatchSize   = &Error{CodeTooLarge, "batch body larger than the limit"}
	errCount       = &Error{CodeMalformed, "operation count does not fit the body length"}
	errTruncated   = &Error{CodeMalformed, "operation runs past the end of the body"}
	errVarint      = &Error{CodeMalformed, "bad length varint"}
	errKeySize     = &Error{CodeTooLarge, "key larger than the limit"}
	errValueSize   = &Error{CodeTooLarge, "value larger than the limit"}
	errUnknownOp   = &Error{CodeUnknownOp, "unknown operation code"}
	errTrailing    = &Error{CodeMalformed, "bytes after the last operation"}
	errControl     = &Error{CodeMalformed, "data operation in a control batch"}
	errStatus      = &Error{CodeMalformed, "unknown result status"}
)

// uvarint reads a length: an unsigned varint of at most 5 bytes, in its
// shortest form (so that every batch has exactly one encoding).
func uvarint(b []byte) (v uint64, n int, err error) {
	v, n = binary.Uvarint(b)
	if n <= 0 || n > 5 || v > 1<<32-1 || (n > 1 && b[n-1] == 0) {
		return 0, 0, errVarint
	}
	return v, n, nil
}
