#!/usr/bin/env bash
# The apps built against the CUDA emulator (ddpm_cuda_{sample,train}_emulated,
# DDPM_EMULATED_APPS): --device cuda runs the real CUDA backend, kernels and
# CUDA graphs on the CPU. Each command runs in every graph mode and once with
# --device cpu, and the outputs are compared:
#   - between graph modes: bitwise (same kernels, same order; the graphs only
#     change who launches them);
#   - CUDA against the CPU backend: the noise, the scheduler and the optimizer
#     arithmetic are the same on both (under the emulator the kernels' logf /
#     sinf / cosf are the host's, so the Philox draws are bitwise equal); the
#     model's fp32 sums differ in order. Bounds below, where they are used.
# The comparisons with the CPU's fp32 bounds run CUDA with --precision fp32;
# auto means bf16 here (the emulator reports sm_90), and bf16 runs of their
# own check the graph modes bitwise and stay within a loose bound of the CPU
# (bounds below). Also --profile-steps: where the window opens and closes, and
# its errors.
# Usage: test_emulated_apps.sh <build dir> <source dir>
set -uo pipefail
build=$1 src=$2
sample=$build/apps/ddpm_cuda_sample_emulated train=$build/apps/ddpm_cuda_train_emulated
compare="python3 $src/tests/apps/compare_runs.py"
work=$(mktemp -d)
cd "$src" || exit 2  # the test config names its dataset relative to the source tree
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
run() { "$@" >"$work/last.log" 2>&1 || { fail "$*"; tail -20 "$work/last.log"; }; }
expect_error() {
  local pattern=$1 err rc; shift
  err=$("$@" 2>&1 >/dev/null); rc=$?
  [[ $rc -ne 0 ]] || fail "exit 0 from: $*"
  grep -Eq -- "$pattern" <<<"$err" || fail "no /$pattern/ in: $err"
}

# Sampled images, CUDA against CPU: max |cuda - cpu| <= 1e-3 in the [0, 1]
# pixel units of the .npy. The fp32 bound itself (16x the CPU's own error
# against an f64 run) is checked on the same kind of model at the engine level
# (tests/cuda_backend/test_cuda_sampling.cpp); here it is ~5e-6 (measured),
# and 1e-3 stays 200x above that yet far below what a wiring fault in the app
# gives (another image's noise, a batch misplaced, a wrong scheduler: O(0.1)).
sample_tol=1e-3
echo "== sampling: graph off, step, loop bitwise; CUDA within $sample_tol of the CPU"
model=$src/tests/golden/unet_tiny
for case in "ddpm:--steps 4" "ddim:--scheduler ddim --eta 0.5 --steps 3"; do
  name=${case%%:*} flags=${case#*:}
  # 3 images in batches of 2: two batches, the last one padded.
  common="--model $model --num 3 --batch 2 --seed 7 $flags"
  run "$sample" $common --device cpu --out "$work/$name/cpu/g.png"
  for g in off step loop; do
    run "$sample" $common --device cuda --precision fp32 --graph $g --out "$work/$name/$g/g.png"
    grep -q "^sampling loop: device loop, graph $g" "$work/last.log" || fail "$name: not graph $g"
  done
  for g in step loop; do
    $compare npy "$work/$name/off/g.npy" "$work/$name/$g/g.npy" || fail "$name: graph $g != off"
  done
  $compare npy "$work/$name/cpu/g.npy" "$work/$name/off/g.npy" --max-abs $sample_tol ||
    fail "$name: CUDA differs from the CPU"
done

# bf16 against the CPU's fp32, in [0, 1] pixels: max |bf16 - cpu| <= 0.1 and
# the mean over every pixel <= 0.01. Measured and given a margin, not derived:
# the model reads x_t and its weights rounded to bf16 (relative 2^-9) and
# rounds every activation to bf16, so its eps carries ~1e-2 relative error,
# which a few-step DDPM then amplifies up to 1/sqrt(alpha_bar_t) (~150 at
# t = 999) where the x_0 estimate is not clipped. Measured on this model, 2
# and 4 steps: max ~0.03, mean ~2e-3. A wiring fault (another image's noise, a
# batch misplaced, another seed or scheduler) gives a mean of 0.2-0.5 and a max
# near 1; the fp32 runs above keep the tight bound.
bf16_max=0.1 bf16_mean=0.01
echo "== sampling in bf16 (auto): graph off, step, loop bitwise; within $bf16_max (mean $bf16_mean) of the CPU"
# One batch of 2 (the padded last batch is checked in fp32 above; it is not
# precision-specific), 2 steps: bf16 kernels are slow under the emulator.
common="--model $model --num 2 --batch 2 --seed 7 --steps 2"
run "$sample" $common --device cpu --out "$work/bf16/cpu/g.png"
for g in off step loop; do
  run "$sample" $common --device cuda --graph $g --out "$work/bf16/$g/g.png"
  grep -q "^precision: bf16 (auto: a GPU with bf16 tensor cores)" "$work/last.log" ||
    fail "sampling: auto does not pick bf16 under the emulator (sm_90)"
done
for g in step loop; do
  $compare npy "$work/bf16/off/g.npy" "$work/bf16/$g/g.npy" || fail "bf16: graph $g != off"
done
$compare npy "$work/bf16/cpu/g.npy" "$work/bf16/off/g.npy" --max-abs $bf16_max --mean-abs $bf16_mean ||
  fail "bf16 sampling differs from the CPU"
# And not within the fp32 bound (measured 0.03, 30x over it): the model did
# run in bf16, not only the line saying so.
$compare npy "$work/bf16/cpu/g.npy" "$work/bf16/off/g.npy" --max-abs $sample_tol >/dev/null 2>&1 &&
  fail "bf16 sampling is within the fp32 bound of the CPU: the model did not run in bf16"

echo "== training: graph on and off bitwise; CUDA close to the CPU"
# Losses and gradient norms, CUDA against CPU: relative 1e-4. The step-1 loss
# is one fp32 forward of the same numbers (sums of at most 8*8*16 terms over
# ~20 layers: sqrt(K) u depth ~ 2e-5 with u = 2^-24; measured: equal), later
# steps add the parameters' fp32 differences; a wiring fault (other images,
# timesteps or noise) moves the loss by O(10%). step, lr and ema_decay are
# host arithmetic: bitwise.
train_rel=1e-4
config=$src/tests/apps/tiny_train.json
run "$train" --config "$config" --device cpu --out "$work/train/cpu"
for g in on off; do
  run "$train" --config "$config" --device cuda --precision fp32 --graph $g --out "$work/train/$g"
  grep -q "training step: on the device" "$work/last.log" || fail "graph $g: not on the device"
done
$compare metrics "$work/train/on/metrics.jsonl" "$work/train/off/metrics.jsonl" ||
  fail "training metrics, graph on != off"
$compare tensors "$work/train/on/checkpoint/training_state.safetensors" \
  "$work/train/off/checkpoint/training_state.safetensors" || fail "training state, graph on != off"
$compare metrics "$work/train/cpu/metrics.jsonl" "$work/train/on/metrics.jsonl" --rel $train_rel ||
  fail "training metrics, CUDA differs from the CPU"
# The trained checkpoint samples the same on CUDA as on the CPU.
ckpt=$work/train/on/checkpoint
run "$sample" --model "$ckpt" --steps 3 --num 2 --device cpu --out "$work/ckpt/cpu/g.png"
run "$sample" --model "$ckpt" --steps 3 --num 2 --device cuda --precision fp32 \
  --out "$work/ckpt/cuda/g.png"
$compare npy "$work/ckpt/cpu/g.npy" "$work/ckpt/cuda/g.npy" --max-abs $sample_tol ||
  fail "sampling the trained checkpoint: CUDA differs from the CPU"

# bf16 training against the CPU's fp32: losses and gradient norms within
# relative 2e-2. The prediction passes ~20 layers that each round to bf16
# (2^-9 relative): ~sqrt(20) 2^-9 ~ 1e-2 if the roundings are independent
# (20 2^-9 ~ 4e-2 if they all added up); the loss and the gradient norm
# average over the batch, and 2 steps at warmup learning rates add little in
# the fp32 master weights. Measured: 4e-4 at step 1, 2e-3 by step 3. A wiring fault
# (other images, timesteps or noise) moves the loss by O(10%); the fp32 runs
# above keep the tight bound. 2 steps of batch 2: a bf16 step of batch 4 takes
# ~2 s under the emulator.
bf16_train_rel=2e-2
echo "== training in bf16: graph on and off bitwise; within relative $bf16_train_rel of the CPU"
python3 - "$config" "$work" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["training"].update(steps=2, batch_size=2)
c["logging"].update(sample_count=1, sample_steps=2, checkpoint_every=2)
json.dump(c, open(sys.argv[2] + "/bf16_train.json", "w"))
PY
run "$train" --config "$work/bf16_train.json" --device cpu --out "$work/bf16_train/cpu"
for g in on off; do
  run "$train" --config "$work/bf16_train.json" --device cuda --precision bf16 --graph $g \
    --out "$work/bf16_train/$g"
  grep -q "^precision: bf16 (requested)" "$work/last.log" || fail "bf16 training: no precision line"
done
$compare metrics "$work/bf16_train/on/metrics.jsonl" "$work/bf16_train/off/metrics.jsonl" ||
  fail "bf16 training metrics, graph on != off"
$compare tensors "$work/bf16_train/on/checkpoint/training_state.safetensors" \
  "$work/bf16_train/off/checkpoint/training_state.safetensors" ||
  fail "bf16 training state, graph on != off"
$compare metrics "$work/bf16_train/cpu/metrics.jsonl" "$work/bf16_train/on/metrics.jsonl" \
  --rel $bf16_train_rel || fail "bf16 training metrics differ from the CPU's"
[[ $(grep -c '"precision":"bf16"' "$work/bf16_train/on/metrics.jsonl") -eq 2 ]] ||
  fail "not every metrics.jsonl line of the bf16 run records bf16"
grep -q '"precision": "bf16"' "$work/bf16_train/on/checkpoint/train_config.json" ||
  fail "the bf16 checkpoint's train_config.json does not record bf16"
# Its checkpoint (fp32 EMA weights) samples in bf16 (the default here) within
# the bf16 bounds of the CPU.
ckpt=$work/bf16_train/on/checkpoint
run "$sample" --model "$ckpt" --steps 2 --num 1 --device cpu --out "$work/bf16_ckpt/cpu/g.png"
run "$sample" --model "$ckpt" --steps 2 --num 1 --device cuda --out "$work/bf16_ckpt/cuda/g.png"
$compare npy "$work/bf16_ckpt/cpu/g.npy" "$work/bf16_ckpt/cuda/g.npy" --max-abs $bf16_max \
  --mean-abs $bf16_mean || fail "sampling the bf16 checkpoint in bf16 differs from the CPU"
# Resumed in fp32: a warning, and the run goes on in fp32 from the fp32
# master weights (step 3 is recorded as fp32).
cp -r "$work/bf16_train/off" "$work/bf16_resume"
run "$train" --resume "$work/bf16_resume" --steps 3 --device cuda --precision fp32
grep -q "^warning: the checkpoint was trained in bf16; this run continues in fp32" "$work/last.log" ||
  fail "resuming a bf16 checkpoint in fp32: no warning"
tail -1 "$work/bf16_resume/metrics.jsonl" | grep -q '"precision":"fp32","step":3' ||
  fail "the resumed step 3 is not recorded in fp32: $(tail -1 "$work/bf16_resume/metrics.jsonl")"

echo "== --profile-steps"
# In fp32: the window does not depend on the precision, and bf16 kernels are
# slow under the emulator.
# Steps count over the run: 2 batches of 4 steps are steps 1-8. Modes off and
# step open before the window's first step and close after its last; mode
# loop widens to the batches holding them. The emulator traces its
# cudaProfilerStart / Stop (DDPM_EMU_TRACE_PROFILER), once each.
profile() {  # <graph> <window> <expected start line> <expected stop line>
  DDPM_EMU_TRACE_PROFILER=1 "$sample" --model "$model" --steps 4 --num 3 --batch 2 --device cuda \
    --precision fp32 --graph "$1" --profile-steps "$2" --out "$work/profile/g.png" >"$work/profile.log" 2>&1 ||
    { fail "profile $1 $2"; return; }
  grep -q "^profile window: cudaProfilerStart before step $3\b" "$work/profile.log" ||
    fail "profile $1 $2: no start before step $3: $(grep profile "$work/profile.log")"
  grep -q "^profile window: cudaProfilerStop after step $4$" "$work/profile.log" ||
    fail "profile $1 $2: no stop after step $4: $(grep profile "$work/profile.log")"
  [[ $(grep -c "^emulator: cudaProfilerStart$" "$work/profile.log") == 1 &&
     $(grep -c "^emulator: cudaProfilerStop$" "$work/profile.log") == 1 ]] ||
    fail "profile $1 $2: not one cudaProfilerStart and one cudaProfilerStop"
}
profile off 3:6 3 6
profile step 2:2 2 2
profile loop 3:6 1 8
profile loop 5:8 5 8
out=$("$sample" --model "$model" --steps 2 --num 1 --device cpu --profile-steps 1:2 \
  --out "$work/profile_cpu/g.png" 2>&1) || fail "profile on the CPU"
grep -q "profile-steps 1:2: ignored" <<<"$out" || fail "the CPU does not say it ignores the window"
expect_error "profile-steps '0:2': steps count from 1" "$sample" --model "$model" --profile-steps 0:2
expect_error "profile-steps '5:3'" "$sample" --model "$model" --profile-steps 5:3
expect_error "profile-steps 'x': expected A:B" "$sample" --model "$model" --profile-steps x
expect_error "profile-steps 3:9: outside the run's steps 1 to 8" \
  "$sample" --model "$model" --steps 4 --num 3 --batch 2 --profile-steps 3:9

# Training: the window brackets training steps 2-3 (eager and replayed).
for g in off on; do
  DDPM_EMU_TRACE_PROFILER=1 "$train" --config "$config" --device cuda --precision fp32 --graph $g \
    --steps 4 --profile-steps 2:3 --out "$work/profile_train_$g" >"$work/profile.log" 2>&1 ||
    { fail "train profile graph $g"; continue; }
  grep -q "^profile window: cudaProfilerStart before step 2\b" "$work/profile.log" &&
    grep -q "^profile window: cudaProfilerStop after step 3$" "$work/profile.log" ||
    fail "train profile graph $g: $(grep profile "$work/profile.log")"
  [[ $(grep -c "^emulator: cudaProfilerStart$" "$work/profile.log") == 1 ]] ||
    fail "train profile graph $g: not one cudaProfilerStart"
done
expect_error "profile-steps 3:9: outside the run's steps 1 to 4" \
  "$train" --config "$config" --device cuda --steps 4 --profile-steps 3:9 --out "$work/profile_bad"
[[ -e $work/profile_bad ]] && fail "a bad --profile-steps left a run folder behind"

echo "== --check-numerics names the first op on the CUDA backend (bf16, the default here)"
python3 - "$config" "$work" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["training"].update(learning_rate=1e30, warmup_steps=0, steps=6)
json.dump(c, open(sys.argv[2] + "/diverge.json", "w"))
PY
expect_error "check-numerics: the (forward|backward) of '[^']+' \([a-z_0-9]+\) wrote" \
  "$train" --config "$work/diverge.json" --device cuda --batch 1 --check-numerics --out "$work/div_numerics"

echo "== a batch that cannot fit in device memory: a clear error"
expect_error "training with this model and batch needs [0-9]+ MiB of cuda memory.*available" \
  "$train" --config "$config" --device cuda --batch 100000000 --out "$work/oom"

if ((failures)); then echo "$failures failure(s)"; exit 1; fi
echo "all emulated app checks passed"
