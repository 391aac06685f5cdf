# Jessy: every target an operator or developer runs. `make help` lists them.
# Local targets need Rust, Go, Python 3 and make; the Docker targets need docker compose.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO        ?= cargo
GO           ?= go
COMPOSE      ?= docker compose
MMAP_BASE_PATH ?= ./data/mmap
export MMAP_BASE_PATH
JESSY        := target/release/jessy
JESSY_API    := api/bin/jessy-api
BACKUP       ?= backup.tar.gz
# JESSY_BDD_SKIP makes the Gherkin target (tests/bdd.rs) skip every scenario; only the jessy-test
# container sets it (no Go there). Never passed to a recipe here, so `make test` runs them all.
unexport JESSY_BDD_SKIP

.PHONY: help
help: ## List every target with one line each, in the Makefile's order and sections
	@grep -hE '^([a-zA-Z_-]+:.*?## |## ---- )' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; /^## ---- / {gsub(/^## -+ | -+$$/, ""); printf "%s\n", $$0; next}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

## ---- local, no Docker -------------------------------------------------------

.PHONY: build
build: ## Build the jessy binary (release) and the jessy-api gateway
	$(CARGO) build --release --locked -p jessy
	cd api && $(GO) build -o bin/jessy-api .

.PHONY: run
run: build ## Start jessy-core (:8080) and jessy-api (:3000) on loopback with ./data/mmap; Ctrl-C stops both
	@bash scripts/run-local.sh

.PHONY: init-mmap
init-mmap: ## Create the data directory layout and its README (MMAP_BASE_PATH, default ./data/mmap)
	$(CARGO) build --release --locked -p jessy
	$(JESSY) init

.PHONY: mmap-info
mmap-info: ## Show the data directory: dimensions, layers, keys, live and disk bytes
	$(CARGO) build --release --locked -p jessy
	$(JESSY) info

.PHONY: test-mmap
test-mmap: ## Check every checksum and index entry of the data directory (jessy verify)
	$(CARGO) build --release --locked -p jessy
	$(JESSY) verify

.PHONY: backup
backup: ## Write a consistent backup of the data directory to BACKUP (default backup.tar.gz)
	$(CARGO) build --release --locked -p jessy
	$(JESSY) backup $(BACKUP)

.PHONY: restore
restore: ## Restore BACKUP into an empty data directory; FORCE=1 replaces a store that holds data
	$(CARGO) build --release --locked -p jessy
	$(JESSY) restore $(if $(filter-out 0,$(FORCE)),--force) $(BACKUP)

.PHONY: test
test: test-unit test-integration test-go test-deploy test-bdd test-api-smoke ## Run the whole test suite (what CI runs)
	@echo "make test: all suites passed"

.PHONY: test-unit
test-unit: ## Rust unit tests and doc tests
	$(CARGO) test --workspace --locked --lib --bins
	$(CARGO) test --workspace --locked --doc

.PHONY: test-integration
test-integration: ## Rust integration tests (tests/ of every crate)
	$(CARGO) test --workspace --locked --tests

.PHONY: test-go
test-go: ## Go gateway: go vet and go test -race (end-to-end against a freshly built jessy)
	@# The test build of the workspace leaves target/debug/jessy; `cargo build -p jessy` would
	@# resolve features differently and rebuild every dependency a second time.
	$(CARGO) test --workspace --locked --no-run --quiet
	cd api && $(GO) vet ./... && JESSY_BIN=$(or $(JESSY_BIN),$(CURDIR)/target/debug/jessy) $(GO) test -race -count=1 ./...

.PHONY: test-deploy
test-deploy: ## Validate compose files and lint Dockerfiles (no Docker engine needed)
	@if [ -f tests/compose/go.mod ]; then cd tests/compose && $(GO) test -count=1 ./...; fi
	@bash scripts/hadolint.sh

.PHONY: test-bdd
test-bdd: ## Gherkin scenarios in tests/features, against the real binaries
	@if [ -f tests/bdd.rs ]; then $(CARGO) test --locked --test bdd; fi

.PHONY: test-api test-api-smoke
test-api: ## Schemathesis against jessy-core's /openapi.json (EXAMPLES per operation, default 300)
	bash server/tests/schemathesis.sh $(or $(EXAMPLES),300)

test-api-smoke: ## Quick Schemathesis run (20 examples per operation), part of make test
	bash server/tests/schemathesis.sh 20

.PHONY: lint
lint: ## rustfmt, clippy -D warnings, gofmt, go vet
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@test -z "$$(gofmt -l api)" || { gofmt -l api; echo "gofmt: files above need formatting"; exit 1; }
	cd api && $(GO) vet ./...

.PHONY: coverage
coverage: ## Line coverage: Rust crates (cargo-tarpaulin, installed on first use) and the Go module
	@command -v cargo-tarpaulin >/dev/null || $(CARGO) install --locked cargo-tarpaulin
	$(CARGO) tarpaulin --workspace --skip-clean --out Html --out Lcov --output-dir coverage --exclude-files 'benches/*' 'fuzz/*'
	cd api && $(GO) test -count=1 -coverprofile=../coverage/go.out ./... && $(GO) tool cover -func=../coverage/go.out | tail -1
	@echo "coverage reports in coverage/"

.PHONY: bench
bench: ## Criterion benchmarks of the engine
	$(CARGO) bench -p jessy-storage

.PHONY: soak
soak: ## Long fault-injection run, release build (docs/TESTING.md): 100k power losses, 10k kill -9, every bit flip
	JESSY_FAULT_SEEDS=$${JESSY_FAULT_SEEDS:-100000} JESSY_KILL_ROUNDS=$${JESSY_KILL_ROUNDS:-10000} \
	JESSY_BITFLIPS=$${JESSY_BITFLIPS:-10000} JESSY_FLIP_EVERY_BIT=1 JESSY_FAULT_NTH=$${JESSY_FAULT_NTH:-100000} \
	JESSY_CONCURRENCY_SEEDS=$${JESSY_CONCURRENCY_SEEDS:-2000} JESSY_FUZZ_CASES=$${JESSY_FUZZ_CASES:-20000} \
	JESSY_PROPTEST_CASES=$${JESSY_PROPTEST_CASES:-2000} \
	$(CARGO) test --release --locked --no-fail-fast -p jessy-storage --test 'fault_*' --test model -- --nocapture

.PHONY: fuzz
fuzz: ## Fuzz decoders and store opening, 60 s per target (cargo fuzz on nightly, else proptest)
	@if rustup toolchain list 2>/dev/null | grep -q '^nightly' && \
	    { cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked; }; then \
	  JESSY_FUZZ_SEED_CORPUS=$(CURDIR)/fuzz/corpus $(CARGO) test --locked -q -p jessy-storage --test fault_fuzz -- --exact seed_corpus && \
	  for t in record_decoder key_index manifest_parser open_store; do \
	    (cd fuzz && cargo +nightly fuzz run -O $$t -- -max_total_time=$${FUZZ_SECONDS:-60}) || exit 1; \
	  done; \
	else \
	  echo "make fuzz: cargo fuzz needs nightly Rust and cargo-fuzz; running the same targets through proptest"; \
	  JESSY_FUZZ_CASES=$${JESSY_FUZZ_CASES:-50000} $(CARGO) test --release --locked -p jessy-storage --test fault_fuzz; \
	fi

N ?= 1000000
.PHONY: bench-compare
bench-compare: ## Jessy against redb, LMDB, sled, fjall, RocksDB (N=1,000,000; set N=...)
	cd benches/compare && $(CARGO) run --release -- --n $(N)

.PHONY: bench-http
bench-http: ## HTTP load test on loopback: jessy-core, jessy-api, axum baseline, Redis, etcd (needs wrk; benches/http)
	bash benches/http/run.sh

.PHONY: clean
clean: ## Remove build outputs (keeps data/mmap)
	$(CARGO) clean
	rm -rf api/bin

## ---- Docker (docker compose; see docs/DEPLOY.md) ------------------------------------------

# A cold target-cache makes the first `cargo run` take minutes, longer than jessy-core's health
# check allows (start_period 10s + 3 x 10s), and jessy-api waits for it with
# depends_on: service_healthy. Build the images and the debug binary once before starting.
define compose_warm
	$(COMPOSE) build jessy-core jessy-api
	$(COMPOSE) run --rm --no-deps jessy-core cargo build --locked -p jessy
endef

.PHONY: up
up: ## Start jessy-core and jessy-api in Docker, in the background (hot reload)
	$(compose_warm)
	$(COMPOSE) up -d jessy-core jessy-api
	@# The published addresses as compose applied them (JESSY_PUBLISH_HOST, JESSY_*_PORT, .env).
	@core=$$($(COMPOSE) port jessy-core 8080 2>/dev/null); api=$$($(COMPOSE) port jessy-api 3000 2>/dev/null); \
	  echo "jessy-core: http://$${core:-127.0.0.1:$${JESSY_CORE_PORT:-8080}}/health" \
	    "  jessy-api: http://$${api:-127.0.0.1:$${JESSY_API_PORT:-3000}}/api/health"

.PHONY: down
down: ## Stop and remove the Docker containers (volumes and data are kept)
	$(COMPOSE) --profile test down --remove-orphans

.PHONY: watch
watch: ## Run jessy-core and jessy-api in Docker in the foreground, following logs (hot reload)
	$(compose_warm)
	$(COMPOSE) up jessy-core jessy-api

.PHONY: logs
logs: ## Follow the logs of every Docker service
	$(COMPOSE) logs -f --tail=100

.PHONY: logs-rust
logs-rust: ## Follow jessy-core's logs (Docker)
	$(COMPOSE) logs -f --tail=100 jessy-core

.PHONY: logs-go
logs-go: ## Follow jessy-api's logs (Docker)
	$(COMPOSE) logs -f --tail=100 jessy-api

.PHONY: logs-json
logs-json: ## Show only the structured (JSON) log lines of jessy-core and jessy-api (Docker)
	@$(COMPOSE) logs --no-color --no-log-prefix --tail=1000 jessy-core jessy-api | grep -E '^[[:space:]]*\{' || true

.PHONY: logs-test
logs-test: ## Show the logs of the last jessy-test run (docker compose --profile test up jessy-test)
	$(COMPOSE) --profile test logs --no-log-prefix jessy-test

.PHONY: shell-rust
shell-rust: ## Open a shell in the jessy-core container
	$(COMPOSE) exec jessy-core bash

.PHONY: shell-go
shell-go: ## Open a shell in the jessy-api container
	$(COMPOSE) exec jessy-api sh

.PHONY: rebuild
rebuild: ## Rebuild the Docker images from scratch and restart the services
	$(COMPOSE) --profile test build --no-cache --pull
	$(COMPOSE) up -d --force-recreate jessy-core jessy-api
