#!/usr/bin/env bash
# Static report of the sm_90 kernels (registers, spills, shared memory, occupancy,
# HMMA/LDSM/LDGSTS counts) and its checks: tools/kernel_report.py does the work, this
# finds cuobjdump and the defaults. Exit status: 0 pass, 1 a check failed, 2 no report.
#
#   tools/kernel_report.sh                       # build/kernels/libddpm_kernels.a ->
#                                                # build/kernel_report.md
#   tools/kernel_report.sh [--output FILE] [--rule PATTERN=OPS] [--hot PATTERN] INPUT...
#
# cuobjdump is looked for in $CUOBJDUMP, PATH, /usr/local/cuda/bin and
# tools/.cuda-binutils (where tools/install_cuda_binutils.sh puts NVIDIA's PyPI wheel).
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$tools")

cuobjdump=
for candidate in "${CUOBJDUMP:-}" "$(command -v cuobjdump || true)" /usr/local/cuda/bin/cuobjdump \
  "$tools/.cuda-binutils/nvidia/cu13/bin/cuobjdump"; do
  if [[ -n $candidate && -x $candidate ]]; then
    cuobjdump=$candidate
    break
  fi
done
if [[ -z $cuobjdump ]]; then
  echo "kernel_report: error: cuobjdump not found (looked in \$CUOBJDUMP, PATH," \
    "/usr/local/cuda/bin, $tools/.cuda-binutils)." >&2
  echo "kernel_report: install it with: bash tools/install_cuda_binutils.sh" \
    "(tools/setup.sh runs it; needs PyPI)" >&2
  exit 2
fi

args=("$@")
# No .a/.o named: the library of build/, its report into build/kernel_report.md.
if ! printf '%s\n' "$@" | grep -Eq '\.(a|o)$'; then
  args+=("$root/build/kernels/libddpm_kernels.a")
  printf '%s\n' "$@" | grep -Eq '^--output' || args+=(--output "$root/build/kernel_report.md")
fi
exec "${PYTHON:-python3}" "$tools/kernel_report.py" --cuobjdump "$cuobjdump" "${args[@]}"
