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
expect_error "dataset" $train --config "$src/tests/apps/tiny_train.json" --data-kind cifar10 --data "$work/none" --out "$work/failed"
[[ -e $work/failed ]] && fail "a run that failed on its data left a run folder behind"

echo "== Ctrl-C saves a checkpoint"
$train --config "$src/tests/apps/tiny_train.json" --steps 100000 --out "$work/int" >"$work/int.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "^step 3/" "$work/int.log" 2>/dev/null && break; sleep 0.2; done
kill -INT $pid; wait $pid; rc=$?
[[ $rc -eq 130 ]] || fail "interrupted run exited $rc, expected 130"
grep -q "interrupted at step" "$work/int.log" || fail "no interruption message"
expect_file "$work/int/checkpoint/training_state.safetensors"

if ((failures)); then echo "$failures failure(s)"; exit 1; fi
echo "all app checks passed"
