#!/usr/bin/env bash
# Post-training tokens/s of one built-in parent on the CPU: p2law (burn, flex backend) and
# PyTorch (CPU, installed from PyPI into .tools/bench-venv) on the identical architecture, batch,
# sequence length and corpus, in the same run. Prints both, the ratio, and achieved GFLOP/s.
#   bash bench/lab_tokens.sh [PARENT] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
parent=${1:-p2-xs}
steps=${2:-30}
./dev setup >/dev/null
if ! [ -x .tools/bench-venv/bin/python ] || ! .tools/bench-venv/bin/python -c 'import torch' 2>/dev/null; then
  python3 -m venv .tools/bench-venv
  .tools/bench-venv/bin/pip install --quiet torch numpy
fi
cargo build --release --locked -q -p p2law-backend --example train_throughput
burn=$(target/release/examples/train_throughput "$parent" "$steps" cpu data/corpus/shakespeare)
# The parent's shape and recipe, from the same table the Rust side uses.
shape=$(target/release/examples/train_throughput --shape "$parent")
torch=$(.tools/bench-venv/bin/python bench/torch_train.py $shape "$steps" data/corpus/shakespeare)
echo "$burn"
echo "$torch"
python3 - "$burn" "$torch" <<'PY'
import json, sys
b, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert b["params"] == t["params"], f"parameter counts differ: burn {b['params']} vs torch {t['params']}"
print(f"{b['parent']}: {int(b['params'])} params, batch {b['batch']} x seq {b['seq_len']}")
print(f"  burn (flex)    {b['tokens_per_s']:>10.0f} tokens/s  {b['gflops']:6.2f} GFLOP/s")
print(f"  {t['impl']:<14} {t['tokens_per_s']:>10.0f} tokens/s  {t['gflops']:6.2f} GFLOP/s  ({t['threads']} threads)")
print(f"  ratio burn / pytorch: {b['tokens_per_s'] / t['tokens_per_s']:.2f}x (goal >= 1.0x)")
PY
