# podiam: `make demo` runs the main job locally, `make test` runs every test.
GO       ?= go
BIN      := bin
PKGS     := ./...
FUZZTIME ?= 30s

.PHONY: all build demo test vet fmt-check unit bench bench-tls fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/podiam ./cmd/podiam

demo:
	@echo "make demo: coming with the local control plane (issue 3)."

test: vet fmt-check unit

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# Fuzz targets run their seed corpus (testdata/fuzz) as part of the unit tests.
unit:
	$(GO) test -race -count=1 $(PKGS)

# Micro-benchmarks of the hot paths; see docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# Throughput and latency over TLS with the server and the load on separate cores.
bench-tls:
	hack/bench-tls.sh

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list ./internal/...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
