// Package wire is fleetkv's binary protocol: batches of operations from a
// client session and batches of results from the server, each behind a
// fixed 32-byte header. It is pure encoding and decoding: no sockets, no
// goroutines, no allocation. Decoders return slices that alias the input;
// they stay valid as long as the caller keeps the input unchanged.
//
// All integers are little-endian; "uv" is an unsigned LEB128 varint.
//
// Request batch:
//
//	 0      1      2      3      4              8              12             16
//	+------+------+------+------+--------------+--------------+--------------+
//	| 0xF1 | flags|  reserved   | op count u32 | body len u32 | reserved u32 |
//	+------+------+-------------+--------------+--------------+--------------+
//	| view u64: the session's view of ownership  (16..24)                   |
//	| serial u64: serial number of the batch's first operation  (24..32)    |
//	+------------------------------------------------------------------------+
//	| body: op count operations, body len bytes                             |
//
//	operation:  code u8 | key len uv | [value len uv] | key | [value]
//
//	code         value          meaning
//	1  READ      -              read key
//	2  UPSERT    yes            set key to value
//	3  DELETE    -              delete key; OK when it held a value,
//	                            NOT_FOUND when it had none
//	4  ADD       8 bytes        add a little-endian int64 to key's value
//	                            (absent: 0); OK carries the value this
//	                            addition produced
//	5  APPEND    yes            append value to key's value
//	6  MIGRATE   id u64 | kind  a record a live migration sends: u8 kind
//	             u8 | value     0 moved (inserted unless the key has a
//	                            record written since the target prepared),
//	                            1 shipped back (stored), 2 shipped-back
//	                            deletion, 3 fetch, 4 absent; kind bit 0x80:
//	                            an expiry u64 follows the kind; NOT_OWNER
//	                            unless the server takes migration id's
//	                            records for the key's slot. A fetch's OK
//	                            carries expiry u64 | value, or all-ones
//	                            u64 | address u64 | begin u64 | log name:
//	                            the key's chain goes on in the source's
//	                            log in the shared tier (AppendFetchBelow)
//	7  UPSERT_   expiry u64 |   set key to value, which expires at the
//	   EXPIRING  value          given Unix millisecond (> 0)
//	8  EXPIRE    expiry u64     set a live key's expiry (0: remove it);
//	                            OK carries the expiry it had (u64, 0:
//	                            none), NOT_FOUND when the key has no value
//	16 OPEN      auth token     open a session; key: 8-byte session id to
//	                            resume, or empty for a new one; answers
//	                            id u64 | view u64 | executed u64 | durable
//	                            u64: a resumed session's operations up to
//	                            executed ran (after a restart: up to its
//	                            commit point) and its serials go on after
//	                            it, durable is its commit point
//	17 PING      payload        echo the payload
//	18 GET_VIEW  -              return the server's view
//	19 CHECKPOINT -             start a checkpoint (or queue one behind the
//	                            one running); answered at once, the COMMIT
//	                            batch follows when it is durable
//	20 CLUSTER_MAP -            return the slot map the server routes by:
//	                            JSON of cluster.Snapshot (standalone, view,
//	                            map of slot ranges, servers, views)
//	21 MIGRATOR  message        a migrator's message (JSON); answers the
//	                            server's incarnation u64
//	22 SCAN      cursor, count, a run of keys (wire/scan.go)
//	             pattern
//	23 FLUSH     -              drop every key; answered once they are
//	                            gone; the last operation of its batch, and
//	                            the connection's later batches wait for it
//
// Flags: bit 0 marks a control batch (only codes >= 16), which the server
// answers whatever the view; every other bit must be 0. Operation i of a
// batch has serial number serial+i.
//
// Response batch:
//
//	 0      1       2          4              8              12             16
//	+------+-------+----------+--------------+--------------+--------------+
//	| 0xF1 | status| code u16 | entries u32  | body len u32 | reserved u32 |
//	+------+-------+----------+--------------+--------------+--------------+
//	| view u64: the server's current view  (16..24)                         |
//	| serial u64  (24..32)                                                  |
//	+------------------------------------------------------------------------+
//	| body                                                                  |
//
//	status       serial                    body
//	0 OK         first serial answered     one result per request operation,
//	                                       then completions of earlier
//	                                       pending operations
//	1 VIEW_CHANGED  re-issue from here     empty: nothing of the batch ran
//	2 RETRY_LATER   re-issue from here     empty: the server is overloaded
//	3 ERROR      first serial of the bad   a UTF-8 message naming the
//	             batch                     problem; code says which; the
//	                                       server closes the connection
//	4 COMMIT     durable through here      empty; unsolicited, after a
//	                                       checkpoint: every operation of the
//	                                       session up to serial is durable
//
//	result:     status u8 | payload
//	  0 OK         len uv | bytes   (a READ's value, an ADD's new value, a
//	                                 control op's answer; empty for other
//	                                 writes)
//	  1 NOT_FOUND  -
//	  2 PENDING    -                (its completion comes later, by serial)
//	  3 ERROR      code u8          (14 NOT_OWNER: the server does not
//	                                 serve the key's slot; re-route it)
//	completion: 0x80|status u8 | serial uv | payload as above
//
// A result entry answers the request operations in order; a completion
// (high bit set) answers the pending operation with that serial, in this or
// any later response of the same session.
package wire
