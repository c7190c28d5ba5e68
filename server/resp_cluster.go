package server

import (
	"strconv"

	"github.com/fleetkv/fleetkv/resp"
)

// respNotOwner appends the reply for a key whose slot (l.notOwned) the
// loop does not serve: MOVED to the owner's RESP address, as Redis Cluster
// answers; TRYAGAIN while the slot is being handed over to this server;
// CLUSTERDOWN when no server serves it.
func (l *loop) respNotOwner(b []byte) []byte {
	slot := l.notOwned
	m := l.rt.Map
	if m == nil {
		return resp.AppendError(b, "CLUSTERDOWN Hash slot not served")
	}
	a, ok := m.Owner(slot)
	switch {
	case !ok:
		return resp.AppendError(b, "CLUSTERDOWN Hash slot not served")
	case a.Owner == l.s.cfg.ServerID:
		return resp.AppendError(b, "TRYAGAIN the slot is being handed over to this server; try again")
	}
	addr := m.Servers[a.Owner].RESP
	if addr == "" {
		return resp.AppendError(b, "CLUSTERDOWN the owner of the slot serves no Redis protocol")
	}
	return resp.AppendError(b, "MOVED "+strconv.Itoa(int(slot))+" "+addr)
}
