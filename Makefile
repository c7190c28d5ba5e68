# Every target works from a clean clone; .ci/run calls `make test`.
SHELL    := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO       ?= go
PKGS     := ./...
DATA_DIR ?=

.PHONY: all build run test race bench bench-engine lint fuzz clean

all: build

build:
	$(GO) build $(PKGS)

# The main job with its embedded default configuration. Until the server lands
# (issue 3) this runs the engine benchmark at a small size as a smoke run.
run:
	$(GO) test -run '^$$' -bench 'YCSB/(A|F)/zipf/1M/w1' -benchtime 2000000x ./store/

# Correctness: vet, then every package with the invariants build tag, then the
# concurrent packages again under the race detector.
test: lint
	$(GO) test -tags invariants -count=1 -timeout 10m $(PKGS)
	$(GO) test -race -count=1 -timeout 10m ./epoch/ ./index/ ./hlog/ ./ssd/ ./store/

race:
	$(GO) test -race -tags invariants -count=1 -timeout 20m $(PKGS)

# Engine benchmarks beside their peers (sharded map, xsync) in one run.
bench: bench-engine

bench-engine:
	$(GO) test -run '^$$' -bench 'YCSB' -benchtime 2000000x -count 3 -timeout 90m ./store/ | tee bench-engine.out
	./scripts/bench-table.sh < bench-engine.out

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fuzz:
	@echo "no fuzz targets yet (the wire decoder brings the first)"

clean:
	$(GO) clean -testcache
