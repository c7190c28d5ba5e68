#!/usr/bin/env bash
# Larger than memory: fleetkv with a data set over 4x its in-memory log
# budget, beside fio's 4 KiB random-read IOPS on the same file system, in one
# run, for both I/O engines.
#
# For each of --io=uring, --io=pread and --io=uring --read-copy=false: a server on CPU 0 with --memory
# MEMORY, KEYS keys of 256-byte values loaded, then YCSB-C uniform, YCSB-C Zipf
# and YCSB-A uniform for SECS seconds each from a load generator on CPU 1.
# Then fio (installed from Debian's packages if missing): 4 KiB random reads,
# O_DIRECT, queue depth 32, io_uring and psync engines, over a file in the
# same directory. Reports ops/s, latency, the operations that went to the
# device per second (the server's pending_ops), and their ratio to fio's
# IOPS.
#
# Usage: scripts/bench-ssd.sh [seconds-per-run] (env: KEYS, MEMORY, DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
KEYS=${KEYS:-4000000}
MEMORY=${MEMORY:-256MiB}
OUT=${BENCH_OUT:-bench-ssd.out}
WORK=$(mktemp -d "${DIR:-$PWD}/bench-ssd.XXXXXX")
BIN=$WORK/fleetkv
go build -o "$BIN" ./cmd/fleetkv
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
. scripts/lib.sh
row() { printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@" | tee -a "$OUT"; }
pending() { curl -s "127.0.0.1:$1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending_ops"])'; }

: > "$OUT"
echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $(df -T "$WORK" | awk 'NR==2 {print $1, $2}')" | tee -a "$OUT"
echo "$KEYS keys x 256-byte values, --memory $MEMORY" | tee -a "$OUT"
row "engine" "workload" "ops/s" "p50 / p99 / p99.9 us" "errors" "log tail / memory" "device reads/s"
row "---" "---" "---" "---" "---" "---" "---"
declare -A OPS DEV
CFGS="uring pread uring-no-read-copy"
for cfg in $CFGS; do
  io=${cfg%%-*}; extra=""
  [ "$cfg" != "$io" ] && extra="--read-copy=false"
  port=$(free_port); admin=$(free_port)
  rm -rf "$WORK/data"
  taskset -c 0 "$BIN" server --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --loops 1 --io $io \
    --dir "$WORK/data" --memory "$MEMORY" --log-level warn $extra &
  pids+=($!); spid=$!
  sleep 1
  taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" --value-size 256 >/dev/null 2>&1
  tail=$(curl -s 127.0.0.1:$admin/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["Log"]["Tail"])')
  for spec in "ycsb-c uniform" "ycsb-c zipf" "ycsb-a uniform"; do
    set -- $spec
    j=$WORK/report.json
    p0=$(pending $admin); s0=$(date +%s.%N)
    taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload $1 --dist $2 --keys "$KEYS" \
      --value-size 256 --duration ${SECS}s --warmup 2s --sessions 4 --in-flight 4 --batch-size 16KiB \
      --json "$j" >/dev/null 2>&1 || true
    p1=$(pending $admin); s1=$(date +%s.%N)
    read -r ops_s p50 p99 p999 errs < <(python3 -c "import json;r=json.load(open('$j'));print(int(r['ops_per_sec']),int(r['p50_us']),int(r['p99_us']),int(r['p999_us']),r['errors']+r['verify_failures'])")
    OPS[$cfg,$1,$2]=$ops_s
    # Operations that went to the device, over the whole run (warm-up too).
    dev=$(python3 -c "print(int(($p1-$p0)/($s1-$s0)))")
    DEV[$cfg,$1,$2]=$dev
    row "$cfg" "$1 $2" "$ops_s" "$p50 / $p99 / $p999" "$errs" "$(python3 -c "print(f'{$tail/2**20:.0f} MiB / $MEMORY')")" "$dev"
  done
  kill $spid; wait $spid 2>/dev/null || true
done

if ! command -v fio >/dev/null; then
  (apt-get update && apt-get install -y fio) >/dev/null 2>&1
fi
echo | tee -a "$OUT"
declare -A IOPS
for eng in io_uring psync; do
  jobs=1; depth=32
  if [ $eng = psync ]; then jobs=32; depth=1; fi
  iops=$(taskset -c 0,1 fio --name=rr --filename="$WORK/fio.dat" --size=1G --rw=randread --bs=4k --direct=1 \
    --ioengine=$eng --iodepth=$depth --numjobs=$jobs --group_reporting --time_based --runtime=$SECS \
    --output-format=json 2>/dev/null | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))')
  IOPS[$eng]=$iops
  echo "fio 4 KiB random read, O_DIRECT, $eng, queue depth 32: $iops IOPS" | tee -a "$OUT"
done
echo | tee -a "$OUT"
for cfg in $CFGS; do
  f=${IOPS[io_uring]}; [ $cfg = pread ] && f=${IOPS[psync]}
  for w in "ycsb-c,uniform" "ycsb-c,zipf" "ycsb-a,uniform"; do
    o=${OPS[$cfg,${w%,*},${w#*,}]}; d=${DEV[$cfg,${w%,*},${w#*,}]}
    echo "$cfg ${w/,/ }: $o ops/s, $d device reads/s = $(python3 -c "print(f'{$d/$f:.2f}')") x fio IOPS" | tee -a "$OUT"
  done
done

# Does a loop block on the device? Latency of reads of keys in memory (10 K
# keys written last, one session, one batch of at most 2 operations in
# flight) alone, and again while another load generator keeps the loop's
# device queue full with uniform reads over the cold keys. Read-copy is off
# here: with it on, every cold read appends a copy at the tail, and at
# 100 K+ cold reads/s the log moves past the whole budget within seconds and
# pushes the probe's keys to the device, so they would no longer be
# in-memory hits (measured: probe p50 9 ms).
port=$(free_port)
rm -rf "$WORK/data"
taskset -c 0 "$BIN" server --listen 127.0.0.1:$port --admin "" --loops 1 --io uring \
  --dir "$WORK/data" --memory "$MEMORY" --log-level warn --read-copy=false &
pids+=($!); spid=$!
sleep 1
taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" --value-size 256 >/dev/null 2>&1
HOT=(--servers 127.0.0.1:$port --keys 10000 --key-offset "$KEYS" --value-size 256)
taskset -c 1 "$BIN" loadgen "${HOT[@]}" --workload load >/dev/null 2>&1
probe() {
  taskset -c 1 "$BIN" loadgen "${HOT[@]}" --workload ycsb-c --dist uniform --duration ${SECS}s --warmup 1s \
    --in-flight 1 --batch-size 64 --json "$WORK/probe.json" >/dev/null 2>&1
  python3 -c "import json;r=json.load(open('$WORK/probe.json'));print(int(r['ops_per_sec']),int(r['p50_us']),int(r['p99_us']),int(r['p999_us']),r['errors'])"
}
echo | tee -a "$OUT"
echo "in-memory reads (10 K hot keys, 1 session, in-flight 1): ops/s p50 p99 p99.9 errors" | tee -a "$OUT"
echo "  alone:                      $(probe)" | tee -a "$OUT"
taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-c --dist uniform --keys "$KEYS" \
  --value-size 256 --duration $((SECS + 4))s --warmup 0s --sessions 4 --in-flight 4 --batch-size 16KiB \
  --json "$WORK/cold.json" >/dev/null 2>&1 &
cold=$!
sleep 2
echo "  with cold reads in flight:  $(probe)" | tee -a "$OUT"
wait $cold || true
echo "  (cold load meanwhile: $(python3 -c "import json;r=json.load(open('$WORK/cold.json'));print(int(r['ops_per_sec']), 'ops/s,', r['errors'], 'errors')"))" | tee -a "$OUT"
kill $spid; wait $spid 2>/dev/null || true
