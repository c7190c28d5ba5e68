#!/usr/bin/env bash
# The Redis protocol front beside redis-server, in one run, both driven by
# redis-benchmark.
#
# Each server on CPU 0 (fleetkv with one loop, its RESP listener on; then
# redis-server 7 without persistence), redis-benchmark on CPU 1 with its
# default 50 connections: GET, SET and INCR over a 1 M key space (-r), 8-byte
# values, at -P 1, 16, 64 and 256. For every run: requests/s, p50 and p99
# latency, and the server's CPU cost per request (its CPU seconds from /proc
# over the requests it served). redis-server and redis-benchmark are
# installed from Debian's packages if missing.
#
# Usage: scripts/bench-resp.sh [requests-per-run]   (default 2000000; -P 1 runs a tenth)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
OUT=${BENCH_OUT:-bench-resp.out}
WORK=$(mktemp -d)
BIN=$WORK/fleetkv
go build -o "$BIN" ./cmd/fleetkv
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  (apt-get update && apt-get install -y redis-server redis-tools) >/dev/null
fi
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
. scripts/lib.sh
wait_port() { for _ in $(seq 50); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
row() { printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@" | tee -a "$OUT"; }

: > "$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $(redis-benchmark --version)" | tee -a "$OUT"
row "server" "command" "pipeline" "requests/s" "p50 / p99 ms" "server CPU %" "server ns/request"
row "---" "---" "---" "---" "---" "---" "---"

# run NAME PORT PID: every command at every pipeline depth against one server.
run() {
  local name=$1 port=$2 pid=$3
  for p in 1 16 64 256; do
    local n=$N
    [ "$p" = 1 ] && n=$((N / 10))
    for t in set get incr; do
      t0=$(cpu_ticks "$pid"); s0=$(date +%s.%N)
      line=$(taskset -c 1 redis-benchmark -p "$port" -t $t -P $p -n $n -r 1000000 -d 8 --csv 2>/dev/null | tail -1)
      t1=$(cpu_ticks "$pid"); s1=$(date +%s.%N)
      python3 - "$name" "$t" "$p" "$n" "$line" "$t0" "$t1" "$s0" "$s1" "$hz" <<'PY' | tee -a "$OUT"
import sys
name, t, p, n, line, t0, t1, s0, s1, hz = sys.argv[1:]
f = [x.strip('"') for x in line.split(',')]
cpu = (int(t1) - int(t0)) / int(hz)
wall = float(s1) - float(s0)
print(f"| {name} | {t.upper()} | -P {p} | {float(f[1]):,.0f} | {f[4]} / {f[6]} | {100*cpu/wall:.0f} | {cpu/int(n)*1e9:.0f} |")
PY
    done
  done
}

port=$(free_port)
taskset -c 0 "$BIN" server --listen 127.0.0.1:0 --admin "" --resp 127.0.0.1:$port --loops 1 \
  --dir "$WORK/data" --memory 1GiB --log-level warn &
pids+=($!); fpid=$!
wait_port $port
run "fleetkv $(git describe --always --dirty)" $port $fpid
kill $fpid; wait $fpid 2>/dev/null || true

port=$(free_port)
taskset -c 0 redis-server --port $port --save '' --appendonly no --daemonize no --logfile /dev/null &
pids+=($!); rpid=$!
wait_port $port
run "redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)" $port $rpid
