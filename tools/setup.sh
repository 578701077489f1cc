#!/usr/bin/env bash
# Installs the build and runtime dependencies from Debian 12 packages. Idempotent.
# The CUDA toolkit is not installed here: where nvcc exists the build uses it,
# elsewhere the CPU backend is built alone.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev nlohmann-json3-dev libopenblas-dev libcli11-dev
  zlib1g-dev libpng-dev
  clang libclang-rt-dev  # tests/fuzz: clang++ and its libFuzzer and sanitizer runtimes
  dataset-fashion-mnist
  python3
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# cuobjdump/nvdisasm for the static kernel report (ctest static.kernel_report), from
# PyPI. Not fatal here: without them that test fails and says how to install them.
bash "$(dirname "$0")/install_cuda_binutils.sh" ||
  echo "setup: WARNING: cuobjdump not installed; static.kernel_report will fail" >&2
