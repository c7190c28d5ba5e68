# Every target works from a clean clone; .ci/run calls `make test`.
SHELL    := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO       ?= go
PKGS     := ./...
DATA_DIR ?=

BIN      := bin/fleetkv
DATA     ?= ./data
FUZZTIME ?= 20s

.PHONY: all build bin run demo test race bench bench-engine bench-server bench-ssd bench-resp bench-resp-cold bench-durability bench-checkpoint-modes bench-recovery bench-cluster bench-migration bench-elastic sim chaos crash-test lint fuzz clean

all: build

build: bin
	$(GO) build $(PKGS)

bin:
	$(GO) build -ldflags "-X github.com/fleetkv/fleetkv/server.Version=$$(git describe --always --dirty 2>/dev/null || echo dev)" -o $(BIN) ./cmd/fleetkv

# The main job: one server with the embedded defaults (one pinned loop per CPU,
# 1 GiB in-memory log, data directory ./data) until Ctrl-C.
run: bin
	./$(BIN) server --dir $(DATA) --resp 127.0.0.1:6380

# A server on free ports, a 10-second YCSB-B Zipf load against it, the report.
demo: bin
	./scripts/demo.sh $(BIN)

# Correctness: vet, then every package with the invariants build tag (the
# cluster tests start real fleetkv meta and server processes), then the
# concurrent packages again under the race detector. The ownership
# simulation runs 40 seeds here, the migration simulation 150 (seeds 114
# and 130 found lost writes); make sim SEEDS=N runs more.
test: lint
	$(GO) test -tags invariants -count=1 -timeout 10m $(PKGS)
	$(GO) test -race -count=1 -timeout 10m ./epoch/ ./index/ ./hlog/ ./ssd/ ./store/ ./session/ ./server/ ./resp/ ./client/ ./loadgen/ ./internal/uring/ ./cluster/etcdmeta/ ./node/ ./clusterctl/ ./migrate/ ./tier/ ./planner/ ./dashboard/

race:
	$(GO) test -race -tags invariants -count=1 -timeout 20m $(PKGS)

# Engine benchmarks beside their peers (sharded map, xsync) in one run.
bench: bench-engine bench-server bench-ssd bench-resp

bench-engine:
	$(GO) test -run '^$$' -bench 'YCSB' -benchtime 2000000x -count 3 -timeout 90m ./store/ | tee bench-engine.out
	./scripts/bench-table.sh < bench-engine.out

# Server over loopback (server on CPU 0, load generator on CPU 1) beside
# redis-server in the same run; SECS per run.
SECS ?= 10
REQUESTS ?= 2000000
bench-server:
	./scripts/bench-server.sh $(SECS)

# Larger than memory (4 M keys x 256 B over --memory 256MiB) through io_uring
# and pread, beside fio's random-read IOPS on the same file system.
bench-ssd:
	./scripts/bench-ssd.sh $(SECS)

# kill -9 cycles against a real server process (make test runs 3).
CYCLES ?= 200
crash-test:
	CYCLES=$(CYCLES) $(GO) test -count=1 -timeout 0 -run TestKillNineKeepsCommittedPrefixes -v ./internal/crashtest/

# Checkpoint duration, throughput during checkpoints, recovery time.
bench-durability:
	./scripts/bench-durability.sh

# Fold-over against log-snapshot checkpoints under a Zipf YCSB-A, alternated.
bench-checkpoint-modes:
	./scripts/bench-checkpoint-modes.sh

# Recovery of a ~1 and a ~4.4 GiB log (index snapshots on and off), compaction, with fio and redis-server as peers.
bench-recovery:
	./scripts/bench-recovery.sh

# The Redis protocol front and redis-server, driven by redis-benchmark (REQUESTS per run).
bench-resp:
	./scripts/bench-resp.sh $(REQUESTS)

# Cold reads on the RESP front beside the native front, MGET of 500 cold
# keys beside a GET at queue depth 32, and fio's figures for the device
# (ROUNDS rounds).
ROUNDS ?= 3
bench-resp-cold:
	./scripts/bench-resp-cold.sh $(ROUNDS)

# The routed client's cost on one server, and three fleetkv servers beside
# three redis-server processes in cluster mode (redis-benchmark --cluster).
bench-cluster:
	./scripts/bench-cluster.sh

bench-migration:
	./scripts/bench-migration.sh

bench-elastic:
	./scripts/bench-elastic.sh

# The ownership simulation over more seeds (go test ./cluster -run
# TestOwnershipSimulation -seed N replays one).
SEEDS ?= 1000
# Chaos on real processes in network namespaces (root, ip, iptables): the
# long schedule, FAULTS faults over SPAN; make test runs a short one. A
# failing run prints its seed: CHAOS_SEED=N replays it. Servers checkpoint
# by snapshot for odd seeds, by fold-over for even ones; CHAOS_MODE=fold-over
# or CHAOS_MODE=snapshot picks one.
FAULTS ?= 60
SPAN ?= 150s
CHAOS_SEED ?= 0
CHAOS_MODE ?=
chaos:
	$(GO) test -count=1 -timeout 30m -run '^TestChaos$$' -v ./internal/chaos/ -chaos-faults $(FAULTS) -chaos-span $(SPAN) -chaos-seed $(CHAOS_SEED) -chaos-checkpoint-mode "$(CHAOS_MODE)"

sim:
	$(GO) test -count=1 -timeout 0 -run 'TestOwnershipSimulation|TestMigrationSimulation' ./cluster/ -seeds $(SEEDS) -mig-seeds $(SEEDS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Each fuzz target for FUZZTIME (go test runs one -fuzz target at a time).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME) ./wire/
	$(GO) test -run '^$$' -fuzz '^FuzzResponse$$' -fuzztime $(FUZZTIME) ./wire/
	$(GO) test -run '^$$' -fuzz '^FuzzNextMatchesReference$$' -fuzztime $(FUZZTIME) ./wire/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./resp/
	$(GO) test -run '^$$' -fuzz '^FuzzSplit$$' -fuzztime $(FUZZTIME) ./resp/
	$(GO) test -run '^$$' -fuzz '^FuzzShortLength$$' -fuzztime $(FUZZTIME) ./resp/

clean:
	$(GO) clean -testcache
	rm -rf bin
