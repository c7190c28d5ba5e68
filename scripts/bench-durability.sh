#!/usr/bin/env bash
# Durability figures, in one run: checkpoint duration, throughput while
# checkpoints are taken against without, and recovery time after a clean
# shutdown and after kill -9, for a log of about LOG_GIB GiB.
#
# A server on CPU 0 (--loops 1, --memory MEMORY, periodic checkpoints and
# automatic compaction off; index snapshots on, as by default)
# is loaded with KEYS keys of 256-byte values (a ~1.1 GiB log for 4 M keys);
# the load generator runs on CPU 1.
#   1. POST /checkpoint right after the load (the whole in-memory log to
#      flush), then an idle one.
#   2. YCSB-A uniform for SECS seconds, without checkpoints, then again with
#      a checkpoint every second (POST /checkpoint in a loop).
#   3. SIGTERM (a final checkpoint), restart, time until the server answers;
#      then a checkpoint, more writes, kill -9, restart, time again.
#
# Usage: scripts/bench-durability.sh [seconds]   (env: KEYS, MEMORY, DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
KEYS=${KEYS:-4000000}
MEMORY=${MEMORY:-256MiB}
OUT=${BENCH_OUT:-bench-durability.out}
. scripts/lib.sh
setup_work bench-dur
port=$(free_port); admin=$(free_port)
# start WHAT: starts the server and reports how long it took to serve.
start() {
  t0=$(date +%s.%N)
  taskset -c 0 "$BIN" server --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --loops 1 --dir "$WORK/data" \
    --memory "$MEMORY" --checkpoint-interval 0 --compact-threshold 0 --log-level info >/dev/null 2>>"$WORK/server.log" &
  spid=$!
  until curl -sf "127.0.0.1:$admin/healthz" >/dev/null; do sleep 0.02; done
  echo "$1: $(elapsed "$t0") s to serving" | tee -a "$OUT"
}
ckpt() { curl -sf -XPOST -o /dev/null -w '%{time_total}' "127.0.0.1:$admin/checkpoint"; }
ycsb() {
  taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-a --dist uniform --keys "$KEYS" \
    --value-size 256 --duration ${SECS}s --warmup 1s --sessions 4 --in-flight 4 --batch-size 16KiB \
    --json "$WORK/r.json" >/dev/null 2>&1
  python3 -c "import json;r=json.load(open('$WORK/r.json'));print(int(r['ops_per_sec']), r['errors'])"
}

: > "$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $(df -T "$WORK" | awk 'NR==2 {print $1, $2}')" | tee -a "$OUT"
echo "$KEYS keys x 256-byte values, --memory $MEMORY" | tee -a "$OUT"
start "start (empty)"
taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" --value-size 256 >/dev/null 2>&1
tail=$(curl -s 127.0.0.1:$admin/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["Log"]["Tail"])')
echo "log after the load: $((tail >> 20)) MiB" | tee -a "$OUT"
echo "checkpoint after the load: $(ckpt) s; idle checkpoint: $(ckpt) s" | tee -a "$OUT"
kill $spid; wait $spid 2>/dev/null || true
start "restart after a clean shutdown, log of $((tail >> 20)) MiB"
grep 'msg=recovered' "$WORK/server.log" | tail -1 | tee -a "$OUT"
# Alternate the two, twice, so that neither gets the warmer device.
for round in 1 2; do
  echo "YCSB-A uniform without checkpoints: $(ycsb) (ops/s, errors)" | tee -a "$OUT"
  : > "$WORK/ckpt-times"
  ( while kill -0 $spid 2>/dev/null; do ckpt >> "$WORK/ckpt-times" 2>/dev/null || break; echo >> "$WORK/ckpt-times"; sleep 1; done ) &
  cl=$!
  echo "YCSB-A uniform with a checkpoint every second: $(ycsb) (ops/s, errors)" | tee -a "$OUT"
  kill $cl 2>/dev/null || true; wait $cl 2>/dev/null || true
  echo "  checkpoint durations meanwhile (s): $(tr '\n' ' ' < "$WORK/ckpt-times")" | tee -a "$OUT"
  curl -s 127.0.0.1:$admin/stats | python3 -c 'import json,sys; c=json.load(sys.stdin)["checkpoint"]; print("  loops stood still for CPR points: %.3f ms per checkpoint (%d checkpoints since start, %.1f ms in all)" % (c["pause_nanos"]/max(c["taken"],1)/1e6, c["taken"], c["pause_nanos"]/1e6))' | tee -a "$OUT"
done
tail=$(curl -s 127.0.0.1:$admin/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["Log"]["Tail"])')
kill $spid; wait $spid 2>/dev/null || true
start "restart after a clean shutdown, log of $((tail >> 20)) MiB"
grep 'msg=recovered' "$WORK/server.log" | tail -1 | tee -a "$OUT"
ckpt >/dev/null
taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-a --dist uniform --keys "$KEYS" --value-size 256 \
  --duration 3s --warmup 0s --sessions 4 --in-flight 4 --batch-size 16KiB >/dev/null 2>&1
kill -9 $spid; wait $spid 2>/dev/null || true
start "restart after kill -9, log of about $((tail >> 20)) MiB"
grep 'msg=recovered' "$WORK/server.log" | tail -1 | tee -a "$OUT"
du -sh "$WORK/data/log" | tee -a "$OUT"
