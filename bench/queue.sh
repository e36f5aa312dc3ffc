#!/usr/bin/env bash
# The same calibration sweep run by 1, 2 and 3 `p2law worker` processes sharing one PostgreSQL
# queue and one data dir, with a `p2law serve --database` queuing it: prints each run's wall time
# (job created -> `done`), which worker ran how many units, and the SQLite in-process server's
# time for the same sweep beside them. Every worker runs on this machine's cores: beyond the
# cores one process leaves idle, more workers show the queue's overhead, not a speed-up. Not
# part of the tests.
#
#   bash bench/queue.sh [PRESET]      (default smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-smoke}
[ -f data/corpus/shakespeare/.complete ] || ./dev setup
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ./dev setup
# The test build's feature set: after `./dev test` this builds nothing.
cargo test -q --release --locked --workspace --exclude xtask --no-run
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d)
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$work" "$work/pg"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$bin/initdb" -D "$work/pg" -U p2law --auth=trust -E UTF8 --no-sync >/dev/null
as_pg "$bin/pg_ctl" -D "$work/pg" -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" -l "$work/pg/log" -w start >/dev/null
token=p2l_queue_bench_token_0123456789

# Starts `p2law serve` with the given extra flags; sets $url and adds its pid.
serve() {
  local dir=$1; shift
  target/release/p2law serve --addr 127.0.0.1:0 --data-dir "$dir" --static-dir /nonexistent \
    --corpus-dir data/corpus --token "$token" "$@" > "$dir.out" 2> "$dir.err" &
  pids+=($!)
  for _ in $(seq 200); do grep -q listening "$dir.out" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/^p2law listening on //p' "$dir.out"); url=${url%/}
  [ -n "$url" ] || { cat "$dir.err" >&2; exit 1; }
}

# Queues the preset (device cpu) on $url, waits for the job to end; prints the wall seconds.
run_job() {
  python3 - "$url" "$token" "$PRESET" <<'PY'
import json, sys, time, urllib.request
url, token, preset = sys.argv[1:]
lab = json.load(urllib.request.urlopen(f"{url}/api/lab"))
req = next(p["request"] for p in lab["presets"] if p["name"] == preset)
req["device"] = "cpu"
r = urllib.request.Request(f"{url}/api/calibrations", data=json.dumps(req).encode(), method="POST",
                           headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
job = json.load(urllib.request.urlopen(r))
t0 = time.time()
while True:
    j = json.load(urllib.request.urlopen(f"{url}/api/calibrations/{job['id']}"))
    if j["status"] not in ("queued", "running"):
        break
    time.sleep(0.2)
wall = time.time() - t0
if j["status"] != "done":
    sys.exit(f"job ended {j['status']}: {j.get('error')}")
print(f"{wall:.1f}")
PY
}

db="postgres://p2law@127.0.0.1:$port"
printf '%-34s %10s  %s\n' "set-up" "wall (s)" "units per worker"
serve "$work/sqlite"
printf '%-34s %10s\n' "SQLite, in-process worker" "$(run_job)"
for n in 1 2 3; do
  as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U p2law -d postgres -qc "CREATE DATABASE q$n" >/dev/null
  serve "$work/pg$n" --database "$db/q$n"
  wpids=()
  for i in $(seq "$n"); do
    target/release/p2law worker --database "$db/q$n" --data-dir "$work/shared$n" --corpus-dir data/corpus \
      --device cpu --name "w$i" 2> "$work/w$n-$i.err" &
    wpids+=($!); pids+=($!)
  done
  wall=$(run_job)
  per=$(as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U p2law -d "q$n" -tAc \
    "SELECT string_agg(worker || ':' || n, ' ') FROM (SELECT worker, COUNT(*) AS n FROM calibration_units GROUP BY worker ORDER BY worker) t")
  printf '%-34s %10s  %s\n' "PostgreSQL, $n worker(s)" "$wall" "$per"
  for p in "${wpids[@]}"; do kill "$p" 2>/dev/null || true; done
done
echo "($(nproc) cores, shared by every worker: more workers than cores only adds the queue's overhead)"
