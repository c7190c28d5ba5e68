#!/usr/bin/env bash
# Instructions per operation of a Go benchmark, counted by valgrind's
# callgrind: the benchmark runs at two iteration counts, and the difference
# of the two totals over the difference of the operations is the cost of
# one operation, with set-up and start-up cancelled out. Counts are exact
# and repeat from run to run, unlike times on a shared VM.
#
# Usage: scripts/count-instructions.sh TEST_BINARY BENCH_REGEX N1 N2 OPS_PER_ITERATION
#   e.g. go test -c -o /tmp/server.test ./server/
#        scripts/count-instructions.sh /tmp/server.test 'BatchPath/^B$' 200 400 1500
#        (each level of the pattern is matched unanchored: 'BatchPath/B$' runs
#        C1KiB as well, and counts 2 334 instructions where B alone takes 1 037)
#        go test -c -o /tmp/store.test ./store/
#        scripts/count-instructions.sh /tmp/store.test 'YCSBBatched$/B/uniform/1M/w1$' 300000 600000 1
#
# The test binary runs with GOGC=off (no collector work inside the
# difference), GOMAXPROCS=1, without asynchronous preemption (its signals
# break callgrind) and with cpu.rdtscp=off (valgrind's CPU claims RDTSCP
# but cannot decode it, and the runtime's cputicks would die of SIGILL). A
# run that fails anyway is retried.
set -euo pipefail
bin=$1 bench=$2 n1=$3 n2=$4 per=$5
command -v valgrind >/dev/null || { apt-get update && apt-get install -y valgrind; } >/dev/null
total() {
	local out tries
	for tries in 1 2 3 4 5; do
		out=$(GOGC=off GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind --fair-sched=yes \
			--callgrind-out-file=/dev/null "$bin" -test.run '^$' -test.bench "$bench" -test.benchtime "${1}x" 2>&1) || true
		if grep -q '^PASS' <<<"$out"; then
			grep 'Collected' <<<"$out" | awk '{gsub(",", "", $NF); print $NF}'
			return
		fi
	done
	echo "count-instructions: $bin did not pass under valgrind" >&2
	exit 1
}
a=$(total "$n1")
b=$(total "$n2")
echo "$bench: $(( (b - a) / ((n2 - n1) * per) )) instructions per operation"
