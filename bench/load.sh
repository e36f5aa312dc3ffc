#!/usr/bin/env bash
# Bounded load test of a real `p2law serve` on 127.0.0.1 (fresh SQLite file, a token) while a
# calibration job trains: one wrk (Debian) per route, all at once, closed loop, for SECONDS:
#   GET  /api/runs/{id}            a stored run with its points
#   GET  /api/calibrations/{id}    the running job
#   GET  /api/lab                  parents, corpora, devices
#   POST /api/uploads              a 50-checkpoint CSV, multipart (every request stores new runs)
#   POST /api/fits                 the P² law on five runs, quick starts
# Prints requests, non-2xx answers (503 = every fit slot busy, by design), p50 and p99 per route,
# then waits for the job and prints how it ended: the job must finish `done`, its writes
# competing with the uploads' for the SQLite file. Not part of the tests.
#
#   bash bench/load.sh [SECONDS] [CONNECTIONS_PER_ROUTE]     (default 30 s, 1)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30}
CONNS=${2:-1}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
[ -f data/corpus/shakespeare/.complete ] || ./dev setup
# The test build's feature set: after `./dev test` this builds nothing.
cargo test -q --release --locked --workspace --exclude xtask --no-run
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$work"' EXIT
token=p2l_load_bench_token_0123456789
target/release/p2law serve --addr 127.0.0.1:0 --data-dir "$work/data" --static-dir /nonexistent \
  --corpus-dir data/corpus --token "$token" > "$work/out" 2> "$work/err" &
server=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^p2law listening on //p' "$work/out")
url=${url%/}
[ -n "$url" ] || { cat "$work/err" >&2; exit 1; }

# Five P² runs for the fits (synthetic coefficients, not a preset), and a 50-checkpoint upload.
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
nc, dc, e, a, b, g, d = 40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05
with open(f"{work}/runs.csv", "w") as f:
    print("run,n0,rho,l0,tokens,loss", file=f)
    for n0, l0, rho in [(1.2e8, 3.3, 0.15), (1.2e8, 3.3, 0.5), (1.4e9, 2.6, 0.3), (8e9, 1.9, 0.15), (8e9, 1.9, 0.5)]:
        for k in range(10):
            D = 1e7 * 10 ** (k * 0.3)
            print(f"r{n0}-{rho},{n0},{rho},{l0},{D},{l0 + (1 / rho) ** g * (1 / n0) ** d * (nc / n0 ** a + dc / D ** b + e)}", file=f)
with open(f"{work}/upload.csv", "w") as f:
    print("tokens,loss", file=f)
    for k in range(50):
        print(f"{1e6 * 1.2 ** k:.0f},{2.0 + 3.0 * (1e6 * 1.2 ** k) ** -0.3:.6f}", file=f)
PY
ids=$(curl -sf -H "Authorization: Bearer $token" -F "file=@$work/runs.csv" "$url/api/uploads" \
  | python3 -c 'import json,sys; print(json.dumps([r["id"] for f in json.load(sys.stdin)["files"] for r in f["runs"]]))')
first=$(python3 -c "import json; print(json.loads('$ids')[0])")

# The calibration job: the smoke sweep on the CPU.
job=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"parents": ["p2-nano", "p2-micro"], "methods": ["depth", "width", "sparse"], "rates": [0.25], "patterns": ["2:4"], "tokens": 131072, "pretrain_scale": 0.06, "device": "cpu"}' \
  "$url/api/calibrations" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
job_start=$(date +%s)

auth="wrk.headers[\"Authorization\"] = \"Bearer $token\""
cat > "$work/fits.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"run_ids": $ids, "law": "p2", "starts": "quick"}'
wrk.headers["Content-Type"] = "application/json"
$auth
LUA
python3 - "$work" "$auth" <<'PY'
import sys
work, auth = sys.argv[1], sys.argv[2]
body = open(f"{work}/upload.csv").read()
b = "p2lawloadboundary"
part = f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="load.csv"\r\nContent-Type: text/csv\r\n\r\n{body}\r\n--{b}--\r\n'
lua = part.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace('"', '\\"')
with open(f"{work}/uploads.lua", "w") as f:
    f.write(f'wrk.method = "POST"\nwrk.body = "{lua}"\nwrk.headers["Content-Type"] = "multipart/form-data; boundary={b}"\n{auth}\n')
PY

run() { # name lua-or-empty url
  local script=()
  [ -n "$2" ] && script=(-s "$2")
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 30s --latency "${script[@]}" "$3" > "$work/$1.txt" 2>&1
}
echo "load: ${DURATION}s, $CONNS connection(s) per route, job $job (smoke sweep, cpu) training on $url"
pids=()
run runs "" "$url/api/runs/$first" & pids+=($!)
run job "" "$url/api/calibrations/$job" & pids+=($!)
run lab "" "$url/api/lab" & pids+=($!)
run uploads "$work/uploads.lua" "$url/api/uploads" & pids+=($!)
run fits "$work/fits.lua" "$url/api/fits" & pids+=($!)
wait "${pids[@]}"

printf '\n%-28s %9s %9s %10s %10s\n' route requests non-2xx p50 p99
for r in "runs:GET /api/runs/{id}" "job:GET /api/calibrations/{id}" "lab:GET /api/lab" "uploads:POST /api/uploads" "fits:POST /api/fits"; do
  f="$work/${r%%:*}.txt"
  n=$(awk '/requests in/ {print $1}' "$f")
  bad=$(awk '/Non-2xx/ {print $NF}' "$f"); bad=${bad:-0}
  errs=$(awk '/Socket errors/ {print $0}' "$f")
  printf '%-28s %9s %9s %10s %10s %s\n' "${r#*:}" "$n" "$bad" "$(awk '$1=="50%" {print $2}' "$f")" "$(awk '$1=="99%" {print $2}' "$f")" "$errs"
done

# The job must still finish, and finish `done`.
status=queued
for _ in $(seq 1200); do
  status=$(curl -sf "$url/api/calibrations/$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  case "$status" in done|failed|cancelled) break ;; esac
  sleep 1
done
echo
echo "job $job: $status after $(( $(date +%s) - job_start )) s (the load ran for the first ${DURATION} s)"
curl -sf "$url/api/calibrations/$job" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("  error:", j.get("error")) if j.get("error") else None'
stored=$(curl -sf "$url/api/runs" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "runs stored: $stored"
if grep -qi panicked "$work/err"; then echo "server panicked:"; grep -i -A3 panicked "$work/err"; exit 1; fi
[ "$status" = done ]
