#!/usr/bin/env bash
# The foreground's tail with a compaction and a migration running beside it
# (issue 15, item 3's bar: p99.9 within 2x of the same run without them).
#
# A fleetkv meta member and two servers (one loop each, nothing pinned,
# automatic compaction off, admission control at its default), the slots
# split between them (cluster init), KEYS keys of VALUE bytes loaded over a
# MEMORY in-memory budget each (most records on the device), then a
# verified YCSB-B Zipf load through the routed client (THREADS threads) for
# SECS seconds, in two configurations one after the other, ROUNDS rounds:
#   quiet: nothing else runs
#   busy:  WARM seconds into the load, s1 compacts everything on its
#          device (POST /compact; nearly every record is live and is copied
#          to its tail) while a quarter of the slots (0-4095, s1's) move to
#          s2 (fleetkv cluster migrate), both at once. With MOVE=swap, an
#          eighth moves each way instead (0-2047 to s2 and 8192-10239 to
#          s1, at once): as much data moves, and the servers end with the
#          shares they started with, as in the quiet run (a quarter moved
#          one way leaves s2 serving 5/8 of the keys from the same memory
#          for the rest of the load)
# and, named in CONFIGS (default "busy quiet"; busy must come first, as its
# window is the next runs' window), to tell the parts apart:
#   migrate, compact: only the one;  busy-flat: busy with admission
#   control off on both servers (--admit-interval 0)
# Reported per run: ops/s and p50/p99/p99.9 from WARM to the load's end
# (loadgen's report, --warmup WARM: from the start of the background work);
# over the window from WARM to the end of the later of the two (the same
# window in the quiet run of the round, which runs second): the lowest 1 s
# throughput, the median and the worst of the 100 ms intervals' p99.9s; how
# long each piece of background work took. SECS should leave little of the
# load after the window, or the report's figures dilute it.
#
# KEEP_LOGS=1 keeps the servers' logs as $OUT.ROUND.CONFIG.sN.log
# SAMPLE=1 writes $OUT.ROUND.CONFIG.samples.jsonl: once a second, from each
# server's /stats, its parked reads, admission control's share and its
# loops' p99.9 against the learnt level, and from /proc, the CPU time its
# threads ran and waited for a CPU (schedstat; in all, and its busiest
# thread's: the loop's, locked to it), so that a run can be read
# for where the background work's cost landed.
# (SERVER_ARGS="--log-level debug" logs admission control's intervals).
#
# Usage: scripts/bench-background.sh   (KEYS=500000 VALUE=256 MEMORY=64MiB SECS=40 WARM=8 THREADS=2 ROUNDS=3 CONFIGS="busy quiet" MOVE=quarter)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-500000}
VALUE=${VALUE:-256}
MEMORY=${MEMORY:-64MiB}
SECS=${SECS:-40}
WARM=${WARM:-8}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
CONFIGS=${CONFIGS:-busy quiet}
OUT=${BENCH_OUT:-bench-background.out}
. scripts/lib.sh
setup_work bench-background
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
now() { date +%s.%3N; } # a python3 start here took a tenth of a CPU second inside the windows it marks

: >"$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $KEYS keys x $VALUE B over $MEMORY a server, YCSB-B Zipf, $THREADS loadgen threads, ${SECS}s" | tee -a "$OUT"
echo "| round | config | ops/s after WARM | p50 / p99 / p99.9 us after WARM | window s | lowest 1 s in window | 100 ms p99.9s in window: median / worst us | compaction s | migration s | errors |" | tee -a "$OUT"
echo "|---|---|---|---|---|---|---|---|---|---|" | tee -a "$OUT"

# run ROUND CONFIG [WINDOW]: one configuration; prints its row and, for
# busy, the window it measured (for the quiet run of the next round).
run() {
  local round=$1 name=$2 admit=200ms compact=0 migrate=0
  case $name in
    busy) compact=1 migrate=1 ;;
    busy-flat) compact=1 migrate=1 admit=0 ;;
    migrate) migrate=1 ;;
    compact) compact=1 ;;
  esac
  rm -rf "$WORK/meta" "$WORK/s1" "$WORK/s2"
  read -r mport mpeer np1 np2 ap1 ap2 <<<"$(ports 6)"
  "$BIN" meta --name m --dir "$WORK/meta" --client 127.0.0.1:$mport --peer 127.0.0.1:$mpeer >"$WORK/meta.log" 2>&1 &
  pids+=($!)
  wait_tcp $mport
  for i in 1 2; do
    local np=np$i ap=ap$i
    "$BIN" server --cluster bench --meta 127.0.0.1:$mport --server-id s$i --dir "$WORK/s$i" --listen 127.0.0.1:${!np} \
      --admin 127.0.0.1:${!ap} --loops 1 --pin=false --memory "$MEMORY" --page-size 4MiB --segment-size 64MiB \
      --compact-threshold 0 --rebalance off --admit-interval "$admit" ${SERVER_ARGS:-} >"$WORK/s$i.log" 2>&1 &
    pids+=($!)
    wait_tcp ${!np}
  done
  "$BIN" cluster init --meta 127.0.0.1:$mport --cluster bench --servers 2 >/dev/null
  sleep 1
  "$BIN" loadgen --servers 127.0.0.1:$np1,127.0.0.1:$np2 --workload load --keys "$KEYS" --value-size "$VALUE" --verify >/dev/null 2>&1
  "$BIN" loadgen --servers 127.0.0.1:$np1,127.0.0.1:$np2 --threads "$THREADS" --workload ycsb-b --dist zipf --keys "$KEYS" \
    --value-size "$VALUE" --verify --verify-loaded --duration "${SECS}s" --warmup "${WARM}s" --timeline "$WORK/timeline.csv" \
    --json "$WORK/load.json" >"$WORK/load.out" 2>&1 &
  local lg=$!
  local start; start=$(now)
  local sp=
  if [ -n "${SAMPLE:-}" ]; then
    python3 - "$OUT.$round.$name.samples.jsonl" "$start" "s1=${pids[1]}:$ap1" "s2=${pids[2]}:$ap2" <<'PY' &
import glob, json, sys, time, urllib.request
out, start = sys.argv[1], float(sys.argv[2])
srv = {a.split("=")[0]: a.split("=")[1].split(":") for a in sys.argv[3:]}
def sched(pid):  # ns on a CPU and ns waiting for one: summed over the threads, and the busiest thread's (the loop's)
    run = wait = top_run = top_wait = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            r, w, _ = (int(x) for x in open(f).read().split())
        except (OSError, ValueError):
            continue
        run, wait = run + r, wait + w
        if r > top_run:
            top_run, top_wait = r, w
    return run, wait, top_run, top_wait
with open(out, "w") as f:
    while True:
        row = {"t": round(time.time() - start, 2)}
        for name, (pid, port) in srv.items():
            try:
                st = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2))
            except Exception:
                sys.exit(0)  # the server is gone: the run is over
            run, wait, top_run, top_wait = sched(pid)
            a = st["admission"]
            row[name] = {"ops": st["batches"], "parks": st["parks"], "parked": st["parked_reads"],
                         "share": a["share"], "workers": a["workers"], "p999_us": a["p999_us"],
                         "level_us": a["level_us"], "cpu_ns": run, "runq_ns": wait,
                         "top_cpu_ns": top_run, "top_runq_ns": top_wait}
        f.write(json.dumps(row) + "\n")
        f.flush()
        time.sleep(1)
PY
    sp=$!
  fi
  sleep "$WARM"
  local ctook=- mtook=- w0 w1
  w0=$(now)
  if [ "$compact" = 1 ]; then
    ( t0=$(now); curl -s -m 600 -X POST "http://127.0.0.1:$ap1/compact" >"$WORK/compact.json" || true
      python3 -c "import time; print(f'{time.time() - $t0:.1f}')" >"$WORK/ctook" ) &
    local cp=$!
  fi
  if [ "$migrate" = 1 ]; then
    local t0 moves=("0-4095 s2") mps=() m; t0=$(now)
    if [ "${MOVE:-quarter}" = swap ]; then moves=("0-2047 s2" "8192-10239 s1"); fi
    for m in "${moves[@]}"; do
      read -r sl to <<<"$m"
      "$BIN" cluster migrate --meta 127.0.0.1:$mport --cluster bench --slots "$sl" --to "$to" --wait 10m >"$WORK/migrate.$to.out" 2>&1 &
      mps+=($!)
    done
    for m in "${mps[@]}"; do
      wait "$m" || { cat "$WORK"/migrate.*.out; if [ -n "${KEEP_LOGS:-}" ]; then for i in 1 2; do cp "$WORK/s$i.log" "$OUT.$round.$name.s$i.log"; done; fi; exit 1; }
    done
    mtook=$(elapsed "$t0")
  fi
  if [ "$compact" = 1 ]; then
    wait $cp
    ctook=$(cat "$WORK/ctook")
  fi
  if [ "$name" = busy ]; then
    w1=$(now)
    WINDOW=$(python3 -c "print(f'{$w1 - $w0:.1f}')")
  fi
  wait $lg || { tail -5 "$WORK/load.out"; echo "the load generator failed" | tee -a "$OUT"; }
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  if [ -n "$sp" ]; then wait "$sp" 2>/dev/null || true; fi
  if [ -n "${KEEP_LOGS:-}" ]; then for i in 1 2; do cp "$WORK/s$i.log" "$OUT.$round.$name.s$i.log"; done; fi
  python3 - "$round" "$name" "$WORK/timeline.csv" "$WORK/load.json" "$start" "$w0" "$WINDOW" "$ctook" "$mtook" <<'PY' | tee -a "$OUT"
import csv, json, sys
round_, name, tl, js = sys.argv[1:5]
start, w0, window = (float(x) for x in sys.argv[5:8])
rows = list(csv.DictReader(open(tl)))
rep = json.load(open(js))
a = w0 - start
b = a + window
t = [float(r["t_s"]) for r in rows]
ops = [float(r["ops_per_s"]) for r in rows]
win = [sum(ops[i-9:i+1]) / 10 for i in range(9, len(rows)) if a + 1 <= t[i] <= b]
p999s = sorted(float(r["p999_us"]) for x, r in zip(t, rows) if a <= x < b and float(r["ops_per_s"]) > 0)
med = p999s[len(p999s) // 2] if p999s else 0
errs = rep["errors"] + rep["verify_failures"]
print(f"| {round_} | {name} | {rep['ops_per_sec']:,.0f} | {rep['p50_us']:.0f} / {rep['p99_us']:.0f} / {rep['p999_us']:.0f} "
      f"| {window:.1f} | {min(win) if win else 0:,.0f} | {med:,.0f} / {p999s[-1] if p999s else 0:,.0f} | {sys.argv[8]} | {sys.argv[9]} | {errs} |")
PY
}

for round in $(seq "$ROUNDS"); do
  WINDOW=$((SECS - WARM))
  for c in $CONFIGS; do
    run "$round" "$c"
    if [ "$c" = busy ] && python3 -c "import sys; sys.exit(0 if $WINDOW > $((SECS - WARM)) else 1)"; then
      echo "round $round: the background work outlasted the load (the figures after WARM are all beside it)" | tee -a "$OUT"
    fi
  done
done
