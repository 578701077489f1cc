#!/usr/bin/env bash
# Installs NVIDIA's cuobjdump and nvdisasm, which tools/kernel_report.sh (the ctest
# static.kernel_report) reads the sm_90 machine code with, into tools/.cuda-binutils
# (git-ignored). The toolkit here (nvcc only) lacks them and Debian has no package;
# NVIDIA publishes them on PyPI as nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm. No
# CUDA 13.0 wheel exists there (13.2.51 is the oldest); a newer cuobjdump reads the
# cubins of an older nvcc. Idempotent; ~6 MB.
set -euo pipefail
VERSION=13.2.86
dest=$(cd "$(dirname "$0")" && pwd)/.cuda-binutils
bin=$dest/nvidia/cu13/bin

if [[ -x $bin/cuobjdump && -x $bin/nvdisasm ]] &&
  "$bin/cuobjdump" --version 2>/dev/null | grep -q "V$VERSION"; then
  echo "install_cuda_binutils: cuobjdump and nvdisasm $VERSION present in $bin"
  exit 0
fi

# pip: the python3 on PATH, else Debian's (python3-pip). --target installs into our
# folder only (no system site-packages touched, so PEP 668 does not apply).
pip=()
for python in python3 /usr/bin/python3; do
  if "$python" -m pip --version >/dev/null 2>&1; then
    pip=("$python" -m pip)
    break
  fi
done
if ((${#pip[@]} == 0)); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  echo "install_cuda_binutils: installing python3-pip"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-pip
  pip=(/usr/bin/python3 -m pip)
fi

rm -rf "$dest"
"${pip[@]}" install --quiet --disable-pip-version-check --root-user-action=ignore \
  --no-deps --no-compile --only-binary=:all: --target "$dest" \
  "nvidia-cuda-cuobjdump==$VERSION" "nvidia-cuda-nvdisasm==$VERSION"
"$bin/cuobjdump" --version | tail -n 1
echo "install_cuda_binutils: cuobjdump and nvdisasm $VERSION installed in $bin"
