#!/usr/bin/env bash
# The apps end to end on the CPU: train, resume, sample (our checkpoint and a
# diffusers folder), and the errors bad input must give. Usage:
#   test_apps.sh <build dir> <source dir>
set -uo pipefail
build=$1 src=$2
train=$build/apps/ddpm_cuda_train sample=$build/apps/ddpm_cuda_sample
work=$(mktemp -d)
cd "$src"  # the test config names its dataset relative to the source tree
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect_file() { [[ -s $1 ]] || fail "missing $1"; }
# expect_error <regex> <command...>: non-zero exit and the message on stderr.
expect_error() {
  local pattern=$1; shift
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  [[ $rc -ne 0 ]] || fail "exit 0 from: $*"
  grep -Eq "$pattern" <<<"$err" || fail "no /$pattern/ in: $err"
}

echo "== train 2 steps, then resume to 4"
$train --config "$src/tests/apps/tiny_train.json" --steps 2 --out "$work/run" || fail "train"
expect_file "$work/run/checkpoint/training_state.safetensors"
expect_file "$work/run/checkpoint/unet/diffusion_pytorch_model.safetensors"
expect_file "$work/run/samples/step_0000002.png"
[[ $(wc -l <"$work/run/metrics.jsonl") -eq 2 ]] || fail "metrics.jsonl should have 2 lines"
$train --resume "$work/run" --steps 4 || fail "resume"
[[ $(wc -l <"$work/run/metrics.jsonl") -eq 4 ]] || fail "metrics.jsonl should have 4 lines after resuming"
grep -q '"step":4' "$work/run/metrics.jsonl" || fail "no step 4 in metrics.jsonl"

echo "== --precision on the CPU: fp32 works and is recorded; bf16 and unknown values fail"
out=$($train --config "$src/tests/apps/tiny_train.json" --steps 1 --out "$work/fp32_auto" 2>&1) ||
  fail "train with the default precision: $out"
grep -q "^precision: fp32 (auto: the CPU computes in fp32)" <<<"$out" ||
  fail "auto on the CPU does not say it picks fp32: $out"
# Every line of metrics.jsonl and the checkpoint's config record the precision.
[[ $(grep -c '"precision":"fp32"' "$work/run/metrics.jsonl") -eq 4 ]] ||
  fail "not every metrics.jsonl line records precision fp32"
grep -q '"precision": "fp32"' "$work/run/checkpoint/train_config.json" ||
  fail "the checkpoint's train_config.json does not record the precision"
$train --config "$src/tests/apps/tiny_train.json" --steps 1 --device cpu --precision fp32 \
  --out "$work/fp32" >/dev/null || fail "train --precision fp32 on the CPU"
$sample --model "$src/tests/golden/unet_tiny" --steps 2 --num 1 --device cpu --precision fp32 \
  --out "$work/fp32/g.png" >/dev/null || fail "sample --precision fp32 on the CPU"
train_cmd=("$train" --config "$src/tests/apps/tiny_train.json" --out "$work/bf16_cpu")
sample_cmd=("$sample" --model "$src/tests/golden/unet_tiny" --steps 2 --num 1 --out "$work/bf16_cpu/g.png")
bench_cmd=("$build/apps/ddpm_cuda_bench" --e2e --config "$src/tests/apps/tiny_train.json")
for app in train_cmd sample_cmd bench_cmd; do
  declare -n cmd=$app
  expect_error "precision bf16 needs a CUDA device; the cpu backend computes in fp32" \
    "${cmd[@]}" --device cpu --precision bf16
  expect_error "precision: fp16 not in \{auto,bf16,fp32\}" "${cmd[@]}" --precision fp16
  unset -n cmd
done
[[ -e $work/bf16_cpu ]] && fail "--precision bf16 on the CPU left a run folder behind"
# A checkpoint recorded in another precision resumes, with a warning: its
# fp32 master weights are the same either way (the recorded value is edited
# here: a CPU run cannot write bf16).
cp -r "$work/fp32" "$work/fp32_resume"
python3 - "$work/fp32_resume/checkpoint/train_config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["training"]["precision"] = "bf16"
json.dump(c, open(sys.argv[1], "w"))
PY
out=$($train --resume "$work/fp32_resume" --steps 2 --device cpu 2>&1) || fail "resume a bf16-recorded checkpoint on the CPU: $out"
grep -q "warning: the checkpoint was trained in bf16; this run continues in fp32" <<<"$out" ||
  fail "no warning that the precision changed on resume: $out"
tail -1 "$work/fp32_resume/metrics.jsonl" | grep -q '"precision":"fp32"' || fail "the resumed step does not record fp32"

echo "== the EMA follows the trained weights (diffusers' warmup), not the initialisation"
# The reference: one step with a constant decay of 1 - 1e-6 keeps the EMA at
# the initialisation (to 1e-6 of one step); the same seed gives the same init.
python3 - "$src/tests/apps/tiny_train.json" "$work" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["training"].update(ema_warmup="none", ema_decay=0.999999)
json.dump(c, open(sys.argv[2] + "/init_ema.json", "w"))
c["training"].update(ema_warmup="default", ema_decay=0.9999, learning_rate=1e-2)
json.dump(c, open(sys.argv[2] + "/warm_ema.json", "w"))
PY
$train --config "$work/init_ema.json" --steps 1 --out "$work/init_ema" >/dev/null || fail "train init_ema"
$train --config "$work/warm_ema.json" --steps 6 --out "$work/warm_ema" >/dev/null || fail "train warm_ema"
python3 "$src/tests/apps/ema_distance.py" "$work/warm_ema/checkpoint" "$work/init_ema/checkpoint" ||
  fail "the EMA after 6 steps is not close to the trained weights"
grep -q '"ema_warmup": "default"' "$work/warm_ema/checkpoint/train_config.json" ||
  fail "the checkpoint's train_config.json does not record ema_warmup"

echo "== sample from our checkpoint and from a diffusers folder"
$sample --model "$work/run/checkpoint" --steps 5 --num 3 --batch 2 --out "$work/grid.png" || fail "sample ours"
expect_file "$work/grid.png"
expect_file "$work/grid_images/000002.png"
expect_file "$work/grid.npy"
$sample --model "$src/tests/golden/unet_tiny" --steps 4 --scheduler ddim --num 2 --out "$work/d/g.png" || fail "sample diffusers"
expect_file "$work/d/g.png"
$sample --model "$src/tests/golden/unet_tiny" --print-model | grep -q "45259 parameters" || fail "--print-model"
if [[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "== the default dataset (Fashion-MNIST) with the demo config, one step"
  $train --config "$src/apps/configs/fashion_mnist_small.json" --steps 1 --batch 2 --out "$work/fm" >/dev/null ||
    fail "fashion-mnist demo config"
else
  echo "SKIP: the Fashion-MNIST demo config (no /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz)"
fi

echo "== bad input"
expect_error "cannot open training config" $train --config "$work/nope.json"
echo '{"model": {}, "training": {"lr": 1}}' >"$work/bad.json"
expect_error "unknown keys 'training.lr'" $train --config "$work/bad.json"
echo '{"model": {' >"$work/broken.json"
expect_error "not valid JSON" $train --config "$work/broken.json"
expect_error "does not exist" $sample --model "$work/missing"
expect_error "not a training checkpoint" $train --resume "$work/grid_images"
mkdir -p "$work/badmodel" && cp "$src/tests/golden/unet_tiny/config.json" "$work/badmodel/"
head -c 100 "$src/tests/golden/unet_tiny/diffusion_pytorch_model.safetensors" >"$work/badmodel/diffusion_pytorch_model.safetensors"
expect_error "runs past the end" $sample --model "$work/badmodel" --steps 2 --num 1
expect_error "device: tpu not in" $train --config "$src/tests/apps/tiny_train.json" --device tpu
# --device cuda runs on a GPU or stops with the runtime's reason; never on the CPU.
out=$($sample --model "$src/tests/golden/unet_tiny" --steps 1 --num 1 --device cuda --out "$work/cuda/g.png" 2>&1); rc=$?
if ((rc)); then grep -q "CUDA cannot start: " <<<"$out" || fail "--device cuda failed without the reason: $out"
else grep -q "^device: cuda: " <<<"$out" || fail "--device cuda ran, but not on CUDA: $out"; fi
expect_error "dataset 'cifar10': .*/none: no such file or folder" $train --config "$src/tests/apps/tiny_train.json" --data-kind cifar10 --data "$work/none" --out "$work/failed"
[[ -e $work/failed ]] && fail "a run that failed on its data left a run folder behind"

# A batch that cannot fit: the planned memory and the available, no bad_alloc.
expect_error "training with this model and batch needs [0-9]+ MiB of cpu memory .*: only [0-9]+ MiB are available" \
  $train --config "$src/tests/apps/tiny_train.json" --batch 100000000 --out "$work/oom"
[[ -e $work/oom ]] && fail "a run that did not fit left a run folder behind"
expect_error "inference with this model and batch needs [0-9]+ MiB of cpu memory" \
  $sample --model "$src/tests/golden/unet_tiny" --steps 1 --num 100000000 --batch 100000000 --out "$work/oom.png"

echo "== Ctrl-C and kill -9: resuming in a new process gives bitwise the uninterrupted run"
# A config with no periodic checkpoint (so the one after Ctrl-C is the one the
# signal made) and one checkpointing every step (for kill -9).
python3 - "$src/tests/apps/tiny_train.json" "$work" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["training"]["steps"] = 30
c["logging"].update(checkpoint_every=0, sample_count=2, sample_steps=2)
json.dump(c, open(sys.argv[2] + "/int_nockpt.json", "w"))
c["logging"].update(checkpoint_every=1)
json.dump(c, open(sys.argv[2] + "/int_every.json", "w"))
PY
# checkpoint_step <dir>: the step recorded in its training state.
checkpoint_step() {
  python3 - "$1/training_state.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    print(json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]["step"])
PY
}
# same_run <dir a> <dir b>: the final checkpoints and sample grids are byte-identical.
same_run() {
  local f
  for f in checkpoint/training_state.safetensors checkpoint/unet/diffusion_pytorch_model.safetensors \
    checkpoint/train_config.json samples/step_0000030.png; do
    cmp -s "$1/$f" "$2/$f" || fail "$2/$f differs from the uninterrupted run's"
  done
}
for kind in nockpt every; do
  $train --config "$work/int_$kind.json" --out "$work/straight_$kind" >/dev/null 2>&1 || fail "straight run ($kind)"
done
$train --config "$work/int_nockpt.json" --out "$work/int" >"$work/int.log" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q "^step 5/" "$work/int.log" 2>/dev/null && break; sleep 0.05; done
kill -INT $pid; wait $pid; rc=$?
[[ $rc -eq 130 ]] || fail "interrupted run exited $rc, expected 130"
at=$(sed -n 's/^interrupted at step \([0-9]*\);.*/\1/p' "$work/int.log")
[[ -n $at ]] || fail "no interruption message"
[[ $(checkpoint_step "$work/int/checkpoint") == "$at" ]] ||
  fail "the checkpoint holds step $(checkpoint_step "$work/int/checkpoint"), the signal came at step $at"
$train --resume "$work/int" >/dev/null 2>&1 || fail "resume after Ctrl-C"
same_run "$work/straight_nockpt" "$work/int"
# kill -9 at a random moment: the last complete checkpoint loads and resumes.
$train --config "$work/int_every.json" --out "$work/k9" >"$work/k9.log" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q "^step 3/" "$work/k9.log" 2>/dev/null && break; sleep 0.05; done
sleep "0.$((RANDOM % 10))"
kill -KILL $pid; wait $pid 2>/dev/null
[[ -d $work/k9/checkpoint || -d $work/k9/checkpoint.old ]] || fail "no checkpoint after kill -9"
$train --resume "$work/k9" >"$work/k9_resume.log" 2>&1 || fail "resume after kill -9: $(tail -3 "$work/k9_resume.log")"
same_run "$work/straight_every" "$work/k9"

echo "== a save interrupted between its renames is recovered from checkpoint.old"
# The state a crash between save_checkpoint's two renames leaves: no
# checkpoint/, the previous one in checkpoint.old/, a new one half-written.
cp -r "$work/run" "$work/swap"
mv "$work/swap/checkpoint" "$work/swap/checkpoint.old"
mkdir -p "$work/swap/checkpoint.tmp" && echo partial >"$work/swap/checkpoint.tmp/training_state.safetensors"
out=$($train --resume "$work/swap" --steps 5 2>&1) || fail "resume after an interrupted swap: $out"
grep -q "restored the previous checkpoint from .*checkpoint.old" <<<"$out" || fail "no recovery message: $out"
[[ $(checkpoint_step "$work/swap/checkpoint") == 5 ]] || fail "the recovered run did not reach step 5"
[[ -e $work/swap/checkpoint.old ]] && fail "checkpoint.old left behind after the recovery"
expect_file "$work/swap/loss.png"

echo "== a full disk during a save: a clear error, the previous checkpoint intact"
cp -r "$work/run" "$work/full"
cp "$work/full/checkpoint/training_state.safetensors" "$work/full_state_before"
# RLIMIT_FSIZE of 64 KiB (the tiny model's state is larger); SIGXFSZ ignored,
# so a write past it fails with EFBIG as on a full disk.
err=$( (trap '' XFSZ; ulimit -f 64; $train --resume "$work/full" --steps 6) 2>&1 >/dev/null); rc=$?
[[ $rc -ne 0 ]] || fail "a save past the file size limit exited 0"
grep -Eq "File too large|No space" <<<"$err" || fail "no write error named: $err"
cmp -s "$work/full/checkpoint/training_state.safetensors" "$work/full_state_before" ||
  fail "the previous checkpoint changed after a failed save"
[[ -e $work/full/checkpoint.tmp ]] && fail "a failed save left checkpoint.tmp behind"
$train --resume "$work/full" --steps 6 >/dev/null 2>&1 || fail "resume after a failed save"

echo "== a run that diverges stops, naming the step; the good checkpoint stays"
python3 - "$src/tests/apps/tiny_train.json" "$work" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["training"].update(learning_rate=1e30, warmup_steps=0, steps=40)
c["logging"].update(checkpoint_every=1)
json.dump(c, open(sys.argv[2] + "/diverge.json", "w"))
PY
err=$($train --config "$work/diverge.json" --out "$work/div" 2>&1 >/dev/null); rc=$?
[[ $rc -ne 0 ]] || fail "a diverging run exited 0"
grep -Eq "training diverged at step [0-9]+: .*last good checkpoint is .*checkpoint \(step [0-9]+\)" <<<"$err" ||
  fail "no divergence message naming the step and the good checkpoint: $err"
expect_file "$work/div/checkpoint_nonfinite/training_state.safetensors"
expect_error "check-numerics: the (forward|backward) of '[^']+' \([a-z_0-9]+\) wrote" \
  $train --config "$work/diverge.json" --out "$work/div_numerics" --check-numerics
python3 - "$work/div/checkpoint/training_state.safetensors" <<'PY' || fail "the kept checkpoint is not finite"
import json, struct, sys, array, math
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; header = json.loads(f.read(n)); body = f.read()
for name, t in header.items():
    if name == "__metadata__": continue
    a = array.array("f", body[t["data_offsets"][0]:t["data_offsets"][1]])
    assert all(math.isfinite(x) for x in a), name
PY

if ((failures)); then echo "$failures failure(s)"; exit 1; fi
echo "all app checks passed"
