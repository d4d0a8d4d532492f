#!/usr/bin/env bash
# Measures the released `podiam webhook` binary over TLS on loopback, as it runs
# in a cluster: its informer cache filled from a real API server, JSON logs
# written to a file (as a container's stderr is), metrics on. The webhook is
# pinned to core 0, the load generator (and the control plane, idle during the
# run) to core 1; 4 keep-alive connections send the same AdmissionReview.
#
# Usage: hack/bench-tls.sh [loadgen flags]
# Environment:
#   PODIAM       binaries to measure, space-separated (default: bin/podiam, built
#                from ./cmd/podiam); with several, runs alternate between them on
#                one control plane, for A/B comparisons on a noisy machine
#   RUNS         rounds over PODIAM (default 1)
#   PODIAM_ARGS  extra `podiam webhook` flags
#   PROFILE      if set, a 10 s CPU profile of each run is written to
#                $PROFILE.<round>.<binary index> (adds --profiling)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
if [ ! -x bin/kube-apiserver ] || [ ! -x bin/etcd ]; then
  echo "bench-tls: bin/kube-apiserver and bin/etcd missing: run make tools" >&2
  exit 2
fi
go build -o bin/podiam ./cmd/podiam
go build -o bin/benchserver ./hack/benchserver
go build -o bin/loadgen ./hack/loadgen
read -r -a binaries <<<"${PODIAM:-bin/podiam}"
read -r -a extra <<<"${PODIAM_ARGS:-}"
if [ -n "${PROFILE:-}" ]; then extra+=(--profiling); fi

work=$(mktemp -d)
env_file="$work/env"
webhook=""
cleanup() {
  if [ -n "$webhook" ]; then kill "$webhook" 2>/dev/null || true; wait "$webhook" 2>/dev/null || true; fi
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
# The control plane shares core 1 with the load generator: it is idle while
# the load runs, and must not take time from the webhook's core.
taskset -c 1 bin/benchserver -dir "$work" -env "$env_file" >"$work/benchserver.log" 2>&1 &
server=$!
trap cleanup EXIT
for _ in $(seq 1200); do
  [ -s "$env_file" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/benchserver.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$env_file" ] || { echo "bench-tls: control plane did not start" >&2; cat "$work/benchserver.log" >&2; exit 1; }
# shellcheck disable=SC1090
. "$env_file"

# CPU time (user + system, in clock ticks) the process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Admissions answered 200, from the webhook's own metrics.
served() {
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^podiam_webhook_requests_total\{code="200"\}/ {print $2; f=1} END {if (!f) print 0}'
}

status=0 # the last failing loadgen's exit status (1 failures, 3 targets missed)
for round in $(seq "${RUNS:-1}"); do
  for i in "${!binaries[@]}"; do
    bin=${binaries[$i]}
    log="$work/webhook.log"
    : >"$log"
    # The flags a Deployment gives it; GOMAXPROCS follows the affinity (1).
    taskset -c 0 "$bin" webhook --kubeconfig="$KUBECONFIG" --namespace=podiam-system \
      --port="$PORT" --metrics-port="$METRICS_PORT" --tls-cert="$TLS_CERT" --tls-key="$TLS_KEY" \
      --aws-default-region=eu-west-1 --shutdown-delay=0s "${extra[@]}" 2>"$log" &
    webhook=$!
    for _ in $(seq 600); do
      curl -sf "http://127.0.0.1:$METRICS_PORT/readyz" >/dev/null 2>&1 && break
      kill -0 "$webhook" 2>/dev/null || { cat "$log" >&2; exit 1; }
      sleep 0.1
    done
    echo "== round $round: $bin"
    ticks0=$(cpu_ticks "$webhook"); served0=$(served)
    profiler=""
    if [ -n "${PROFILE:-}" ]; then # the 10 s after the warm-up
      (sleep 2; curl -sf -o "$PROFILE.$round.$i" "http://127.0.0.1:$METRICS_PORT/debug/pprof/profile?seconds=10") &
      profiler=$!
    fi
    taskset -c 1 bin/loadgen -url "https://127.0.0.1:$PORT/mutate" \
      -body internal/webhook/testdata/review-deployment-3c.json \
      -cacert "$CA_CERT" -c 4 -warmup 2s -d 10s -expect-substring '"allowed":true' "$@" || status=$?
    ticks1=$(cpu_ticks "$webhook"); served1=$(served)
    echo "server RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$webhook/status")"
    # CPU time per admission is what one core's throughput is the inverse of;
    # unlike req/s it holds up when other work shares the machine.
    awk -v t="$((ticks1 - ticks0))" -v hz="$(getconf CLK_TCK)" -v n="$(awk -v a="$served0" -v b="$served1" 'BEGIN {print b - a}')" \
      'BEGIN {if (n > 0) printf "server CPU: %.1f µs per admission (%d admissions), at most %.0f admissions/s per core\n", t / hz * 1e6 / n, n, n * hz / t}'
    kill "$webhook"
    wait "$webhook" 2>/dev/null || true
    webhook=""
    if [ -n "$profiler" ]; then wait "$profiler" || echo "bench-tls: no CPU profile" >&2; fi
    echo "log: $(wc -l <"$log") lines, $(wc -c <"$log") bytes"
  done
done
exit "$status"
