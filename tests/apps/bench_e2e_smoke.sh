#!/usr/bin/env bash
# ddpm_cuda_bench --e2e on the tiny test config (seconds), then its JSON
# checked by check_e2e_json.py. Usage:
#   bench_e2e_smoke.sh <ddpm_cuda_bench[_emulated]> <source dir> <out.json> cpu|cuda [--emulated]
set -euo pipefail
bench=$1 src=$2 json=$3 device=$4
shift 4
cd "$src"  # the config names its dataset relative to the source tree
"$bench" --e2e --config tests/apps/tiny_train.json --device "$device" --steps 4 --train-steps 2 \
  --warmup 1 --b1-steps 3 --json "$json"
python3 tests/apps/check_e2e_json.py "$json" "$device" "$@"
