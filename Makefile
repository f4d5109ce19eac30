# Velocity. `make run` starts the all-in-one dev server; `make test` runs every test.
SHELL := /bin/bash
SQLC := go run github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1
DATA_DIR ?= .velocity
LISTEN ?= 127.0.0.1:8080
TEST_FLAGS ?= -timeout 20m

.PHONY: run test deps build generate check-generate bench vet fmt

deps:
	@scripts/ensure-deps.sh

build:
	CGO_ENABLED=0 go build -o bin/velocity ./cmd/velocity

run: deps build
	bin/velocity dev --data-dir $(DATA_DIR) --listen $(LISTEN)

# Tests run on a real Postgres that the test binaries start themselves (internal/pgtest).
test: deps check-generate
	go vet ./...
	go test $(TEST_FLAGS) ./...

# gen/schema.sql is the migrations with tern's templates expanded: sqlc's schema input.
generate:
	go run ./sql/render > gen/schema.sql.tmp && mv gen/schema.sql.tmp gen/schema.sql
	$(SQLC) generate

# CI check that the committed generated code is current.
check-generate:
	@go run ./sql/render | diff -u gen/schema.sql - || { echo "gen/schema.sql is stale: run make generate"; exit 1; }
	@$(SQLC) diff || { echo "gen/dbsqlc is stale: run make generate"; exit 1; }

# Velocity against bare pgx on one throwaway Postgres; e.g. make bench BENCH_FLAGS="-duration 3s -json".
bench: deps
	go run ./bench $(BENCH_FLAGS)

vet:
	go vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go' | grep -v '^gen/')
