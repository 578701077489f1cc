#!/usr/bin/env bash
# The CPU backend against PyTorch on the CPU, back to back on one machine with
# the same threads (issue 12's yardstick): the demo config's training step and
# sampling step, and the CIFAR-10 model's sampling step (its forward plus a
# scheduler step) at batch 16. Prints the load average beside each figure.
#
#   tools/bench_cpu_vs_pytorch.sh [build dir] [threads]
#
# Needs tools/.venv with torch and diffusers (see tools/bench_pytorch_cpu.py).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build} threads=${2:-2}
py=tools/.venv/bin/python
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export DDPM_CPU_THREADS=$threads OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1
load() { cut -d' ' -f1 /proc/loadavg; }
ours() {  # <name> <config> <flags...>
  local name=$1 config=$2; shift 2
  echo "== ours: $name (load $(load))"
  "$build/apps/ddpm_cuda_bench" --e2e --device cpu --config "$config" --json "$out/$name.json" "$@" |
    tail -n 12
}
torch() {  # <name> <config> <flags...>
  local name=$1 config=$2; shift 2
  echo "== PyTorch: $name (load $(load))"
  "$py" tools/bench_pytorch_cpu.py --config "$config" --threads "$threads" --scheduler ddpm \
    --json "$out/torch_$name.json" "$@"
}
demo=apps/configs/fashion_mnist_small.json cifar=apps/configs/ddpm_cifar10.json
ours demo "$demo" --phases train,sample --train-steps 6 --warmup 2 --steps 6 --sample-batch 16
torch demo "$demo" --phases train,sample --sample-batch 16
ours cifar "$cifar" --phases sample --steps 3 --warmup 1 --sample-batch 16
torch cifar "$cifar" --phases sample --sample-batch 16 --warmup 1 --window 2 --repeats 3
"$py" - "$out" <<'PY'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
print("\nours / PyTorch (above 1: ours is faster)")
for name in ("demo", "cifar"):
    o = json.loads((d / f"{name}.json").read_text())
    t = json.loads((d / f"torch_{name}.json").read_text())["results"]
    if "train" in t and o.get("train"):
        a, b = o["train"]["modes"][0]["img_per_s"], t["train"]["img_s"]
        print(f"  {name} training step, batch {t['train']['batch']}: {a:.1f} vs {b:.1f} img/s = {a / b:.2f}x")
    if "sample" in t and o.get("sample"):
        a, b = o["sample"]["modes"][0]["img_steps_per_s"], t["sample"]["img_steps_s"]
        print(f"  {name} sampling step, batch {t['sample']['batch']}: {a:.1f} vs {b:.1f} img-steps/s = {a / b:.2f}x")
PY
