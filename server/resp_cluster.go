package server

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/keyhash"
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

// The CLUSTER command and Redis Cluster's view of the slot map. In a
// cluster every answer comes from the map the loop routes by (l.rt.Map),
// the server's watched copy; outside one they answer as Redis does with
// cluster support disabled. Servers appear under a 40-hex-digit node id
// derived from the cluster's name and the server's id (nodeID), with their
// RESP addresses; a server without one is left out.

const errClusterDisabled = "ERR This instance has cluster support disabled"

// clusterMap returns the map of the loop's routing when the server is in a
// cluster, nil otherwise.
func (l *loop) clusterMap() *cluster.Map {
	if m := l.rt.Map; m != nil && m.Cluster != "" {
		return m
	}
	return nil
}

// nodeID is a server's Redis Cluster node id: 40 hex digits.
func nodeID(m *cluster.Map, id cluster.ServerID) string {
	sum := sha1.Sum([]byte(m.Cluster + "/" + string(id)))
	return hex.EncodeToString(sum[:])
}

// clusterSubcommands are CLUSTER's subcommands, for CLUSTER HELP and the
// error naming the unknown one.
var clusterSubcommands = []string{
	"COUNTKEYSINSLOT <slot>", "HELP", "INFO", "KEYSLOT <key>", "MYID", "NODES", "SHARDS", "SLOTS",
}

// clusterArity is each CLUSTER subcommand's argument count, CLUSTER and the
// subcommand included.
var clusterArity = map[string]int{"info": 2, "myid": 2, "nodes": 2, "shards": 2, "slots": 2, "keyslot": 3, "countkeysinslot": 3}

func cmdCluster(l *loop, r *respConn, a [][]byte) []byte {
	sub := strings.ToLower(string(clip(a[1], 24)))
	if sub == "help" {
		b := resp.AppendArray(r.out, len(clusterSubcommands))
		for _, s := range clusterSubcommands {
			b = resp.AppendSimple(b, s)
		}
		return b
	}
	m := l.clusterMap()
	if m == nil {
		return resp.AppendError(r.out, errClusterDisabled)
	}
	n, ok := clusterArity[sub]
	switch {
	case !ok:
		return resp.AppendError(r.out, "ERR unknown subcommand '"+sanitize(string(clip(a[1], 64)))+"'. Try CLUSTER HELP.")
	case len(a) != n:
		return resp.AppendError(r.out, "ERR wrong number of arguments for 'cluster|"+sub+"' command")
	}
	switch sub {
	case "info":
		return resp.AppendBulkString(r.out, clusterInfo(m, l.rt.View, l.s.cfg.ServerID))
	case "myid":
		return resp.AppendBulkString(r.out, nodeID(m, l.s.cfg.ServerID))
	case "nodes":
		return resp.AppendBulkString(r.out, clusterNodes(m, l.s.cfg.ServerID))
	case "shards":
		return appendClusterShards(r.out, m)
	case "slots":
		return appendClusterSlots(r.out, m)
	case "keyslot":
		return resp.AppendInt(r.out, int64(keyhash.Slot(a[2])))
	}
	return l.countKeysInSlot(r, a[2])
}

// owners groups the map's ranges by owner, in slot order, for the
// commands that list them (handovers split ranges the clients need not
// see).
func owners(m *cluster.Map) []cluster.Assignment {
	var out []cluster.Assignment
	for _, a := range m.Ranges {
		if n := len(out); n > 0 && out[n-1].Owner == a.Owner && out[n-1].Last+1 == a.First {
			out[n-1].Last = a.Last
			continue
		}
		out = append(out, cluster.Assignment{Range: a.Range, Owner: a.Owner})
	}
	return out
}

// respHostPort splits a server's RESP address; ok is false without one.
func respHostPort(s cluster.Server) (host string, port int, ok bool) {
	h, p, err := net.SplitHostPort(s.RESP)
	if err != nil {
		return "", 0, false
	}
	port, err = strconv.Atoi(p)
	return h, port, err == nil
}

func appendClusterSlots(b []byte, m *cluster.Map) []byte {
	var rows []cluster.Assignment
	for _, a := range owners(m) {
		if _, _, ok := respHostPort(m.Servers[a.Owner]); ok {
			rows = append(rows, a)
		}
	}
	b = resp.AppendArray(b, len(rows))
	for _, a := range rows {
		host, port, _ := respHostPort(m.Servers[a.Owner])
		b = resp.AppendArray(b, 3)
		b = resp.AppendInt(b, int64(a.First))
		b = resp.AppendInt(b, int64(a.Last))
		b = resp.AppendArray(b, 4)
		b = resp.AppendBulkString(b, host)
		b = resp.AppendInt(b, int64(port))
		b = resp.AppendBulkString(b, nodeID(m, a.Owner))
		b = resp.AppendArray(b, 0) // networking metadata (Redis 7)
	}
	return b
}

func appendClusterShards(b []byte, m *cluster.Map) []byte {
	byOwner := map[cluster.ServerID][]cluster.Range{}
	for _, a := range owners(m) {
		byOwner[a.Owner] = append(byOwner[a.Owner], a.Range)
	}
	var ids []cluster.ServerID
	for _, id := range m.ServerIDs() {
		if _, _, ok := respHostPort(m.Servers[id]); ok {
			ids = append(ids, id)
		}
	}
	b = resp.AppendArray(b, len(ids))
	for _, id := range ids {
		host, port, _ := respHostPort(m.Servers[id])
		b = resp.AppendArray(b, 4)
		b = resp.AppendBulkString(b, "slots")
		b = resp.AppendArray(b, 2*len(byOwner[id]))
		for _, r := range byOwner[id] {
			b = resp.AppendInt(resp.AppendInt(b, int64(r.First)), int64(r.Last))
		}
		b = resp.AppendBulkString(b, "nodes")
		b = resp.AppendArray(b, 1)
		b = resp.AppendArray(b, 14)
		b = resp.AppendBulkString(resp.AppendBulkString(b, "id"), nodeID(m, id))
		b = resp.AppendInt(resp.AppendBulkString(b, "port"), int64(port))
		b = resp.AppendBulkString(resp.AppendBulkString(b, "ip"), host)
		b = resp.AppendBulkString(resp.AppendBulkString(b, "endpoint"), host)
		b = resp.AppendBulkString(resp.AppendBulkString(b, "role"), "master")
		b = resp.AppendInt(resp.AppendBulkString(b, "replication-offset"), 0)
		b = resp.AppendBulkString(resp.AppendBulkString(b, "health"), "online")
	}
	return b
}

// clusterNodes is CLUSTER NODES's text: one line per server.
func clusterNodes(m *cluster.Map, self cluster.ServerID) string {
	byOwner := map[cluster.ServerID][]string{}
	for _, a := range owners(m) {
		byOwner[a.Owner] = append(byOwner[a.Owner], a.Range.String())
	}
	var sb strings.Builder
	for _, id := range m.ServerIDs() {
		host, port, ok := respHostPort(m.Servers[id])
		if !ok {
			continue
		}
		flags := "master"
		if id == self {
			flags = "myself,master"
		}
		bus := port + 10000
		if bus > 65535 {
			bus = 0
		}
		fmt.Fprintf(&sb, "%s %s:%d@%d %s - 0 0 %d connected", nodeID(m, id), host, port, bus, flags, m.Views[id])
		for _, r := range byOwner[id] {
			sb.WriteString(" " + r)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// clusterInfo is CLUSTER INFO's text.
func clusterInfo(m *cluster.Map, view uint64, self cluster.ServerID) string {
	assigned, size := 0, map[cluster.ServerID]bool{}
	for _, a := range m.Ranges {
		assigned += a.Len()
		size[a.Owner] = true
	}
	state := "ok"
	if assigned < cluster.Slots {
		state = "fail"
	}
	var sb strings.Builder
	for _, f := range []struct {
		k string
		v any
	}{{"cluster_state", state}, {"cluster_slots_assigned", assigned}, {"cluster_slots_ok", assigned},
		{"cluster_slots_pfail", 0}, {"cluster_slots_fail", 0}, {"cluster_known_nodes", len(m.Servers)},
		{"cluster_size", len(size)}, {"cluster_current_epoch", m.Epoch}, {"cluster_my_epoch", view},
		{"cluster_stats_messages_sent", 0}, {"cluster_stats_messages_received", 0},
		{"total_cluster_links_buffer_limit_exceeded", 0}, {"fleetkv_cluster_name", m.Cluster},
		{"fleetkv_server_id", self}} {
		fmt.Fprintf(&sb, "%s:%v\r\n", f.k, f.v)
	}
	return sb.String()
}

// countKeysInSlot answers CLUSTER COUNTKEYSINSLOT: the store counts the
// slot's live keys off the loop (it may read the device), and the
// connection waits as for a cold key.
func (l *loop) countKeysInSlot(r *respConn, arg []byte) []byte {
	n, ok := resp.ParseInt(arg)
	if !ok || n < 0 || n >= cluster.Slots {
		return resp.AppendError(r.out, "ERR Invalid slot")
	}
	slot := uint16(n)
	var count int64
	l.respAside(r, 0, func(ctx context.Context) error {
		var err error
		count, err = l.s.st.CountKeys(ctx, keyhash.FirstHash(slot), keyhash.LastHash(slot))
		return err
	}, func(b []byte, err error) []byte {
		if err != nil {
			return resp.AppendError(b, sanitize("ERR counting the slot's keys failed: "+err.Error()))
		}
		return resp.AppendInt(b, count)
	})
	return r.out
}

// cmdReadOnly answers READONLY and READWRITE: fleetkv has no replicas, so
// every read goes to the owner either way.
func cmdReadOnly(l *loop, r *respConn, _ [][]byte) []byte {
	if l.clusterMap() == nil {
		return resp.AppendError(r.out, errClusterDisabled)
	}
	return resp.AppendSimple(r.out, "OK")
}

// sameSlot reports whether the keys of a multi-key command (every step-th
// argument from the first) share one slot; outside a cluster any keys do.
func (l *loop) sameSlot(args [][]byte, step int) bool {
	if l.clusterMap() == nil || len(args) < 2 {
		return true
	}
	first := keyhash.Slot(args[1])
	for i := 1 + step; i < len(args); i += step {
		if keyhash.Slot(args[i]) != first {
			return false
		}
	}
	return true
}

// redisMode is the mode HELLO and INFO report.
func redisMode(l *loop) string {
	if l.clusterMap() != nil {
		return "cluster"
	}
	return "standalone"
}
