package node

import (
	"context"
	"net/http"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/dashboard"
	"github.com/fleetkv/fleetkv/planner"
	"github.com/fleetkv/fleetkv/server"
)

// standaloneID names a standalone server on its dashboard.
const standaloneID cluster.ServerID = "local"

// dashboardRoutes gives the admin listener the cluster dashboard (package
// dashboard): a member's cluster as its metadata store has it, a
// standalone server as a cluster of itself. It is server.Config's
// AdminRoutes.
func (n *Node) dashboardRoutes(srv *server.Server) map[string]http.Handler {
	self := n.ID()
	if self == "" {
		self = standaloneID
	}
	state := func(ctx context.Context) (cluster.State, error) {
		if n.member != nil {
			return n.member.md.Load(ctx)
		}
		return standaloneState(srv), nil
	}
	return dashboard.Handlers(self, state, func() dashboard.Sample { return n.sample(srv, self) })
}

// sample is the server's own figures for the dashboard, from its cheap
// counters (Summary: it polls every second).
func (n *Node) sample(srv *server.Server, self cluster.ServerID) dashboard.Sample {
	sum := srv.Summary()
	s := dashboard.Sample{ID: self, Time: time.Now(), Ops: sum.Ops, P999Us: sum.Admission.P999Us, BgShare: sum.Admission.Share,
		View: sum.Cluster.View, Serving: sum.Cluster.Ranges, Tasks: []cluster.TaskProgress{}, Decisions: []planner.Decision{}}
	if n.member != nil {
		s.Tasks = n.member.mg.tasks()
		s.Decisions = n.member.decisions.Recent()
	}
	return s
}

// standaloneState is a standalone server's cluster: itself, owning every
// slot under its view.
func standaloneState(srv *server.Server) cluster.State {
	// No Admin: its own sample is read in process, and AdminAddr is not
	// set until Start returns, while the dashboard may serve before.
	self := cluster.Server{ID: standaloneID, Native: srv.Addr(), RESP: srv.RESPAddr(), Loops: srv.Loops()}
	m, _ := cluster.NewMap("standalone", []cluster.Server{self}) // one server with an id: no error
	view := srv.View()
	m.Views[standaloneID] = view
	return cluster.State{Map: m, Live: map[cluster.ServerID]cluster.Server{standaloneID: self},
		Applied: map[cluster.ServerID]uint64{standaloneID: view}}
}
