#!/usr/bin/env python3
"""Checks that a checkpoint's EMA follows its trained weights: reads the flat
"params" and "ema" tensors of <run>/checkpoint/training_state.safetensors and
the "ema" of a reference checkpoint that still holds the initialisation, and
exits non-zero unless |ema - params| < |ema - init| / 4 (Euclidean).
Standard library only (CI has no numpy). Usage:
  ema_distance.py <checkpoint dir> <init checkpoint dir>"""
import json
import math
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        b, e = t["data_offsets"]
        out[name] = struct.unpack(f"<{(e - b) // 4}f", data[b:e])
    return out


def distance(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


run = tensors(sys.argv[1] + "/training_state.safetensors")
init = tensors(sys.argv[2] + "/training_state.safetensors")["ema"]
to_params, to_init = distance(run["ema"], run["params"]), distance(run["ema"], init)
print(f"|ema - params| = {to_params:.4g}, |ema - init| = {to_init:.4g}")
sys.exit(0 if to_params < to_init / 4 else 1)
