#!/usr/bin/env bash
# Post-training tokens/s of one built-in parent on the CPU: p2law (burn, flex backend, fused
# kernels) and PyTorch (CPU, installed from PyPI into .tools/bench-venv) on the identical
# architecture, batch, sequence length and corpus, in the same run. The two alternate for
# ROUNDS rounds (the machine is shared: its speed drifts) and the medians are compared.
# Prints both, the ratio, achieved GFLOP/s and burn's peak resident memory.
#   bash bench/lab_tokens.sh [PARENT] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
parent=${1:-p2-xs}
steps=${2:-30}
rounds=${3:-3}
./dev setup >/dev/null
if ! [ -x .tools/bench-venv/bin/python ] || ! .tools/bench-venv/bin/python -c 'import torch' 2>/dev/null; then
  python3 -m venv .tools/bench-venv
  .tools/bench-venv/bin/pip install --quiet torch numpy
fi
# The workspace's feature set (a `-p p2law-backend` build resolves burn's features differently and
# rebuilds it, ~20 min).
cargo build --release --locked -q --workspace --exclude xtask --example train_throughput
# The parent's shape and recipe, from the same table the Rust side uses.
shape=$(target/release/examples/train_throughput --shape "$parent")
results=()
for _ in $(seq "$rounds"); do
  results+=("$(target/release/examples/train_throughput "$parent" "$steps" cpu data/corpus/shakespeare 2>/dev/null)")
  results+=("$(.tools/bench-venv/bin/python bench/torch_train.py $shape "$steps" data/corpus/shakespeare)")
done
printf '%s\n' "${results[@]}"
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(a) for a in sys.argv[1:]]
b = [r for r in rows if r["impl"] == "burn"]
t = [r for r in rows if r["impl"] != "burn"]
assert b[0]["params"] == t[0]["params"], f"parameter counts differ: burn {b[0]['params']} vs torch {t[0]['params']}"
med = lambda rs, k: statistics.median(r[k] for r in rs)
bt, tt = med(b, "tokens_per_s"), med(t, "tokens_per_s")
print(f"{b[0]['parent']}: {int(b[0]['params'])} params, batch {b[0]['batch']} x seq {b[0]['seq_len']}, median of {len(b)} alternating rounds")
print(f"  burn (flex)    {bt:>10.0f} tokens/s  {med(b, 'gflops'):6.2f} GFLOP/s  peak RSS {max(r['peak_rss_mib'] for r in b):.0f} MiB")
print(f"  {t[0]['impl']:<14} {tt:>10.0f} tokens/s  {med(t, 'gflops'):6.2f} GFLOP/s  ({t[0]['threads']} threads)")
print(f"  ratio burn / pytorch: {bt / tt:.2f}x (goal >= 1.0x); per round: " + ", ".join(f"{x['tokens_per_s'] / y['tokens_per_s']:.2f}" for x, y in zip(b, t)))
PY
