#!/usr/bin/env bash
# Benchmark: the calculator's input -> redraw time in headless Chromium (3 curves x 400 points
# with bands). Prints medians and the WASM bundle size. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./dev setup
cargo xtask web
cargo run --release --locked -q -p p2law-tests --bin browser_bench -- "${1:-50}"
