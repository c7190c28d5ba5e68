package clusterctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// LocalConfig configures a cluster of real processes on loopback: Metas
// `fleetkv meta` members (an etcd cluster) and Servers `fleetkv server`
// processes, all of the binary Bin, their data and logs under Dir.
type LocalConfig struct {
	Bin        string
	Dir        string
	Name       string // the cluster's name; default "local"
	Servers    int
	Metas      int      // default 1; 3 tolerate the loss of one
	PortBase   int      // 0: free ports; else server i listens on PortBase+10i (native), +1 (RESP), +2 (admin), meta j on PortBase+1000+10j (client), +1 (peer)
	ServerArgs []string // more flags for every server
	Token      string   // the cluster's admin token, recorded by Init
	// ExternalMeta, when set, lists the client endpoints of an etcd
	// cluster run elsewhere: no meta member is started.
	ExternalMeta []string
	// Place, when set, puts each process (by name: meta-0, s1, ...) on a
	// host of its own, run through a command prefix that takes it there
	// (ip netns exec NS). Every process then listens on fixed ports of
	// its host: PlacedPorts.
	Place func(name string) (host string, prefix []string)
}

// PlacedPorts are the ports of a placed process (LocalConfig.Place): a
// server's native, RESP and admin addresses, a meta member's client and
// peer addresses.
var PlacedPorts = [3]int{7400, 7401, 7402}

// Proc is one process of a Local cluster.
type Proc struct {
	Name string   // meta-0, s1, ...
	Dir  string   // its data directory
	Log  string   // its stderr and stdout
	Args []string // its command line after the binary
	Env  []string // more environment for its next Start (KEY=VALUE)
	// A server's addresses, or a meta member's client (Native) and peer
	// (Admin) addresses.
	Native, RESP, Admin string
	cmd                 *exec.Cmd
	done                chan struct{}
}

// Local is a running cluster of processes. Its methods are not safe for
// concurrent use.
type Local struct {
	cfg     LocalConfig
	Metas   []*Proc
	Servers []*Proc
}

// MetaEndpoints returns the meta members' client addresses.
func (l *Local) MetaEndpoints() []string {
	if len(l.cfg.ExternalMeta) > 0 {
		return l.cfg.ExternalMeta
	}
	var out []string
	for _, m := range l.Metas {
		out = append(out, m.Native)
	}
	return out
}

// StartLocal starts the meta members, then the servers, and returns once
// every server has registered (check with wait).
func StartLocal(ctx context.Context, cfg LocalConfig, md func([]string) (cluster.Metadata, error)) (*Local, error) {
	if cfg.Name == "" {
		cfg.Name = "local"
	}
	switch {
	case len(cfg.ExternalMeta) > 0:
		cfg.Metas = 0
	case cfg.Metas == 0:
		cfg.Metas = 1
	}
	if cfg.Servers < 1 {
		return nil, errors.New("clusterctl: a local cluster needs at least one server")
	}
	l := &Local{cfg: cfg}
	if err := l.plan(); err != nil {
		return nil, err
	}
	for _, p := range append(append([]*Proc(nil), l.Metas...), l.Servers...) {
		if err := l.Start(p); err != nil {
			l.Stop()
			return nil, err
		}
	}
	store, err := md(l.MetaEndpoints())
	if err != nil {
		l.Stop()
		return nil, err
	}
	defer store.Close()
	if err := l.waitRegistered(ctx, store, l.Servers, 60*time.Second); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

// waitRegistered waits until every server of ps has registered, failing at
// once when a process exits.
func (l *Local) waitRegistered(ctx context.Context, md cluster.Metadata, ps []*Proc, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		for _, p := range append(append([]*Proc(nil), l.Metas...), ps...) {
			if !p.Running() {
				b, _ := os.ReadFile(p.Log)
				return fmt.Errorf("clusterctl: %s exited; the end of %s:\n%s", p.Name, p.Log, lastLines(string(b), 5))
			}
		}
		st, err := md.Load(ctx)
		registered := 0
		for _, p := range ps {
			if _, ok := st.Live[cluster.ServerID(p.Name)]; ok {
				registered++
			}
		}
		if err == nil && registered == len(ps) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clusterctl: %d of %d servers registered within %v (logs under %s): %v", registered, len(ps), wait, l.cfg.Dir, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// plan gives every process its name, directory, ports and arguments.
func (l *Local) plan() error {
	cfg := l.cfg
	var held []net.Listener // free ports stay taken until every one is chosen
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	port := func(name string, i int) (string, error) {
		if a, ok := l.placed(name, i); ok {
			return a, nil
		}
		if cfg.PortBase != 0 {
			return "127.0.0.1:" + strconv.Itoa(cfg.PortBase+i), nil
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		held = append(held, ln)
		return ln.Addr().String(), nil
	}
	var initial []string
	for j := range cfg.Metas {
		p := &Proc{Name: fmt.Sprintf("meta-%d", j), Dir: filepath.Join(cfg.Dir, fmt.Sprintf("meta-%d", j))}
		var err error
		if p.Native, err = port(p.Name, 1000+10*j); err != nil {
			return err
		}
		if p.Admin, err = port(p.Name, 1000+10*j+1); err != nil {
			return err
		}
		initial = append(initial, p.Name+"=http://"+p.Admin)
		l.Metas = append(l.Metas, p)
	}
	for _, p := range l.Metas {
		p.Args = []string{"meta", "--name", p.Name, "--dir", p.Dir, "--client", p.Native, "--peer", p.Admin,
			"--initial-cluster", strings.Join(initial, ",")}
	}
	for range cfg.Servers {
		p, err := l.newServer(port)
		if err != nil {
			return err
		}
		l.Servers = append(l.Servers, p)
	}
	return nil
}

// placed returns the address of a placed process's port i (numbered as
// from PortBase: its last digit picks the port); false when processes are
// not placed.
func (l *Local) placed(name string, i int) (string, bool) {
	if l.cfg.Place == nil {
		return "", false
	}
	host, _ := l.cfg.Place(name)
	return net.JoinHostPort(host, strconv.Itoa(PlacedPorts[i%10])), true
}

// newServer names the next server (s1, s2, ...) and gives it its
// directory, ports (from port) and arguments.
func (l *Local) newServer(port func(string, int) (string, error)) (*Proc, error) {
	i := len(l.Servers)
	p := &Proc{Name: fmt.Sprintf("s%d", i+1)}
	p.Dir = filepath.Join(l.cfg.Dir, p.Name)
	for k, dst := range []*string{&p.Native, &p.RESP, &p.Admin} {
		a, err := port(p.Name, 10*i+k)
		if err != nil {
			return nil, err
		}
		*dst = a
	}
	p.Args = append([]string{"server", "--cluster", l.cfg.Name, "--meta", strings.Join(l.MetaEndpoints(), ","), "--server-id", p.Name,
		"--dir", p.Dir, "--listen", p.Native, "--resp", p.RESP, "--admin", p.Admin}, l.cfg.ServerArgs...)
	return p, nil
}

// AddServer starts one more server (the next name, s<N+1>) and returns it
// once it has registered; it owns no slot until given some (a plan, an
// assignment, a migration).
func (l *Local) AddServer(ctx context.Context, md cluster.Metadata) (*Proc, error) {
	p, err := l.newServer(func(name string, i int) (string, error) {
		if a, ok := l.placed(name, i); ok {
			return a, nil
		}
		if l.cfg.PortBase != 0 {
			return "127.0.0.1:" + strconv.Itoa(l.cfg.PortBase+i), nil
		}
		return freeAddr()
	})
	if err != nil {
		return nil, err
	}
	if err := l.Start(p); err != nil {
		return nil, err
	}
	l.Servers = append(l.Servers, p)
	return p, l.waitRegistered(ctx, md, []*Proc{p}, 60*time.Second)
}

// freeAddr returns a loopback address whose port is free now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start starts p (again, after Kill), its output appended to p.Log.
func (l *Local) Start(p *Proc) error {
	if err := os.MkdirAll(l.cfg.Dir, 0o755); err != nil {
		return err
	}
	p.Log = filepath.Join(l.cfg.Dir, p.Name+".log")
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	argv := append([]string{l.cfg.Bin}, p.Args...)
	if l.cfg.Place != nil { // run where it is placed
		_, prefix := l.cfg.Place(p.Name)
		argv = append(append([]string(nil), prefix...), argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "FLEETKV_AUTH_TOKEN=", "FLEETKV_REQUIREPASS="), p.Env...)
	// A process that outlives whatever started it (killed, crashed) is
	// asked to stop: no server or meta member is left behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("clusterctl: start %s: %w", p.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.done) }()
	return nil
}

// Running reports whether p's process has not exited.
func (p *Proc) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID returns p's process id (0 when not started).
func (p *Proc) PID() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill ends p at once (SIGKILL) and waits for it.
func (l *Local) Kill(p *Proc) { l.signal(p, syscall.SIGKILL, 0) }

// Terminate asks p to stop (SIGTERM) and waits up to timeout, then kills it.
func (l *Local) Terminate(p *Proc, timeout time.Duration) { l.signal(p, syscall.SIGTERM, timeout) }

func (l *Local) signal(p *Proc, sig syscall.Signal, timeout time.Duration) {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if timeout > 0 {
		select {
		case <-p.done:
			return
		case <-time.After(timeout):
			_ = p.cmd.Process.Kill()
		}
	}
	<-p.done
}

// Stop stops the servers, then the meta members, each by its PID.
func (l *Local) Stop() {
	for _, p := range l.Servers {
		l.Terminate(p, 30*time.Second)
	}
	for _, p := range l.Metas {
		l.Terminate(p, 10*time.Second)
	}
}
