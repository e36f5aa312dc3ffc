#!/usr/bin/env bash
# Benchmark: the full 4500-start Huber-on-log grid on Epoch AI's 240 Chinchilla points, p2law
# natively beside scipy's L-BFGS-B on the same starts and objective. Prints both and the ratio.
# Installs numpy and scipy from PyPI into .venv-bench (ignored by git). Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
EVERY=${EVERY:-10}
DATA=shared/data/external/epoch_chinchilla_svg_extracted_data.csv
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q numpy scipy
fi
cargo build -q --release -p p2law-shared --example epoch_grid
per_start=$(mktemp)
echo "== p2law, all cores =="
./target/release/examples/epoch_grid | tee /tmp/p2law-grid.txt
echo "== p2law, one thread, one start at a time =="
./target/release/examples/epoch_grid --threads 1 --per-start "$per_start" | tee /tmp/p2law-single.txt
echo "== scipy L-BFGS-B =="
.venv-bench/bin/python bench/epoch_grid_scipy.py "$DATA" "$EVERY" "$per_start" | tee /tmp/scipy-grid.txt
ours=$(awk '/per start/ {print $3}' /tmp/p2law-single.txt)
theirs=$(awk '/scipy per start/ {print $4}' /tmp/scipy-grid.txt)
grid=$(awk '/grid wall time/ {print $4}' /tmp/p2law-grid.txt)
echo "== summary =="
echo "p2law full grid (4500 starts, all cores): ${grid} s"
echo "per start, one thread: p2law ${ours} ms, scipy ${theirs} ms, ratio $(python3 -c "print(f'{$theirs/$ours:.1f}x')")"
rm -f "$per_start"
