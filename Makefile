# Kora: the two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
EXAMPLE ?= examples/customer-routing/workflow.yaml

.PHONY: run test test-unit bench soak fuzz services-up fmt lint check clean

## run: build kora and run an example workflow embedded, printing its results
run:
	$(CARGO) build -q -p kora-cli --bin kora
	./target/debug/kora run $(EXAMPLE) --format table
	@echo "kora is ./target/debug/kora; next, a running fleet in one command: README, 'Five minutes with Kora' (kora dev)"

## test: formatting, clippy and every test; starts the local services the tests need first
test: services-up lint
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found; using cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

## services-up: check NATS and PostgreSQL answer; start them if they do not
services-up:
	@bash .ci/services-up

## bench: performance figures (release build); not part of `make test`
## The targets each bench measured are printed as one table at the end (the regression guard).
BENCH_TARGETS := $(abspath target/bench-targets.jsonl)
bench: services-up
	@mkdir -p target && rm -f $(BENCH_TARGETS)
	KORA_BENCH_TARGETS=$(BENCH_TARGETS) $(CARGO) bench -p kora-tests --bench embedded
	$(CARGO) build --release -p kora-cli --bin kora
	KORA_BENCH_TARGETS=$(BENCH_TARGETS) $(CARGO) bench -p kora-tests --bench distributed
	$(CARGO) bench -p kora-tests --bench durability
	KORA_BENCH_TARGETS=$(BENCH_TARGETS) $(CARGO) bench -p kora-tests --bench gateway
	@python3 tests/benches/support/targets.py $(BENCH_TARGETS)

## soak: 1,000,000 NoOp tasks through kora serve processes, sampling RSS and hop latency every
## 10 s; writes $(SOAK_OUT)/soak.csv and soak.png (KORA_SOAK_TASKS=N for a shorter one)
SOAK_OUT ?= docs/soak
PLOT_PY := target/tools/plot/bin/python
soak: services-up
	$(CARGO) build --release -p kora-cli --bin kora
	@mkdir -p target && rm -f $(BENCH_TARGETS)
	KORA_BENCH_TARGETS=$(BENCH_TARGETS) KORA_SOAK_OUT=$(abspath $(SOAK_OUT)) $(CARGO) bench -p kora-tests --bench soak
	@python3 tests/benches/support/targets.py $(BENCH_TARGETS)
	@test -x $(PLOT_PY) || { echo "soak: installing matplotlib 3.11.2 from PyPI into target/tools/plot"; \
		python3 -m venv target/tools/plot && $(PLOT_PY) -m pip install -q matplotlib==3.11.2; }
	$(PLOT_PY) tests/benches/support/plot_soak.py $(SOAK_OUT)/soak.csv $(SOAK_OUT)/soak.png

## fuzz: every cargo-fuzz target (workflow loader, wire decoder, converge_when, templates) for
## FUZZ_SECS seconds each (default 600) on the nightly toolchain; installs cargo-fuzz if needed
fuzz:
	bash fuzz/run.sh

## lint: formatting and clippy, as CI would
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
