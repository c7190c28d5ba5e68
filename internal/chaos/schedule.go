package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// FaultKind is what a fault does.
type FaultKind uint8

const (
	KillServer FaultKind = iota // kill -9 Node (a server), start it again at the end
	KillMeta                    // kill -9 Node (a meta member), start it again at the end
	CutMeta                     // cut Node (a server) from every meta member
	CutPeer                     // cut Node from Peer (servers): a migration between them runs first
	CutClient                   // cut the clients from Node (a server)
	Lose                        // Node (a server) loses a fifth of the packets it receives
	Delay                       // Node's (a server's) packets are delayed 20 ms (where netem exists)
)

// AllFaults are the kinds of fault.
var AllFaults = []FaultKind{KillServer, KillMeta, CutMeta, CutPeer, CutClient, Lose, Delay}

var faultNames = [...]string{"kill-server", "kill-meta", "cut-meta", "cut-peer", "cut-client", "lose", "delay"}

func (k FaultKind) String() string { return faultNames[k] }

// ParseKinds reads a comma-separated list of kinds ("": all of them).
func ParseKinds(s string) ([]FaultKind, error) {
	if s == "" {
		return AllFaults, nil
	}
	var out []FaultKind
	for _, name := range strings.Split(s, ",") {
		i := slices.Index(faultNames[:], strings.TrimSpace(name))
		if i < 0 {
			return nil, fmt.Errorf("chaos: no fault kind %q (want %s)", name, strings.Join(faultNames[:], ", "))
		}
		out = append(out, FaultKind(i))
	}
	return out, nil
}

// Fault is one fault of a schedule: it starts At (from the start of the
// run) and lasts For.
type Fault struct {
	At, For time.Duration
	Kind    FaultKind
	Node    string
	Peer    string // CutPeer's other server
}

func (f Fault) String() string {
	s := fmt.Sprintf("%7.2fs %-11s %s", f.At.Seconds(), f.Kind, f.Node)
	if f.Peer != "" {
		s += "<->" + f.Peer
	}
	return s + fmt.Sprintf(" for %.2fs", f.For.Seconds())
}

// NewSchedule returns n faults of kinds over span, drawn from seed: one at
// a time, each in its own n-th of the span, lasting 30 to 70 % of it, so
// that a meta majority and all but one server stay up, and each fault
// ends before the next starts. servers needs at least two names.
func NewSchedule(seed uint64, n int, span time.Duration, servers, metas []string, kinds []FaultKind) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0x6368616f73))
	slot := span / time.Duration(max(n, 1))
	out := make([]Fault, 0, n)
	for i := range n {
		lasts := slot * time.Duration(30+rng.IntN(41)) / 100
		f := Fault{At: time.Duration(i)*slot + time.Duration(rng.Int64N(int64(slot-lasts)+1)), For: lasts,
			Kind: kinds[rng.IntN(len(kinds))], Node: servers[rng.IntN(len(servers))]}
		switch f.Kind {
		case KillMeta:
			f.Node = metas[rng.IntN(len(metas))]
		case CutPeer:
			for f.Peer = f.Node; f.Peer == f.Node; {
				f.Peer = servers[rng.IntN(len(servers))]
			}
		}
		out = append(out, f)
	}
	return out
}
