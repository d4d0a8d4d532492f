#!/usr/bin/env bash
# Measures `podiam auth` as issue 9 states its speed target: 1,000 pods on 10
# nodes ask for credentials at once and all have them within 5 s, with the
# released `podiam sts` as STS, one AssumeRole per (association, pod).
# hack/authload starts a local control plane (bin/ from `make tools`), creates
# the nodes, agent pods, ServiceAccounts, associations and app pods, gets every
# token from the TokenRequest API, runs `podiam sts` and `podiam auth` from
# $PODIAM, and fires the rounds (cold, warm, same-pod); see its doc comment.
# Nothing is pinned: kube-apiserver, etcd, both podiam processes and the load
# share the machine's cores, and authload prints the CPU time of each.
#
# Usage: hack/bench-auth.sh [authload flags, e.g. -pods 2000 -max-conns 4]
# Environment:
#   PODIAM   the binary to measure (default: bin/podiam, built from ./cmd/podiam)
#   RUNS     repetitions (default 1); each starts from a fresh control plane
# To see where podiam auth's time goes: -perf auth.perf (perf record -g on it during
# the cold round), then `perf report -i auth.perf --no-children --sort symbol`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
if [ -z "${PODIAM:-}" ]; then go build -o bin/podiam ./cmd/podiam; fi
podiam=${PODIAM:-bin/podiam}
go build -o bin/authload ./hack/authload

status=0
for round in $(seq "${RUNS:-1}"); do
  echo "== run $round: $podiam"
  rc=0
  bin/authload -podiam "$podiam" "$@" || rc=$?
  # 2: setup error (the logs were printed), stop; 1 or 3: report and go on.
  if [ "$rc" -eq 2 ]; then exit 2; fi
  if [ "$rc" -ne 0 ]; then status=$rc; fi
done
exit "$status"
