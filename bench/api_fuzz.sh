#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with Schemathesis (PyPI), every check on,
# against a real `p2law serve` on 127.0.0.1 with a fresh SQLite file and a token: every operation,
# starting and cancelling calibrations included, on a server whose compute cap (1e11 training
# FLOPs per job) keeps the jobs it accepts to seconds, but a job's event stream (an SSE stream
# stays open while its job runs; tests/tests/calibrate.rs reads it). Settings, and the three
# operations that may also answer 422 to a schema-valid request, in bench/schemathesis.toml.
# Prints Schemathesis' summary: operations, requests, failures by kind (5xx, undocumented
# statuses, schema mismatches, ...), and the server's panics (0 expected).
#
#   bash bench/api_fuzz.sh [MAX_EXAMPLES]      (default 50 per operation)
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-50}"
if ! [ -x .tools/bench-venv/bin/schemathesis ]; then
  python3 -m venv .tools/bench-venv
  .tools/bench-venv/bin/pip install --quiet schemathesis
fi
# The test build's feature set: after `./dev test` this builds nothing.
cargo test -q --release --locked --workspace --exclude xtask --no-run
data="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
token="p2l_api_fuzz_token_0123456789"
[ -f data/corpus/shakespeare/.complete ] || ./dev setup
target/release/p2law serve --addr "127.0.0.1:$port" --data-dir "$data" --corpus-dir data/corpus --token "$token" \
  --max-job-flops 1e11 >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break
  sleep 0.1
done
# Seed one upload so that {id} routes reach stored rows as well as missing ones.
printf 'tokens,loss\n1000,3.0\n2000,2.8\n4000,2.6\n8000,2.5\n16000,2.45\n' >"$data/seed.csv"
curl -sf -H "Authorization: Bearer $token" -F "file=@$data/seed.csv" "http://127.0.0.1:$port/api/uploads" >/dev/null
status=0
.tools/bench-venv/bin/schemathesis --config-file bench/schemathesis.toml run "http://127.0.0.1:$port/api/openapi.json" \
  --checks all -n "$examples" --seed 7 \
  -H "Authorization: Bearer $token" \
  --exclude-operation-id events \
  || status=$?
panics=$(grep -ciE "panicked" "$data/server.log" || true)
echo "server panics: $panics"
[ "$panics" = 0 ] || status=1
exit "$status"
