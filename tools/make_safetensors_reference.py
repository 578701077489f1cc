#!/usr/bin/env python3
"""Writes tests/checkpoint/data/reference_small.safetensors with the Python
`safetensors` library, the format's reference implementation. The C++ tests
read it back (our reader on their bytes) and check that our writer produces
the same bytes for the same tensors.

Run once, from the repository root, in a throwaway virtual environment:

    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install safetensors numpy
    /tmp/stvenv/bin/python tools/make_safetensors_reference.py

(The committed file was written with safetensors 0.8.0 and numpy 2.4.6.)

Tensors are given as raw bit patterns, so that bf16 needs no torch and the
values include the awkward ones: -0, subnormals, the largest finite values,
infinities and a NaN. The expected values are repeated in
tests/checkpoint/test_safetensors_reference.cpp; change both together.

The library writes "__metadata__" keys in hash-map order, which changes from
run to run, while our writer sorts them; the script serializes until the
library happens to emit them sorted, so that the file is comparable byte for
byte.
"""

import json
import pathlib
import struct
import sys

import numpy as np
from safetensors import TensorSpec, serialize

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/checkpoint/data/reference_small.safetensors"

# name -> (safetensors dtype name for TensorSpec, numpy dtype of the bits, shape, bits)
TENSORS = {
    "conv_in.weight": ("float32", "<u4", [2, 3],
                       [0x3F800000, 0x80000000, 0x40490FDB, 0xFF800000, 0x00000001, 0x7FC00001]),
    "time_embedding.linear_1.bias": ("float16", "<u2", [4], [0x3C00, 0x0001, 0x7BFF, 0xFC00]),
    "mid_block.attentions.0.to_q.weight": ("bfloat16", "<u2", [2, 2],
                                           [0x3F80, 0xC040, 0x0001, 0x7F7F]),
    "betas": ("float64", "<u8", [3],
              [0x3FB999999999999A, 0xFE4E7E2C7B3D7A2F, 0x0000000000000001]),
    "step": ("float64", "<u8", [], [0x4004000000000000]),
    "empty": ("float32", "<u4", [0, 3], []),
    "odd \"name\"\t\u00fc\x01": ("float16", "<u2", [1], [0x8000]),
}
METADATA = {"format": "pt", "note": "written by tools/make_safetensors_reference.py"}


def main() -> None:
    arrays = []  # keep the buffers alive while serialize reads them
    specs = {}
    for name, (dtype, bits_dtype, shape, bits) in TENSORS.items():
        a = np.array(bits, dtype=bits_dtype)
        arrays.append(a)
        specs[name] = TensorSpec(dtype=dtype, shape=shape, data_ptr=a.ctypes.data, data_len=a.nbytes)

    for _ in range(1000):
        out = serialize(specs, metadata=METADATA)
        n = struct.unpack("<Q", out[:8])[0]
        header = json.loads(out[8 : 8 + n], object_pairs_hook=lambda pairs: pairs)
        keys = [k for k, _ in dict(header)["__metadata__"]]
        if keys == sorted(keys):
            break
    else:
        sys.exit("the library never wrote the metadata keys in sorted order")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(out)
    print(f"wrote {OUT} ({len(out)} bytes); header ({n} bytes):")
    print(out[8 : 8 + n].decode())


if __name__ == "__main__":
    main()
