#!/usr/bin/env bash
# Downloads the wheels that tools/bench_pytorch.py needs on the GPU machine, which
# has Python 3.12 and torch but no diffusers and no network, into .whl/ (keep that
# folder out of git).  Run it here, on a machine that reaches PyPI:
#
#     bash tools/fetch_wheels.sh
#
# and on the GPU machine, with .whl carried there:
#
#     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#         --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#     python3 tools/bench_pytorch.py --json out/bench.json
#
# diffusers 0.42.1 Requires-Dist: importlib_metadata, filelock,
# huggingface-hub>=1.32.0,<3.0, numpy, regex!=2019.12.17, requests,
# safetensors>=0.8.0, Pillow.  The GPU image has filelock, huggingface-hub (1.33.0),
# numpy, regex, requests, safetensors (0.8.0), pillow and zipp; missing are
# importlib_metadata and, through it, lazy-importer (importlib_metadata 10.2.0
# needs zipp>=3.20 and lazy-importer>=0.1).  All three are pure-python wheels.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=(
    diffusers==0.42.1
    importlib_metadata==10.2.0
    lazy-importer==0.1.0
)

mkdir -p .whl
for wheel in "${WHEELS[@]}"; do
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 \
        -d .whl "$wheel"
done
echo "wheels in $(pwd)/.whl:"
ls -l .whl
