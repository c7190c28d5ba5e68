#!/usr/bin/env bash
# Fold-over against log-snapshot checkpoints, in one run: YCSB-A over a
# Zipf-hot key set with a checkpoint every CKPT_EVERY seconds, each mode
# twice (alternated), from the same loaded data directory; for KEYS keys
# (more than --memory holds) and for SMALL_KEYS (all in memory).
#
# A server on CPU 0 (--loops 1, --memory MEMORY, automatic compaction off)
# is loaded once with the keys (256-byte values); then for each run it is
# restarted in the mode under test and driven from CPU 1 for SECS seconds
# while POST /checkpoint runs every CKPT_EVERY seconds. Reported per run: throughput,
# log written per second (tail growth: a fold-over makes every hot record
# copy itself once after each checkpoint), checkpoint durations, the loops'
# pause per checkpoint, and the log snapshot files' sizes.
#
# Usage: scripts/bench-checkpoint-modes.sh [seconds]   (env: KEYS, SMALL_KEYS, CKPT_EVERY, MEMORY, DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
KEYS=${KEYS:-4000000}
SMALL_KEYS=${SMALL_KEYS:-200000}
CKPT_EVERY=${CKPT_EVERY:-1}
MEMORY=${MEMORY:-256MiB}
OUT=${BENCH_OUT:-bench-checkpoint-modes.out}
. scripts/lib.sh
setup_work bench-modes
port=$(free_port); admin=$(free_port)
start() {
  taskset -c 0 "$BIN" server --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --loops 1 --dir "$WORK/data" \
    --memory "$MEMORY" --checkpoint-interval 0 --checkpoint-mode "$1" --compact-threshold 0 --log-level warn \
    >/dev/null 2>>"$WORK/server.log" &
  spid=$!
  until curl -sf "127.0.0.1:$admin/healthz" >/dev/null; do sleep 0.02; done
}
stop() { kill $spid; wait $spid 2>/dev/null || true; spid=""; }
ckpt() { curl -sf -XPOST -o /dev/null -w '%{time_total}' "127.0.0.1:$admin/checkpoint"; }
stat() { curl -s 127.0.0.1:$admin/stats | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }

: > "$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $(df -T "$WORK" | awk 'NR==2 {print $1, $2}')" | tee -a "$OUT"
# modes KEYS: loads KEYS keys into a fresh data directory, then runs each
# mode twice.
modes() {
  local keys=$1
  rm -rf "$WORK/data"
  echo "$keys keys x 256-byte values, --memory $MEMORY, YCSB-A zipf, a checkpoint every ${CKPT_EVERY} s, ${SECS} s per run" | tee -a "$OUT"
  start fold-over
  taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$keys" --value-size 256 >/dev/null 2>&1
  ckpt >/dev/null
  stop
  for mode in fold-over snapshot fold-over snapshot; do
    start $mode
    tail0=$(stat 's["store"]["Log"]["Tail"]')
    : > "$WORK/ckpt-times"; : > "$WORK/snap-sizes"
    ( while kill -0 $spid 2>/dev/null; do
        sleep "$CKPT_EVERY"
        ckpt >> "$WORK/ckpt-times" 2>/dev/null || break; echo >> "$WORK/ckpt-times"
        { ls -l "$WORK"/data/checkpoints/log-*.bin 2>/dev/null || true; } | awk '{print $5}' | tail -1 >> "$WORK/snap-sizes"
      done ) &
    cl=$!
    taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-a --dist zipf --keys "$keys" \
      --value-size 256 --duration ${SECS}s --warmup 0s --sessions 4 --in-flight 4 --batch-size 16KiB \
      --json "$WORK/r.json" >/dev/null 2>&1
    kill $cl 2>/dev/null || true; wait $cl 2>/dev/null || true
    tail1=$(stat 's["store"]["Log"]["Tail"]')
    ops=$(python3 -c "import json;r=json.load(open('$WORK/r.json'));print(int(r['ops_per_sec']), 'ops/s,', r['errors'], 'errors')")
    pause=$(stat '"%.2f ms" % (s["checkpoint"]["pause_nanos"]/max(s["checkpoint"]["taken"],1)/1e6)')
    echo "$mode: $ops; log written $(( (tail1 - tail0) / SECS >> 20 )) MiB/s; pause $pause per checkpoint" | tee -a "$OUT"
    echo "  checkpoint durations (s): $(tr '\n' ' ' < "$WORK/ckpt-times")" | tee -a "$OUT"
    if [ $mode = snapshot ]; then
      echo "  log snapshot sizes (MiB): $(awk '{printf "%.1f ", $1/1048576}' "$WORK/snap-sizes")" | tee -a "$OUT"
    fi
    stop
  done
}
modes "$KEYS"
modes "$SMALL_KEYS"
