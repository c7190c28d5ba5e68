#!/usr/bin/env bash
# A/B of two fleetkv binaries' server CPU per operation over loopback, with
# the engine's batched pipeline measured after each round: the server's
# cost against the engine's, as in bench-server.sh, but with the two
# binaries and the engine interleaved round by round so that the VM's
# drifts in speed fall on all three alike.
#
# Both servers run at once, each with one loop on CPU 0 (only one is
# loaded at a time); the load generator (binary B's) runs on CPU 1. 1 M
# keys of 8 bytes are loaded into each, then every round runs YCSB-B and
# YCSB-F (every operation an ADD) with uniform keys, 32 KiB batches, 2
# sessions, 2 batches in flight, SECS seconds each (1 s warm-up), the
# binaries in alternating order, then BenchmarkYCSBBatched/{B,F}/uniform/1M/w1
# on CPU 0. A line per run: binary, workload, ops/s, server ns/op (its CPU
# time from /proc over the run's wall time, per operation), errors.
#
# Usage: scripts/ab-loopback.sh BINARY_A BINARY_B   (env: ROUNDS, SECS, DIR,
#        ARGS_A and ARGS_B: extra server flags; one binary twice with two
#        flag sets compares the flags)
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2")
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROUNDS=${ROUNDS:-5}; SECS=${SECS:-6}
D=$(mktemp -d "${DIR:-$PWD}/bench-abl.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait; rm -rf "$D"' EXIT
go test -c -o "$D/store.test" ./store/
declare -A bin=([a]=$A [b]=$B) args=([a]=${ARGS_A:-} [b]=${ARGS_B:-}) port pid
for v in a b; do
  port[$v]=$(free_port)
  taskset -c 0 "${bin[$v]}" server --listen 127.0.0.1:${port[$v]} --admin "" --loops 1 --dir "$D/$v" --log-level warn ${args[$v]} &
  pid[$v]=$!; pids+=($!)
done
for v in a b; do
  wait_tcp ${port[$v]}
  taskset -c 1 "$B" loadgen --servers 127.0.0.1:${port[$v]} --workload load --keys 1000000 --value-size 8 >/dev/null 2>&1
done
run() { # v workload
  local v=$1 wl=$2 j t0 t1 s0 s1
  j=$D/run.json; t0=$(cpu_ticks ${pid[$v]}); s0=$(date +%s.%N)
  taskset -c 1 "$B" loadgen --servers 127.0.0.1:${port[$v]} --workload $wl --dist uniform --keys 1000000 \
    --value-size 8 --batch-size 32KiB --in-flight 2 --sessions 2 --duration ${SECS}s --warmup 1s --json $j >/dev/null 2>&1
  t1=$(cpu_ticks ${pid[$v]}); s1=$(date +%s.%N)
  python3 -c "import json;r=json.load(open('$j'));cpu=($t1-$t0)/$hz;wall=$s1-$s0
print('$v $wl', int(r['ops_per_sec']), round(cpu/wall/r['ops_per_sec']*1e9,1), r['errors']+r['verify_failures'])"
}
echo "A=$A ${ARGS_A:-} B=$B ${ARGS_B:-}, $(nproc) CPUs, $(date -u +%FT%TZ)"
for r in $(seq "$ROUNDS"); do
  for wl in ycsb-b ycsb-f; do
    if [ $((r % 2)) = 1 ]; then run a $wl; run b $wl; else run b $wl; run a $wl; fi
  done
  taskset -c 0 "$D/store.test" -test.run '^$' -test.bench 'YCSBBatched$/(B|F)/uniform/1M/w1$' -test.benchtime 3000000x \
    | awk '/ns\/op/ {print "engine", $1, $3}'
done
