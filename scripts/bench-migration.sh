#!/usr/bin/env bash
# Live migration against Redis Cluster resharding, in one run.
#
# 1. fleetkv, scaling out: a fleetkv meta member and server s1 owning every
#    slot (one loop), KEYS keys of VALUE bytes loaded, server s2 started
#    empty, then a verified YCSB-B Zipf load through the routed client
#    (loadgen --verify --verify-loaded --timeline, THREADS threads) for SECS
#    seconds (WORKLOAD=ycsb-f for increments: VALUE must be 8); after WARM
#    seconds half the slots (8192-16383) move to s2
#    (fleetkv cluster migrate). Reported: time to move, the lowest 1 s
#    throughput during the move over the mean before it (the dip; and the
#    lowest 1 s before it, the machine's own noise), p99.9 before and
#    during, errors and verify failures.
# 2. Redis Cluster: three redis-server 7 processes in cluster mode (no
#    persistence), the same KEYS keys of VALUE bytes loaded, redis-benchmark
#    --cluster GETs at -P 16 as the load, and redis-cli --cluster reshard
#    moving half of the slots (with their keys) to the third node. Reported:
#    time to move, the lowest rps redis-benchmark printed during it over
#    its mean before it, and the errors it printed.
# The machine's CPUs are shared by the servers and the clients (nothing is
# pinned). The timelines are kept as $OUT.fleetkv.csv and $OUT.redis.csv,
# and drawn as $OUT.fleetkv.svg and $OUT.redis.svg (fleetkv loadgen plot).
#
# Usage: scripts/bench-migration.sh   (KEYS=1000000 VALUE=8 SECS=40 WARM=10 THREADS=2 WORKLOAD=ycsb-b)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
VALUE=${VALUE:-8}
SECS=${SECS:-40}
WARM=${WARM:-10}
MEMORY=${MEMORY:-2GiB}
OUT=${BENCH_OUT:-bench-migration.out}
. scripts/lib.sh
setup_work bench-migration
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  (apt-get update && apt-get install -y redis-server redis-tools) >/dev/null
fi
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
now() { date +%s.%3N; } # a python3 start here took a tenth of a CPU second inside the windows it marks

: >"$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $KEYS keys x $VALUE B, $(redis-server --version | cut -d' ' -f1-3)" | tee -a "$OUT"

echo "## 1. fleetkv: s1 owns every slot, half of them (8192-16383) move to s2 under a verified ${WORKLOAD:-ycsb-b} Zipf load" | tee -a "$OUT"
read -r mport mpeer np1 np2 <<<"$(ports 4)"
"$BIN" meta --name m --dir "$WORK/meta" --client 127.0.0.1:$mport --peer 127.0.0.1:$mpeer >"$WORK/meta.log" 2>&1 &
pids+=($!)
wait_tcp $mport
server() {
  local i=$1 np=$2
  "$BIN" server --cluster bench --meta 127.0.0.1:$mport --server-id s$i --dir "$WORK/s$i" --listen 127.0.0.1:$np \
    --admin "" --loops 1 --pin=false --memory "$MEMORY" --segment-size 256MiB --log-level "${LOG_LEVEL:-info}" ${SERVER_ARGS:-} \
    >"$WORK/s$i.log" 2>&1 &
  pids+=($!)
  wait_tcp $np
}
server 1 $np1
"$BIN" cluster init --meta 127.0.0.1:$mport --cluster bench --servers 1 >/dev/null
sleep 1
slots=8192-16383
t0=$(now)
"$BIN" loadgen --servers 127.0.0.1:$np1 --workload load --keys "$KEYS" --value-size "$VALUE" --verify >/dev/null 2>&1
echo "loaded $KEYS keys in $(elapsed "$t0") s" | tee -a "$OUT"
server 2 $np2
sleep 1
"$BIN" loadgen --servers 127.0.0.1:$np1,127.0.0.1:$np2 --threads "${THREADS:-2}" --workload "${WORKLOAD:-ycsb-b}" --dist zipf --keys "$KEYS" --value-size "$VALUE" \
  --verify --verify-loaded --duration "${SECS}s" --warmup 1s --timeline "$OUT.fleetkv.csv" --json "$WORK/load.json" \
  >"$WORK/load.out" 2>&1 &
lg=$!; pids+=($lg)
start=$(now)
sleep "$WARM"
m0=$(now)
keep_logs() { if [ -n "${KEEP_LOGS:-}" ]; then cp "$WORK/s1.log" "$OUT.s1.log"; cp "$WORK/s2.log" "$OUT.s2.log"; fi; }
"$BIN" cluster migrate --meta 127.0.0.1:$mport --cluster bench --slots "$slots" --to s2 --wait 10m >"$WORK/migrate.out" 2>&1 ||
  { cat "$WORK/migrate.out"; keep_logs; exit 1; }
m1=$(now)
cat "$WORK/migrate.out" | tee -a "$OUT"
wait $lg || { tail -5 "$WORK/load.out"; echo "the load generator failed" | tee -a "$OUT"; }
python3 - "$OUT.fleetkv.csv" "$WORK/load.json" "$start" "$m0" "$m1" <<'PY' | tee -a "$OUT"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rep = json.load(open(sys.argv[2]))
start, m0, m1 = (float(x) for x in sys.argv[3:6])
a, b = m0 - start, m1 - start
t = [float(r["t_s"]) for r in rows]
ops = [float(r["ops_per_s"]) for r in rows]
before = [o for x, o in zip(t, ops) if 2 <= x < a]
# 1 s windows (10 rows) that end inside the move, and before it
win = [sum(ops[i-9:i+1]) / 10 for i in range(9, len(rows)) if a + 1 <= t[i] <= b + 1]
quiet = [sum(ops[i-9:i+1]) / 10 for i in range(9, len(rows)) if 3 <= t[i] < a]
p999 = lambda lo, hi: max([float(r["p999_us"]) for x, r in zip(t, rows) if lo <= x < hi] or [0])
mean = sum(before) / len(before)
low = min(win) if win else min(o for x, o in zip(t, ops) if a <= x <= b)
errs = sum(int(r["errors"]) for r in rows)
print(f"| fleetkv, 1 → 2 servers | move {b - a:.2f} s | before {mean:,.0f} ops/s (lowest 1 s {min(quiet):,.0f}, {min(quiet) / mean:.0%}) "
      f"| lowest 1 s during {low:,.0f} ops/s ({low / mean:.0%}) "
      f"| worst 100 ms p99.9 before {p999(2, a):,.0f} us, during {p999(a, b):,.0f} us | errors {errs} (report {rep['errors']}) "
      f"| verify failures {rep['verify_failures']} | {rep['ops']:,} ops |")
PY
plot_timeline "$OUT.fleetkv.csv" "fleetkv: slots 8192-16383 move from s1 to s2 under ${WORKLOAD:-ycsb-b} ($KEYS keys x $VALUE B)" \
  "$start" "$m0=migrate" "$m1=moved" | tee -a "$OUT"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
if [ -n "${KEEP_LOGS:-}" ]; then cp "$WORK/s1.log" "$OUT.s1.log"; cp "$WORK/s2.log" "$OUT.s2.log"; echo "loadgen started $start, migrate $m0..$m1" >"$OUT.times"; fi
[ -n "${FLEETKV_ONLY:-}" ] && exit 0

echo "## 2. Redis Cluster: 3 redis-server, half the slots resharded to the third under redis-benchmark --cluster GET -P 16" | tee -a "$OUT"
read -r r1 r2 r3 <<<"$(low_ports 3)"
rports=($r1 $r2 $r3)
for p in "${rports[@]}"; do
  (cd "$WORK" && redis-server --port $p --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --save '' --appendonly no \
    --daemonize no --logfile "$WORK/redis-$p.log") &
  pids+=($!)
done
for p in "${rports[@]}"; do wait_tcp $p; done
redis-cli --cluster create 127.0.0.1:$r1 127.0.0.1:$r2 127.0.0.1:$r3 --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 100); do redis-cli -p $r1 cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1; done
sleep 1
t0=$(now)
# Load key:0..KEYS-1 (redis-benchmark's -r key names) with VALUE-byte values,
# each node's keys piped to it.
python3 scripts/redis_load.py "$KEYS" "$VALUE" "$WORK" "${rports[@]}"
n=$(for p in "${rports[@]}"; do redis-cli -p $p dbsize; done | awk '{s += $1} END {print s}')
echo "loaded $n keys in $(elapsed "$t0") s" | tee -a "$OUT"
redis-benchmark --cluster -p $r1 -t get -P 16 -r "$KEYS" -d "$VALUE" -n 2000000000 >"$WORK/rb.out" 2>&1 &
rb=$!; pids+=($rb)
start=$(now)
sleep "$WARM"
to=$(redis-cli -p $r3 cluster myid)
from=$(redis-cli -p $r1 cluster myid),$(redis-cli -p $r2 cluster myid)
m0=$(now)
redis-cli --cluster reshard 127.0.0.1:$r1 --cluster-from "$from" --cluster-to "$to" --cluster-slots 8192 --cluster-yes \
  --cluster-pipeline 100 >"$WORK/reshard.out" 2>&1 || { tail -5 "$WORK/reshard.out"; echo "reshard failed" | tee -a "$OUT"; }
m1=$(now)
sleep 2
kill $rb 2>/dev/null || true; wait $rb 2>/dev/null || true
python3 - "$WORK/rb.out" "$OUT.redis.csv" "$start" "$m0" "$m1" <<'PY' | tee -a "$OUT"
import re, sys
text = open(sys.argv[1], errors="replace").read()
start, m0, m1 = (float(x) for x in sys.argv[3:6])
# redis-benchmark rewrites a progress line every 250 ms: "GET: rps=N (overall: M) avg_msec=..."
rps = [float(x) for x in re.findall(r"rps=([0-9.]+) \(overall", text)]
errors = len(re.findall(r"(?i)error", text))
with open(sys.argv[2], "w") as f:
    f.write("t_s,rps\n")
    for i, r in enumerate(rps):
        f.write(f"{(i + 1) * 0.25:.2f},{r:.0f}\n")
a, b = m0 - start, m1 - start
t = [(i + 1) * 0.25 for i in range(len(rps))]
before = [r for x, r in zip(t, rps) if 2 <= x < a]
win = [sum(rps[i-3:i+1]) / 4 for i in range(3, len(rps)) if a + 1 <= t[i] <= b + 1]
mean = sum(before) / max(len(before), 1)
low = min(win) if win else 0
print(f"| Redis Cluster, 3 servers | move {b - a:.2f} s | before {mean:,.0f} rps | lowest 1 s during {low:,.0f} rps ({low / max(mean, 1):.0%}) "
      f"| error lines from redis-benchmark {errors} |")
PY
plot_timeline "$OUT.redis.csv" "Redis Cluster: 8192 slots resharded to the third node under redis-benchmark GET -P 16" \
  "$start" "$m0=reshard" "$m1=resharded" | tee -a "$OUT"
n=$(for p in "${rports[@]}"; do redis-cli -p $p dbsize; done | awk '{s += $1} END {print s}')
echo "keys after the reshard: $n" | tee -a "$OUT"
