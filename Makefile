# reflex: build, test and generate. Run `make help` for the targets.

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
STATICCHECK_VERSION        := v0.8.2

BIN      := $(CURDIR)/.bin
GO_FILES  = $(shell git ls-files '*.go' | grep -v '\.pb\.go$$')
# The leading underscore hides _example from ./... (and from ./_example/...):
# name each of its packages explicitly.
EXAMPLE   = $(shell find _example -name '*.go' -printf './%h\n' 2>/dev/null | sort -u)

.PHONY: help lint test test-short bench generate db-up db-down demo

help:
	@echo "make lint        gofmt, go vet and staticcheck (pinned, installed into .bin)"
	@echo "make test        all tests with -race against throw-away MariaDB and PostgreSQL servers (installed with apt-get if missing, as are graphviz and prometheus)"
	@echo "make test-short  tests that need no database"
	@echo "make bench       Go benchmarks and cmd/reflexbench against a throw-away MariaDB (BENCHFLAGS=-quick)"
	@echo "make generate    regenerate reflexpb with pinned protoc plugins; fails if the committed code differs"
	@echo "make demo        run the example services on SQLite (go run ./_example/demo)"
	@echo "make db-up       start MariaDB and PostgreSQL on 127.0.0.1 for interactive use (prints DB_TEST_URI, DB_TEST_PG_URI)"
	@echo "make db-down     stop it"

lint:
	@out="$$(gofmt -l $(GO_FILES))"; if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./... $(EXAMPLE)
	@[ -x $(BIN)/staticcheck ] && $(BIN)/staticcheck -version | grep -q '$(STATICCHECK_VERSION:v%=%)' || \
		GOBIN=$(BIN) GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(BIN)/staticcheck ./... $(EXAMPLE)

# test uses DB_TEST_URI and DB_TEST_PG_URI when set, else starts (and stops)
# its own MariaDB and PostgreSQL (scripts/mariadb.sh, scripts/postgres.sh).
# The gap conformance test (concurrent writers, rollbacks, held IDs) runs
# twice more: its interleavings differ on every run.
test:
	scripts/tools.sh
	scripts/mariadb.sh run scripts/postgres.sh run sh -c "go test -race -count=1 ./... $(EXAMPLE) && go test -race -count=2 -run '^TestGapConformance$$' ./rsql/"

test-short:
	go test -short -race -count=1 ./... $(EXAMPLE)

# bench runs the Go benchmarks, then cmd/reflexbench (workloads W1-W6 with
# baselines measured in the same run); BENCHFLAGS=-quick for a short run.
bench:
	scripts/mariadb.sh run scripts/postgres.sh run sh -c "go test -run '^$$' -bench . -benchmem -count=1 ./... && go run ./cmd/reflexbench $(BENCHFLAGS)"

generate:
	@command -v protoc >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null; }
	GOBIN=$(BIN) GOFLAGS= go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) GOFLAGS= go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(BIN):$$PATH" go generate ./reflexpb
	git diff --exit-code -- reflexpb

demo:
	go run ./_example/demo

db-up:
	@scripts/mariadb.sh up
	@scripts/postgres.sh up

db-down:
	@scripts/mariadb.sh down
	@scripts/postgres.sh down
