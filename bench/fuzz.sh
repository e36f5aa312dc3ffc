#!/usr/bin/env bash
# Fuzzes every parser that takes outside bytes with P2LAW_FUZZ_INPUTS inputs each (default one
# million; the tests run a few thousand): text logs (HF trainer_state, both W&B shapes, canonical
# CSV and JSONL, format detection), TensorBoard records, safetensors headers and index,
# config.json, tokenizer.json (a tenth as many: each input is a whole tokenizer) and the
# calculator's URL state. Prints one line per parser: inputs, accepted, panics, invalid results,
# slowest input, rate; exits non-zero on any panic, invalid result or hang (an input over 10 s).
#
#   bash bench/fuzz.sh [INPUTS]
set -euo pipefail
cd "$(dirname "$0")/.."
inputs="${1:-1000000}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "fuzzing with $inputs inputs per parser (seeded: the same inputs every run)"
P2LAW_FUZZ_INPUTS="$inputs" nice cargo test --workspace --exclude xtask --release --locked fuzz -- --nocapture --test-threads 1 >"$log" 2>&1 || status=$?
# A summary may share its line with the test harness's `test name ... ` (output is not captured).
grep -oE 'fuzz [a-zA-Z.].* inputs/s' "$log" || true
if [ "${status:-0}" -ne 0 ]; then
    grep -E 'panicked|failures; first|hang' "$log" | head -20 >&2
    echo "fuzz: FAILED (full log above)" >&2
    exit 1
fi
echo "fuzz: 0 panics, 0 invalid results, 0 hangs"
