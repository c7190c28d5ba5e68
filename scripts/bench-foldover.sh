#!/usr/bin/env bash
# What fold-over checkpoints cost one server, for an A/B of builds
# (BENCHMARKS.md, "A fold-over ends at the tail and leaves the page open").
#
# Usage: scripts/bench-foldover.sh MODE BINARY TAG   (env: DIR, LOAD_ARGS)
#   cold     --memory 256MiB (8 pages of 32 MiB), a checkpoint every second,
#            200 K keys of 64 B loaded, then 30 s of uniform YCSB-B (extra
#            load generator flags in LOAD_ARGS, e.g. "--in-flight 1
#            --batch-size 64" for one operation at a time): ops/s, the
#            operations that went to the device, the log's tail and head.
#   ckpt     --memory 2GiB, a checkpoint every second, 100 K keys loaded,
#            then 20 s of YCSB-B: the bytes the server wrote, and the time
#            per checkpoint.
#   restart  the defaults, 10 K keys loaded, stopped (a checkpoint at
#            shutdown) and started again on the same directory: the bytes
#            the second process wrote and read until it answered /healthz.
# One line per run, starting with TAG. Run the builds alternately.
set -euo pipefail
MODE=$1 BIN=$(realpath "$2") TAG=$3
cd "$(dirname "$0")/.."
. scripts/lib.sh
D=$(mktemp -d "${DIR:-/tmp}/bench-foldover.XXXXXX")
spid=""
trap 'if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; fi; rm -rf "$D"' EXIT
read -r port admin <<<"$(ports 2)"

start() { # server flags...
  "$BIN" server --dir "$D/data" --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --loops 1 --pin=false \
    --log-level warn "$@" >>"$D/server.log" 2>&1 &
  spid=$!
  for _ in $(seq 500); do curl -sf http://127.0.0.1:$admin/healthz >/dev/null && return; sleep 0.01; done
  echo "server not up" >&2; exit 1
}
stop() { kill -INT "$spid"; wait "$spid" || true; spid=""; }
metric() { curl -sf http://127.0.0.1:$admin/metrics | awk -v m="$1" '$1 == m {print $2}'; }
io() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$spid/io"; }
load() { "$BIN" loadgen --servers 127.0.0.1:$port --workload load "$@" >/dev/null 2>&1; }

case $MODE in
cold)
  start --memory 256MiB --checkpoint-interval 1s
  load --keys 200000 --value-size 64
  p0=$(metric fleetkv_pending_operations_total)
  # shellcheck disable=SC2086
  "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-b --dist uniform --keys 200000 --value-size 64 \
    --duration 30s --threads 1 ${LOAD_ARGS:-} --json "$D/run.json" >/dev/null 2>&1
  p1=$(metric fleetkv_pending_operations_total)
  tail=$(metric 'fleetkv_log_address_bytes{marker="tail"}')
  head=$(metric 'fleetkv_log_address_bytes{marker="head"}')
  ck=$(metric fleetkv_checkpoints_total)
  stop
  python3 -c "import json; r=json.load(open('$D/run.json'))
print('$TAG ops/s %d, to the device %d, checkpoints %s, tail %.0f MiB, head %.0f MiB' % (r['ops_per_sec'], float('$p1')-float('$p0'), '$ck', float('$tail')/2**20, float('$head')/2**20))"
  ;;
ckpt)
  start --memory 2GiB --checkpoint-interval 1s
  load --keys 100000
  w0=$(io write_bytes)
  "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-b --keys 100000 --duration 20s --threads 1 \
    --json "$D/run.json" >/dev/null 2>&1
  w1=$(io write_bytes)
  secs=$(metric fleetkv_checkpoint_seconds_total)
  n=$(metric fleetkv_checkpoints_total)
  stop
  python3 -c "import json; r=json.load(open('$D/run.json'))
print('$TAG ops %d, wrote %d MiB, %s checkpoints, %.1f ms each' % (r['ops'], ($w1-$w0)/2**20, '$n', float('$secs')/float('$n')*1e3))"
  ;;
restart)
  start
  load --keys 10000
  stop
  t0=$(date +%s.%N)
  start
  t1=$(date +%s.%N)
  printf "%s up in %.3f s, wrote %d KiB, read %d KiB\n" "$TAG" "$(echo "$t1 - $t0" | bc)" \
    $(($(io write_bytes) >> 10)) $(($(io read_bytes) >> 10))
  stop
  ;;
*)
  echo "usage: $0 cold|ckpt|restart BINARY TAG" >&2
  exit 2
  ;;
esac
