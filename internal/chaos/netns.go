package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Net is a private network of Linux network namespaces: a hub namespace
// holding a bridge, and one namespace per node joined to it by a veth
// pair, its address 10.77.0.N/24 on eth0. Every address lives inside the
// namespaces; the host's own network is never touched. Faults are
// iptables rules and tc qdiscs inside a node's namespace, removed by Heal
// or with the namespace.
type Net struct {
	prefix string
	nodes  []string          // in the order added
	addr   map[string]string // node -> address
	// cuts are the iptables rules in force, by node, as added.
	cuts map[string][][]string
	// delayed are the nodes with a netem qdisc on eth0.
	delayed map[string]bool
}

const hub = "hub"

// Available says why namespaces cannot be used here ("" when they can):
// creating them needs root, ip and iptables.
func Available() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed"
		}
	}
	probe := fmt.Sprintf("fkvprobe%d", os.Getpid()) // root without CAP_SYS_ADMIN (a container) cannot
	if err := run("ip", "netns", "add", probe); err != nil {
		return err.Error()
	}
	if err := run("ip", "netns", "del", probe); err != nil {
		return err.Error()
	}
	return ""
}

// CleanStale deletes the namespaces of earlier runs whose process is gone
// (named fkvPID-NODE, as TestChaos names them; a run killed before its
// cleanup leaves them behind) and returns their names.
func CleanStale() ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var gone []string
	var errs []error
	for _, e := range ents {
		pid, _, ok := strings.Cut(strings.TrimPrefix(e.Name(), "fkv"), "-")
		if !strings.HasPrefix(e.Name(), "fkv") || !ok || pid == "" || strings.Trim(pid, "0123456789") != "" {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its run is alive (or the pid was reused: left alone)
		}
		if err := run("ip", "netns", "del", e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, e.Name())
	}
	return gone, errors.Join(errs...)
}

// NewNet creates the hub of a network whose namespaces are named
// prefix-NODE (prefix short and unique to this run).
func NewNet(prefix string) (*Net, error) {
	n := &Net{prefix: prefix, addr: map[string]string{}, cuts: map[string][][]string{}, delayed: map[string]bool{}}
	h := n.NS(hub)
	err := run("ip", "netns", "add", h)
	if err == nil {
		err = n.in(hub, "ip", "link", "add", "br0", "type", "bridge")
	}
	for _, dev := range []string{"lo", "br0"} {
		if err == nil {
			err = n.in(hub, "ip", "link", "set", dev, "up")
		}
	}
	if err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// AttachNet returns the Net that NewNet(prefix) and Add of nodes, in that
// order, made in another process: it faults and heals; only its maker
// closes it.
func AttachNet(prefix string, nodes []string) *Net {
	n := &Net{prefix: prefix, addr: map[string]string{}, cuts: map[string][][]string{}, delayed: map[string]bool{}}
	for i, node := range nodes {
		n.nodes = append(n.nodes, node)
		n.addr[node] = nodeAddr(i)
	}
	return n
}

// nodeAddr is the address of the i-th node added.
func nodeAddr(i int) string { return fmt.Sprintf("10.77.0.%d", i+2) }

// NS returns the name of node's namespace.
func (n *Net) NS(node string) string { return n.prefix + "-" + node }

// Addr returns node's address.
func (n *Net) Addr(node string) string { return n.addr[node] }

// Nodes returns the nodes in the order added.
func (n *Net) Nodes() []string { return n.nodes }

// Exec returns the prefix that runs a command in node's namespace.
func (n *Net) Exec(node string) []string { return []string{"ip", "netns", "exec", n.NS(node)} }

// Add creates node's namespace, joined to the bridge, and gives it the
// next address.
func (n *Net) Add(node string) (string, error) {
	i := len(n.nodes)
	if i >= 250 {
		return "", errors.New("chaos: a net holds at most 250 nodes")
	}
	ns, addr, veth := n.NS(node), nodeAddr(i), fmt.Sprintf("v%d", i)
	steps := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "-n", n.NS(hub), "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "-n", n.NS(hub), "link", "set", veth, "master", "br0", "up"},
		{"ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
	}
	n.nodes = append(n.nodes, node) // Close removes it even if a step fails
	for _, s := range steps {
		if err := run(s...); err != nil {
			return "", err
		}
	}
	n.addr[node] = addr
	return addr, nil
}

// Cut drops every packet between nodes a and b (both ways; rules in a's
// namespace) until Heal.
func (n *Net) Cut(a, b string) error {
	return n.rules(a, [][]string{
		{"INPUT", "-s", n.addr[b], "-j", "DROP"},
		{"OUTPUT", "-d", n.addr[b], "-j", "DROP"},
	})
}

// Lose drops share (0..1) of the packets node receives, at random, until
// Heal.
func (n *Net) Lose(node string, share float64) error {
	return n.rules(node, [][]string{
		{"INPUT", "-i", "eth0", "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%.3f", share), "-j", "DROP"},
	})
}

func (n *Net) rules(node string, rules [][]string) error {
	for _, r := range rules {
		if err := n.in(node, append([]string{"iptables", "-A"}, r...)...); err != nil {
			return err
		}
		n.cuts[node] = append(n.cuts[node], r)
	}
	return nil
}

// Delay delays every packet node sends by ms milliseconds until Heal; it
// fails where the kernel has no netem qdisc.
func (n *Net) Delay(node string, ms int) error {
	if err := n.in(node, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", fmt.Sprintf("%dms", ms)); err != nil {
		return err
	}
	n.delayed[node] = true
	return nil
}

// Heal removes every rule and qdisc the faults added.
func (n *Net) Heal() error {
	var errs []error
	for node, rules := range n.cuts {
		for _, r := range rules {
			errs = append(errs, n.in(node, append([]string{"iptables", "-D"}, r...)...))
		}
		delete(n.cuts, node)
	}
	for node := range n.delayed {
		errs = append(errs, n.in(node, "tc", "qdisc", "del", "dev", "eth0", "root"))
		delete(n.delayed, node)
	}
	return errors.Join(errs...)
}

// Close deletes every namespace (their veths and rules go with them). The
// processes placed in them must have ended.
func (n *Net) Close() error {
	var errs []error
	for _, node := range append(n.nodes, hub) {
		if _, err := os.Stat("/run/netns/" + n.NS(node)); err == nil {
			errs = append(errs, run("ip", "netns", "del", n.NS(node)))
		}
	}
	return errors.Join(errs...)
}

func (n *Net) in(node string, argv ...string) error {
	return run(append(n.Exec(node), argv...)...)
}

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: %s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
