#!/usr/bin/env bash
# One operation in flight on both fronts of one server (issue 16's latency
# bar: the native p50 at one operation in flight no higher than the RESP
# p50, same server, same run).
#
# One server (SERVER_ARGS, default "--loops 1": its one loop pinned to CPU
# 0), KEYS keys of 8 bytes written on each front (loadgen --workload load;
# redis-benchmark -t set), then ROUNDS rounds, each running one after the
# other:
#   loadgen --closed-loop, uniform YCSB-C, for each transport in TRANSPORTS
#     (default "std blocking"), SECS seconds after a 200 ms warm-up;
#   redis-benchmark -P 1 -c 1 -t get, N requests.
# Clients run under CLIENT (default "taskset -c 1": the CPU the server's loop
# is not on). GOMAXPROCS, when set, reaches loadgen.
# Prints per round each client's p50 in microseconds and its ops/s.
# redis-benchmark's histogram has 8 us buckets below 1 ms (its lowest
# discernible value is 10 us) and reports a bucket's upper end: 39 means
# 32-39 us.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROUNDS=${ROUNDS:-10}
SECS=${SECS:-1}
N=${N:-20000}
KEYS=${KEYS:-100000}
TRANSPORTS=${TRANSPORTS:-std blocking}
SERVER_ARGS=${SERVER_ARGS:---loops 1}
CLIENT=${CLIENT:-taskset -c 1}

setup_work one-in-flight
read -r port rport <<<"$(ports 2)"
# shellcheck disable=SC2086
"$BIN" server --dir "$WORK/data" --memory 256MiB --page-size 4MiB --listen 127.0.0.1:$port \
  --resp 127.0.0.1:$rport --admin "" $SERVER_ARGS >"$WORK/server.log" 2>&1 &
spid=$!
wait_tcp "$port"
wait_tcp "$rport"
"$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" >/dev/null
redis-benchmark -p "$rport" -t set -r "$KEYS" -n $((2 * KEYS)) -P 64 -q >/dev/null

native() { # transport -> "p50 ops/s"
  # shellcheck disable=SC2086
  $CLIENT "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-c --dist uniform --keys "$KEYS" \
    --closed-loop --duration "${SECS}s" --warmup 200ms --transport "$1" 2>&1 |
    awk '/^ops/{o=$(NF-1)} /^latency/{p=$3} END{gsub("us","",p); print p, o}'
}
resp() {
  # shellcheck disable=SC2086
  $CLIENT redis-benchmark -p "$rport" -P 1 -c 1 -t get -n "$N" -r "$KEYS" 2>&1 |
    awk '/throughput summary/{t=$3} /latency summary/{getline; getline; p=$3*1000} END{printf "%d %.0f\n", p, t}'
}

echo "round $(for t in $TRANSPORTS; do printf '%s(p50 ops/s) ' "$t"; done)resp(p50 ops/s)"
for r in $(seq "$ROUNDS"); do
  line="$r"
  for t in $TRANSPORTS; do line="$line | $(native "$t")"; done
  echo "$line | $(resp)"
done
