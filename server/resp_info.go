package server

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fleetkv/fleetkv/resp"
)

// infoSections are INFO's sections in the order INFO prints them.
var infoSections = []string{"server", "clients", "stats", "memory", "persistence", "cluster", "keyspace"}

// cmdInfo answers INFO [section ...] in Redis's "# Section" / "field:value"
// text. "all", "everything" and "default" print every section.
func cmdInfo(l *loop, r *respConn, a [][]byte) []byte {
	want := map[string]bool{}
	for _, s := range a[1:] {
		want[strings.ToLower(string(clip(s, 32)))] = true
	}
	every := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	write := func(out []byte, keys int64) []byte {
		st := l.s.Stats()
		st.Store.Keys = keys
		var b strings.Builder
		for _, sec := range infoSections {
			if !every && !want[sec] {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("\r\n")
			}
			l.writeInfo(&b, sec, &st)
		}
		return resp.AppendBulkString(out, b.String())
	}
	if !every && !want["keyspace"] {
		return write(r.out, 0)
	}
	l.withKeyCount(r, write) // the keyspace's count is DBSIZE's
	return r.out
}

func (l *loop) writeInfo(b *strings.Builder, sec string, st *Stats) {
	field := func(k string, v any) { fmt.Fprintf(b, "%s:%v\r\n", k, v) }
	switch sec {
	case "server":
		b.WriteString("# Server\r\n")
		field("redis_version", redisVersion)
		field("fleetkv_version", Version)
		field("redis_mode", redisMode(l))
		field("process_id", os.Getpid())
		field("tcp_port", l.s.respPort)
		field("uptime_in_seconds", int64(time.Since(l.s.started).Seconds()))
		field("event_loops", st.Loops)
		field("view", st.View)
	case "clients":
		b.WriteString("# Clients\r\n")
		field("connected_clients", st.Connections)
		field("resp_clients", st.RESPConnections)
	case "stats":
		b.WriteString("# Stats\r\n")
		field("total_commands_processed", st.Ops["resp"])
		field("native_operations", st.Ops["read"]+st.Ops["upsert"]+st.Ops["delete"]+st.Ops["add"]+st.Ops["append"]+st.Ops["expire"])
		field("native_batches", st.Batches)
		field("total_net_input_bytes", st.BytesIn)
		field("total_net_output_bytes", st.BytesOut)
		field("pending_operations", st.Pending)
		field("held_back_turns", st.HeldBack)
		field("errors", st.Errors)
		field("expired_keys", st.Expiry.Reaped)
	case "memory":
		b.WriteString("# Memory\r\n")
		field("used_memory", st.Memory.HeapSys+st.LogMemory)
		field("used_memory_go_heap", st.Memory.HeapAlloc)
		field("maxmemory", st.LogMemory)
		field("log_tail", st.Store.Log.Tail)
		field("log_head", st.Store.Log.Head)
		field("log_read_only", st.Store.Log.ReadOnly)
		field("log_flushed_until", st.Store.Log.FlushedUntil)
		field("log_begin", st.Store.Log.Begin)
		field("index_buckets", st.Store.Index.Buckets)
		field("index_overflow_buckets", st.Store.Index.OverflowBuckets)
		field("io_in_flight", st.IOInFlight)
		field("epoch_current", st.Store.Epoch.Current)
		field("epoch_safe", st.Store.Epoch.Safe)
		field("epoch_pending_actions", st.Store.Epoch.PendingActions)
	case "persistence":
		b.WriteString("# Persistence\r\n")
		field("loading", 0)
		field("aof_enabled", 0)
		field("checkpoints_enabled", btoi(st.Checkpoint.Enabled))
		field("checkpoints_taken", st.Checkpoint.Taken)
		field("last_checkpoint_seq", st.Checkpoint.Seq)
		field("last_checkpoint_end", st.Checkpoint.End)
		if st.Checkpoint.Seq != 0 {
			field("rdb_last_save_time", st.Checkpoint.Time.Unix())
		}
		field("compactions", st.Compaction.Runs)
		field("compaction_records_scanned", st.Compaction.Records)
		field("compaction_records_copied", st.Compaction.Copied)
		field("log_garbage_estimate", fmt.Sprintf("%.3f", st.Compaction.Garbage))
	case "cluster":
		b.WriteString("# Cluster\r\n")
		field("cluster_enabled", btoi(st.Cluster.Cluster != ""))
		if st.Cluster.Cluster != "" {
			field("cluster_name", st.Cluster.Cluster)
			field("cluster_server_id", st.Cluster.Server)
			field("cluster_map_epoch", st.Cluster.Epoch)
		}
		field("cluster_view", st.Cluster.View)
		field("cluster_owned_slots", st.Cluster.Owned)
		field("cluster_serving_slots", st.Cluster.Serving)
		field("cluster_not_owner_ops", st.NotOwner)
	case "keyspace":
		b.WriteString("# Keyspace\r\n")
		if n := st.Store.Keys; n > 0 {
			field("db0", fmt.Sprintf("keys=%d,expires=%d,avg_ttl=%d", n, st.Expiry.Expiring, st.Expiry.AvgTTLMillis))
		}
	}
}
