#!/usr/bin/env bash
# Measures the released `podiam agent` as issue 10 states its speed targets:
# credentials from cache at >= 20,000 requests/s on one core with p99 under
# 1 ms, one backend call per pod, under 40 MiB with 250 pods on the node.
# hack/agentload starts a local control plane (bin/ from `make tools`),
# creates a node with 250 pods and gets their tokens from the TokenRequest
# API, runs `podiam agent --backend=eks` from $PODIAM pinned to core 0 against
# a stand-in EKS Auth endpoint on loopback (AWS_ENDPOINT_URL_EKS_AUTH), asks
# each pod once (cold), then sends cached requests for 10 s; see its doc
# comment. agentload (the load, the stand-in) runs on core 1, and so do
# kube-apiserver and etcd, its children (idle during the load).
#
# Usage: hack/bench-agent.sh [agentload flags, e.g. -c 8 -d 20s -perf agent.perf]
# Environment:
#   PODIAM   the binary to measure (default: bin/podiam-release, built from
#            ./cmd/podiam as the image has it: static, -trimpath, stripped)
#   RUNS     repetitions (default 1); each starts from a fresh control plane
# To see where the agent's time goes: -perf agent.perf (perf record -g on it
# during the load), then `perf report -i agent.perf --no-children --sort symbol`.
# What Kubernetes counts (cgroup v1, as root): -cgroup runs the agent in a
# memory cgroup of its own and reports its usage, page cache and the
# kubelet's working set after each phase; the copy below is written by this
# script, so the executable's pages are charged to it, as to the container
# runtime that unpacks an image. -cgroup -evict drops them from the page
# cache first, so that the agent's own faults read them and they are charged
# to the agent: the worst case.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
if [ -z "${PODIAM:-}" ]; then
  # As hack/image builds it: a cgo build would map libc besides (1.5 MiB
  # more RSS). The binary is written anew by cp, as a container runtime
  # writes an image layer: how its page cache was filled sets how much of it
  # a page fault maps (fault-around, large folios), so RssFile of one binary
  # differs by about 3 MiB between a fresh linker output and a copy.
  CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o bin/podiam-release.tmp ./cmd/podiam
  rm -f bin/podiam-release
  cp bin/podiam-release.tmp bin/podiam-release
  rm bin/podiam-release.tmp
fi
podiam=${PODIAM:-bin/podiam-release}
go build -o bin/agentload ./hack/agentload

status=0
for round in $(seq "${RUNS:-1}"); do
  echo "== run $round: $podiam"
  rc=0
  taskset -c 1 bin/agentload -podiam "$podiam" -agent-cpus 0 "$@" || rc=$?
  # 2: setup error (the agent's log was printed), stop; 1 or 3: report and go on.
  if [ "$rc" -eq 2 ]; then exit 2; fi
  if [ "$rc" -ne 0 ]; then status=$rc; fi
done
exit "$status"
