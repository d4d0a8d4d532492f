#!/usr/bin/env bash
# Measures the webhook over TLS on loopback: the server pinned to core 0, the load
# generator to core 1, 4 keep-alive connections. Usage: hack/bench-tls.sh [loadgen flags]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/benchserver ./hack/benchserver
go build -o bin/loadgen ./hack/loadgen

out=$(mktemp)
taskset -c 0 bin/benchserver -addr 127.0.0.1:0 >"$out" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.05; done
addr=$(head -1 "$out")

taskset -c 1 bin/loadgen -url "https://$addr/mutate" \
  -body internal/webhook/testdata/review-deployment-3c.json \
  -insecure -c 4 -warmup 2s -d 10s -expect-substring '"allowed":true' "$@"
echo "server RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$server/status)"
