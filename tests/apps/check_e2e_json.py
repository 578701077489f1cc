#!/usr/bin/env python3
"""Checks the JSON of `ddpm_cuda_bench --e2e` (a CI smoke run on a tiny config):
every phase ran in every mode of its device with positive, finite numbers,
the graph modes agreed bitwise, and, under the CUDA emulator (exact counters),
the launch counts add up:
  - sampling, per batch of S steps: 2 prologue kernels (x_T, the first
    timestep; in bf16 a third, x_T's bf16 copy that the model reads), then
    per step the UNet forward (the kernel nodes of a captured
    forward, counted independently) plus the noise update and the step
    advance; launch calls: every kernel in mode off, one graph launch per step
    (plus the prologue) in mode step, one per batch in mode loop;
  - training: the same kernels with graph on and off, one launch call per step
    with graph on.
The result's "precision" must be fp32 or bf16 (fp32 on the CPU), and the one
--expect-precision names if given.
Usage: check_e2e_json.py <result.json> cuda|cpu [--emulated] [--expect-precision fp32|bf16]"""
import argparse
import json
import math
import sys

ap = argparse.ArgumentParser()
ap.add_argument("path")
ap.add_argument("device", choices=["cuda", "cpu"])
ap.add_argument("--emulated", action="store_true")
ap.add_argument("--expect-precision", choices=["fp32", "bf16"])
args = ap.parse_args()
path, device, emulated = args.path, args.device, args.emulated
r = json.load(open(path))
errors = []


def check(cond, what):
    if not cond:
        errors.append(what)


def positive(row, key, where):
    v = row.get(key)
    check(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f"{where}: {key} = {v!r}")


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


precision = r.get("precision")
check(precision in ("fp32", "bf16"), f"precision = {precision!r}")
check(device == "cuda" or precision == "fp32", f"precision {precision!r} on the CPU")
check(args.expect_precision in (None, precision),
      f"precision {precision!r}, expected {args.expect_precision!r}")

expected = {"train": ["off", "on"], "sample": ["off", "step", "loop"], "batch1": ["off", "step", "loop"]}
if device == "cpu":
    expected = {k: ["host"] for k in expected}
for phase, modes in expected.items():
    if phase not in r:
        errors.append(f"no {phase} phase")
        continue
    rows = {m["graph"]: m for m in r[phase]["modes"]}
    check(list(rows) == modes, f"{phase}: modes {list(rows)}, expected {modes}")
    for name, m in rows.items():
        positive(m, "img_per_s" if phase == "train" else "step_ms", f"{phase} {name}")
    if len(modes) > 1:
        check(r[phase].get("bitwise_equal") is True, f"{phase}: the graph modes differ")

if device == "cuda" and emulated and not errors:
    forward = r.get("unet_forward_kernel_nodes")
    check(isinstance(forward, int) and forward > 0, f"unet_forward_kernel_nodes = {forward!r}")
    for phase in ("sample", "batch1"):
        steps = r[phase]["steps"]
        rows = {m["graph"]: m for m in r[phase]["modes"]}
        prologue = 3 if precision == "bf16" else 2
        kernels = (prologue + steps * (forward + 2)) / steps
        for name, m in rows.items():
            check(close(m["kernels_per_step"], kernels),
                  f"{phase} {name}: {m['kernels_per_step']} kernels per step, expected {kernels}")
        calls = {"off": kernels, "step": (prologue + steps) / steps, "loop": 1 / steps}
        for name, want in calls.items():
            check(close(rows[name]["launch_calls_per_step"], want),
                  f"{phase} {name}: {rows[name]['launch_calls_per_step']} launch calls per step, "
                  f"expected {want}")
    t = {m["graph"]: m for m in r["train"]["modes"]}
    check(close(t["on"]["kernels_per_step"], t["off"]["kernels_per_step"]),
          "training: graph on and off run different kernels")
    check(close(t["on"]["launch_calls_per_step"], 1.0),
          f"training graph on: {t['on']['launch_calls_per_step']} launch calls per step")

for e in errors:
    print(f"check_e2e_json: {e}", file=sys.stderr)
print(f"check_e2e_json: {path}: {'ok' if not errors else f'{len(errors)} problem(s)'}")
sys.exit(1 if errors else 0)
