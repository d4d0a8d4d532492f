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

# Release metadata linked into podiam (internal/version; `podiam version`
# prints it): the version is the chart's appVersion, the commit HEAD's, with
# -dirty when the checkout has uncommitted changes (which `make image`
# refuses), the date the commit's (SOURCE_DATE_EPOCH overrides it), so two
# builds of one commit are identical. Outside a git checkout the commit and
# date are empty: unknown.
VERSION ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*/\1/p' charts/podiam/Chart.yaml)
COMMIT  ?= $(shell c=$$(git rev-parse HEAD 2>/dev/null) && if [ -n "$$(git status --porcelain 2>/dev/null)" ]; then c=$$c-dirty; fi; echo $$c)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
DATE    ?= $(if $(SOURCE_DATE_EPOCH),$(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r $(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ))
VERSION_PKG := github.com/podiam/podiam/internal/version
LDFLAGS  = -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Commit=$(COMMIT) -X $(VERSION_PKG).Date=$(DATE)

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/podiam ./cmd/podiam

# The container image without Docker (hack/image): podiam for linux/amd64 and
# linux/arm64 (static, -trimpath, the same metadata) as an OCI image index in
# an OCI layout, bin/podiam-image/, and its tarball bin/podiam-image.tar
# (docker load, skopeo, crane). Prints the index digest: the same for every
# build of one commit. A checkout with uncommitted changes is refused:
# ALLOW_DIRTY=1 builds it anyway, labelled <commit>-dirty, for local use.
# `make image-push IMAGE=registry/name:tag` pushes it with the Docker
# config's credentials; IMAGE is required (the default is the release's
# tag), and a tag that names another index already is not moved unless
# FORCE=1. The test of hack/image builds the real image too: several CPU
# minutes of `make test` on a cold build cache (docs/image.md).
IMAGE ?= ghcr.io/podiam/podiam:$(VERSION)
.PHONY: image image-push
ifeq ($(filter image-push,$(MAKECMDGOALS))$(origin IMAGE),image-pushfile)
$(error make image-push needs IMAGE=registry/name:tag: the default, $(IMAGE), is the release's tag)
endif
image:
	$(GO) run ./hack/image build -go '$(GO)' -version '$(VERSION)' -commit '$(COMMIT)' $(if $(ALLOW_DIRTY),-allow-dirty) \
	  -source-date-epoch '$(SOURCE_DATE_EPOCH)' -tag '$(IMAGE)' -out $(BIN)/podiam-image.tar

image-push: image
	$(GO) run ./hack/image push -in $(BIN)/podiam-image.tar -image '$(IMAGE)' $(if $(FORCE),-force)

# The chart README's values table, generated from charts/podiam/values.yaml
# (each key's `# --` comment); `go run ./hack/chartdoc -check` fails when the
# README is stale.
.PHONY: chart-docs
chart-docs:
	$(GO) run ./hack/chartdoc -values charts/podiam/values.yaml -readme charts/podiam/README.md

.PHONY: chart-docs-check
chart-docs-check:
	$(GO) run ./hack/chartdoc -check -values charts/podiam/values.yaml -readme charts/podiam/README.md

# Starts a local control plane, runs podiam webhook, creates a ServiceAccount and
# a pod, prints what the pod got, and stops everything.
demo: tools
	$(GO) run ./hack/demo

test: tools promtool vet cross fmt-check chart-docs-check unit

# Builds promtool (hack/promtool/go.mod) into the build cache before the unit
# tests, which run it (test/monitoring): its first build takes several CPU
# minutes and would otherwise count against go test's timeout.
.PHONY: promtool
promtool:
	$(GO) -C hack/promtool tool -n promtool >/dev/null

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
# -timeout: hack/image's test cross-compiles podiam for two platforms, which
# takes minutes with a cold build cache.
unit:
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

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

# The alerting rules' unit tests (deploy/monitoring/podiam-alerts_test.yaml)
# with promtool, pinned in hack/promtool/go.mod (its own module, so that
# podiam's go.mod does not carry Prometheus's service discovery); built once
# into the build cache. test/monitoring runs the same tests in `make test`.
.PHONY: test-rules
test-rules:
	$(GO) -C hack/promtool tool promtool test rules $(CURDIR)/deploy/monitoring/podiam-alerts_test.yaml

# The plain manifests under deploy/ (all but deploy/crd, deploy/examples and
# deploy/monitoring) are rendered from the Helm chart charts/podiam, one
# directory per values variant of test/chart; the chart's copy of the CRD is
# refreshed from deploy/crd first. manifests-check fails, naming each file,
# when deploy/ differs from a fresh rendering (TestManifestsUpToDate in
# test/chart checks the same).
.PHONY: manifests manifests-check
manifests:
	$(GO) run ./hack/manifests

manifests-check:
	$(GO) run ./hack/manifests -check

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
