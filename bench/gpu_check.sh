#!/usr/bin/env bash
# gpu_check.sh — the one GPU check: build gptx with CUDA, run the GPU tests, run the GPU benchmarks against PyTorch,
# and print the benchmark table last. Needs nvcc, CMake, ninja, pybind11, pytest, numpy, torch and transformers;
# installs nothing. Well under 10 minutes on one H200 (the build is most of it).
#
#   bash bench/gpu_check.sh [OUT_DIR]          # logs, gpu_bench.json and gpu_bench.md land in OUT_DIR
#   GPTX_CUDA_ARCHS="80;90" bash bench/gpu_check.sh   # architectures to build (default: 90, the H100/H200)
#   GPU_CHECK_QUICK=1 bash bench/gpu_check.sh  # fewer benchmark repetitions, smaller training batch
set -uo pipefail
OUT_DIR=${1:-${OUT:-build/gpu-check}}
ARCHS=${GPTX_CUDA_ARCHS:-90}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT_DIR/gpu.txt"
t0=$(date +%s)
{
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPTX_BUILD_PYTHON=ON -DGPTX_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" -DPython_EXECUTABLE="$(command -v "$PY")" \
    -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" && ninja -C build/gpu _core
} > "$OUT_DIR/build.log" 2>&1 || { tail -60 "$OUT_DIR/build.log"; echo "gpu_check: BUILD FAILED"; exit 1; }
rm -f python/gptx/_core*.so
ln -s "$PWD"/build/gpu/_core*.so python/gptx/
echo "gpu_check: build $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
PYTHONPATH=python "$PY" -m pytest tests/gpu tests/test_cuda_runtime.py -q -p no:cacheprovider -o addopts="-ra" \
  > "$OUT_DIR/tests.log" 2>&1
tests_rc=$?
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT_DIR/tests.log" | tail -40
echo "gpu_check: GPU tests rc=$tests_rc in $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
QUICK=()
[ -n "${GPU_CHECK_QUICK:-}" ] && QUICK=(--quick)
PYTHONPATH=python "$PY" bench/compare_gpu.py "${QUICK[@]}" --json "$OUT_DIR/gpu_bench.json" \
  --markdown "$OUT_DIR/gpu_bench.md" > "$OUT_DIR/bench.log" 2>&1
bench_rc=$?
grep -E "FAILED|Error" "$OUT_DIR/bench.log" | head -10
echo "gpu_check: benchmarks rc=$bench_rc in $(( $(date +%s) - t0 )) s"
cat "$OUT_DIR/gpu_bench.md" 2>/dev/null || tail -30 "$OUT_DIR/bench.log"
exit $(( tests_rc != 0 || bench_rc != 0 ))
