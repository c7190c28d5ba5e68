package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/fleetkv/fleetkv/wire"
)

// Config configures sessions.
type Config struct {
	Addr        string        // server host:port
	AuthToken   string        // sent with every session's OPEN
	BatchBytes  int           // a batch is sent when it reaches this size; default 32 KiB
	InFlight    int           // unanswered batches per session; default 4
	DialTimeout time.Duration // default 5 s
	Transport   string        // TransportStd (default), TransportNetpoll or TransportBlocking
	Limits      wire.Limits   // bounds on what the server may send; default 128 MiB batches, 64 KiB keys, 16 MiB values
	// Resume, when not 0, is the id of a session to resume instead of
	// opening a new one: the server answers the serial up to which that
	// session's operations were executed (ResumedAt), after a restart its
	// commit point in the recovered checkpoint, and the session's serials
	// go on after it. The caller re-issues its operations after that point.
	// Only the first connection resumes; a reconnect opens a new session.
	Resume uint64
	// Seeds are more servers a Cluster may fetch the slot map from when
	// Addr does not answer.
	Seeds []string
	// RerouteTimeout bounds how long a Cluster retries an operation whose
	// slot's owner does not serve it yet (a handover in progress) before
	// failing it with ErrNotOwner. Default 10 s.
	RerouteTimeout time.Duration
}

func (c *Config) fill() error {
	if c.Addr == "" {
		return errors.New("client: no server address")
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 32 << 10
	}
	if c.InFlight == 0 {
		c.InFlight = 4
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.Transport == "" {
		c.Transport = TransportStd
	}
	if c.RerouteTimeout == 0 {
		c.RerouteTimeout = 10 * time.Second
	}
	if c.Transport != TransportStd && c.Transport != TransportNetpoll && c.Transport != TransportBlocking {
		return fmt.Errorf("client: unknown transport %q (want %s)", c.Transport, transports)
	}
	if c.Limits == (wire.Limits{}) {
		c.Limits = wire.Limits{MaxBatch: 128 << 20, MaxKey: 64 << 10, MaxValue: 16 << 20}
	}
	if c.BatchBytes < wire.HeaderSize || c.InFlight < 1 {
		return fmt.Errorf("client: batch bytes %d and in-flight %d must be positive", c.BatchBytes, c.InFlight)
	}
	return nil
}

// Status is a successful operation's outcome.
type Status uint8

// Statuses.
const (
	OK       Status = iota // done; a read found its key
	NotFound               // the key has no value
)

// Result is one operation's outcome. Value (a read's value, an add's new
// value) is valid only during the callback.
type Result struct {
	Status Status
	Value  []byte
	Err    error
}

// Callback receives an operation's Result on the session's goroutine.
type Callback func(Result)

// pendingOp is a copy of an operation answered PENDING (keepPending).
type pendingOp struct {
	op     wire.Op
	kv     []byte // key, then value
	keyLen int
	writes uint32 // opRec.writes
}

type opRec struct {
	serial uint64
	off    uint32 // where the operation starts in its batch's buf
	since  uint32 // a Cluster's: when the operation was first refused (0: never)
	writes uint32 // a Cluster's: the writes sent on its slot before it (Cluster.writes)
	cb     Callback
}

// batch is one request batch: its encoded bytes (kept for re-issue) and
// the callbacks of its operations.
type batch struct {
	buf     []byte
	first   uint64
	ops     []opRec
	control bool // a control batch: its operations take no serials
	// rerouted: sent with wire.FlagRerouted (the first data batch after a
	// Cluster re-routed what was refused).
	rerouted bool
}

// Session is a pipelined session with one server. All its methods must be
// called by one goroutine at a time; callbacks run on that goroutine.
type Session struct {
	cfg      Config
	nc       net.Conn
	id, view uint64
	serial   uint64 // the next operation's serial
	migBuf   []byte // Migrate's value, copied into the batch by add
	expBuf   []byte // UpsertExpiring's value, copied into the batch by add
	cur      *batch
	inflight []*batch // sent, unanswered, oldest first
	free     []*batch
	pending  map[uint64]Callback // answered PENDING, completion not seen
	// pendingOps are copies of the pending operations, kept when refusedLate
	// is set (keepPending).
	pendingOps map[uint64]pendingOp
	rbuf       []byte // received bytes: rbuf[rpos:rend] unparsed
	rpos       int
	rend       int
	durable    uint64 // the server's commit point: operations up to it are durable
	conns      uint64 // connections made: the commit point of each is its own
	resumed    uint64 // where a resumed session went on (0: a new session)
	err        error  // sticky: the session can no longer work
	backoff    time.Duration
	// misrouted, when set, takes an operation the server refused with
	// NOT_OWNER instead of its callback, with its key and value (valid
	// during the call) and its opRec.since: a Cluster re-routes it.
	misrouted func(op wire.Op, key, value []byte, cb Callback, since uint32)
	// refusedLate, when set, takes a pending read refused with NOT_OWNER
	// in its completion (with its serial and opRec.writes); false: it is
	// answered with the refusal. A Cluster re-issues it when that keeps
	// its order.
	refusedLate func(op wire.Op, key, value []byte, cb Callback, serial uint64, writes uint32) bool
	// onConnect, when set, is told of every connection the session makes
	// once it is open (a Cluster bounds it by the wait in progress).
	onConnect func(nc net.Conn)
	// viewChanged, when set, is called when the server answers
	// VIEW_CHANGED: ownership changed, and a Cluster refreshes its map.
	viewChanged func()
	// rerouted: the next data batch lifts the server's fence
	// (wire.FlagRerouted); a Cluster sets it once it knows every refusal.
	// A plain session (no misrouted) flags a batch it sends with nothing
	// in flight. Only after a refusal (refused): no fence is up before.
	rerouted bool
	refused  bool // a NOT_OWNER answer arrived since the last flagged batch
}

// Dial connects a session and opens it on the server.
func Dial(cfg Config) (*Session, error) {
	return DialContext(context.Background(), cfg)
}

// DialContext is Dial within ctx: connecting and opening the session stop at
// ctx's deadline or cancellation, and at cfg.DialTimeout.
func DialContext(ctx context.Context, cfg Config) (*Session, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	s := &Session{cfg: cfg, pending: make(map[uint64]Callback), pendingOps: make(map[uint64]pendingOp), rbuf: make([]byte, 256<<10)}
	if err := s.connect(ctx); err != nil {
		if ctxErr := ctxErr(ctx); ctxErr != nil {
			err = errors.Join(ctxErr, err)
		}
		return nil, err
	}
	return s, nil
}

// ID returns the session id the server gave.
func (s *Session) ID() uint64 { return s.id }

// ResumedAt returns, for a session dialled with Config.Resume, the serial
// up to which the resumed session's operations had been executed (after a
// restart: were durable); its next operation gets the serial after it.
func (s *Session) ResumedAt() uint64 { return s.resumed }

// View returns the view the session sends with its batches.
func (s *Session) View() uint64 { return s.view }

// Err returns the error that stopped the session, if any.
func (s *Session) Err() error { return s.err }

// connect dials, sends OPEN and reads the session id and view. Serial
// numbers restart with each connection: the server's session is per
// connection.
func (s *Session) connect(ctx context.Context) error {
	deadline := time.Now().Add(s.cfg.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	nc, err := dial(s.cfg.Transport, s.cfg.Addr, time.Until(deadline))
	if err != nil {
		return fmt.Errorf("client: dial %s: %w", s.cfg.Addr, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	s.nc, s.rpos, s.rend, s.serial, s.durable = nc, 0, 0, 1, 0
	s.conns++
	var resume []byte
	if s.cfg.Resume != 0 && s.id == 0 {
		resume = binary.LittleEndian.AppendUint64(nil, s.cfg.Resume)
	}
	b, start := wire.BeginBatch(nil)
	b = wire.AppendOp(b, wire.OpOpen, resume, []byte(s.cfg.AuthToken))
	wire.FinishRequest(b, start, wire.RequestHeader{Flags: wire.FlagControl, Count: 1})
	_ = nc.SetDeadline(deadline)
	if _, err := nc.Write(b); err != nil {
		nc.Close()
		return fmt.Errorf("client: open session: %w", err)
	}
	h, body, err := s.readBatch()
	if err == nil && h.Status == wire.BatchError {
		err = &ServerError{Code: h.Code, Msg: string(body)}
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("client: open session: %w", err)
	}
	var r wire.ResultReader
	r.Reset(h, body, s.cfg.Limits)
	res, ok, err := r.Next()
	if err != nil || !ok || res.Status != wire.StatusOK || (len(res.Value) != 32 && (len(res.Value) != 16 || resume != nil)) {
		nc.Close()
		return fmt.Errorf("client: open session: unexpected answer %+v (%v)", res, err)
	}
	s.id = binary.LittleEndian.Uint64(res.Value)
	s.view = binary.LittleEndian.Uint64(res.Value[8:])
	if resume != nil {
		s.resumed = binary.LittleEndian.Uint64(res.Value[16:])
		s.serial = s.resumed + 1
		s.durable = binary.LittleEndian.Uint64(res.Value[24:])
	}
	_ = nc.SetDeadline(time.Time{})
	if s.onConnect != nil {
		s.onConnect(nc)
	}
	return nil
}

// Close waits for every operation to complete and closes the connection.
func (s *Session) Close() error {
	err := s.Wait()
	if s.nc != nil {
		s.nc.Close()
		s.nc = nil
	}
	if s.err == nil {
		s.err = ErrClosed
	}
	return err
}
