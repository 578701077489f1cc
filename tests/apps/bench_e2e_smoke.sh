#!/usr/bin/env bash
# ddpm_cuda_bench --e2e on the tiny test config (seconds) at a --precision and
# the given sizes, then its JSON checked by check_e2e_json.py (the rest of the
# arguments). Usage:
#   bench_e2e_smoke.sh <ddpm_cuda_bench[_emulated]> <source dir> <out.json> cpu|cuda \
#     auto|bf16|fp32 "<sizes: --steps N ...>" [--emulated] [--expect-precision fp32|bf16]
set -euo pipefail
bench=$1 src=$2 json=$3 device=$4 precision=$5 sizes=$6
shift 6
cd "$src"  # the config names its dataset relative to the source tree
# shellcheck disable=SC2086  # the sizes are separate flags
"$bench" --e2e --config tests/apps/tiny_train.json --device "$device" --precision "$precision" \
  $sizes --json "$json"
python3 tests/apps/check_e2e_json.py "$json" "$device" "$@"
