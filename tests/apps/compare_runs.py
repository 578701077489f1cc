#!/usr/bin/env python3
"""Compares what two app runs wrote, for the emulated-apps test
(test_emulated_apps.sh) and tools/gpu_check.sh. Standard library only (CI has
no numpy). Exits 1 with the worst difference when the files differ by more
than allowed, 2 on unreadable input.

  compare_runs.py npy A.npy B.npy [--max-abs T] [--mean-abs M]
      the sampled images (float32 .npy as ddpm_cuda_sample writes them);
      bitwise unless --max-abs (and optionally --mean-abs: the mean of
      |a - b| over every value) is given.
  compare_runs.py metrics A/metrics.jsonl B/metrics.jsonl [--rel T]
      step, lr and ema_decay bitwise (host arithmetic on both); loss and
      grad_norm bitwise unless --rel bounds |a - b| / max(|a|, |b|). Timing
      fields are ignored.
  compare_runs.py tensors A.safetensors B.safetensors [--max-abs T]
      every F32 tensor of both files (same names), bitwise unless --max-abs.
"""
import argparse
import json
import struct
import sys


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    major = data[6]
    if major == 1:
        (n,), start = struct.unpack("<H", data[8:10]), 10
    else:
        (n,), start = struct.unpack("<I", data[8:12]), 12
    header = data[start:start + n].decode("latin1")
    if "'<f4'" not in header or "'fortran_order': False" not in header:
        raise ValueError(f"{path}: expected little-endian float32 in C order, got {header}")
    body = data[start + n:]
    return header.split("'shape':")[1].split(")")[0] + ")", struct.unpack(f"<{len(body) // 4}f", body)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        out[name] = struct.unpack(f"<{(e - b) // 4}f", data[b:e])
    return out


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def worst(a, b):
    """(max |a - b|, index) over two equal-length sequences."""
    best, where = 0.0, -1
    for i, (x, y) in enumerate(zip(a, b)):
        d = abs(x - y)
        if d > best or d != d:
            best, where = d, i
    return best, where


def compare_values(what, a, b, max_abs, mean_abs=None):
    if len(a) != len(b):
        return [f"{what}: {len(a)} values against {len(b)}"]
    if max_abs is None:
        if a == b:
            return []
        d, i = worst(a, b)
        return [f"{what}: not bitwise equal (max |a - b| = {d:.3g} at {i}: {a[i]!r} vs {b[i]!r})"]
    errors = []
    d, i = worst(a, b)
    if d <= max_abs:
        print(f"{what}: max |a - b| = {d:.3g} <= {max_abs:g}")
    else:
        errors.append(f"{what}: max |a - b| = {d:.3g} at {i} ({a[i]!r} vs {b[i]!r}) > {max_abs:g}")
    if mean_abs is not None:
        m = sum(abs(x - y) for x, y in zip(a, b)) / max(1, len(a))
        if m <= mean_abs:
            print(f"{what}: mean |a - b| = {m:.3g} <= {mean_abs:g}")
        else:
            errors.append(f"{what}: mean |a - b| = {m:.3g} > {mean_abs:g}")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["npy", "metrics", "tensors"])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--max-abs", type=float, default=None)
    ap.add_argument("--mean-abs", type=float, default=None)
    ap.add_argument("--rel", type=float, default=None)
    args = ap.parse_args()
    if args.mean_abs is not None and (args.kind != "npy" or args.max_abs is None):
        ap.error("--mean-abs goes with npy and --max-abs")
    try:
        if args.kind == "npy":
            (sa, a), (sb, b) = read_npy(args.a), read_npy(args.b)
            errors = [f"shapes {sa} and {sb}"] if sa != sb else compare_values(
                "images", a, b, args.max_abs, args.mean_abs)
        elif args.kind == "tensors":
            ta, tb = read_safetensors(args.a), read_safetensors(args.b)
            errors = [] if sorted(ta) == sorted(tb) else [f"tensor names {sorted(ta)} vs {sorted(tb)}"]
            for name in sorted(set(ta) & set(tb)):
                errors += compare_values(name, ta[name], tb[name], args.max_abs)
        else:
            ma, mb = read_metrics(args.a), read_metrics(args.b)
            errors = [] if len(ma) == len(mb) else [f"{len(ma)} metric lines against {len(mb)}"]
            for la, lb in zip(ma, mb):
                for key in ("step", "lr", "ema_decay"):
                    if la.get(key) != lb.get(key):
                        errors.append(f"step {la.get('step')}: {key} {la.get(key)!r} vs {lb.get(key)!r}")
                for key in ("loss", "grad_norm"):
                    x, y = float(la[key]), float(lb[key])
                    if args.rel is None:
                        if x != y:
                            errors.append(f"step {la['step']}: {key} {x!r} vs {y!r} (not bitwise)")
                    elif not abs(x - y) <= args.rel * max(abs(x), abs(y)):
                        errors.append(f"step {la['step']}: {key} {x!r} vs {y!r}, relative "
                                      f"{abs(x - y) / max(abs(x), abs(y)):.3g} > {args.rel:g}")
    except (OSError, ValueError, KeyError, struct.error) as e:
        print(f"compare_runs: {e}", file=sys.stderr)
        return 2
    for e in errors:
        print(f"compare_runs {args.kind}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
