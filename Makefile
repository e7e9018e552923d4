# Thin wrappers around cargo, npm and the scripts in scripts/.
SHELL := /bin/bash
export NATS_SERVER_BIN ?= $(shell scripts/ensure-nats.sh 2>/dev/null)

.PHONY: run test lint fmt build e2e bench bench-baseline soak profile deps-test test-cluster fuzz-smoke fuzz

## run: the whole stack on this machine (nats-server, auth, presence, messaging, edge)
run:
	@scripts/run.sh

## test: everything CI runs: format, lint, unit + integration tests, end-to-end tests, fuzz smoke
test: deps-test lint
	cargo build --workspace --bins
	cargo test --workspace --all-targets
	@if [ -f tests/e2e/package.json ]; then scripts/e2e.sh; fi
	@scripts/test-cluster.sh
	@scripts/fuzz.sh smoke

## fuzz-smoke: each cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 30); fails on a crash (docs/fuzzing.md)
fuzz-smoke:
	@scripts/fuzz.sh smoke

## fuzz: the same, longer: FUZZ_SECONDS (default 600) per target; new inputs kept in fuzz/work/
fuzz:
	@scripts/fuzz.sh long

## test-cluster: real processes on a 3-node NATS cluster, a few hundred clients, faults (docs/operations.md)
test-cluster:
	@scripts/test-cluster.sh

deps-test:
	@scripts/ensure-nats.sh >/dev/null
	@scripts/ensure-postgres.sh
	@scripts/ensure-kubectl.sh >/dev/null
	@scripts/ensure-kubernetes-validate.sh >/dev/null
	@scripts/ensure-promtool.sh >/dev/null
	@scripts/ensure-check-jsonschema.sh >/dev/null

## lint: rustfmt and clippy, warnings are errors
lint:
	cargo fmt --all --check
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
	cargo fmt --manifest-path fuzz/Cargo.toml

build:
	cargo build --workspace --release

## bench: the performance suite against a fresh release stack (docs/performance.md); results in bench-results/
bench:
	@scripts/bench.sh

## bench-baseline: the same suite against the NestJS gateway (BASELINE_DIR), for side-by-side figures
bench-baseline:
	@scripts/bench-baseline.sh

## soak: the stack for SOAK_DURATION (30m) under churn, room and private traffic; presence, fd, RSS, error-log checks (docs/soak.md); not CI
soak:
	@scripts/soak.sh
