package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
)

// Server is a running fleetkv server. Its exported methods are safe from any
// goroutine.
type Server struct {
	cfg   Config
	log   *slog.Logger
	st    *store.Store
	addr  string // host:port actually listened on
	proto string // gnet's "tcp://host:port"
	// respAddr is the RESP listener's host:port ("" when off) and respPort
	// its port, which tells the loops a RESP connection from a native one.
	respAddr string
	respPort int
	eng      gnet.Engine // set by OnBoot, before booted is closed

	// route is what the loops route by: the view, the slots served and
	// the cluster's map. Each loop reads it once per turn (loop.turn).
	route atomic.Pointer[cluster.Routing]
	// mapCache is the JSON the CLUSTER_MAP operation answers, for the
	// routing it was made from.
	mapCache    atomic.Pointer[encodedMap]
	nextSession atomic.Uint64

	parkedOn parkedRegistry // which loops park reads on which keys (parking.go)
	// cuts are the migrations whose fetches the tier answers (lend.go);
	// cutsMu orders their writers.
	cuts   atomic.Pointer[map[cluster.MigrationID]tierCut]
	cutsMu sync.Mutex
	mu     struct {
		sync.Mutex
		loops map[gnet.EventLoop]*loop
		list  []*loop
		// hold is closed when the checkpoint pause in progress ends (nil:
		// none): a loop created meanwhile waits for it before it serves.
		hold <-chan struct{}
	}
	started time.Time
	dur     *durability // nil without a checkpoint directory
	// sessions says where native sessions stand, for OPEN with resume.
	sessions *sessionTable
	comp     *compaction
	expiry   *activeExpiry
	adm      *admission
	stats    struct {
		checkpoints     atomic.Uint64
		checkpointNanos atomic.Uint64
		pauseNanos      atomic.Uint64 // time loops stood still for CPR points, summed over loops (pause.go)
		flushes         atomic.Uint64 // FLUSHALLs done
	}
	booted chan struct{}
	done   chan error // gnet.Run's result
	admin  *adminServer
	closed atomic.Bool
	// life ends when Shutdown starts: work on other goroutines that waits
	// for the loops (a FLUSHALL's pause) gives up then.
	life    context.Context
	endLife context.CancelFunc
	scans   chan struct{} // a place for each SCAN, KEYS or RANDOMKEY walking (scan.go)
	// aside counts the goroutines that work for a loop's command off the
	// loop (respAside, native SCAN, BGSAVE): Shutdown waits for them
	// before it closes the store they use.
	aside sync.WaitGroup
}

// Start opens the store, starts the event loops and the admin listener, and
// returns once the data listener accepts connections.
func Start(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	addr, err := resolveListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, addr: addr, proto: "tcp://" + addr, started: time.Now(),
		booted: make(chan struct{}), done: make(chan error, 1)}
	s.life, s.endLife = context.WithCancel(context.Background())
	s.scans = make(chan struct{}, maxScans)
	listeners := []string{s.proto}
	if cfg.RESP != "" {
		// Two port-0 listeners are resolved one after the other, each to a
		// port free at the time: the second may get the first's again.
		for try := 0; try == 0 || (collide(s.respAddr, addr) && strings.HasSuffix(cfg.RESP, ":0") && try < 8); try++ {
			if s.respAddr, s.respPort, err = resolvePort(cfg.RESP); err != nil {
				return nil, err
			}
		}
		if collide(s.respAddr, addr) {
			return nil, fmt.Errorf("server: the RESP listener %s would share the data listener %s's port", s.respAddr, addr)
		}
		listeners = append(listeners, "tcp://"+s.respAddr)
	}
	if s.st, err = s.openStore(); err != nil {
		return nil, err
	}
	if cpus, err := s.placeDevice(); err != nil {
		log.Warn("cannot keep the device's threads off the loops' cores", "err", err)
	} else if cpus.Count() > 0 {
		log.Info("the device's threads run off the loops' cores", "cpus", cpus.Count())
	}
	st := s.st
	if cfg.Recovered != nil {
		if err := cfg.Recovered(st); err != nil {
			st.Close()
			return nil, err
		}
	}
	s.comp = newCompaction(s)
	s.expiry = newActiveExpiry(s) // before the loops and the admin listener read its stats
	s.adm = newAdmission(s)       // before the loops record their turns
	if cfg.Routing != nil {
		s.route.Store(cfg.Routing)
	} else {
		s.route.Store(cluster.Standalone(1))
	}
	s.mu.loops = make(map[gnet.EventLoop]*loop)
	go func() { s.done <- gnet.Rotate(&handler{s: s}, listeners, s.gnetOptions()...) }()
	select {
	case <-s.booted:
	case err := <-s.done:
		st.Close()
		return nil, fmt.Errorf("server: listen on %s: %w", strings.Join(listeners, ", "), err)
	}
	if cfg.Admin != "" {
		if s.admin, err = startAdmin(s, cfg.Admin); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	if s.dur != nil {
		s.dur.start(cfg.CheckpointInterval)
	}
	s.comp.start(cfg.CompactInterval, cfg.CompactThreshold, cfg.CompactChunk)
	s.expiry.start()
	s.adm.start()
	log.Info("fleetkv serving", "addr", addr, "resp", s.respAddr, "admin", s.AdminAddr(), "loops", cfg.Loops,
		"pin", !cfg.NoPin, "reuseport", !cfg.NoReusePort)
	return s, nil
}

func (s *Server) gnetOptions() []gnet.Option {
	return []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithLockOSThread(true),
		gnet.WithReusePort(!s.cfg.NoReusePort),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReadBufferCap(256 << 10),
		gnet.WithLogger(gnetLogger{s.log}),
	}
}

// resolveListen turns host:0 into host:port with a port that is free now, so
// that every SO_REUSEPORT listener binds the same one, and refuses a port
// another socket listens on (listen.go).
func resolveListen(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("server: listen address %q: %w", listen, err)
	}
	if port != "0" {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", fmt.Errorf("server: listen port %q: not a port number", port)
		}
		if err := refuseInUse(listen); err != nil {
			return "", err
		}
		return listen, nil
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return "", fmt.Errorf("server: listen on %s: %w", listen, err)
	}
	defer l.Close()
	return net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}

// resolvePort is resolveListen that also returns the port.
func resolvePort(listen string) (string, int, error) {
	addr, err := resolveListen(listen)
	if err != nil {
		return "", 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return addr, p, nil
}

// RESPAddr returns the Redis-protocol address, or "" when it is off.
func (s *Server) RESPAddr() string { return s.respAddr }

// respLimits are the RESP reader's limits: a bulk may hold the largest key
// or value the server takes.
func (s *Server) respLimits() resp.Limits {
	lim := resp.DefaultLimits
	lim.MaxBulk = max(s.cfg.Limits.MaxKey, s.cfg.Limits.MaxValue)
	return lim
}

// Addr returns the data address the server listens on.
func (s *Server) Addr() string { return s.addr }

// AdminAddr returns the admin HTTP address, or "" when it is off.
func (s *Server) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.addr
}

// Loops returns how many event loops the server runs.
func (s *Server) Loops() int { return s.cfg.Loops }

// Incarnation returns the run of the server its MIGRATOR operations
// answer (Config.Incarnation).
func (s *Server) Incarnation() uint64 { return s.cfg.Incarnation }

// Store returns the server's store, for stats and tests.
func (s *Server) Store() *store.Store { return s.st }

// View returns the server's current view number.
func (s *Server) View() uint64 { return s.route.Load().View }

// Routing returns the routing the loops take at their next turn.
func (s *Server) Routing() *cluster.Routing { return s.route.Load() }

// BumpView installs the current routing again under the next view: batches
// sent with an older one are answered VIEW_CHANGED. It returns the new view.
func (s *Server) BumpView() uint64 {
	for {
		old := s.route.Load()
		next := *old
		next.View++
		if s.route.CompareAndSwap(old, &next) {
			return next.View
		}
	}
}

// encodedMap is a routing's cluster.Snapshot in JSON.
type encodedMap struct {
	r *cluster.Routing
	b []byte
}

// mapJSON returns the JSON of r's snapshot, encoded once per routing.
func (s *Server) mapJSON(r *cluster.Routing) []byte {
	if c := s.mapCache.Load(); c != nil && c.r == r {
		return c.b
	}
	b, err := json.Marshal(cluster.SnapshotOf(r, s.cfg.ServerID))
	if err != nil {
		panic(fmt.Sprintf("server: encode the slot map: %v", err)) // plain data: cannot fail
	}
	s.mapCache.Store(&encodedMap{r, b})
	return b
}

// Install makes r what the loops route by, each from its next turn on, and
// returns once every running loop has taken it and finished the writes it
// admitted before (pending RMWs), or ctx ends: from then on no loop serves
// a slot that r does not, nor writes to one. (A migration's source sends
// records once its routing without the slots is installed: a write still
// pending then would land after they were sent.) Views must not go back.
func (s *Server) Install(ctx context.Context, r *cluster.Routing) error {
	if old := s.route.Load(); r.View < old.View {
		return fmt.Errorf("server: routing view %d is older than the installed %d", r.View, old.View)
	}
	s.route.Store(r)
	return s.onEveryLoop(ctx, func(l *loop) {
		l.quiesce()     // takes r, and ends the writes admitted under the routing before
		l.sweepParked() // the reads parked for slots that left Misses
		l.ss.Suspend()  // a read the sweep issued must not hold the epoch until it completes
	})
}

// Shutdown stops accepting, lets the loops finish the batches they hold,
// closes every connection and the store. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.endLife()
	var errs []error
	s.comp.stop() // an on-demand compaction ends now: the admin handler running it returns
	if s.dur != nil {
		s.dur.halt() // so do checkpoints (POST /checkpoint's too)
	}
	if s.admin != nil {
		errs = append(errs, s.admin.shutdown(ctx))
	}
	s.comp.close()
	<-s.expiry.done // life ended: its step returns
	<-s.adm.done
	// Stop through the engine's own handle: gnet.Stop looks engines up by
	// address, and a port reused by a later server would stop that one.
	if err := s.eng.Stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("server: stop loops: %w", err))
	}
	select {
	case err := <-s.done:
		errs = append(errs, err)
	case <-ctx.Done():
		return errors.Join(append(errs, ctx.Err())...)
	}
	if s.dur != nil {
		if err := s.dur.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: final checkpoint: %w", err))
		}
	}
	s.aside.Wait() // their context ended with endLife
	s.mu.Lock()
	for _, l := range s.mu.list {
		errs = append(errs, l.close())
	}
	s.mu.Unlock()
	errs = append(errs, s.st.Close())
	s.log.Info("fleetkv stopped", "addr", s.addr)
	return errors.Join(errs...)
}

// loopFor returns the state of the loop that owns c, creating it (and
// pinning the loop's thread) on the loop's first connection. It runs on that
// loop's goroutine.
func (s *Server) loopFor(el gnet.EventLoop) (*loop, error) {
	s.mu.Lock()
	if l, ok := s.mu.loops[el]; ok {
		s.mu.Unlock()
		return l, nil
	}
	l, err := newLoop(s, el, len(s.mu.list))
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.mu.loops[el] = l
	s.mu.list = append(s.mu.list, l)
	hold := s.mu.hold
	s.mu.Unlock()
	if hold != nil {
		// The loops a checkpoint's pause stopped wait for its end, and a
		// loop it did not know of must not run an operation before then
		// either.
		<-hold
	}
	return l, nil
}

// pollDelay is how long a loop with operations waiting for the epochs waits
// before it advances them again when no traffic wakes it.
const pollDelay = 50 * time.Microsecond
