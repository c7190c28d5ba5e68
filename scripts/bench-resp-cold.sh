#!/usr/bin/env bash
# Cold reads on the RESP front beside the native front (issue 16): one
# server, one loop on CPU 0, clients on CPU 1, two key sets each over 4x the
# in-memory budget: the load generator's keys and redis-benchmark's
# key:%012d, every one of them written (so that a GET of a uniformly chosen
# key reads a record, mostly from the device). Per round:
#   - native: loadgen ycsb-c uniform, device reads/s;
#   - RESP: redis-benchmark -P 64 -c 8 GET, device reads/s;
#   - MGET of 500 keys, 100 of them one after another, p50 (internal/redislat);
#   - single GETs at queue depth 32 (32 goroutines, one GET each), p50.
# Device reads/s are the server's pending_ops over each run's wall time.
# Then the device's own figures from fio on the same file system: 4 KiB
# random reads at queue depth 1 and 32 (IOPS and p50), and bursts of 500 reads
# submitted at once and waited for whole (the time of one burst).
#
# Usage: scripts/bench-resp-cold.sh [rounds] (env: KEYS, MEMORY, DIR, BIN to
# measure a given fleetkv binary, ARGS extra server flags)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
KEYS=${KEYS:-1000000}
MEMORY=${MEMORY:-64MiB}
. scripts/lib.sh
WORK=$(mktemp -d "${DIR:-$PWD}/bench-resp-cold.XXXXXX")
spid=""
trap 'if [ -n "$spid" ]; then kill "$spid" 2>/dev/null; fi; rm -rf "$WORK"' EXIT
if [ -z "${BIN:-}" ]; then BIN=$WORK/fleetkv; go build -o "$BIN" ./cmd/fleetkv; fi
go build -o "$WORK/redislat" ./internal/redislat
command -v fio >/dev/null || (apt-get update && apt-get install -y fio) >/dev/null 2>&1

port=$(free_port); admin=$(free_port); rp=$(free_port)
taskset -c 0 "$BIN" server --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --resp 127.0.0.1:$rp --loops 1 \
  --memory "$MEMORY" --page-size 1MiB --read-copy=false --dir "$WORK/data" --log-level warn ${ARGS:-} &
spid=$!
wait_tcp $rp
pending() { curl -s "127.0.0.1:$admin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending_ops"])'; }
rate() { python3 -c "print(int(($2-$1)/($4-$3)))"; }

echo "commit $(git describe --always --dirty), $(nproc) CPUs, $(date -u +%FT%TZ), $(df -T "$WORK" | awk 'NR==2 {print $1, $2}')"
echo "$KEYS keys x 256 B for each front, --memory $MEMORY, ${ARGS:-default flags}"
taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" --value-size 256 >/dev/null 2>&1
resp_keys $rp "$KEYS"
echo "| round | native device reads/s | RESP GET -P 64 requests/s | RESP device reads/s | RESP / native | MGET 500 p50 ms | GET QD 32 p50 ms | MGET / GET |"
echo "|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  p0=$(pending); s0=$(date +%s.%N)
  taskset -c 1 "$BIN" loadgen --servers 127.0.0.1:$port --workload ycsb-c --dist uniform --keys "$KEYS" --value-size 256 \
    --sessions 4 --in-flight 2 --batch-size 4KiB --duration 5s --warmup 0s >/dev/null 2>&1
  p1=$(pending); s1=$(date +%s.%N)
  nat=$(rate $p0 $p1 $s0 $s1)
  p0=$(pending); s0=$(date +%s.%N)
  rps=$(taskset -c 1 redis-benchmark -p $rp -P 64 -c 8 -t get -n 1000000 -r "$KEYS" -q | tr '\r' '\n' | grep -a 'GET:' | tail -1 | awk '{print int($2)}')
  p1=$(pending); s1=$(date +%s.%N)
  resp=$(rate $p0 $p1 $s0 $s1)
  mget=$(taskset -c 1 "$WORK/redislat" --addr 127.0.0.1:$rp --keys "$KEYS" --mget 500 --count 100 --seed $r | awk '{print $4}')
  get=$(taskset -c 1 "$WORK/redislat" --addr 127.0.0.1:$rp --keys "$KEYS" --threads 32 --count 20000 --seed $r | awk '{print $4}')
  python3 -c "print(f'| $r | $nat | $rps | $resp | {$resp/$nat:.2f} | {$mget/1000:.2f} | {$get/1000:.2f} | {$mget/$get:.1f} |')"
done
kill $spid; wait $spid 2>/dev/null || true; spid=""

fiojob() { taskset -c 0 fio --name=rr --filename="$WORK/fio.dat" --size=1G --rw=randread --bs=4k --direct=1 \
  --ioengine=io_uring --time_based --runtime=5 --output-format=json "$@" 2>/dev/null; }
fiojob --iodepth=1 | python3 -c 'import json,sys; r=json.load(sys.stdin)["jobs"][0]["read"]; print("fio 4 KiB random read, io_uring, QD 1 (CPU 0): %d IOPS, p50 %.2f ms" % (r["iops"], r["clat_ns"]["percentile"]["50.000000"]/1e6))'
fiojob --iodepth=32 | python3 -c 'import json,sys; r=json.load(sys.stdin)["jobs"][0]["read"]; print("fio 4 KiB random read, io_uring, QD 32 (CPU 0): %d IOPS, p50 %.2f ms" % (r["iops"], r["clat_ns"]["percentile"]["50.000000"]/1e6))'
fiojob --iodepth=500 --iodepth_batch_submit=500 --iodepth_batch_complete_min=500 | python3 -c 'import json,sys; r=json.load(sys.stdin)["jobs"][0]["read"]; print("fio bursts of 500 reads submitted at once, each waited for whole (CPU 0): %d IOPS, %.2f ms a burst" % (r["iops"], 500/r["iops"]*1000))'
