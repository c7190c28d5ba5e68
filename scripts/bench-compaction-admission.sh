#!/usr/bin/env bash
# What compaction costs the foreground's tail, flat out and paced by
# admission control, against the same run without compaction.
#
# One server (one loop, nothing pinned, automatic compaction off), KEYS keys
# of VALUE bytes over a MEMORY in-memory budget (most records on the
# device), then a verified YCSB-B Zipf load (loadgen, 2 threads) for SECS
# seconds, in three configurations one after the other, ROUNDS rounds:
#   none:  nothing else runs
#   flat:  --admit-interval 0; 2 s into the load, POST /compact compacts
#          everything on the device (nearly every record is live: it is
#          copied to the tail), flat out
#   paced: the same with --admit-interval 200ms (the default): the
#          compaction rests by admission control's share (admit.Duty)
# Reported per run: ops/s, p50/p99/p99.9 (loadgen's, over the run), how
# long the compaction took (the POST) and the bytes it scanned.
#
# Usage: scripts/bench-compaction-admission.sh   (KEYS=1000000 VALUE=256 MEMORY=64MiB SECS=20 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
VALUE=${VALUE:-256}
MEMORY=${MEMORY:-64MiB}
SECS=${SECS:-20}
ROUNDS=${ROUNDS:-3}
OUT=${BENCH_OUT:-bench-compaction-admission.out}
. scripts/lib.sh
setup_work bench-compaction
: >"$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $KEYS keys x $VALUE B over $MEMORY" | tee -a "$OUT"
echo "| round | config | ops/s | p50 / p99 / p99.9 us | compaction s | scanned MiB | errors |" | tee -a "$OUT"
echo "|---|---|---|---|---|---|---|" | tee -a "$OUT"
run() {
  local round=$1 name=$2 admit=$3
  read -r np ap <<<"$(ports 2)"
  rm -rf "$WORK/data"
  "$BIN" server --dir "$WORK/data" --listen 127.0.0.1:$np --admin 127.0.0.1:$ap --loops 1 --pin=false --memory "$MEMORY" \
    --page-size 4MiB --segment-size 64MiB --compact-threshold 0 --admit-interval "$admit" >"$WORK/server.log" 2>&1 &
  spid=$!
  wait_tcp $np
  "$BIN" loadgen --servers 127.0.0.1:$np --workload load --keys "$KEYS" --value-size "$VALUE" --verify >/dev/null 2>&1
  "$BIN" loadgen --servers 127.0.0.1:$np --threads 2 --workload ycsb-b --dist zipf --keys "$KEYS" --value-size "$VALUE" \
    --verify --duration "${SECS}s" --warmup 2s --json "$WORK/load.json" >/dev/null 2>&1 &
  local lg=$!
  echo '{}' >"$WORK/compact.json"
  local took=-
  if [ "$name" != none ]; then
    sleep 4
    local t0; t0=$(date +%s.%N)
    curl -s -m 600 -X POST "http://127.0.0.1:$ap/compact" >"$WORK/compact.json" || true
    took=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  fi
  wait $lg || true
  kill "$spid"; wait "$spid" 2>/dev/null || true
  spid=""
  python3 - "$round" "$name" "$WORK/load.json" "$WORK/compact.json" "$took" <<'PY' | tee -a "$OUT"
import json, sys
r = json.load(open(sys.argv[3]))
try:
    c = json.load(open(sys.argv[4]))
except ValueError:
    c = {}
print(f"| {sys.argv[1]} | {sys.argv[2]} | {r['ops_per_sec']:,.0f} | {r['p50_us']:.0f} / {r['p99_us']:.0f} / {r['p999_us']:.0f} "
      f"| {sys.argv[5]} | {c.get('ScannedBytes', 0) / 2**20:,.0f} | {r['errors'] + r['verify_failures']} |")
PY
}
for round in $(seq "$ROUNDS"); do
  run "$round" none 200ms
  run "$round" flat 0
  run "$round" paced 200ms
done
