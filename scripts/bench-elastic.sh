#!/usr/bin/env bash
# Add a server to a loaded cluster, then drain one, against Redis Cluster
# doing the same, in one run.
#
# 1. fleetkv: a fleetkv meta member and servers s1, s2 (one loop each)
#    sharing a directory tier, KEYS keys of VALUE bytes loaded, then a
#    verified YCSB-B Zipf load through the routed client (loadgen --verify
#    --verify-loaded --timeline, THREADS threads) for SECS seconds. After
#    WARM seconds s3 is started and added (fleetkv cluster add-server: a
#    third of the slots move to it, from both); SETTLE seconds after that
#    plan ended, s1 is drained (fleetkv cluster drain: its slots go to s2
#    and s3) and then stopped while the load goes on. Reported per plan:
#    its time, the lowest 1 s throughput during it over the mean before the
#    first (the dip; and the lowest 1 s before it, the machine's own noise),
#    the worst 100 ms p99.9; and the errors and verify failures of the
#    whole run.
# 2. Redis Cluster: two redis-server 7 masters (no persistence), the same
#    keys loaded, pipelined GETs (16 per pipeline, RTHREADS=4 goroutines)
#    through go-redis's ClusterClient as the load (internal/redisload:
#    redis-benchmark --cluster exits when a node joins); after
#    WARM seconds a third master is added (redis-cli --cluster add-node,
#    then rebalance --cluster-use-empty-masters) and SETTLE seconds later the
#    first is drained (rebalance --cluster-weight ID=0) and removed
#    (del-node). Reported: the same, from the load's 250 ms timeline, and its
#    errors.
# Every process shares the machine's CPUs (nothing is pinned). The
# timelines are kept as $OUT.fleetkv.csv and $OUT.redis.csv, and drawn as
# $OUT.fleetkv.svg and $OUT.redis.svg (fleetkv loadgen plot).
#
# Usage: scripts/bench-elastic.sh   (KEYS=1000000 VALUE=8 SECS=50 WARM=10 SETTLE=5 THREADS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
VALUE=${VALUE:-8}
SECS=${SECS:-50}
WARM=${WARM:-10}
SETTLE=${SETTLE:-5}
MEMORY=${MEMORY:-2GiB}
OUT=${BENCH_OUT:-bench-elastic.out}
. scripts/lib.sh
setup_work bench-elastic
go build -o "$WORK/redisload" ./internal/redisload
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  (apt-get update && apt-get install -y redis-server redis-tools) >/dev/null
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP_LOGS:-}" ]; then for f in "$WORK"/s[0-9].log; do [ -f "$f" ] && cp "$f" "$OUT.$(basename "$f")"; done; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%3N; } # a python3 start here took a tenth of a CPU second inside the windows it marks
# agreed PORT... waits (10 s at most) until redis-cli --cluster check
# through the first finds every node agreeing and no error, and every PORT
# reports cluster_state:ok (a node that joined says CLUSTERDOWN until then,
# and rebalance refuses or fails).
agreed() {
  for _ in $(seq 50); do
    out=$(redis-cli --cluster check 127.0.0.1:$1 2>&1 || true)
    ok=1
    for p in "$@"; do redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0; done
    if [ $ok = 1 ] && grep -q 'All nodes agree' <<<"$out" && ! grep -q 'ERR' <<<"$out"; then return; fi
    sleep 0.2
  done
  echo "redis cluster through $1 never agreed" >&2
}

# report CSV STEP START A0 A1 B0 B1 NAME: the dips of two phases [A0,A1]
# and [B0,B1] (epoch seconds) in a timeline of STEP-second rows with a
# throughput column (ops_per_s or rps), against the mean before A0.
report() {
  python3 - "$@" <<'PY'
import csv, sys
path, step, start, a0, a1, b0, b1, name = sys.argv[1], float(sys.argv[2]), *map(float, sys.argv[3:8]), sys.argv[8]
rows = list(csv.DictReader(open(path)))
col = "ops_per_s" if "ops_per_s" in rows[0] else "rps"
t = [float(r["t_s"]) for r in rows]
ops = [float(r[col]) for r in rows]
n = int(round(1 / step))  # rows per second
sec = [(t[i], sum(ops[i - n + 1:i + 1]) / n) for i in range(n - 1, len(rows))]
a0, a1, b0, b1 = a0 - start, a1 - start, b0 - start, b1 - start
before = [o for x, o in zip(t, ops) if 2 <= x < a0]
mean = sum(before) / max(len(before), 1)
quiet = min([o for x, o in sec if 3 <= x < a0] or [0])
p999 = lambda lo, hi: max([float(r["p999_us"]) for x, r in zip(t, rows) if lo <= x < hi] or [0])
def dip(lo, hi):
    w = [o for x, o in sec if lo + 1 <= x <= hi + 1] or [o for x, o in zip(t, ops) if lo <= x <= hi]
    return min(w) if w else 0
tail = f" worst 100 ms p99.9 before {p999(2, a0):,.0f} us, add {p999(a0, a1):,.0f}, drain {p999(b0, b1):,.0f} |" if "p999_us" in rows[0] else ""
print(f"| {name} | before {mean:,.0f}/s (lowest 1 s {quiet:,.0f}, {quiet / max(mean, 1):.0%}) "
      f"| add {a1 - a0:.2f} s, lowest 1 s {dip(a0, a1):,.0f} ({dip(a0, a1) / max(mean, 1):.0%}) "
      f"| drain {b1 - b0:.2f} s, lowest 1 s {dip(b0, b1):,.0f} ({dip(b0, b1) / max(mean, 1):.0%}) |{tail}")
PY
}

: >"$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $KEYS keys x $VALUE B, $(redis-server --version | cut -d' ' -f1-3)" | tee -a "$OUT"

echo "## 1. fleetkv: s1, s2 loaded; s3 added, then s1 drained and stopped, under a verified YCSB-B Zipf load" | tee -a "$OUT"
read -r mport mpeer np1 np2 np3 <<<"$(ports 5)"
"$BIN" meta --name m --dir "$WORK/meta" --client 127.0.0.1:$mport --peer 127.0.0.1:$mpeer >"$WORK/meta.log" 2>&1 &
pids+=($!)
wait_tcp $mport
spids=()
server() {
  local i=$1 np=$2
  "$BIN" server --cluster bench --meta 127.0.0.1:$mport --server-id s$i --dir "$WORK/s$i" --listen 127.0.0.1:$np \
    --admin "" --loops 1 --pin=false --memory "$MEMORY" --segment-size 256MiB --shared-tier "dir://$WORK/shared" \
    --log-level "${LOG_LEVEL:-info}" ${SERVER_ARGS:-} >"$WORK/s$i.log" 2>&1 &
  pids+=($!)
  spids[$i]=$!
  wait_tcp $np
  # registered in the metadata store (cluster init and add-server name it)
  for _ in $(seq 100); do grep -q 'registered in the metadata store' "$WORK/s$i.log" && return; sleep 0.1; done
  echo "s$i did not register" >&2; exit 1
}
server 1 $np1
server 2 $np2
"$BIN" cluster init --meta 127.0.0.1:$mport --cluster bench --servers 2 >/dev/null
sleep 1
t0=$(now)
"$BIN" loadgen --servers 127.0.0.1:$np1 --workload load --keys "$KEYS" --value-size "$VALUE" --verify >/dev/null 2>&1
echo "loaded $KEYS keys in $(elapsed "$t0") s" | tee -a "$OUT"
"$BIN" loadgen --servers 127.0.0.1:$np2,127.0.0.1:$np1 --threads "${THREADS:-2}" --workload ycsb-b --dist zipf --keys "$KEYS" \
  --value-size "$VALUE" --verify --verify-loaded --duration "${SECS}s" --warmup 1s --timeline "$OUT.fleetkv.csv" \
  --json "$WORK/load.json" >"$WORK/load.out" 2>&1 &
lg=$!; pids+=($lg)
start=$(now)
sleep "$WARM"
a0=$(now)
server 3 $np3
plan() {
  "$BIN" cluster "$@" --meta 127.0.0.1:$mport --cluster bench --wait 10m >"$WORK/plan.out" 2>&1 ||
    { cat "$WORK/plan.out"; exit 1; }
  sed 's/^/    /' "$WORK/plan.out" | tee -a "$OUT"
}
plan add-server s3
a1=$(now)
sleep "$SETTLE"
b0=$(now)
plan drain s1
b1=$(now)
sleep 2
kill "${spids[1]}"
wait "${spids[1]}" 2>/dev/null || true
echo "s1 stopped $(elapsed "$start") s into the load" | tee -a "$OUT"
wait $lg || { tail -5 "$WORK/load.out"; echo "the load generator failed" | tee -a "$OUT"; }
report "$OUT.fleetkv.csv" 0.1 "$start" "$a0" "$a1" "$b0" "$b1" "fleetkv, 2 → 3 → 2 servers" | tee -a "$OUT"
plot_timeline "$OUT.fleetkv.csv" "fleetkv: s3 added, then s1 drained, under YCSB-B ($KEYS keys x $VALUE B)" \
  "$start" "$a0=add s3" "$a1=added" "$b0=drain s1" "$b1=drained" | tee -a "$OUT"
python3 - "$WORK/load.json" <<'PY' | tee -a "$OUT"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| fleetkv load | {r['ops']:,} ops | errors {r['errors']} | verify failures {r['verify_failures']} | rerouted {r['rerouted_ops']:,} |")
PY
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
[ -n "${FLEETKV_ONLY:-}" ] && exit 0

echo "## 2. Redis Cluster: 2 masters loaded; a 3rd added and rebalanced, then the 1st drained and removed, under pipelined GETs through go-redis's ClusterClient" | tee -a "$OUT"
read -r r1 r2 r3 <<<"$(low_ports 3)"
rports=($r1 $r2 $r3)
for p in "${rports[@]}"; do
  (cd "$WORK" && redis-server --port $p --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --save '' --appendonly no \
    --daemonize no --logfile "$WORK/redis-$p.log") &
  pids+=($!)
done
for p in "${rports[@]}"; do wait_tcp $p; done
# redis-cli --cluster create wants 3 masters: the first takes every slot,
# the second joins and takes half while both are empty.
redis-cli -p $r1 cluster addslotsrange 0 16383 >/dev/null
for _ in $(seq 100); do redis-cli -p $r1 cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1; done
redis-cli --cluster add-node 127.0.0.1:$r2 127.0.0.1:$r1 >/dev/null
agreed $r1 $r2
redis-cli --cluster rebalance 127.0.0.1:$r1 --cluster-use-empty-masters >/dev/null
for _ in $(seq 100); do redis-cli -p $r2 cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1; done
sleep 1
t0=$(now)
# Load key:0..KEYS-1 (redis-benchmark's -r key names), each master's keys
# piped to it.
python3 scripts/redis_load.py "$KEYS" "$VALUE" "$WORK" $r1 $r2
n=$(for p in $r1 $r2; do redis-cli -p $p dbsize; done | awk '{s += $1} END {print s}')
echo "loaded $n keys in $(elapsed "$t0") s" | tee -a "$OUT"
"$WORK/redisload" --addr 127.0.0.1:$r2 --keys "$KEYS" --threads "${RTHREADS:-4}" --pipeline 16 --duration "${SECS}s" \
  --timeline "$OUT.redis.csv" >"$WORK/rl.out" 2>&1 &
rl=$!; pids+=($rl)
start=$(now)
sleep "$WARM"
a0=$(now)
redis-cli --cluster add-node 127.0.0.1:$r3 127.0.0.1:$r1 >"$WORK/add.out" 2>&1
agreed $r1 $r2 $r3
redis-cli --cluster rebalance 127.0.0.1:$r1 --cluster-use-empty-masters --cluster-pipeline 100 >>"$WORK/add.out" 2>&1 ||
  { tail -5 "$WORK/add.out" | tee -a "$OUT"; echo "rebalance failed" | tee -a "$OUT"; }
a1=$(now)
sleep "$SETTLE"
b0=$(now)
agreed $r2 $r1 $r3
id1=$(redis-cli -p $r1 cluster myid)
redis-cli --cluster rebalance 127.0.0.1:$r2 --cluster-weight "$id1=0" --cluster-pipeline 100 >"$WORK/drain.out" 2>&1 ||
  { tail -5 "$WORK/drain.out" | tee -a "$OUT"; echo "drain failed" | tee -a "$OUT"; }
redis-cli --cluster del-node 127.0.0.1:$r2 "$id1" >>"$WORK/drain.out" 2>&1 || { tail -3 "$WORK/drain.out"; }
b1=$(now)
wait $rl || { tail -3 "$WORK/rl.out"; echo "redisload failed" | tee -a "$OUT"; }
report "$OUT.redis.csv" 0.25 "$start" "$a0" "$a1" "$b0" "$b1" "Redis Cluster, 2 → 3 → 2 masters" | tee -a "$OUT"
plot_timeline "$OUT.redis.csv" "Redis Cluster: a third master added and rebalanced, then the first drained" \
  "$start" "$a0=add" "$a1=added" "$b0=drain" "$b1=drained" | tee -a "$OUT"
echo "| Redis load | $(cat "$WORK/rl.out") | keys after: $(for p in $r2 $r3; do redis-cli -p $p dbsize; done | awk '{s += $1} END {print s}') |" | tee -a "$OUT"
