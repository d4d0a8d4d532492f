# podiam: `make demo` runs the main job locally, `make test` runs every test.
GO       ?= go
BIN      := bin
PKGS     := ./...
FUZZTIME ?= 30s

# The Go release podiam is built and tested with: it has the fixes for the
# standard library's known vulnerabilities (`make vulncheck`). When the
# machine's own Go differs, the go command fetches this one through the Go
# module proxy on first use (about 10 s).
export GOTOOLCHAIN := go1.26.10

.PHONY: all build demo test vet fmt-check unit bench bench-tls bench-sts fuzz vulncheck clean

all: build

build:
	$(GO) build -o $(BIN)/podiam ./cmd/podiam

# Starts a local control plane, runs podiam webhook, creates a ServiceAccount and
# a pod, prints what the pod got, and stops everything.
demo: tools
	$(GO) run ./hack/demo

test: tools vet cross fmt-check unit

# -race: vet then shares the compiled dependencies with `go test -race` (one
# compile of client-go and friends instead of two).
vet:
	$(GO) vet -race $(PKGS)

# Developers work on macOS too: type-check every package, tests included, for
# darwin, where Linux-only APIs (Pdeathsig) or a missing build-tagged file would
# break. go vet type-checks what go build compiles, and the tests; it is cached.
.PHONY: cross
cross:
	GOOS=darwin GOARCH=arm64 $(GO) vet $(PKGS)

# The tests that share one control plane, each run twice in the same process
# (as `go test -count=2 ./...` does): a test that depends on names or state left
# by an earlier run fails here. A few minutes; not part of `make test`.
.PHONY: stress
stress: tools
	$(GO) test -race -count=2 -timeout 20m ./test/e2e/ ./internal/certs/

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# Fuzz targets run their seed corpus (testdata/fuzz) as part of the unit tests.
unit:
	$(GO) test -race -count=1 $(PKGS)

# Micro-benchmarks of the hot paths; see docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# Throughput and latency over TLS of the released binary against a local control
# plane, with the webhook and the load on separate cores; see docs/benchmarks.md.
bench-tls: tools
	hack/bench-tls.sh

# AssumeRoleWithWebIdentity (warm key cache) and GetCallerIdentity (SigV4) over
# HTTP on loopback against the released `podiam sts`, with the STS and the load
# on separate cores; see docs/benchmarks.md.
bench-sts:
	hack/bench-sts.sh

# `podiam auth` against a local control plane with `podiam sts` as STS: 1,000
# pods on 10 nodes ask for credentials at once (issue 9's target: all within
# 5 s, one AssumeRole per pod), then again (all cached), then 20 callers for
# one pod (one AssumeRole); see docs/benchmarks.md.
.PHONY: bench-auth
bench-auth: tools
	hack/bench-auth.sh

# `podiam agent --backend=eks` on core 0 against a stand-in EKS Auth on
# loopback, with 250 pods on its node: each pod once (one backend call each),
# then cached requests for 10 s from core 1: req/s, latency, CPU per request,
# RSS (issue 10's targets); see docs/benchmarks.md.
.PHONY: bench-agent
bench-agent: tools
	hack/bench-agent.sh

# Runs every fuzz target for FUZZTIME each. Minimizing each new input for the
# default 60 s stalls the workers on our multi-KiB pod seeds; 2 s is plenty.
fuzz:
	@for pkg in $$($(GO) list ./internal/...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg || exit 1; \
	  done; \
	done

# Reports known vulnerabilities reachable from podiam's code, offline: the
# vulnerability database is the golang.org/x/vulndb module (OSV files, pinned in
# hack/vulncheck/go.mod, fetched through the Go module proxy), indexed once into
# bin/vulndb-<version> by the database's own indexer, then read by govulncheck.
VULN_DIR := hack/vulncheck
VULNDB   := $(BIN)/vulndb-$(shell sed -n 's/.*golang.org\/x\/vulndb \(v[^ ]*\).*/\1/p' $(VULN_DIR)/go.mod)

vulncheck: $(VULNDB)/index/db.json
	$(GO) -C $(VULN_DIR) tool govulncheck -db file://$(CURDIR)/$(VULNDB) -C $(CURDIR) $(PKGS)

$(VULNDB)/index/db.json: $(VULN_DIR)/go.mod
	@set -e; osv=$$($(GO) -C $(VULN_DIR) mod download -json golang.org/x/vulndb | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/data/osv; \
	rm -rf $(VULNDB) $(VULNDB).tmp; \
	$(GO) -C $(VULN_DIR) tool indexdb -vulns "$$osv" -out $(CURDIR)/$(VULNDB).tmp; \
	mv $(VULNDB).tmp $(VULNDB)

# Regenerates api/v1alpha1/zz_generated.deepcopy.go and the CRD in deploy/crd
# from the Go types and their kubebuilder markers. controller-gen is pinned in
# hack/codegen/go.mod (its own module, so podiam's go.mod stays clean); `go tool
# -n` builds it once into the build cache and prints its path, and it runs from
# here so that ./api/... names podiam's packages. Run after editing api/; the
# unit tests of api/v1alpha1 fail when the committed files differ.
.PHONY: generate
generate:
	@set -e; cg=$$($(GO) -C hack/codegen tool -n controller-gen); \
	$$cg object paths=./api/...; \
	$$cg crd paths=./api/... output:crd:artifacts:config=deploy/crd

clean:
	rm -rf $(BIN)

# ---------------------------------------------------------------------------
# Local control plane for tests (test/testcluster) and the demo.
# `make tools` builds bin/kube-apiserver and bin/etcd from source at the
# versions pinned in hack/tools/go.mod (its own module). It rebuilds only when
# a binary is missing or hack/tools/go.mod or go.sum changed: the stamp file
# bin/.tools-<hash of both> records the build. A cold build takes ~8 minutes on
# 2 cores; it needs only the Go module proxy (go.sum is complete, -mod=readonly).
TOOLS_DIR   := hack/tools
TOOLS_HASH  := $(shell cat $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum 2>/dev/null | sha256sum | cut -c1-16)
TOOLS_STAMP := $(BIN)/.tools-$(TOOLS_HASH)
TOOLS_BUILD := CGO_ENABLED=0 GOFLAGS=-mod=readonly $(GO) -C $(TOOLS_DIR) build -buildvcs=false -trimpath -ldflags='-s -w'

.PHONY: tools
tools:
	@if [ -f $(TOOLS_STAMP) ] && [ -x $(BIN)/kube-apiserver ] && [ -x $(BIN)/etcd ]; then \
	  echo "tools: up to date ($(TOOLS_STAMP))"; \
	else \
	  set -e; mkdir -p $(BIN); rm -f $(BIN)/.tools-*; \
	  echo "tools: building kube-apiserver and etcd from $(TOOLS_DIR)/go.mod (several minutes)"; \
	  $(TOOLS_BUILD) -o $(CURDIR)/$(BIN)/etcd go.etcd.io/etcd/server/v3; \
	  $(TOOLS_BUILD) -o $(CURDIR)/$(BIN)/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver; \
	  $(GO) version -m $(BIN)/kube-apiserver $(BIN)/etcd | grep -E '^[^[:space:]]|(mod|dep)[[:space:]]+(k8s.io/kubernetes|go.etcd.io/etcd/server/v3)[[:space:]]' > $(TOOLS_STAMP); \
	  cat $(TOOLS_STAMP); \
	fi
