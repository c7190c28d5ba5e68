#!/usr/bin/env bash
# Server over loopback, beside redis-server measured in the same run.
#
# The server is confined to CPU 0 and the load generator to CPU 1 (taskset),
# 1 M keys with 8-byte values, 32 KiB batches, in-flight 2 and 4, YCSB-B and
# YCSB-F with uniform and Zipf keys. Then redis-server 7 (installed from
# Debian's packages if missing) on CPU 0 driven by redis-benchmark on CPU 1,
# GET and SET over a 1 M key space at -P 64 and -P 256. For every run: ops/s,
# latency, and the server's CPU cost per operation (its CPU seconds from
# /proc over the operations it served); for fleetkv also the load
# generator's, with the standard-library client transport and, for YCSB-B,
# with cloudwego/netpoll.
#
# Usage: scripts/bench-server.sh [seconds-per-run]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
OUT=${BENCH_OUT:-bench-server.out}
BIN=$(mktemp -d)/fleetkv
go build -o "$BIN" ./cmd/fleetkv
: > "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

. scripts/lib.sh

row() { printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@" | tee -a "$OUT"; }
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ)" | tee -a "$OUT"
row "server" "workload" "keys" "pipeline" "ops/s" "p50 / p99 / p99.9 us" "server CPU %" "server ns/op" "client ns/op"
row "---" "---" "---" "---" "---" "---" "---" "---" "---"

# cpu_of CMD...: runs CMD, then prints the CPU seconds it used (user + system).
cpu_of() { python3 -c 'import resource,subprocess,sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
r=resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_utime+r.ru_stime)' "$@"; }

# fleetkv
port=$(free_port)
taskset -c 0 "$BIN" server --listen 127.0.0.1:$port --admin "" --loops 1 --dir "$(mktemp -d)" --log-level warn &
pids+=($!); spid=$!
sleep 1
taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys 1000000 --value-size 8 >/dev/null 2>&1
run_fleetkv() { # workload dist inflight transport
  local wl=$1 dist=$2 inflight=$3 tr=$4 j t0 t1 s0 s1 ccpu
  j=$(mktemp)
  t0=$(cpu_ticks $spid); s0=$(date +%s.%N)
  ccpu=$(cpu_of taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload $wl --dist $dist --keys 1000000 \
    --value-size 8 --batch-size 32KiB --in-flight $inflight --sessions 2 --duration ${SECS}s --warmup 1s \
    --transport $tr --json "$j")
  t1=$(cpu_ticks $spid); s1=$(date +%s.%N)
  read -r ops secs ops_s p50 p99 p999 errs < <(python3 -c "import json;r=json.load(open('$j'));print(r['ops'],r['seconds'],int(r['ops_per_sec']),int(r['p50_us']),int(r['p99_us']),int(r['p999_us']),r['errors']+r['verify_failures'])")
  cpu=$(echo "($t1-$t0)/$hz" | bc -l); wall=$(echo "$s1-$s0" | bc -l)
  # CPU over the whole run (warm-up and connection set-up included) per op at
  # the measured rate, for the server and for the load generator.
  nsop=$(echo "$cpu/$wall/$ops_s*1000000000" | bc -l)
  cnsop=$(echo "$ccpu/$wall/$ops_s*1000000000" | bc -l)
  row fleetkv "$wl $dist" 1M "32KiB x $inflight x 2 sessions, $tr" "$ops_s" "$p50 / $p99 / $p999" \
    "$(printf %.0f "$(echo "100*$cpu/$wall" | bc -l)")" "$(printf %.0f "$nsop") (errors $errs)" "$(printf %.0f "$cnsop")"
}
for wl in ycsb-b ycsb-f; do
  for dist in uniform zipf; do
    for inflight in 2 4; do
      run_fleetkv $wl $dist $inflight std
    done
  done
done
# The client transport: the same runs over cloudwego/netpoll.
for dist in uniform zipf; do
  run_fleetkv ycsb-b $dist 2 netpoll
done
kill $spid; wait $spid 2>/dev/null || true

# redis
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || ! command -v bc >/dev/null; then
  (apt-get update && apt-get install -y redis-server redis-tools bc) >/dev/null
fi
port=$(free_port)
taskset -c 0 redis-server --port $port --save '' --appendonly no --daemonize no --logfile /dev/null &
pids+=($!); rpid=$!
sleep 1
N=$((3000000 * SECS / 10))
for p in 64 256; do
  for t in set get; do
    t0=$(cpu_ticks $rpid); s0=$(date +%s.%N)
    line=$(taskset -c 1 redis-benchmark -p $port -t $t -P $p -n $N -r 1000000 -d 8 --csv 2>/dev/null | tail -1)
    t1=$(cpu_ticks $rpid); s1=$(date +%s.%N)
    ops_s=$(echo "$line" | cut -d, -f2 | tr -d '"' | cut -d. -f1)
    p50=$(echo "$line" | cut -d, -f5 | tr -d '"'); p99=$(echo "$line" | cut -d, -f7 | tr -d '"')
    cpu=$(echo "($t1-$t0)/$hz" | bc -l); wall=$(echo "$s1-$s0" | bc -l)
    nsop=$(echo "$cpu/$N*1000000000" | bc -l)
    row "redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)" "$t" 1M "-P $p" "$ops_s" \
      "$(echo "$p50*1000" | bc | cut -d. -f1) / $(echo "$p99*1000" | bc | cut -d. -f1) / -" \
      "$(printf %.0f "$(echo "100*$cpu/$wall" | bc -l)")" "$(printf %.0f "$nsop")" "-"
  done
done

# The engine in process on the same workloads, for the server's cost ratio:
# one operation at a time, and in 1024-operation batches with the server's
# prefetch pipeline (what a loop does with a request batch).
echo | tee -a "$OUT"
echo "engine in process (1 worker, 1 M keys):" | tee -a "$OUT"
for b in 'YCSB$/(B|F)/(uniform|zipf)/1M/w1/fleetkv$' 'YCSBBatched$/(B|F)/(uniform|zipf)/1M/w1$'; do
  go test -run '^$' -bench "$b" -benchtime 3000000x ./store/ 2>&1 \
    | grep '^Benchmark' | awk '{print "  " $1, $3, "ns/op"}' | tee -a "$OUT"
done
