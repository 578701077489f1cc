#!/usr/bin/env bash
# The one prepared GPU check. On a GPU machine, from the repository root:
#
#   bash tools/gpu_check.sh [--only SECTIONS] [--pytorch] [--no-sanitize] [--budget SECONDS]
#
# It uses .gpu_bundle.tar.xz when present (made here by tools/gpu_bundle.sh:
# the GPU machines lack our build dependencies), else builds with CMake.
# Sections, in this order (default: all but pytorch; --pytorch adds it,
# --no-sanitize drops sanitize, --only a,b,c runs just those):
#   tests     every kernel test and the CUDA backend's tests on the GPU; the
#             emulator's cross-checks (kernels, and stream capture / graphs)
#             against a real driver
#   sanitize  compute-sanitizer memcheck and racecheck over the kernel tests
#             (SANITIZE_FILTER: the small cases; each run stops after
#             $SANITIZER_TIMEOUT s, default 60)
#   cpu       the CPU suite and the apps end to end on that machine
#   kbench    the kernel benchmark: our conv/attention/GEMM kernels against
#             cuDNN/cuBLAS on the CIFAR-10 UNet's shapes (BENCH_ARGS adds flags)
#   graphs    the apps on the CIFAR-10 config (synthetic CIFAR-10 images: the
#             machines have no dataset) in every graph mode, outputs compared
#             bitwise: ddpm_cuda_train --graph on / off (metrics and the whole
#             training state), ddpm_cuda_sample --graph off / step / loop
#             (DDPM and DDIM eta 1, a padded last batch)
#   profile   --profile-steps under ncu --profile-from-start off: the window
#             of one step holds one step's kernels, two steps twice that, in
#             modes off and step (graph replays); nsys where it is on the PATH
#   e2e       ddpm_cuda_bench --e2e on the CIFAR-10 config (training batch 128,
#             sampling batch 256 as bench_pytorch.py; E2E_ARGS adds flags,
#             E2E_SIZES replaces the sizes)
#   pytorch   tools/bench_pytorch.py (PYTORCH_MODES, default
#             eager-fp32,compile-fp32) in the same call, then the ratios ours /
#             PyTorch (tools/bench_ratios.py). Needs diffusers: the wheels of
#             tools/fetch_wheels.sh carried in .whl/ are installed here.
# The apps run at their default --precision auto: bf16 mixed precision on the
# H100/H200 (graphs, e2e), so the graph-mode comparisons and the e2e figures are
# bf16's; E2E_ARGS="--precision fp32" times the fp32 path instead.
# For issue 10's GPU run: bash tools/gpu_check.sh --only graphs,profile,e2e,pytorch
# (about 5 minutes on an H200 by estimate: the e2e bench is capped at 240 s,
# PyTorch at the time left).
#
# --budget (default 540 s): a section not started by then is skipped (its row
# says so) and the long runs get at most the time left, so one call ends inside
# the device tool's 10-minute command limit. Output: a table last; logs and
# JSON in $OUT (the device tool's folder, logs packed into logs.tar.gz since
# only 8 files come back) or ./gpu_check_out.
#
# Dry runs without a GPU (how this script is checked where it is written):
# GPU_CHECK_BIN=<dir with apps/ddpm_cuda_{train,sample,bench} linked to the
# *_emulated builds> runs the apps on the CUDA emulator; CHECK_MODEL_CONFIG (a
# training config of a 32x32x3 model, default apps/configs/ddpm_cifar10.json)
# and E2E_SIZES (default: e2e_sizes below) shrink the work.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$PWD
out=${OUT:-$root/gpu_check_out}
logs=$out/logs
mkdir -p "$logs"
sections="tests sanitize cpu kbench graphs profile e2e"
budget=540
while (($#)); do
  case $1 in
    --pytorch) sections="$sections pytorch" ;;
    --no-sanitize) sections=${sections/sanitize/} ;;
    --only) sections=${2//,/ }; shift ;;
    --budget) budget=$2; shift ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for s in $sections; do
  [[ " tests sanitize cpu kbench graphs profile e2e pytorch " == *" $s "* ]] ||
    { echo "gpu_check: unknown section '$s'" >&2; exit 2; }
done
export DDPM_SOURCE_DIR=$root
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
rows=()
: >"$out/summary.txt"
# Rows also go to $out/summary.txt as they come, so a run cut short still reports.
row() {
  rows+=("$(printf '%-30s %-7s %6s  %s' "$1" "$2" "$3" "$4")")
  printf '%s\n' "${rows[-1]}" >>"$out/summary.txt"
}
t0=$(date +%s)
left() { echo $((budget - ($(date +%s) - t0))); }
# want <section> [<seconds it needs at least>]: selected, and time left for it.
want() {
  [[ " $sections " == *" $1 "* ]] || return 1
  if (($(left) < ${2:-30})); then row "$1" skipped "-" "budget: $(left)s left of ${budget}s"; return 1; fi
  printf '\n=== %s (%ss left)\n' "$1" "$(left)"
}
# cap <seconds>: that, or the time left less a margin for the summary.
cap() { local l=$(($(left) - 15)); echo $((l < $1 ? (l < 10 ? 10 : l) : $1)); }

# run <label> <log name> <command...>: records pass/fail with gtest's counts;
# with RUN_TIMEOUT set, a run past it is recorded as TIMEOUT.
run() {
  local label=$1 name=$2.log log=$logs/$2.log; shift 2
  local s=$(date +%s) rc
  if [[ -n ${RUN_TIMEOUT:-} ]]; then timeout "$RUN_TIMEOUT" "$@" >"$log" 2>&1; else "$@" >"$log" 2>&1; fi
  rc=$?
  if ((rc == 124)); then row "$label" TIMEOUT "$(($(date +%s) - s))s" "stopped after ${RUN_TIMEOUT}s ($name)"; return $rc; fi
  local secs=$(($(date +%s) - s)) detail
  detail=$(grep -Eo '\[  PASSED  \] [0-9]+ tests?|\[  SKIPPED \] [0-9]+ tests?|\[  FAILED  \] [0-9]+ tests?' "$log" | sed -E 's/\[ +([A-Z]+) +\] /\1 /' | tr '\n' ' ')
  [[ -z $detail ]] && detail=$(tail -1 "$log" | cut -c1-70)
  if ((rc == 0)); then row "$label" ok "${secs}s" "$detail"; else row "$label" FAIL "${secs}s" "$detail (rc $rc, $name)"; tail -30 "$log"; fi
  return $rc
}

printf '=== machine\n'
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || echo "no nvidia-smi"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
nvcc --version 2>/dev/null | tail -2
cudnn=$(ls /usr/local/cuda/lib64/libcudnn.so* /usr/lib/x86_64-linux-gnu/libcudnn.so* 2>/dev/null | head -1)
if [[ -z $cudnn ]]; then
  cudnn_dir=$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null)
  [[ -n $cudnn_dir ]] && cudnn=$(ls "$cudnn_dir"/libcudnn.so* 2>/dev/null | head -1)
fi
echo "cuDNN: ${cudnn:-not found}; sections: $sections; budget ${budget}s"
[[ -n $cudnn ]] && export DDPM_CUDNN_LIBRARY=$cudnn LD_LIBRARY_PATH=$(dirname "$cudnn")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

printf '\n=== build\n'
if [[ -n ${GPU_CHECK_BIN:-} ]]; then
  bin=$GPU_CHECK_BIN
  row "build" ok "-" "GPU_CHECK_BIN=$bin"
elif [[ -f .gpu_bundle.tar.xz ]]; then
  bin=$root/.gpu_run
  rm -rf "$bin" && mkdir -p "$bin" && tar -xJf .gpu_bundle.tar.xz -C "$bin"
  echo "bundle of commit $(cat "$bin/COMMIT")"; [[ -s $bin/DIRTY ]] && { echo "with uncommitted changes to:"; cat "$bin/DIRTY"; }
  row "build" ok "-" "bundle $(cut -c1-10 "$bin/COMMIT")"
else
  bin=$root/build-gpu
  run "build (cmake)" build bash -c "cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDDPM_EMULATED_APPS=OFF && cmake --build build-gpu" || true
fi
# A bundle made before the issue-10 apps would fail the new sections obscurely.
"$bin/apps/ddpm_cuda_bench" --help 2>/dev/null | grep -q -- "--e2e" ||
  row "apps know --e2e" FAIL "-" "the apps predate --e2e / --profile-steps: rebuild the bundle"
kernel_tests=$(ls "$bin"/tests/kernels/ddpm_kernel_tests_gpu_* "$bin"/tests/cuda_backend/ddpm_cuda_backend_tests_gpu 2>/dev/null | grep -v cmake)
short_name() { basename "$1" | sed 's/ddpm_kernel_tests_gpu_//; s/ddpm_cuda_backend_tests_gpu/cuda_backend/'; }

if want tests; then
  for t in $kernel_tests; do run "gpu $(short_name "$t")" "$(basename "$t")" "$t"; done
  # The emulator's cross-checks: a real driver must print what the emulator does.
  for x in crosscheck graph_crosscheck; do
    p=$bin/tests/emulation/ddpm_emulation_${x}_gpu
    [[ -x $p ]] || p=$bin/tests/emulation/gpu/ddpm_emulation_${x}_gpu
    [[ -x $p && -n $gpu ]] && run "emulator $x" "$x" bash -c "'$p' | diff - <(grep -v '^#' tests/emulation/${x}_expected.txt)"
  done
fi

# Under the sanitizers, the small cases only: the GPU-only large ones (CIFAR
# shapes, whole UNets) take minutes there and add no coverage of the indexing.
sanitize_filter=${SANITIZE_FILTER:--*Cifar*:*Large*:*UNet*:*Unet*:*Gpu*}
if want sanitize 90 && [[ -n $gpu ]] && command -v compute-sanitizer >/dev/null; then
  for t in $kernel_tests; do
    name=$(short_name "$t")
    for tool in memcheck racecheck; do
      (($(left) > 60)) || { row "$tool $name" skipped "-" "budget"; continue; }
      RUN_TIMEOUT=$(cap "${SANITIZER_TIMEOUT:-60}") run "$tool $name" "sanitize_${tool}_$name" \
        compute-sanitizer --tool "$tool" --error-exitcode 1 "$t" --gtest_filter="$sanitize_filter"
    done
  done
fi

if want cpu 60; then
  RUN_TIMEOUT=$(cap 300) run "cpu suite" cpu_tests "$bin/tests/ddpm_cpu_tests"
  RUN_TIMEOUT=$(cap 300) run "apps end to end" apps bash tests/apps/test_apps.sh "$bin" "$root"
fi

# The kernel benchmark fills a copy of PERFORMANCE.md (only $OUT comes back
# from the GPU machine); copy its marked section over the repository's file.
if want kbench 60; then
  cp tools/PERFORMANCE.md "$out/PERFORMANCE.md"
  if [[ -x $bin/apps/ddpm_cuda_bench && -n $gpu ]]; then
    RUN_TIMEOUT=$(cap 300) run "kernel benchmark" kernel_bench "$bin/apps/ddpm_cuda_bench" ${BENCH_ARGS:-} \
      --markdown "$out/kernel_bench.md" --performance-md "$out/PERFORMANCE.md" &&
      sed -n '/^| implementation | conv ms/,$p' "$out/kernel_bench.md"
  else
    row "kernel benchmark" "-" "-" "skipped (no GPU or no ddpm_cuda_bench)"
  fi
fi

# A CIFAR-10 config for a few steps: synthetic CIFAR-10 binary records (512
# random images), a short sample at the end. Written once, for graphs and profile.
cifar_config() {
  [[ -f $scratch/cifar.json ]] && return
  mkdir -p "$scratch/cifar"
  python3 - "$scratch" "$model_config" <<'PY'
import json, random, sys
d = sys.argv[1]
rng = random.Random(0)
with open(f"{d}/cifar/data_batch_1.bin", "wb") as f:
    for i in range(512):
        f.write(bytes([i % 10]) + rng.randbytes(3072))
c = json.load(open(sys.argv[2]))
c["data"] = {"kind": "cifar10", "path": f"{d}/cifar"}
c["training"]["steps"] = 4
c["logging"] = {"log_every": 1, "sample_every": 0, "sample_count": 4, "sample_steps": 2,
                "sample_scheduler": "ddpm", "checkpoint_every": 0}
json.dump(c, open(f"{d}/cifar.json", "w"), indent=1)
PY
}
compare="python3 tests/apps/compare_runs.py"
model_config=${CHECK_MODEL_CONFIG:-apps/configs/ddpm_cifar10.json}

if want graphs 90; then
  cifar_config
  g=$scratch/graphs
  ok=1
  for mode in on off; do
    RUN_TIMEOUT=$(cap 120) run "train cifar --graph $mode" "train_$mode" "$bin/apps/ddpm_cuda_train" --config "$scratch/cifar.json" \
      --device cuda --graph "$mode" --out "$g/train_$mode" || ok=0
  done
  if ((ok)); then
    RUN_TIMEOUT=$(cap 60) run "train: graph on == off" train_compare bash -c "$compare metrics '$g/train_on/metrics.jsonl' '$g/train_off/metrics.jsonl' && $compare tensors '$g/train_on/checkpoint/training_state.safetensors' '$g/train_off/checkpoint/training_state.safetensors' && echo 'metrics and training state bitwise equal'"
    model=$g/train_on/checkpoint
  else
    model=tests/golden/unet_tiny  # still compare the sampling modes, on the tiny model
  fi
  for case in "ddpm:--steps 20" "ddim1:--scheduler ddim --eta 1 --steps 10"; do
    name=${case%%:*}
    for mode in off step loop; do
      # 24 images in batches of 16: the last batch padded.
      RUN_TIMEOUT=$(cap 120) run "sample $name --graph $mode" "sample_${name}_$mode" "$bin/apps/ddpm_cuda_sample" --model "$model" \
        --device cuda --graph "$mode" --num 24 --batch 16 --seed 5 ${case#*:} --out "$g/$name/$mode/g.png"
    done
    RUN_TIMEOUT=$(cap 60) run "sample $name: off==step==loop" "sample_${name}_compare" bash -c "$compare npy '$g/$name/off/g.npy' '$g/$name/step/g.npy' && $compare npy '$g/$name/off/g.npy' '$g/$name/loop/g.npy' && echo 'images bitwise equal'"
  done
fi

# The profile window under Nsight Compute: kernels profiled with
# --profile-steps 2:2 (one step) and 2:3 (two steps) of a 3-step run must be
# N > 0 and 2N, the same with graph replays (mode step): the window holds its
# steps and nothing of the prologue, the other steps or the read-back.
if want profile 60; then
  if command -v ncu >/dev/null && [[ -n $gpu ]]; then
    declare -A kernels
    for mode in off step; do
      for w in 2:2 2:3; do
        log=ncu_${mode}_${w/:/_}
        RUN_TIMEOUT=$(cap 90) run "ncu --profile-steps $w $mode" "$log" ncu --profile-from-start off \
          --clock-control none --metrics gpu__time_duration.sum --csv "$bin/apps/ddpm_cuda_sample" \
          --model tests/golden/unet_tiny --device cuda --graph "$mode" --steps 3 --num 1 --batch 1 \
          --profile-steps "$w" --out "$scratch/ncu/g.png"
        kernels[$mode$w]=$(grep -c '"gpu__time_duration.sum"' "$logs/$log.log")
      done
    done
    # NVTX filtering (the README's command): the kernels inside conv_in's
    # range of the "ddpm" domain, one conv_in per step of 3 steps.
    RUN_TIMEOUT=$(cap 90) run "ncu --nvtx-include ddpm@conv_in/" ncu_nvtx ncu --nvtx \
      --nvtx-include "ddpm@conv_in/" --clock-control none --metrics gpu__time_duration.sum --csv \
      "$bin/apps/ddpm_cuda_sample" --model tests/golden/unet_tiny --device cuda --graph off \
      --steps 3 --num 1 --batch 1 --out "$scratch/ncu/g.png"
    c=$(grep -c '"gpu__time_duration.sum"' "$logs/ncu_nvtx.log")
    if ((c > 0 && c % 3 == 0)); then row "ncu NVTX filter" ok "-" "$c kernels in 3 conv_in ranges"
    else row "ncu NVTX filter" FAIL "-" "$c kernels in 3 conv_in ranges (expected a positive multiple of 3)"; fi
    n=${kernels[off2:2]}
    if ((n > 0)) && [[ ${kernels[off2:3]} == $((2 * n)) && ${kernels[step2:2]} == "$n" && ${kernels[step2:3]} == $((2 * n)) ]]; then
      row "profile window (ncu)" ok "-" "$n kernels per step, 2 steps $((2 * n)), off and step alike"
    else
      row "profile window (ncu)" FAIL "-" "kernels off 2:2 ${kernels[off2:2]}, 2:3 ${kernels[off2:3]}; step 2:2 ${kernels[step2:2]}, 2:3 ${kernels[step2:3]}"
    fi
  else
    row "profile window (ncu)" skipped "-" "no ncu or no GPU"
  fi
  if command -v nsys >/dev/null && [[ -n $gpu ]]; then
    RUN_TIMEOUT=$(cap 90) run "nsys --capture-range" nsys bash -c "nsys profile --capture-range=cudaProfilerApi --capture-range-end=stop --trace=cuda,nvtx -o '$scratch/nsys' -f true '$bin/apps/ddpm_cuda_sample' --model tests/golden/unet_tiny --device cuda --graph off --steps 3 --num 1 --profile-steps 2:2 --out '$scratch/nsys/g.png' && nsys stats --report nvtx_sum '$scratch/nsys.nsys-rep' | grep -E 'sampling step 2/3|conv_in'"
  else
    row "nsys --capture-range" skipped "-" "nsys not on the PATH"
  fi
fi

# Batches as bench_pytorch.py's; 50 timed sampling steps (its window), img/s
# reported per 1000 steps.
e2e_sizes="--batch 128 --sample-batch 256 --steps 50 --train-steps 10 --warmup 3 --b1-steps 50"
if want e2e 90; then
  RUN_TIMEOUT=$(cap 240) run "e2e bench (cifar)" e2e "$bin/apps/ddpm_cuda_bench" --e2e \
    --config "$model_config" --device cuda ${E2E_SIZES:-$e2e_sizes} ${E2E_ARGS:-} --json "$out/e2e.json" &&
    sed -n '/^ddpm_cuda_bench --e2e:/,$p' "$logs/e2e.log" | tee "$out/e2e_table.txt"
fi

if want pytorch 120; then
  if [[ -d .whl ]] && ! python3 -c "import diffusers" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$scratch/site" .whl/*.whl && export PYTHONPATH=$scratch/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  # bench_pytorch.py skips what has not started after --budget-s; a mode takes
  # 40-110 s (compile), so it is given the time left less two minutes' margin.
  pt_budget=$(($(left) - 120))
  ((pt_budget < 30)) && pt_budget=30
  RUN_TIMEOUT=$(cap 400) run "pytorch baseline" bench_pytorch env PYTHONUNBUFFERED=1 python3 tools/bench_pytorch.py \
    --modes "${PYTORCH_MODES:-eager-fp32,compile-fp32}" --repeats 3 --budget-s "$pt_budget" \
    --json "$out/bench_pytorch.json"
  if [[ -s $out/e2e.json && -s $out/bench_pytorch.json ]]; then
    printf '\n=== ours / PyTorch\n'
    python3 tools/bench_ratios.py "$out/e2e.json" "$out/bench_pytorch.json" | tee "$out/ratios.txt"
    python3 tools/bench_ratios.py "$out/e2e.json" "$out/bench_pytorch.json" --markdown >>"$out/ratios.txt"
    row "ours / pytorch" ok "-" "$(sed -n 3p "$out/ratios.txt" | tr -s ' ' | cut -c1-70)"
  fi
fi

# Only 8 files come back from the device tool: the logs travel as one archive.
if [[ -n ${OUT:-} ]]; then tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"; fi
printf '\n=== summary: %s (%s)\n' "${gpu:-no GPU}" "$out"
printf '%-30s %-7s %6s  %s\n' "check" "result" "time" "detail"
printf '%s\n' "${rows[@]}"
echo "total $(($(date +%s) - t0))s"
grep -q " FAIL " "$out/summary.txt" && exit 1
exit 0
