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

.PHONY: help
help: ## List every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

## ---- local, no Docker -------------------------------------------------------

.PHONY: build
build: ## Build the jessy binary (release) and the jessy-api gateway
	$(CARGO) build --release --locked -p jessy
	cd api && $(GO) build -o bin/jessy-api .

.PHONY: test
test: test-unit test-integration test-go test-deploy test-bdd ## Run the whole test suite (what CI runs)
	@echo "make test: all suites passed"

.PHONY: test-unit
test-unit: ## Rust unit tests and doc tests
	$(CARGO) test --workspace --locked --lib --bins
	$(CARGO) test --workspace --locked --doc

.PHONY: test-integration
test-integration: ## Rust integration tests (tests/ of every crate)
	$(CARGO) test --workspace --locked --tests

.PHONY: test-go
test-go: ## Go gateway: go vet and go test -race
	cd api && $(GO) vet ./... && $(GO) test -race -count=1 ./...

.PHONY: test-deploy
test-deploy: ## Validate compose files and lint Dockerfiles (no Docker engine needed)
	@if [ -f tests/compose/go.mod ]; then cd tests/compose && $(GO) test -count=1 ./...; fi

.PHONY: test-bdd
test-bdd: ## Gherkin scenarios in tests/features, against the real binaries
	@if [ -f tests/bdd.rs ]; then $(CARGO) test --locked --test bdd; fi

.PHONY: lint
lint: ## rustfmt, clippy -D warnings, gofmt, go vet
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@test -z "$$(gofmt -l api)" || { gofmt -l api; echo "gofmt: files above need formatting"; exit 1; }
	cd api && $(GO) vet ./...

.PHONY: bench
bench: ## Criterion benchmarks of the engine
	$(CARGO) bench -p jessy-storage

.PHONY: clean
clean: ## Remove build outputs (keeps data/mmap)
	$(CARGO) clean
	rm -rf api/bin
