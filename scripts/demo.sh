#!/usr/bin/env bash
# Start a server on free ports with a throw-away data directory, run a
# 10-second YCSB-B Zipf load against it (after loading 1 M keys), print the
# report, stop the server.
# Usage: scripts/demo.sh [path-to-fleetkv-binary]
set -euo pipefail
BIN=${1:-bin/fleetkv}
dir=$(mktemp -d)
log=$dir/server.log
"$BIN" server --listen 127.0.0.1:0 --admin 127.0.0.1:0 --dir "$dir/data" --memory 512MiB >"$log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null; rm -rf "$dir"' EXIT
addr=
for _ in $(seq 50); do
  addr=$(grep -o 'msg="fleetkv serving" addr=[0-9.:]*' "$log" | sed 's/.*addr=//' || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start:"; cat "$log"; exit 1; }
admin=$(grep -o 'admin=[0-9.:]*' "$log" | tail -1 | cut -d= -f2)
echo "server on $addr (admin http://$admin/stats), loading 1M keys..."
"$BIN" loadgen --servers "$addr" --workload load --keys 1000000 --value-size 8 >/dev/null
echo "running YCSB-B (95% read, 5% update), Zipf keys, 10 s:"
"$BIN" loadgen --servers "$addr" --workload ycsb-b --dist zipf --keys 1000000 --value-size 8 --duration 10s --verify
