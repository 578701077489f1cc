#!/usr/bin/env bash
# Packs what tools/gpu_check.sh runs on a GPU machine into one small archive,
# .gpu_bundle.tar.xz, from a build made here (the GPU machines have CUDA but
# none of our other build dependencies; the programs link OpenBLAS, libpng,
# zlib, libstdc++ and the CUDA runtime statically, so they run there as they are).
#
#   tools/gpu_bundle.sh [build-dir]      (default: build; built first if needed)
#
# What it carries: the three apps (ddpm_cuda_train / _sample / _bench, with
# --graph, --profile-steps and --e2e), the CPU suite, every GPU test program
# (kernels, the CUDA backend with the device sampler and training step) and the
# emulator's two GPU cross-checks (kernels; stream capture and graphs). The
# scripts and data gpu_check.sh reads (tests/apps/, apps/configs/,
# tests/golden/, tools/*.py) travel with the working tree. With
# DDPM_BUILD_LOCK=<file> the build step holds that lock (shared build folders).
#
# Then carry .gpu_bundle.tar.xz to the GPU machine (the device tool's `carry`)
# and run `bash tools/gpu_check.sh` there. xz with a 64 MiB window folds the
# programs' shared static OpenBLAS into one copy: ~190 MB of programs pack to a few MB.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
[[ -f $build/CMakeCache.txt ]] || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
${DDPM_BUILD_LOCK:+flock "$DDPM_BUILD_LOCK"} cmake --build "$build" --target ddpm_cuda_train ddpm_cuda_sample \
  ddpm_cuda_bench ddpm_cpu_tests ddpm_cuda_backend_tests_gpu ddpm_emulation_crosscheck_gpu \
  ddpm_emulation_graph_crosscheck_gpu \
  $(cd "$build" && ninja -t targets all 2>/dev/null | grep -o "^ddpm_kernel_tests_gpu_[a-z0-9_]*" | sort -u)
grep -Eq "^CMAKE_CUDA_COMPILER:[A-Z]+=.+" "$build/CMakeCache.txt" ||
  { echo "gpu_bundle: $build was configured without CUDA; nothing to run on a GPU" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/apps" "$stage/tests/kernels" "$stage/tests/emulation" "$stage/tests/cuda_backend"
strip -o "$stage/apps/ddpm_cuda_train" "$build/apps/ddpm_cuda_train"
strip -o "$stage/apps/ddpm_cuda_sample" "$build/apps/ddpm_cuda_sample"
strip -o "$stage/apps/ddpm_cuda_bench" "$build/apps/ddpm_cuda_bench"
strip -o "$stage/tests/ddpm_cpu_tests" "$build/tests/ddpm_cpu_tests"
for t in "$build"/tests/kernels/ddpm_kernel_tests_gpu_*; do
  [[ -x $t && ! $t == *.cmake ]] && strip -o "$stage/tests/kernels/$(basename "$t")" "$t"
done
strip -o "$stage/tests/cuda_backend/ddpm_cuda_backend_tests_gpu" "$build/tests/cuda_backend/ddpm_cuda_backend_tests_gpu"
for x in crosscheck graph_crosscheck; do
  [[ -x $build/tests/emulation/gpu/ddpm_emulation_${x}_gpu ]] &&
    strip -o "$stage/tests/emulation/ddpm_emulation_${x}_gpu" "$build/tests/emulation/gpu/ddpm_emulation_${x}_gpu"
done
git rev-parse HEAD >"$stage/COMMIT" 2>/dev/null || echo unknown >"$stage/COMMIT"
git status --short | head -80 >"$stage/DIRTY" || true
tar -cf - -C "$stage" . | xz -9 -T1 >.gpu_bundle.tar.xz
echo "gpu_bundle: .gpu_bundle.tar.xz $(du -h .gpu_bundle.tar.xz | cut -f1) ($(du -sh "$stage" | cut -f1) unpacked), commit $(cat "$stage/COMMIT")"
