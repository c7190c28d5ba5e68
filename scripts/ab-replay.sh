#!/usr/bin/env bash
# A/B of the full-replay recovery time of two fleetkv binaries on one data
# directory: load KEYS keys of 256-byte values once (with B), then restart
# each binary ROUNDS times, alternated, index snapshots off, and print the
# recovery line's record count and time. Servers on CPU 0, the load on
# CPU 1.
#
# Usage: scripts/ab-replay.sh BINARY_A BINARY_B   (env: KEYS, ROUNDS, DIR)
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2")
cd "$(dirname "$0")/.."
. scripts/lib.sh
KEYS=${KEYS:-4000000}; ROUNDS=${ROUNDS:-3}
D=$(mktemp -d "${DIR:-$PWD}/bench-rep.XXXXXX")
spid=""
trap 'if [ -n "$spid" ]; then kill "$spid" 2>/dev/null; fi; rm -rf "$D"' EXIT
port=$(free_port); admin=$(free_port)
run() {
  taskset -c 0 "$1" server --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --loops 1 --dir "$D/data" --memory 256MiB \
    --checkpoint-interval 0 --compact-threshold 0 --index-snapshots=false --log-level info 2>>"$D/log" >/dev/null &
  spid=$!
  until curl -sf "127.0.0.1:$admin/healthz" >/dev/null; do sleep 0.02; done
}
stop() { kill "$spid"; wait "$spid" || true; spid=""; }
run "$B"
taskset -c 1 "$B" loadgen --servers 127.0.0.1:$port --workload load --keys "$KEYS" --value-size 256 >/dev/null 2>&1
stop
for _ in $(seq "$ROUNDS"); do
  for bin in "$A" "$B"; do
    run "$bin"; stop
    echo "$bin: $(grep msg=recovered "$D/log" | tail -1 | grep -o 'records=[0-9]*') $(grep msg=recovered "$D/log" | tail -1 | grep -o 'took=[0-9.a-z]*')"
  done
done
