#!/usr/bin/env bash
# The one-command GPU check of the lab: the adapter, post-training tokens/s, achieved TFLOP/s and
# model-FLOP utilisation of the largest built-in parent, then the pruning kernels' benchmark.
#
#   bash bench/gpu.sh build   on this (networked, CPU-only) machine: build the two benchmark
#                             binaries stripped of debug information, compress them, fetch the
#                             Vulkan loader (Debian's libvulkan1) as a .deb, all under
#                             bench/gpu-dist/ (ignored by git), and check the 64 MiB total
#   bash bench/gpu.sh         on the GPU machine, with the working tree and bench/gpu-dist/
#                             copied over; no network, no compiler, no apt needed there
#
# MFU is achieved FLOP/s over the adapter's stated dense FP32 peak (burn's wgpu matmuls run in
# f32): a table of known GPUs below, or P2LAW_PEAK_FLOPS=<FLOP/s> for another. The FLOP count is
# the train_throughput example's: 6 N per token for the weights plus the attention's
# 12 L H d_head S per token, forward and backward.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=bench/gpu-dist
LIMIT_MIB=64
PARENT=${P2LAW_GPU_PARENT:-p2-xl}
STEPS=${P2LAW_GPU_STEPS:-40}

total_mib() { du -sm "$DIST" | cut -f1; }

if [ "${1:-}" = build ]; then
  mkdir -p "$DIST"
  # Release builds (shared with the rest of the workspace), then stripped copies: the debug line
  # tables are most of a release binary's size.
  cargo build --release --locked -p p2law-backend --example train_throughput
  cargo build --release --locked -p p2law-kernels --bench kernels
  bench_bin=$(ls -t target/release/deps/kernels-* | grep -v '\.d$' | head -1)
  strip -o "$DIST/train_throughput" target/release/examples/train_throughput
  strip -o "$DIST/kernels_bench" "$bench_bin"
  rm -f "$DIST"/*.xz
  xz -T2 -9 -f "$DIST/train_throughput" "$DIST/kernels_bench"
  (cd "$DIST" && rm -f libvulkan1_*.deb && apt-get download libvulkan1)
  # The corpus the throughput run reads (the built-in one, made by the code at set-up).
  [ -d data/corpus/shakespeare ] || { echo "error: data/corpus/shakespeare is missing; run ./dev setup first" >&2; exit 1; }
  tar -C data/corpus -cJf "$DIST/corpus.tar.xz" shakespeare
  (cd "$DIST" && sha256sum train_throughput.xz kernels_bench.xz libvulkan1_*.deb corpus.tar.xz > SHA256SUMS)
  size=$(total_mib)
  ls -l "$DIST"
  if [ "$size" -gt "$LIMIT_MIB" ]; then
    echo "error: $DIST is $size MiB, over the $LIMIT_MIB MiB a device run may carry" >&2
    exit 1
  fi
  echo "$DIST: $size MiB of $LIMIT_MIB; carry it with the working tree and run: bash bench/gpu.sh"
  exit 0
fi

if [ ! -f "$DIST/SHA256SUMS" ]; then
  echo "error: $DIST/ is missing; run 'bash bench/gpu.sh build' on a machine with cargo first" >&2
  exit 1
fi
size=$(total_mib)
echo "bench/gpu.sh: $DIST is $size MiB (limit $LIMIT_MIB)"
(cd "$DIST" && sha256sum --quiet -c SHA256SUMS)
RUN=$(mktemp -d)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$RUN}
trap 'rm -rf "$RUN"' EXIT
xz -dc "$DIST/train_throughput.xz" > "$RUN/train_throughput"
xz -dc "$DIST/kernels_bench.xz" > "$RUN/kernels_bench"
chmod +x "$RUN/train_throughput" "$RUN/kernels_bench"
mkdir -p "$RUN/corpus" "$RUN/vk"
tar -C "$RUN/corpus" -xJf "$DIST/corpus.tar.xz"
# The Vulkan loader, only where the machine lacks one; the GPU's own driver supplies the ICD.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  dpkg-deb -x "$DIST"/libvulkan1_*.deb "$RUN/vk"
  export LD_LIBRARY_PATH="$RUN/vk/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "Vulkan loader: from $(basename "$DIST"/libvulkan1_*.deb)"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

echo "== post-training throughput, $PARENT, $STEPS steps, wgpu"
out=$("$RUN/train_throughput" "$PARENT" "$STEPS" wgpu "$RUN/corpus/shakespeare")
echo "$out"
python3 - "$out" <<'EOF'
import json, os, sys
r = json.loads(sys.argv[1])
device = r["device"]
# Stated dense FP32 peaks (vendor data sheets), FLOP/s.
peaks = {"H200": 66.9e12, "H100": 66.9e12, "A100": 19.5e12, "L40S": 91.6e12, "L4": 30.3e12,
         "A10G": 31.2e12, "A10": 31.2e12, "RTX 4090": 82.6e12, "T4": 8.1e12, "V100": 15.7e12}
peak = float(os.environ["P2LAW_PEAK_FLOPS"]) if os.environ.get("P2LAW_PEAK_FLOPS") else None
if peak is None:
    for name, value in peaks.items():
        if name in device:
            peak = value
            break
tflops = r["gflops"] / 1e3
print(f"adapter          {device}")
print(f"tokens/s         {r['tokens_per_s']:.0f} (batch {r['batch']} x seq {r['seq_len']}, {r['params']:.0f} params)")
print(f"achieved         {tflops:.3f} TFLOP/s")
if peak:
    print(f"MFU              {100 * r['gflops'] * 1e9 / peak:.2f} % of {peak / 1e12:.1f} TFLOP/s (stated FP32 peak)")
else:
    print("MFU              n/a: no stated peak known for this adapter (set P2LAW_PEAK_FLOPS)")
EOF

echo "== pruning kernels"
"$RUN/kernels_bench"
