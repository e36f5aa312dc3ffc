#!/usr/bin/env bash
# Benchmark: p50/p99 latency of POST /api/fits (P² law, quick starts, 5 runs x 10 checkpoints)
# against the real server on 127.0.0.1, measured with wrk (Debian). Not part of the tests.
#   bench/fit_latency.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
CONNS=${2:-2}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build -q --release --locked -p p2law-backend
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
token=bench-token
target/release/p2law serve --addr 127.0.0.1:0 --data-dir "$work/data" --static-dir /nonexistent --token "$token" > "$work/out" 2>/dev/null &
server=$!
for _ in $(seq 50); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^p2law listening on //p' "$work/out")
# Five P² runs (coefficients of the test data, not a preset).
python3 - > "$work/runs.csv" <<'PY'
nc, dc, e, a, b, g, d = 40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05
print("run,n0,rho,l0,tokens,loss")
for n0, l0, rho in [(1.2e8, 3.3, 0.15), (1.2e8, 3.3, 0.5), (1.4e9, 2.6, 0.3), (8e9, 1.9, 0.15), (8e9, 1.9, 0.5)]:
    for k in range(10):
        D = 1e7 * 10 ** (k * 0.3)
        print(f"r{n0}-{rho},{n0},{rho},{l0},{D},{l0 + (1 / rho) ** g * (1 / n0) ** d * (nc / n0 ** a + dc / D ** b + e)}")
PY
ids=$(curl -sf -H "Authorization: Bearer $token" -F "file=@$work/runs.csv" "$url/api/uploads" \
  | python3 -c 'import json,sys; print(json.dumps([r["id"] for f in json.load(sys.stdin)["files"] for r in f["runs"]]))')
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"run_ids": $ids, "law": "p2", "starts": "quick"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
echo "POST $url/api/fits with run_ids $ids, $CONNS connections, ${DURATION}s"
wrk -t"$CONNS" -c"$CONNS" -d"${DURATION}s" --latency -s "$work/post.lua" "$url/api/fits" | tee "$work/wrk.txt"
echo "p50 $(awk '$1=="50%" {print $2}' "$work/wrk.txt")   p99 $(awk '$1=="99%" {print $2}' "$work/wrk.txt")"
