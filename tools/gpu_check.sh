#!/usr/bin/env bash
# The one prepared GPU check. On a GPU machine, from the repository root:
#
#   bash tools/gpu_check.sh [--pytorch] [--no-sanitize]
#
# It uses .gpu_bundle.tar.xz when present (made here by tools/gpu_bundle.sh:
# the GPU machines lack our build dependencies), else builds with CMake. Then:
# prints the GPU, driver and toolkit; finds cuDNN (the toolkit, or PyTorch's
# nvidia packages); runs every kernel test on the GPU, the emulator's GPU
# cross-check, the whole CPU suite and the apps end to end; runs
# compute-sanitizer memcheck and racecheck over the kernel tests; runs the
# kernel benchmark (apps/ddpm_cuda_bench: our conv/attention/GEMM kernels
# against cuDNN/cuBLAS on the CIFAR-10 UNet's shapes; BENCH_ARGS passes flags)
# and PyTorch's (only with --pytorch: it takes ~6 minutes); SANITIZE_FILTER is
# the gtest filter of the sanitizer runs (default: no large GPU-only cases);
# and prints a short table last. Logs go to $OUT (the device tool's folder)
# or ./gpu_check_out. Without --pytorch it fits in about 3 minutes; each
# sanitizer run stops after $SANITIZER_TIMEOUT seconds (default 60).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-$root/gpu_check_out}
mkdir -p "$out"
pytorch=0 sanitize=1
for a in "$@"; do
  case $a in
    --pytorch) pytorch=1 ;;
    --no-sanitize) sanitize=0 ;;
    *) echo "gpu_check: unknown argument $a" >&2; exit 2 ;;
  esac
done
export DDPM_SOURCE_DIR=$root
rows=()
: >"$out/summary.txt"
# Rows also go to $out/summary.txt as they come, so a run cut short still reports.
row() {
  rows+=("$(printf '%-26s %-7s %6s  %s' "$1" "$2" "$3" "$4")")
  printf '%s\n' "${rows[-1]}" >>"$out/summary.txt"
}
section() { printf '\n=== %s\n' "$1"; }
t0=$(date +%s)

# run <label> <log name> <command...>: records pass/fail with gtest's counts;
# with RUN_TIMEOUT set, a run past it is recorded as TIMEOUT.
run() {
  local label=$1 log=$out/$2.log; shift 2
  local s=$(date +%s) rc
  if [[ -n ${RUN_TIMEOUT:-} ]]; then timeout "$RUN_TIMEOUT" "$@" >"$log" 2>&1; else "$@" >"$log" 2>&1; fi
  rc=$?
  if ((rc == 124)); then row "$label" TIMEOUT "$(($(date +%s) - s))s" "stopped after ${RUN_TIMEOUT}s ($log)"; return $rc; fi
  local secs=$(($(date +%s) - s)) detail
  detail=$(grep -Eo '\[  PASSED  \] [0-9]+ tests?|\[  SKIPPED \] [0-9]+ tests?|\[  FAILED  \] [0-9]+ tests?' "$log" | sed -E 's/\[ +([A-Z]+) +\] /\1 /' | tr '\n' ' ')
  [[ -z $detail ]] && detail=$(tail -1 "$log" | cut -c1-60)
  if ((rc == 0)); then row "$label" ok "${secs}s" "$detail"; else row "$label" FAIL "${secs}s" "$detail (rc $rc, $log)"; tail -30 "$log"; fi
  return $rc
}

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || echo "no nvidia-smi"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
nvcc --version 2>/dev/null | tail -2
cudnn=$(ls /usr/local/cuda/lib64/libcudnn.so* /usr/lib/x86_64-linux-gnu/libcudnn.so* 2>/dev/null | head -1)
if [[ -z $cudnn ]]; then
  cudnn_dir=$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null)
  [[ -n $cudnn_dir ]] && cudnn=$(ls "$cudnn_dir"/libcudnn.so* 2>/dev/null | head -1)
fi
echo "cuDNN: ${cudnn:-not found}"
[[ -n $cudnn ]] && export DDPM_CUDNN_LIBRARY=$cudnn LD_LIBRARY_PATH=$(dirname "$cudnn")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

section "build"
if [[ -f .gpu_bundle.tar.xz ]]; then
  bin=$root/.gpu_run
  rm -rf "$bin" && mkdir -p "$bin" && tar -xJf .gpu_bundle.tar.xz -C "$bin"
  echo "bundle of commit $(cat "$bin/COMMIT")"; [[ -s $bin/DIRTY ]] && { echo "with uncommitted changes to:"; cat "$bin/DIRTY"; }
  row "build" ok "-" "bundle $(cut -c1-10 "$bin/COMMIT")"
else
  bin=$root/build-gpu
  run "build (cmake)" build bash -c "cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build-gpu" || true
fi
kernel_tests=$(ls "$bin"/tests/kernels/ddpm_kernel_tests_gpu_* "$bin"/tests/cuda_backend/ddpm_cuda_backend_tests_gpu 2>/dev/null | grep -v cmake)

short_name() { basename "$1" | sed 's/ddpm_kernel_tests_gpu_//; s/ddpm_cuda_backend_tests_gpu/cuda_backend/'; }
section "kernel tests on the GPU"
for t in $kernel_tests; do run "gpu $(short_name "$t")" "$(basename "$t")" "$t"; done
x=$bin/tests/emulation/ddpm_emulation_crosscheck_gpu
[[ -x $x ]] || x=$bin/tests/emulation/gpu/ddpm_emulation_crosscheck_gpu
[[ -x $x && -n $gpu ]] && run "emulator cross-check" crosscheck bash -c "'$x' | diff - <(grep -v '^#' tests/emulation/crosscheck_expected.txt)"

# Under the sanitizers, the small cases only: the GPU-only large ones (CIFAR
# shapes, whole UNets) take minutes there and add no coverage of the indexing.
sanitize_filter=${SANITIZE_FILTER:--*Cifar*:*Large*:*UNet*:*Unet*:*Gpu*}
if ((sanitize)) && [[ -n $gpu ]] && command -v compute-sanitizer >/dev/null; then
  section "compute-sanitizer"
  for t in $kernel_tests; do
    name=$(short_name "$t")
    for tool in memcheck racecheck; do
      RUN_TIMEOUT=${SANITIZER_TIMEOUT:-60} run "$tool $name" "sanitize_${tool}_$name" \
        compute-sanitizer --tool "$tool" --error-exitcode 1 "$t" --gtest_filter="$sanitize_filter"
    done
  done
fi

section "CPU suite and apps on this machine"
run "cpu suite" cpu_tests "$bin/tests/ddpm_cpu_tests"
run "apps end to end" apps bash tests/apps/test_apps.sh "$bin" "$root"


section "benchmarks"
# The kernel benchmark fills a copy of PERFORMANCE.md (only $OUT comes back
# from the GPU machine); copy its marked section over the repository's file.
cp tools/PERFORMANCE.md "$out/PERFORMANCE.md"
if [[ -x $bin/apps/ddpm_cuda_bench && -n $gpu ]]; then
  run "kernel benchmark" kernel_bench "$bin/apps/ddpm_cuda_bench" ${BENCH_ARGS:-} \
    --markdown "$out/kernel_bench.md" --performance-md "$out/PERFORMANCE.md" &&
    sed -n '/^| implementation | conv ms/,$p' "$out/kernel_bench.md"
else
  row "kernel benchmark" "-" "-" "skipped (no GPU or no ddpm_cuda_bench)"
fi
if ((pytorch)); then
  run "pytorch baseline" bench_pytorch env PYTHONUNBUFFERED=1 python3 tools/bench_pytorch.py --json "$out/bench_pytorch.json"
fi

section "summary: ${gpu:-no GPU} (${out})"
printf '%-26s %-7s %6s  %s\n' "check" "result" "time" "detail"
printf '%s\n' "${rows[@]}"
echo "total $(($(date +%s) - t0))s"
grep -q " FAIL " "$out/summary.txt" && exit 1
exit 0
