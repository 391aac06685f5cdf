// Package compose validates Jessy's deployment files without a Docker engine.
//
// The tests load docker-compose.yml and docker-compose.prod.yml with compose-go, the loader
// that docker compose itself uses (schema validation, interpolation from .env files, profiles,
// YAML anchors and merges), and check the result against the Dockerfiles, .env.example, the
// Makefile and the contract's variables. Run them with `make test-deploy` (which also runs
// hadolint on the Dockerfiles) or `cd tests/compose && go test ./...`.
package compose
