#!/usr/bin/env bash
# The cluster's figures, in one run:
#
# 1. Routing cost: one server (CPU 0, one loop), the load generator on
#    CPU 1 running YCSB-B Zipf over KEYS 8-byte keys through plain sessions
#    (--route=false) and through the routed client (by slot, from the
#    server's map), alternated, ROUNDS rounds of SECS seconds each.
# 2. Three fleetkv servers (one loop each; a fleetkv meta member) against
#    three redis-server 7 processes in cluster mode (no persistence, no
#    replicas), both driven by redis-benchmark --cluster at -P 64 (SET and
#    GET over KEYS keys, N requests), and the fleetkv servers by the native
#    load generator too. The machine has 2 CPUs: the servers and the client
#    share them (nothing is pinned); each server's CPU time is reported.
#
# Usage: scripts/bench-cluster.sh   (ROUNDS=3 SECS=5 KEYS=1000000 N=2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
KEYS=${KEYS:-1000000}
N=${N:-2000000}
OUT=${BENCH_OUT:-bench-cluster.out}
. scripts/lib.sh
setup_work bench-cluster
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  (apt-get update && apt-get install -y redis-server redis-tools) >/dev/null
fi
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
median() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})')" "$@"; }

: >"$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $(redis-benchmark --version)" | tee -a "$OUT"

echo "## 1. Routing cost: one server, YCSB-B Zipf, $KEYS keys, $ROUNDS x ${SECS}s each" | tee -a "$OUT"
# routing LABEL PORT: plain sessions and the routed client, alternated.
routing() {
  local label=$1 port=$2 plain=() routed=()
  taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" --route=false >/dev/null 2>&1
  for r in $(seq "$ROUNDS"); do
    for mode in plain routed; do
      flag=--route=false; [ $mode = routed ] && flag=--route=true
      taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-b --dist zipf --keys "$KEYS" --duration "${SECS}s" \
        $flag --json "$WORK/$mode.json" >/dev/null 2>&1
      v=$(json "$WORK/$mode.json" ops_per_sec)
      echo "$label round $r $mode: $v ops/s" | tee -a "$OUT"
      if [ $mode = plain ]; then plain+=("$v"); else routed+=("$v"); fi
    done
  done
  python3 - "$label" "${#plain[@]}" "${plain[@]}" "${routed[@]}" <<'PY' | tee -a "$OUT"
import statistics, sys
label, n = sys.argv[1], int(sys.argv[2]); v = [float(x) for x in sys.argv[3:]]
p, r = v[:n], v[n:]
fmt = lambda a: f"{statistics.median(a):,.0f} ({min(a):,.0f}-{max(a):,.0f})"
print(f"| {label} | {fmt(p)} | {fmt(r)} | {statistics.median(r)/statistics.median(p):.3f} |")
PY
}
printf '| server | plain sessions ops/s | routed client ops/s | routed / plain |\n|---|---|---|---|\n' | tee -a "$OUT"
port=$(free_port)
taskset -c 0 "$BIN" server --listen 127.0.0.1:$port --admin "" --loops 1 --dir "$WORK/one" --memory 1GiB --log-level warn &
pids+=($!); one=$!
wait_tcp $port
routing "standalone (routes every key to it)" $port
kill $one; wait $one 2>/dev/null || true
# The same server as the one member of a cluster: the client computes every
# key's slot and looks its owner up.
read -r mport mpeer port <<<"$(ports 3)"
"$BIN" meta --name m1 --dir "$WORK/meta1" --client 127.0.0.1:$mport --peer 127.0.0.1:$mpeer >"$WORK/meta1.log" 2>&1 &
pids+=($!); meta1=$!
wait_tcp $mport
taskset -c 0 "$BIN" server --cluster one --meta 127.0.0.1:$mport --server-id s --listen 127.0.0.1:$port --admin "" --loops 1 \
  --dir "$WORK/one-member" --memory 1GiB --log-level warn &
pids+=($!); one=$!
wait_tcp $port
"$BIN" cluster init --meta 127.0.0.1:$mport --cluster one --servers 1 >/dev/null
sleep 1
routing "cluster of one (routes by slot)" $port
kill $one $meta1; wait $one $meta1 2>/dev/null || true

echo "## 2. Three servers: fleetkv (meta + 3 servers) and redis-server cluster mode, redis-benchmark --cluster -P 64" | tee -a "$OUT"
read -r mport mpeer np1 rp1 np2 rp2 np3 rp3 <<<"$(ports 8)"
read -r r1 r2 r3 <<<"$(low_ports 3)"
"$BIN" meta --name m --dir "$WORK/meta" --client 127.0.0.1:$mport --peer 127.0.0.1:$mpeer >"$WORK/meta.log" 2>&1 &
pids+=($!)
wait_tcp $mport
fk=(); fresp=(); fnative=()
for i in 1 2 3; do
  eval np=\$np$i rp=\$rp$i
  "$BIN" server --cluster bench --meta 127.0.0.1:$mport --server-id s$i --dir "$WORK/s$i" --listen 127.0.0.1:$np \
    --resp 127.0.0.1:$rp --admin "" --loops 1 --pin=false --memory 512MiB --segment-size 64MiB --log-level warn >"$WORK/s$i.log" 2>&1 &
  pids+=($!); fk+=($!); fresp+=($rp); fnative+=($np)
done
"$BIN" cluster init --meta 127.0.0.1:$mport --cluster bench --servers 3 >/dev/null
for p in "${fresp[@]}"; do wait_tcp $p; done
sleep 1
rk=(); rports=()
for i in 1 2 3; do
  eval p=\$r$i
  (cd "$WORK" && redis-server --port $p --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --save '' --appendonly no \
    --daemonize no --logfile "$WORK/redis-$p.log") &
  pids+=($!); rk+=($!); rports+=($p)
done
for p in "${rports[@]}"; do wait_tcp $p; done
redis-cli --cluster create 127.0.0.1:${rports[0]} 127.0.0.1:${rports[1]} 127.0.0.1:${rports[2]} --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 100); do redis-cli -p ${rports[0]} cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1; done

ticks() { local s=0; for p in "$@"; do s=$((s + $(cpu_ticks $p))); done; echo $s; }
per_server() { local out=""; for p in "$@"; do out="$out $(cpu_ticks $p)"; done; echo $out; }
row() { printf '| %s | %s | %s | %s | %s |\n' "$@" | tee -a "$OUT"; }
row "servers" "test" "requests/s" "p50 / p99 ms" "server CPU s each (total)"
row "---" "---" "---" "---" "---"
# bench NAME PORT PID...: redis-benchmark --cluster SET and GET at -P 64.
bench() {
  local name=$1 port=$2; shift 2
  for t in set get; do
    b=($(per_server "$@"))
    line=$(redis-benchmark --cluster -p "$port" -t $t -P 64 -n "$N" -r "$KEYS" -d 8 --csv 2>/dev/null | grep -i "^\"$t\"" | tail -1)
    a=($(per_server "$@"))
    python3 - "$name" "$t" "$line" "$hz" "${b[*]}" "${a[*]}" <<'PY' | tee -a "$OUT"
import sys
name, t, line, hz, b, a = sys.argv[1:]
f = [x.strip('"') for x in line.split(',')]
cpu = [(int(y) - int(x)) / int(hz) for x, y in zip(b.split(), a.split())]
print(f"| {name} | {t.upper()} | {float(f[1]):,.0f} | {f[4]} / {f[6]} | {' / '.join(f'{c:.1f}' for c in cpu)} ({sum(cpu):.1f}) |")
PY
  done
}
for r in $(seq "$ROUNDS"); do
  bench "fleetkv x3 (RESP)" "${fresp[0]}" "${fk[@]}"
  bench "redis-server x3 cluster" "${rports[0]}" "${rk[@]}"
done
echo "### fleetkv x3 through the native load generator (routed), YCSB-B Zipf" | tee -a "$OUT"
"$BIN" loadgen --servers 127.0.0.1:${fnative[0]} --workload load --keys "$KEYS" >/dev/null 2>&1
for r in $(seq "$ROUNDS"); do
  b=($(per_server "${fk[@]}"))
  "$BIN" loadgen --servers 127.0.0.1:${fnative[0]} --workload ycsb-b --dist zipf --keys "$KEYS" --duration "${SECS}s" \
    --json "$WORK/n.json" >/dev/null 2>&1
  a=($(per_server "${fk[@]}"))
  python3 - "$WORK/n.json" "$hz" "${b[*]}" "${a[*]}" <<'PY' | tee -a "$OUT"
import json, sys
rep = json.load(open(sys.argv[1])); hz = int(sys.argv[2])
cpu = [(int(y) - int(x)) / hz for x, y in zip(sys.argv[3].split(), sys.argv[4].split())]
print(f"| fleetkv x3 (native, routed) | YCSB-B | {rep['ops_per_sec']:,.0f} | {rep['p50_us']/1000:.3f} / {rep['p99_us']/1000:.3f} | {' / '.join(f'{c:.1f}' for c in cpu)} ({sum(cpu):.1f}) |")
PY
done
