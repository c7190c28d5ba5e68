#!/usr/bin/env bash
# Recovery and compaction figures, in one run, with the device's sequential
# read rate and redis-server loading an RDB of the same keys as peers.
#
# For each of two servers (index snapshots on, then off: the whole log
# replayed), on CPU 0 with --loops 1, --memory MEMORY, checkpoints only on
# demand and compaction off: load KEYS keys of 256-byte values (a ~1.1 GiB
# log for 4 M keys), checkpoint, 3 s of YCSB-A, kill -9, restart (timed);
# SIGTERM, restart (timed). Then load the same keys PASSES more times (a
# ~4.4 GiB log of which three quarters are dead) and time the same two
# restarts. With snapshots on, finally compact everything on the device
# (POST /compact), checkpoint, and report what compaction did and the log
# on disk before and after. The load generator runs on CPU 1.
#
# Usage: scripts/bench-recovery.sh   (env: KEYS, PASSES, MEMORY, DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-4000000}
PASSES=${PASSES:-3}
MEMORY=${MEMORY:-256MiB}
OUT=${BENCH_OUT:-bench-recovery.out}
. scripts/lib.sh
setup_work bench-rec
port=$(free_port); admin=$(free_port)
# start SNAPSHOTS WHAT: starts the server and reports how long it took to serve.
start() {
  t0=$(date +%s.%N)
  taskset -c 0 "$BIN" server --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --loops 1 --dir "$WORK/data" \
    --memory "$MEMORY" --checkpoint-interval 0 --compact-threshold 0 --index-snapshots="$1" \
    --log-level info >/dev/null 2>>"$WORK/server.log" &
  spid=$!
  until curl -sf "127.0.0.1:$admin/healthz" >/dev/null; do
    kill -0 $spid 2>/dev/null || { tail -5 "$WORK/server.log"; exit 1; }
    sleep 0.02
  done
  echo "  $2: $(elapsed "$t0") s to serving" | tee -a "$OUT"
  grep 'msg=recovered' "$WORK/server.log" | tail -1 | sed 's/^/    /' | tee -a "$OUT" || true
}
ckpt() { curl -sf -XPOST -o /dev/null -w '%{time_total}' "127.0.0.1:$admin/checkpoint"; }
stat() { curl -s "127.0.0.1:$admin/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
load() { taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" --value-size 256 >/dev/null 2>&1; }
ycsb() {
  taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-a --dist uniform --keys "$KEYS" --value-size 256 \
    --duration "$1" --warmup 0s --sessions 4 --in-flight 4 --batch-size 16KiB >/dev/null 2>&1
}
# restarts SNAPSHOTS: a kill -9 after a checkpoint and more writes, then a clean one.
restarts() {
  local mib=$(( $(stat '["store"]["Log"]["Tail"]') >> 20 ))
  echo "  checkpoint: $(ckpt) s (log $mib MiB)" | tee -a "$OUT"
  ycsb 3s
  kill -9 $spid; wait $spid 2>/dev/null || true
  start "$1" "restart after kill -9, log of $mib MiB"
  kill $spid; wait $spid 2>/dev/null || true
  start "$1" "restart after a clean shutdown, log of $mib MiB"
}

: > "$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $(df -T "$WORK" | awk 'NR==2 {print $1, $2}')" | tee -a "$OUT"
echo "$KEYS keys x 256-byte values, --memory $MEMORY" | tee -a "$OUT"
for snap in true false; do
  rm -rf "$WORK/data"; : > "$WORK/server.log"
  echo "index snapshots: $snap" | tee -a "$OUT"
  start $snap "start (empty)"
  load
  restarts $snap
  for _ in $(seq "$PASSES"); do load; done
  restarts $snap
  if [ $snap = true ]; then
    before=$(du -sm "$WORK/data/log" | cut -f1)
    t0=$(date +%s.%N)
    curl -sf -XPOST "127.0.0.1:$admin/compact" | tee -a "$OUT"
    echo "  compaction of everything on the device: $(elapsed "$t0") s" | tee -a "$OUT"
    ckpt >/dev/null
    echo "  log on disk: $before MiB before, $(du -sm "$WORK/data/log" | cut -f1) MiB after the compaction and a checkpoint" | tee -a "$OUT"
  fi
  kill $spid; wait $spid 2>/dev/null || true; spid=""
done

echo "peer: the device's sequential read rate (fio, O_DIRECT, 1 MiB blocks, QD 4, 2 GiB)" | tee -a "$OUT"
fio --name=seqread --filename="$WORK/fio.dat" --size=2G --rw=read --bs=1M --iodepth=4 --ioengine=io_uring \
  --direct=1 --output-format=json > "$WORK/fio.json" 2>/dev/null
python3 -c "import json; j=json.load(open('$WORK/fio.json'))['jobs'][0]['read']; print(f'  {j[\"bw_bytes\"]/2**20:.0f} MiB/s')" | tee -a "$OUT"
rm -f "$WORK/fio.dat"

echo "peer: the device's random read rate (fio, O_DIRECT, 4 KiB reads, QD 32, 2 GiB file, 20 s): what chain reads cost compaction" | tee -a "$OUT"
fio --name=randread --filename="$WORK/fio.dat" --size=2G --rw=randread --bs=4k --iodepth=32 --ioengine=io_uring \
  --direct=1 --runtime=20 --time_based --output-format=json > "$WORK/fio.json" 2>/dev/null
python3 -c "import json; j=json.load(open('$WORK/fio.json'))['jobs'][0]['read']; print(f'  {j[\"iops\"]:.0f} IOPS')" | tee -a "$OUT"
rm -f "$WORK/fio.dat"

echo "peer: redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2) loading an RDB of as many keys (256-byte random hex values, redis-cli --pipe)" | tee -a "$OUT"
rport=$(free_port)
mkdir -p "$WORK/redis"
taskset -c 0 redis-server --port "$rport" --dir "$WORK/redis" --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
spid=$!
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
python3 - "$KEYS" <<'PY' | redis-cli -p "$rport" --pipe >/dev/null
import os, sys
n, pool = int(sys.argv[1]), os.urandom(1 << 16).hex().encode()  # random hex: LZF cannot shrink it
out = sys.stdout.buffer
for i in range(n):
    k = b"key:%d" % i
    o = (i * 769) % (len(pool) - 256)
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$256\r\n%s\r\n" % (len(k), k, pool[o:o + 256]))
PY
redis-cli -p "$rport" save >/dev/null
echo "  $(redis-cli -p "$rport" dbsize) keys, RDB $(du -sm "$WORK/redis/dump.rdb" | cut -f1) MiB" | tee -a "$OUT"
redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true; wait $spid 2>/dev/null || true
t0=$(date +%s.%N)
taskset -c 0 redis-server --port "$rport" --dir "$WORK/redis" --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
spid=$!
until [ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ]; do sleep 0.02; done
echo "  restart loading the RDB: $(elapsed "$t0") s to serving" | tee -a "$OUT"
redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true; wait $spid 2>/dev/null || true; spid=""
