package cluster

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven runs the scripts in testdata/: a map changed by
// assignments and followers stepping through it. Commands:
//
//	init servers=a,b,c        a new map over those servers
//	assign slots=R to=ID      Assign with the applied views reported so far
//	server id=ID              a follower for ID (restart: from what it persisted)
//	step id=ID                the follower reads the map and applied views
//	ready id=ID               what Ready says
//	installed id=ID           the routing in flight is on every loop
//	ack id=ID                 report the view Ready asked to ack
//
// Run with -rewrite to regenerate the expectations, then review the diff.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		e := &scriptEnv{followers: map[ServerID]*Follower{}, persisted: map[ServerID]*Routing{}, applied: map[ServerID]uint64{}}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out, err := e.run(d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

type scriptEnv struct {
	m         *Map
	followers map[ServerID]*Follower
	persisted map[ServerID]*Routing
	applied   map[ServerID]uint64
}

func arg(d *datadriven.TestData, key string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key && len(a.Vals) > 0 {
			return strings.Join(a.Vals, ",")
		}
	}
	return ""
}

func (e *scriptEnv) run(d *datadriven.TestData) (string, error) {
	id := ServerID(arg(d, "id"))
	switch d.Cmd {
	case "init":
		var servers []Server
		for _, s := range strings.Split(arg(d, "servers"), ",") {
			servers = append(servers, Server{ID: ServerID(s), Native: s + ":7400"})
		}
		m, err := NewMap("test", servers)
		if err != nil {
			return "", err
		}
		e.m = m
		return describeMap(m), nil
	case "assign":
		rs, err := ParseRanges(arg(d, "slots"))
		if err != nil {
			return "", err
		}
		m, err := e.m.Assign(rs, ServerID(arg(d, "to")), e.applied)
		if err != nil || m == nil {
			return "unchanged\n", err
		}
		e.m = m
		return describeMap(m), nil
	case "server":
		e.followers[id] = NewFollower(id, e.persisted[id])
		return "ok\n", nil
	case "step":
		f := e.followers[id]
		f.StepMap(e.m)
		f.StepApplied(e.applied)
		return "ok\n", nil
	case "ready":
		rd, ok := e.followers[id].Ready()
		switch {
		case !ok:
			return "nothing\n", nil
		case rd.Install != nil:
			return fmt.Sprintf("install view=%d serving=%v\n", rd.Install.View, rd.Install.Serving.Ranges()), nil
		}
		return fmt.Sprintf("ack view=%d\n", rd.Ack), nil
	case "installed":
		f := e.followers[id]
		rd, _ := f.Ready()
		if rd.Install == nil {
			return "", fmt.Errorf("nothing in flight")
		}
		e.persisted[id] = rd.Install
		f.Installed(rd.Install)
		return "ok\n", nil
	case "ack":
		f := e.followers[id]
		rd, _ := f.Ready()
		if rd.Ack == 0 {
			return "", fmt.Errorf("nothing to ack")
		}
		e.applied[id] = max(e.applied[id], rd.Ack)
		f.Acked(rd.Ack)
		return "applied " + strconv.FormatUint(rd.Ack, 10) + "\n", nil
	}
	return "", fmt.Errorf("unknown command %q", d.Cmd)
}

func describeMap(m *Map) string {
	var b strings.Builder
	fmt.Fprintf(&b, "epoch %d\n", m.Epoch)
	for _, a := range m.Ranges {
		fmt.Fprintf(&b, "  %v -> %s", a.Range, a.Owner)
		if a.From != "" {
			fmt.Fprintf(&b, " (from %s at its view %d)", a.From, a.FromView)
		}
		b.WriteString("\n")
	}
	for _, id := range m.ServerIDs() {
		fmt.Fprintf(&b, "  view %s=%d\n", id, m.Views[id])
	}
	return b.String()
}
