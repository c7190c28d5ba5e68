#!/usr/bin/env bash
# In-memory probes beside a cold load, one server per run: the probe steps
# of bench-ssd.sh, for A/B runs of builds. A server with one loop on CPU 0
# (--io uring --read-copy=false) gets KEYS keys of 256 bytes over --memory
# MEMORY and 10 K keys more written last (in memory). The probe, one session
# with one batch of at most 64 bytes (two reads) in flight over those 10 K
# keys, runs SECS seconds alone, then again beside a cold load of uniform
# YCSB-C reads over all keys (4 sessions x 4 batches of 16 KiB in flight).
# Both load generators run on CPU 1. One line per run:
#   TAG alone[ops/s p50_us p99_us p999_us errors]= ... | beside= ... | cold[ops/s errors]= ...
# LOAD=resp puts the cold load on the RESP front instead: the KEYS keys are
# key:%012d of 256 bytes written with redis-cli --pipe, and the load is
# redis-benchmark -P RESP_P (default 64) -c 8 GET of uniformly chosen ones; cold's ops/s are
# then the server's RESP commands per second over the probe's run.
#
# SERVER_CPUS=0,1 lets the server's threads run on both CPUs: its loop stays
# pinned to CPU 0 (--pin), and the device's threads go to CPU 1 with the
# clients (the default, 0, keeps every server thread on CPU 0).
#
# Usage: scripts/bench-probe.sh BINARY TAG   (env: KEYS, MEMORY, SECS, DIR,
#        LOAD=native|resp, SERVER_CPUS; PERF=1 also counts the server's system
#        calls and context switches for 4 s of the mixed load, into DIR's
#        perf-TAG.txt)
set -euo pipefail
BIN=$(realpath "$1") TAG=$2
cd "$(dirname "$0")/.."
. scripts/lib.sh
KEYS=${KEYS:-2000000} MEMORY=${MEMORY:-128MiB} SECS=${SECS:-8}
W=$(mktemp -d "${DIR:-$PWD}/bench-probe.XXXXXX")
spid=""
trap 'if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; fi; rm -rf "$W"' EXIT
LOAD=${LOAD:-native}
read -r port rp admin <<<"$(ports 3)"
taskset -c "${SERVER_CPUS:-0}" "$BIN" server --listen 127.0.0.1:$port --resp 127.0.0.1:$rp --admin 127.0.0.1:$admin --loops 1 --io uring \
  --dir "$W/data" --memory "$MEMORY" --log-level warn --read-copy=false &
spid=$!
wait_tcp $port
if [ "$LOAD" = resp ]; then
  resp_keys $rp "$KEYS"
else
  taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" --value-size 256 >/dev/null 2>&1
fi
HOT=(--servers 127.0.0.1:$port --keys 10000 --key-offset "$KEYS" --value-size 256)
taskset -c 1 "$BIN" loadgen "${HOT[@]}" --workload load >/dev/null 2>&1
probe() {
  taskset -c 1 "$BIN" loadgen "${HOT[@]}" --workload ycsb-c --dist uniform --duration ${SECS}s --warmup 1s \
    --in-flight 1 --batch-size 64 --json "$W/probe.json" >/dev/null 2>&1
  python3 -c "import json;r=json.load(open('$W/probe.json'));print(int(r['ops_per_sec']),int(r['p50_us']),int(r['p99_us']),int(r['p999_us']),r['errors'])"
}
respOps() { curl -s "127.0.0.1:$admin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ops"].get("resp", 0))'; }
alone=$(probe)
if [ "$LOAD" = resp ]; then
  taskset -c 1 timeout $((SECS + 4)) redis-benchmark -p $rp -P "${RESP_P:-64}" -c 8 -t get -n 1000000000 -r "$KEYS" -q >/dev/null 2>&1 &
else
  taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-c --dist uniform --keys "$KEYS" \
    --value-size 256 --duration $((SECS + 4))s --warmup 0s --sessions 4 --in-flight 4 --batch-size 16KiB \
    --json "$W/cold.json" >/dev/null 2>&1 &
fi
cold=$!
sleep 2
if [ -n "${PERF:-}" ]; then
  (sleep 2; perf stat -e context-switches,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex \
    -p $spid -- sleep 4 2>"${DIR:-$PWD}/perf-$TAG.txt") &
fi
r0=$(respOps); t0=$(date +%s.%N)
beside=$(probe)
r1=$(respOps); t1=$(date +%s.%N)
wait $cold || true # timeout ends the RESP load
if [ "$LOAD" = resp ]; then
  coldr="$(python3 -c "print(int(($r1-$r0)/($t1-$t0)))") -"
else
  coldr=$(python3 -c "import json;r=json.load(open('$W/cold.json'));print(int(r['ops_per_sec']), r['errors'])")
fi
echo "$TAG alone[ops/s p50_us p99_us p999_us errors]= $alone | beside= $beside | cold[ops/s errors]= $coldr"
