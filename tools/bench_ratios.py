#!/usr/bin/env python3
"""Ours against PyTorch, from one run's two JSON files: `ddpm_cuda_bench --e2e
--json` (ours) and `tools/bench_pytorch.py --json` (diffusers' UNet2DModel,
same model, same card, same run). Prints, per PyTorch mode, the ratio
ours / PyTorch for training img/s, sampling img/s per 1000 steps and the
batch-1 step (PyTorch ms / ours ms, so > 1 is faster for all three), taking
our best graph mode of each phase (named beside it). Standard library only.

    python3 tools/bench_ratios.py e2e.json bench_pytorch.json [--markdown]

The batches should match (gpu_check.sh runs both at training batch 128 and
sampling batch 256); a mismatch is printed as a warning, not hidden.
"""
import argparse
import json
import sys


def best(rows, key, lower_is_better=False):
    """(value, graph mode) of the best row with a number under `key`."""
    have = [(r[key], r["graph"]) for r in rows if isinstance(r.get(key), (int, float))]
    if not have:
        return None, None
    return (min if lower_is_better else max)(have)


def ratio(ours, theirs):
    return None if not ours or not theirs else ours / theirs


def fmt(v, digits=2):
    return "-" if v is None else f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ours")
    ap.add_argument("pytorch")
    ap.add_argument("--markdown", action="store_true", help="a markdown table")
    args = ap.parse_args()
    try:
        ours = json.load(open(args.ours))
        torch = json.load(open(args.pytorch))
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"bench_ratios: {e}")

    train, train_mode = best(ours.get("train", {}).get("modes", []), "img_per_s")
    sample, sample_mode = best(ours.get("sample", {}).get("modes", []), "img_per_s_1000_steps")
    b1, b1_mode = best(ours.get("batch1", {}).get("modes", []), "step_ms", lower_is_better=True)
    meta = torch.get("meta", {})
    sizes = meta.get("sizes", {})
    warnings = []
    for what, a, b in (("training batch", ours.get("train", {}).get("batch"),
                        sizes.get("train_batch")),
                       ("sampling batch", ours.get("sample", {}).get("batch"),
                        sizes.get("sample_batch"))):
        if a is not None and b is not None and a != b:
            warnings.append(f"{what}: ours {a}, PyTorch {b}")

    card = meta.get("card")
    if card and card not in ours.get("device", ""):
        warnings.append(f"different devices: ours {ours.get('device')!r}, PyTorch {card!r}")
    head = ["PyTorch mode", "train img/s", "ratio", "sample img/s@1000", "ratio", "b1 ms", "ratio"]
    rows = [["ours", f"{fmt(train, 1)} ({train_mode})", "", f"{fmt(sample, 3)} ({sample_mode})", "",
             f"{fmt(b1, 3)} ({b1_mode})", ""]]
    for r in torch.get("results", []):
        t = r.get("train", {}).get("img_s")
        s = r.get("sample", {}).get("img_s_per_1000_steps")
        m = r.get("batch1", {}).get("step_ms")
        rows.append([r.get("mode", "?"), fmt(t, 1), fmt(ratio(train, t)), fmt(s, 3),
                     fmt(ratio(sample, s)), fmt(m, 3), fmt(ratio(m, b1))])
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
        for row in [head] + rows:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(row, widths))))
    print(f"ratio = ours / PyTorch (b1: PyTorch ms / ours ms): > 1 means ours is faster. "
          f"Ours: {ours.get('device', '?')}; PyTorch: {meta.get('card', '?')}")
    for w in warnings:
        print(f"WARNING: {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
