#!/usr/bin/env bash
# Measures the released `podiam sts` binary over plain HTTP on loopback, as an
# application's CI runs it: JSON logs written to a file, metrics on. The STS is
# pinned to core 0, hack/stsload (the OIDC issuer the STS fetches its keys from
# once, then the load generator) to core 1. Runs AssumeRoleWithWebIdentity
# with a pool of distinct RS256 tokens (the key cache warm after the first
# call), then GetCallerIdentity signed with SigV4 by the credentials of one of
# them; 4 keep-alive connections each.
#
# Usage: hack/bench-sts.sh [stsload flags, e.g. -d 20s -c 8 -min-rps 10000]
# Environment:
#   PODIAM   the binary to measure (default: bin/podiam, built from ./cmd/podiam)
#   RUNS     repetitions (default 1); each starts a fresh STS and issuer
# podiam sts has no --profiling. To see where its time goes, sample the running
# binary (`perf record -g -p <its pid> -- sleep 5` during a run; Go keeps frame
# pointers) or profile the handler alone:
#   go test -run '^$' -bench 'AssumeRoleWithWebIdentity$' -cpuprofile cpu.out ./internal/sts
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
if [ -z "${PODIAM:-}" ]; then go build -o bin/podiam ./cmd/podiam; fi
podiam=${PODIAM:-bin/podiam}
go build -o bin/stsload ./hack/stsload

work=$(mktemp -d)
sts=""
load=""
cleanup() {
  for p in $load $sts; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Two free loopback ports for the STS and its metrics.
read -r port metrics_port < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

status=0
for round in $(seq "${RUNS:-1}"); do
  dir="$work/$round"
  mkdir -p "$dir"
  # The issuer serves its keys from core 1 too: the STS fetches them once.
  taskset -c 1 bin/stsload -dir "$dir" -url "http://127.0.0.1:$port/" -server-pid-file "$dir/sts.pid" "$@" >"$dir/stsload.out" 2>&1 &
  load=$!
  for _ in $(seq 300); do
    [ -s "$dir/sts.yaml" ] && break
    kill -0 "$load" 2>/dev/null || { cat "$dir/stsload.out" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$dir/sts.yaml" ] || { echo "bench-sts: stsload wrote no config" >&2; exit 1; }
  # GOMAXPROCS follows the affinity (1).
  taskset -c 0 "$podiam" sts --config "$dir/sts.yaml" --port "$port" --metrics-port "$metrics_port" \
    --state-key-file "$dir/state.key" 2>"$dir/sts.log" &
  sts=$!
  # For the STS's CPU time per request, read by stsload from /proc.
  echo "$sts" >"$dir/sts.pid"
  echo "== round $round: $podiam"
  rc=0
  wait "$load" || rc=$?
  load=""
  cat "$dir/stsload.out"
  # 1: some request failed, 3: -min-rps missed, 2: no measurement (the STS's log tells why).
  if [ "$rc" -eq 2 ]; then cat "$dir/sts.log" >&2; exit 2; fi
  if [ "$rc" -ne 0 ]; then status=$rc; fi
  echo "server RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$sts/status")"
  kill "$sts"
  wait "$sts" 2>/dev/null || true
  sts=""
  echo "log: $(wc -l <"$dir/sts.log") lines, $(wc -c <"$dir/sts.log") bytes"
done
exit "$status"
