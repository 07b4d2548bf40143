# PTW platform. `make up` runs everything, `make test` runs every test; both do their own set-up.
SHELL := /bin/bash
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
STORE_BIN := libs/devstore/bin/ferretdb-local
STORE_SQLITE_BIN := libs/devstore/bin/ferretdb-local-sqlite
## make up builds the SQLite store too only when it is asked for.
UP_STORES := store $(if $(filter sqlite,$(PTW_STORE_BACKEND)),store-sqlite)
INSTALLED := node_modules/.ptw-installed
## What npm installs (libs/devstore/npm-deps.sh): `run` (the dependencies: what make up and make build need) or
## `all` (with the devDependencies: jest, eslint, the benches' tools); the targets that run tests set `all`.
NPM_DEPS ?= run
GRPC_MOCK_BUILT := node_modules/.ptw-grpc-built
SERVICE ?= gateway

## The targets that run tests or dev tools install the devDependencies too (a target-specific value: their prerequisites' recipes see it).
unit component e2e browser grpc-mock grpc-mock-background checks proto proto-check bench dashboards: NPM_DEPS = all

.PHONY: up test unit component e2e browser build deps checks grpc-mock grpc-mock-background grpcurl store store-sqlite sysdeps testdeps proto proto-check logs bench bench-scale bench-data load clean rules-check dashboards compose-check

## Everything in the foreground on 127.0.0.1:8080 (store and Redis started when MONGO_URL/REDIS_URL are unset); Ctrl-C stops all.
## Set-up runs its parts side by side (SETUP_JOBS): npm's and Go's downloads overlap the compiles.
SETUP_JOBS ?= 4
SETUP := $(MAKE) --no-print-directory -j$(SETUP_JOBS) --output-sync=target
## (It compiles without type-checking, TypeScript's --noCheck: ~8 s of CPU less on a fresh machine; tsc's build
## info keeps the check pending, so the next `make build`/`make test` type-checks it all.)
up:
	@$(SETUP) build $(UP_STORES) sysdeps TSC_FLAGS=--noCheck NPM_DEPS=run
	node libs/devstore/dist/up.js

## Every test: the source checks (stale generated code, cycles, types, lint, format), unit, component, end-to-end and browser suites (docs/testing.md).
## (grpc-mock's native build runs in the background, at the lowest CPU priority, from set-up on: grpc-mock-background.)
test:
	@$(SETUP) build store store-sqlite testdeps grpcurl grpc-mock-background checks NPM_DEPS=all
	bash test/run-all.sh

## The source checks (test/checks.sh: generated code, import cycles, the tests' types, lint, format), after the
## build and beside the rest of set-up (the Go builds and downloads leave a core idle much of the time).
checks: build
	@bash test/checks.sh

## grpc-mock's native build (below), started in the background at the lowest CPU priority as soon as node_modules
## is installed: it takes only the CPU that set-up and the suites leave idle. test/run-all.sh waits for its exit
## code (logs/grpc-mock-build.status) before the grpc-mock suites, and starts it itself when make test did not.
## (A make of its own: plain `make`, not $(MAKE), so that it gets none of this make's job-server pipes, which kept make test's
## set-up waiting for the whole build.)
grpc-mock-background: deps
	@mkdir -p logs && rm -f logs/grpc-mock-build.status && touch logs/grpc-mock-build.started
	@(env -u MAKEFLAGS -u MFLAGS nice -n 19 make -s grpc-mock > logs/grpc-mock-build.log 2>&1; echo $$? > logs/grpc-mock-build.status.tmp; mv logs/grpc-mock-build.status.tmp logs/grpc-mock-build.status) < /dev/null > /dev/null 2>&1 &

## Debian packages (libs/devstore/sysdeps.sh): the store's PostgreSQL and the PDF fonts to run (+ prometheus with PTW_PROMETHEUS=1);
## + poppler-utils, unzip, chromium, prometheus and docker-compose to test.
sysdeps:
	@bash libs/devstore/sysdeps.sh run
testdeps:
	@bash libs/devstore/sysdeps.sh test

## Jest projects (jest.config.js, docs/testing.md). Workers: JEST_WORKERS (default 2, this machine's cores).
JEST_WORKERS ?= 2
## unit: nothing outside the process (no store, Redis, socket, child process); needs no build.
unit: deps
	npx jest --selectProjects unit --maxWorkers=$(JEST_WORKERS)

## component: real parts in-process (a store each, Redis on 127.0.0.1:6379 or REDIS_URL, loopback, Debian tools).
component: build store store-sqlite testdeps grpc-mock
	npx jest --selectProjects component --maxWorkers=$(JEST_WORKERS)

## e2e: the built system as processes, each suite its own stack on free ports; the make-up-* suites take
## make up's fixed ports, so they run one at a time after the others.
e2e: build store testdeps grpcurl
	npx jest --selectProjects e2e --testPathIgnorePatterns /make-up- --maxWorkers=$(JEST_WORKERS)
	npx jest test/e2e/make-up- --selectProjects e2e --runInBand

browser: build store testdeps
	npx jest --selectProjects browser --maxWorkers=$(JEST_WORKERS)

## node_modules (libs/devstore/npm-deps.sh): npm ci, `--omit=dev` for NPM_DEPS=run, then every package's install
## script except the deprecated `grpc` addon's (grpc-mock's, used by the gateway's component tests only; ~4 min
## from source), which the grpc-mock target builds for `make test`/`make component`. A new npm ci (lock changed,
## or a test target after a runtime-only install) wipes the markers. Phony: the script returns at once when current.
deps:
	@bash libs/devstore/npm-deps.sh $(NPM_DEPS)
## (For `make -q`: run-all.sh checks that the full install is current.)
$(INSTALLED): package-lock.json package.json
	@bash libs/devstore/npm-deps.sh all

## Built without optimisation or debug info (these flags come after the addon's own -O and -g): it only serves
## the mocks of a few test suites, and the build takes ~45 % less CPU (3 min 38 s -> 2 min 1 s here), which CI
## shares with the tests.
grpc-mock: $(GRPC_MOCK_BUILT)
$(GRPC_MOCK_BUILT): | deps
	CFLAGS="-O0 -g0" CXXFLAGS="-O0 -g0" npm rebuild grpc
	@touch $@

## grpcurl, the reflection suite's independent gRPC client (version pinned in test/support/grpcurl.ts), built
## with `go install` into test/bin/: ~30 s of Go build on a fresh machine, done during `make test`'s set-up
## (the suite builds it itself when it is missing).
GRPCURL_VERSION := $(shell sed -n "s/^export const GRPCURL_VERSION = '\(.*\)';/\1/p" test/support/grpcurl.ts)
GRPCURL := test/bin/grpcurl-$(GRPCURL_VERSION)
grpcurl: $(GRPCURL)
$(GRPCURL):
	@test -n "$(GRPCURL_VERSION)" || { echo "no GRPCURL_VERSION found in test/support/grpcurl.ts" >&2; exit 1; }
	@mkdir -p test/bin
	d=$$(mktemp -d test/bin/.build-XXXXXX); GOBIN="$$PWD/$$d" GOFLAGS=-buildvcs=false $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION) && mv "$$d/grpcurl" $@; s=$$?; rm -rf "$$d"; exit $$s

## TSC_FLAGS: extra tsc flags (make up passes --noCheck).
build: deps
	npx tsc -b $(TSC_FLAGS)

## The local MongoDB-compatible store (FerretDB embedded, see libs/devstore/main.go); rebuilt only when its sources change.
## One binary per backend: `store` on PostgreSQL (make up's default), `store-sqlite` on SQLite (PTW_STORE_BACKEND=sqlite).
## Built apart, SQLite after PostgreSQL (it reuses its compiled packages), because FerretDB's SQLite backend (the pure-Go SQLite) is a fifth of the store's Go build:
## make up on a fresh machine compiles only what it runs (docs/benchmarks.md "Build and CI times").
store: $(STORE_BIN)
$(STORE_BIN): libs/devstore/main.go libs/devstore/go.mod libs/devstore/go.sum
	cd libs/devstore && $(GO) build -tags ferretdb_no_sqlite -o bin/ferretdb-local .
store-sqlite: $(STORE_SQLITE_BIN)
$(STORE_SQLITE_BIN): libs/devstore/main.go libs/devstore/go.mod libs/devstore/go.sum | $(STORE_BIN)
	cd libs/devstore && $(GO) build -tags ferretdb_no_postgresql -o bin/ferretdb-local-sqlite .

## Regenerate the TypeScript of protos/ into libs/proto/src/gen.
proto: deps
	npm run -w @ptw/proto generate

## Fails when libs/proto/src/gen is not what protos/ generates.
proto-check: deps
	npm run -w @ptw/proto check

## Benchmarks (figures, not pass/fail): gateway req/s and latency, sync changes/s, export render time and memory; also written to logs/bench.md.
bench: build store
	@mkdir -p logs
	set -o pipefail; { node test/bench/gateway.js && node test/bench/sync.js && node test/bench/export-render.js; } | tee logs/bench.md

## Data path at scale (issue 12): list, KPIs, sync, auto-expire vs the raw driver, per store backend; figures, not pass/fail.
##   make bench-scale SIZES=1000,10000 BACKENDS=postgresql
bench-scale: build store store-sqlite sysdeps
	@mkdir -p logs
	set -o pipefail; node test/bench/scale.js $(if $(SIZES),--sizes $(SIZES)) $(if $(BACKENDS),--backends $(BACKENDS)) | tee logs/bench-scale.md

## Issue 22's data cases through the real gateway (one-day list, health with 50,000 sync events, export with the audit trail);
## figures and PASS/FAIL per target. BENCH_CODE_ROOT=<other built checkout> runs that code.   make bench-data ARGS="--cases list --reps 15"
bench-data: build store sysdeps
	@mkdir -p logs
	set -o pipefail; node test/bench/data-cases.js $(ARGS) | tee logs/bench-data.md

## Shift-start load test (test/load/load.js): tablets syncing and managers reading on a fresh system; figures and
## PASS/FAIL per target, exit 1 only when the store does not hold what the tablets were told. Also written to logs/load.md.
##   make load ARGS="--tablets 20 --managers 4 --seconds 60 --permits 10000 --spread year"   (or --sweep 10,20,40,80)
load: build store sysdeps
	@mkdir -p logs
	set -o pipefail; node test/load/load.js $(ARGS) | tee logs/load.md

## Alert rules (deploy/prometheus): promtool's syntax check and the rules' unit tests.
rules-check: testdeps
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.test.yml

## Regenerate the Grafana dashboards (deploy/grafana/src → deploy/grafana/dashboards/*.json; commit them).
dashboards: deps
	npm run -s dashboards

## docker-compose.yml parsed and validated by docker-compose (no Docker engine needed).
compose-check: testdeps
	PTW_JWT_SECRET=compose-check-secret-0123 docker-compose -f docker-compose.yml config -q

## Pretty-print a service's log: make logs SERVICE=sync
logs:
	tail -n 200 -F logs/$(SERVICE).log | npx bunyan

clean:
	rm -rf node_modules */dist */*/dist libs/devstore/bin logs
