# Thin wrappers around cargo, npm and the scripts in scripts/.
SHELL := /bin/bash
export NATS_SERVER_BIN ?= $(shell scripts/ensure-nats.sh 2>/dev/null)

.PHONY: run test lint fmt build e2e bench deps-test

## run: the whole stack on this machine (nats-server, auth, presence, messaging, edge)
run:
	@scripts/run.sh

## test: everything CI runs: format, lint, unit + integration tests, end-to-end tests
test: deps-test lint
	cargo test --workspace --all-targets
	@if [ -f tests/e2e/package.json ]; then scripts/e2e.sh; fi

deps-test:
	@scripts/ensure-nats.sh >/dev/null
	@scripts/ensure-postgres.sh

## lint: rustfmt and clippy, warnings are errors
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --workspace --release

## bench: see bench/README.md
bench:
	@scripts/bench.sh
