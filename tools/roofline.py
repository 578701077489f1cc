#!/usr/bin/env python3
"""Roofline floors for a diffusers UNet2DModel: FLOPs, bytes, parameters, floor times.

Walks the block structure that diffusers' UNet2DModel builds from a config.json
(conv_in, time embedding MLP, ResnetBlock2D, Attention, Downsample2D, Upsample2D,
mid block, conv_norm_out, conv_out) and counts, per image:
  - multiply-accumulates (MAC) of every convolution, linear layer and attention
    matmul (FLOP = 2 MAC; GroupNorm, SiLU, softmax and adds are not counted:
    they are under 1% of the arithmetic and belong to the bytes side);
  - parameters (must equal sum(p.numel() for p in UNet2DModel(**config).parameters()));
  - the minimum bytes moved, in two models (see BYTES_MODEL below);
and turns them into floor times for a card's peak compute and bandwidth, for one
training step and for 1000-step sampling.

Standard library only.  `--measure` measures the card with torch (bf16 GEMM
8192^3 and a device copy) when torch with CUDA is importable.

    python3 tools/roofline.py                      # built-in CIFAR-10 config, H100 figures
    python3 tools/roofline.py --preset fashion-mnist
    python3 tools/roofline.py --config path/to/config.json --bandwidth-gbs 4800
"""

import argparse
import json
import sys
from dataclasses import dataclass

# google/ddpm-cifar10-32's UNet2DModel config (the fields that shape the network).
CIFAR10_CONFIG = {
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "act_fn": "silu",
    "attention_head_dim": None,
    "time_embedding_type": "positional",
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "downsample_padding": 0,
    "mid_block_scale_factor": 1,
    "center_input_sample": False,
}

# The small Fashion-MNIST model of the same family: ch 64, mult (1, 2, 2), 28x28,
# one channel, attention at 14x14 (the second level).
FASHION_MNIST_CONFIG = dict(
    CIFAR10_CONFIG,
    sample_size=28,
    in_channels=1,
    out_channels=1,
    block_out_channels=[64, 128, 128],
    down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
)

PRESETS = {"cifar10": CIFAR10_CONFIG, "fashion-mnist": FASHION_MNIST_CONFIG}

# NVIDIA H100 SXM dense peaks (TFLOP/s) with the activation size each implies.
H100_PEAKS = [("bf16", 989.0, 2), ("tf32", 495.0, 4), ("fp32", 67.0, 4)]
H100_BANDWIDTH_GBS = 3350.0

BYTES_MODEL = """\
Bytes model (a floor, not a prediction): every op reads its input activations once
and writes its output once; weights are read once per op per batch (so per image
they cost weights / batch).
  unfused: each op is its own kernel: GroupNorm, SiLU, the time-embedding add,
    residual adds, concat, nearest upsample, the attention score matrix, softmax
    and P.V all go through memory.
  fused: GroupNorm+SiLU in the prologue of the conv/linear that consumes them,
    time-embedding add and residual add in the producing conv's epilogue (the add
    reads only the residual), concat and nearest upsample as the consumer's
    address map, q/k/v as one GEMM reading x once, flash attention (reads q, k,
    v, writes o; the score matrix never leaves the chip).
Training step = forward + backward, backward ~2x the forward activation traffic
(it reads the saved input and the incoming gradient, writes the outgoing one, and
the weight gradient re-reads both); weights read twice and the gradient written
once per batch; optimizer per parameter per step in fp32: unfused 13 accesses
(grad norm, clip scale, AdamW, EMA as separate kernels), fused 10 (norm, then one
AdamW+EMA kernel); q_sample and the MSE loss on fp32 images.
Sampling step = forward + the noise update (reads x_t, eps, z, writes x_t-1 in fp32;
fused draws z in-kernel: 3 tensors).  Dropout is not counted."""


@dataclass
class Op:
    """One op of the forward pass, per image."""
    name: str
    kind: str        # conv, linear, attn_matmul, norm, act, add, concat, upsample, softmax
    res: str         # resolution label, "32x32"; "-" for per-image vectors (time embedding)
    macs: int
    params: int
    unfused: int     # activation elements read + written, one kernel per op
    fused: int       # activation elements read + written in the fused model


class ConfigError(ValueError):
    pass


class UNetCounter:
    """Walks UNet2DModel's structure for one config and records Ops."""

    def __init__(self, config):
        self.cfg = config
        self.ops = []
        g = config.get
        self.boc = list(g("block_out_channels", [224, 448, 672, 896]))
        self.groups = g("norm_num_groups", 32)
        self.temb_dim = g("time_embedding_dim") or self.boc[0] * 4
        self.head_dim = g("attention_head_dim", 8)
        self.shift = g("resnet_time_scale_shift", "default")
        if self.shift not in ("default", "scale_shift"):
            raise ConfigError(f"resnet_time_scale_shift '{self.shift}' is not supported "
                              "(expected default or scale_shift)")
        for key, allowed in (("downsample_type", "conv"), ("upsample_type", "conv")):
            if g(key, "conv") != allowed:
                raise ConfigError(f"{key} '{g(key)}' is not supported (expected {allowed})")
        size = g("sample_size", 32)
        self.h, self.w = (size, size) if isinstance(size, int) else tuple(size)

    # -- op recorders ------------------------------------------------------
    def res(self, h, w):
        return f"{h}x{w}"

    def add(self, *args):
        self.ops.append(Op(*args))

    def conv(self, name, cin, cout, k, h_out, w_out, n_in, fused_in=None):
        """k x k conv producing (cout, h_out, w_out); n_in input elements."""
        n_out = cout * h_out * w_out
        self.add(name, "conv", self.res(h_out, w_out), n_out * cin * k * k,
                 cout * cin * k * k + cout, n_in + n_out,
                 (n_in if fused_in is None else fused_in) + n_out)

    def norm_act(self, name, c, h, w, act=True):
        n = c * h * w
        self.add(name + ".norm", "norm", self.res(h, w), 0, 2 * c, 2 * n, 0)
        if act:
            self.add(name + ".act", "act", self.res(h, w), 0, 0, 2 * n, 0)

    def linear(self, name, fin, fout, tokens, res, unfused, fused):
        self.add(name, "linear", res, tokens * fin * fout, fin * fout + fout, unfused, fused)

    # -- blocks ------------------------------------------------------------
    def resnet(self, name, cin, cout, h, w, skip_c=0):
        """ResnetBlock2D on cat(x (cin - skip_c), skip (skip_c)) -> cout."""
        n_in, n_out = cin * h * w, cout * h * w
        res = self.res(h, w)
        if skip_c:
            self.add(name + ".concat", "concat", res, 0, 0, 2 * n_in, 0)
        self.norm_act(name + ".norm1", cin, h, w)
        self.conv(name + ".conv1", cin, cout, 3, h, w, n_in)
        proj = 2 * cout if self.shift == "scale_shift" else cout
        self.linear(name + ".time_emb_proj", self.temb_dim, proj, 1, "-", 0, 0)
        self.add(name + ".temb_add", "add", res, 0, 0, 2 * n_out, 0)
        self.norm_act(name + ".norm2", cout, h, w)
        self.conv(name + ".conv2", cout, cout, 3, h, w, n_out)
        if cin != cout:
            self.conv(name + ".conv_shortcut", cin, cout, 1, h, w, n_in)
            residual = n_out
        else:
            residual = n_in
        self.add(name + ".residual_add", "add", res, 0, 0, residual + 2 * n_out, residual)

    def attention(self, name, c, h, w, groups):
        n_tok = h * w
        head_dim = self.head_dim if self.head_dim is not None else c
        heads = c // head_dim
        inner = heads * head_dim
        if inner == 0:
            raise ConfigError(f"{name}: attention_head_dim {head_dim} exceeds {c} channels")
        res = self.res(h, w)
        nx, nq = c * n_tok, inner * n_tok
        if groups is not None:
            self.add(name + ".group_norm", "norm", res, 0, 2 * c, 2 * nx, 0)
        # Unfused: each projection reads x; fused: one GEMM reads x once, writes q, k, v.
        self.linear(name + ".to_q", c, inner, n_tok, res, nx + nq, nx + nq)
        self.linear(name + ".to_k", c, inner, n_tok, res, nx + nq, nq)
        self.linear(name + ".to_v", c, inner, n_tok, res, nx + nq, nq)
        scores = heads * n_tok * n_tok
        # Flash attention reads q, k, v and writes o; assign all of it to the QK op.
        self.add(name + ".qk", "attn_matmul", res, n_tok * n_tok * inner, 0,
                 2 * nq + scores, 3 * nq + nq)
        self.add(name + ".softmax", "softmax", res, 0, 0, 2 * scores, 0)
        self.add(name + ".pv", "attn_matmul", res, n_tok * n_tok * inner, 0,
                 scores + 2 * nq, 0)
        self.linear(name + ".to_out.0", inner, c, n_tok, res, nq + nx, nq + nx)
        self.add(name + ".residual_add", "add", res, 0, 0, 3 * nx, nx)

    def downsample(self, name, c, h, w):
        pad = self.cfg.get("downsample_padding", 1)
        # padding 0 means diffusers' asymmetric (0, 1, 0, 1) pad, else symmetric.
        h_out = (h + (1 if pad == 0 else 2 * pad) - 3) // 2 + 1
        w_out = (w + (1 if pad == 0 else 2 * pad) - 3) // 2 + 1
        self.conv(name + ".conv", c, c, 3, h_out, w_out, c * h * w)
        return h_out, w_out

    def upsample(self, name, c, h, w):
        n = c * h * w
        self.add(name + ".interpolate", "upsample", self.res(2 * h, 2 * w), 0, 0, n + 4 * n, 0)
        self.conv(name + ".conv", c, c, 3, 2 * h, 2 * w, 4 * n, fused_in=n)
        return 2 * h, 2 * w

    # -- the whole model ---------------------------------------------------
    def walk(self):
        boc, g = self.boc, self.cfg.get
        down_types = list(g("down_block_types", ["DownBlock2D", "AttnDownBlock2D",
                                                 "AttnDownBlock2D", "AttnDownBlock2D"]))
        up_types = list(g("up_block_types", ["AttnUpBlock2D", "AttnUpBlock2D",
                                             "AttnUpBlock2D", "UpBlock2D"]))
        if not (len(down_types) == len(up_types) == len(boc)):
            raise ConfigError("down_block_types, up_block_types and block_out_channels "
                              f"must have the same length ({len(down_types)}, "
                              f"{len(up_types)}, {len(boc)})")
        layers = g("layers_per_block", 2)
        cin, cout = g("in_channels", 3), g("out_channels", 3)
        h, w = self.h, self.w

        self.conv("conv_in", cin, boc[0], 3, h, w, cin * h * w)
        self.time_embedding()

        skips = [(boc[0], h, w)]
        c = boc[0]
        for i, btype in enumerate(down_types):
            btype = btype[7:] if btype.startswith("UNetRes") else btype
            if btype not in ("DownBlock2D", "AttnDownBlock2D"):
                raise ConfigError(f"down block type '{btype}' is not supported "
                                  "(expected DownBlock2D or AttnDownBlock2D)")
            out = boc[i]
            for j in range(layers):
                self.resnet(f"down_blocks.{i}.resnets.{j}", c, out, h, w)
                c = out
                if btype == "AttnDownBlock2D":
                    self.attention(f"down_blocks.{i}.attentions.{j}", c, h, w, self.groups)
                skips.append((c, h, w))
            if i < len(boc) - 1:
                h, w = self.downsample(f"down_blocks.{i}.downsamplers.0", c, h, w)
                skips.append((c, h, w))

        mid = g("mid_block_type", "UNetMidBlock2D")
        if mid is not None:
            if mid != "UNetMidBlock2D":
                raise ConfigError(f"mid_block_type '{mid}' is not supported "
                                  "(expected UNetMidBlock2D or null)")
            self.resnet("mid_block.resnets.0", c, c, h, w)
            if g("add_attention", True):
                groups = g("attn_norm_num_groups")
                if groups is None and self.shift == "default":
                    groups = self.groups
                self.attention("mid_block.attentions.0", c, h, w, groups)
            self.resnet("mid_block.resnets.1", c, c, h, w)

        rev = list(reversed(boc))
        for i, btype in enumerate(up_types):
            btype = btype[7:] if btype.startswith("UNetRes") else btype
            if btype not in ("UpBlock2D", "AttnUpBlock2D"):
                raise ConfigError(f"up block type '{btype}' is not supported "
                                  "(expected UpBlock2D or AttnUpBlock2D)")
            out = rev[i]
            for j in range(layers + 1):
                skip_c, sh, sw = skips.pop()
                if (sh, sw) != (h, w):
                    raise ConfigError(f"up_blocks.{i}: skip is {sh}x{sw} but the path is "
                                      f"{h}x{w}; sample_size must divide by "
                                      f"2^{len(boc) - 1}")
                self.resnet(f"up_blocks.{i}.resnets.{j}", c + skip_c, out, h, w, skip_c)
                c = out
                if btype == "AttnUpBlock2D":
                    self.attention(f"up_blocks.{i}.attentions.{j}", c, h, w, self.groups)
            if i < len(boc) - 1:
                h, w = self.upsample(f"up_blocks.{i}.upsamplers.0", c, h, w)

        self.norm_act("conv_norm_out", c, h, w)
        self.conv("conv_out", c, cout, 3, h, w, c * h * w)
        return self.ops

    def time_embedding(self):
        g, c0, ted = self.cfg.get, self.boc[0], self.temb_dim
        kind = g("time_embedding_type", "positional")
        if kind == "positional":
            t_in = c0
        elif kind == "fourier":
            t_in = 2 * c0
            self.add("time_proj.W", "const", "-", 0, c0, 0, 0)
        elif kind == "learned":
            t_in = c0
            steps = g("num_train_timesteps")
            if not steps:
                raise ConfigError("time_embedding_type 'learned' needs num_train_timesteps")
            self.add("time_proj.weight", "const", "-", 0, steps * c0, 0, 0)
        else:
            raise ConfigError(f"time_embedding_type '{kind}' is not supported "
                              "(expected positional, fourier or learned)")
        self.linear("time_embedding.linear_1", t_in, ted, 1, "-", 0, 0)
        self.linear("time_embedding.linear_2", ted, ted, 1, "-", 0, 0)
        cls, n_cls = g("class_embed_type"), g("num_class_embeds")
        if cls is None and n_cls is not None:
            self.add("class_embedding.weight", "const", "-", 0, n_cls * ted, 0, 0)
        elif cls == "timestep":
            self.linear("class_embedding.linear_1", t_in, ted, 1, "-", 0, 0)
            self.linear("class_embedding.linear_2", ted, ted, 1, "-", 0, 0)
        elif cls not in (None, "identity"):
            raise ConfigError(f"class_embed_type '{cls}' is not supported")


def count(config):
    """Totals for one config: a dict of plain numbers (per image)."""
    ops = UNetCounter(config).walk()
    macs = sum(o.macs for o in ops)
    by_res = {}
    for o in ops:
        if o.macs and o.res != "-":
            by_res[o.res] = by_res.get(o.res, 0) + o.macs
    by_kind = {}
    for o in ops:
        if o.macs:
            by_kind[o.kind] = by_kind.get(o.kind, 0) + o.macs
    first_conv = next(o for o in ops if o.kind == "conv")
    return {
        "ops": ops,
        "params": sum(o.params for o in ops),
        "forward_macs": macs,
        "macs_by_resolution": by_res,
        "macs_by_kind": by_kind,
        # Backward: input gradient and weight gradient each cost the forward's MACs,
        # except conv_in, whose input (the noisy image) needs no gradient.
        "train_macs": 3 * macs - first_conv.macs,
        "act_elems_unfused": sum(o.unfused for o in ops),
        "act_elems_fused": sum(o.fused for o in ops),
        "image_elems": config.get("in_channels", 3) * first_conv_hw(config),
    }


def first_conv_hw(config):
    size = config.get("sample_size", 32)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return h * w


def bytes_per_image(totals, act_bytes, fused, batch_train, batch_sample, weight_bytes=None):
    """(training-step bytes, sampling-step bytes) per image under BYTES_MODEL."""
    weight_bytes = act_bytes if weight_bytes is None else weight_bytes
    p, img = totals["params"], totals["image_elems"]
    fwd = (totals["act_elems_fused"] if fused else totals["act_elems_unfused"]) * act_bytes
    opt_accesses = 10 if fused else 13
    train = (3 * fwd
             + 3 * p * weight_bytes / batch_train
             + opt_accesses * 4 * p / batch_train
             + 6 * img * 4)                       # q_sample (3) + MSE fwd/bwd (3), fp32
    sample = fwd + p * weight_bytes / batch_sample + (3 if fused else 4) * img * 4
    return train, sample


def floors(totals, tflops, act_bytes, bandwidth_gbs, batch_train, batch_sample, steps):
    """Floor throughputs for one peak: dict of img/s and which bound applies."""
    flops_train = 2 * totals["train_macs"]
    flops_fwd = 2 * totals["forward_macs"]
    peak, bw = tflops * 1e12, bandwidth_gbs * 1e9
    out = {"tflops": tflops, "act_bytes": act_bytes, "bandwidth_gbs": bandwidth_gbs}
    for fused in (False, True):
        tag = "fused" if fused else "unfused"
        b_train, b_sample = bytes_per_image(totals, act_bytes, fused, batch_train, batch_sample)
        t_train = max(flops_train / peak, b_train / bw)
        t_step = max(flops_fwd / peak, b_sample / bw)
        out[tag] = {
            "train_bytes": b_train,
            "sample_step_bytes": b_sample,
            "train_img_s": 1.0 / t_train,
            "train_bound": "compute" if flops_train / peak >= b_train / bw else "memory",
            "sample_img_s": 1.0 / (steps * t_step),
            "sample_bound": "compute" if flops_fwd / peak >= b_sample / bw else "memory",
        }
    return out


def measure_card():
    """(bf16 GEMM TFLOP/s, device copy GB/s) measured with torch, or None."""
    try:
        import torch
    except ImportError:
        print("--measure: torch is not installed; skipping the measurement", file=sys.stderr)
        return None
    if not torch.cuda.is_available():
        print("--measure: torch sees no CUDA device; skipping the measurement", file=sys.stderr)
        return None

    def time_ms(fn, reps):
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(reps):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]

    def gemm_tflops(n=8192):
        a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
        return 2 * n ** 3 / (time_ms(lambda: torch.matmul(a, b, out=c), 10) * 1e-3) / 1e12

    def copy_gbs(elems=1 << 28):                       # 1 GiB of fp32
        src = torch.ones(elems, device="cuda", dtype=torch.float32)
        dst = torch.empty_like(src)
        ms = time_ms(lambda: dst.copy_(src), 10)
        return 2 * elems * 4 / (ms * 1e-3) / 1e9       # bytes read + written

    n = 8192
    tflops = gemm_tflops(n)
    gbs = copy_gbs()
    name = torch.cuda.get_device_name()
    print(f"measured on {name}: bf16 GEMM {n}^3 {tflops:.0f} TFLOP/s, "
          f"device copy {gbs:.0f} GB/s (read + write), medians of 10")
    return tflops, gbs


def report(name, config, args):
    totals = count(config)
    macs = totals["forward_macs"]
    boc = config.get("block_out_channels")
    print(f"== {name}: {totals['image_elems'] // first_conv_hw(config)}-channel "
          f"{config.get('sample_size')}px, block_out_channels {boc}, "
          f"layers_per_block {config.get('layers_per_block', 2)}")
    print(f"parameters           {totals['params']:,}")
    print(f"forward per image    {macs / 1e9:.4f} GMAC = {2 * macs / 1e9:.3f} GFLOP "
          "(FLOP = 2 MAC; norms, activations, softmax, adds not counted)")
    for res, m in sorted(totals["macs_by_resolution"].items(),
                         key=lambda kv: -int(kv[0].split("x")[0])):
        print(f"  at {res:>7}         {m / 1e9:.4f} GMAC  {100 * m / macs:5.1f}%")
    vec = macs - sum(totals["macs_by_resolution"].values())
    print(f"  time embedding     {vec / 1e9:.4f} GMAC  {100 * vec / macs:5.1f}%  "
          "(MLP and the per-block projections, once per image)")
    for kind, m in sorted(totals["macs_by_kind"].items(), key=lambda kv: -kv[1]):
        label = {"conv": "convolutions", "linear": "linear layers",
                 "attn_matmul": "attention matmuls (QK^T, PV)"}[kind]
        print(f"  {label:<30} {m / 1e9:.4f} GMAC  {100 * m / macs:5.1f}%")
    print(f"training step        {totals['train_macs'] / 1e9:.3f} GMAC = "
          f"{2 * totals['train_macs'] / 1e9:.2f} GFLOP per image "
          "(3x forward, less conv_in's input gradient)")
    print(f"{args.steps}-step sampling    {2 * macs * args.steps / 1e12:.2f} TFLOP per image")
    for ab in (2, 4):
        un = totals["act_elems_unfused"] * ab
        fu = totals["act_elems_fused"] * ab
        print(f"forward activation bytes at {ab} B/element: unfused {un / 1e6:.1f} MB, "
              f"fused {fu / 1e6:.1f} MB per image")
    print(f"weights: {totals['params'] * 4 / 1e6:.1f} MB fp32, "
          f"{totals['params'] * 2 / 1e6:.1f} MB bf16 (read once per batch)")

    peaks = list(H100_PEAKS) if args.tflops is None else [("given", args.tflops, args.act_bytes)]
    bws = [("", args.bandwidth_gbs)]
    if args.measured:
        peaks.append(("measured bf16", args.measured[0], 2))
    rows = []
    print(f"\nfloors: training at batch {args.batch_train}, sampling at batch "
          f"{args.batch_sample} over {args.steps} steps; img/s [bound]")
    print(f"{'peak':<22}{'train unfused':>22}{'train fused':>22}"
          f"{'sample unfused':>20}{'sample fused':>20}")
    for label, tf, ab in peaks:
        bw = args.measured[1] if label.startswith("measured") else bws[0][1]
        f = floors(totals, tf, ab, bw, args.batch_train, args.batch_sample, args.steps)
        rows.append(dict(f, label=label))
        cells = []
        for tag, key in (("unfused", "train"), ("fused", "train"),
                         ("unfused", "sample"), ("fused", "sample")):
            v = f[tag][key + "_img_s"]
            bound = f[tag][key + "_bound"][0]     # c or m
            cells.append(f"{v:,.0f} [{bound}]" if v >= 100 else f"{v:,.1f} [{bound}]")
        head = f"{label} {tf:g}T {ab}B {bw:g}GB/s"
        print(f"{head:<22}{cells[0]:>22}{cells[1]:>22}{cells[2]:>20}{cells[3]:>20}")
    print("[c] compute-bound, [m] memory-bound; B = bytes per activation element")
    return {
        "name": name,
        "config": config,
        "params": totals["params"],
        "forward_macs": macs,
        "train_macs": totals["train_macs"],
        "macs_by_resolution": totals["macs_by_resolution"],
        "macs_by_kind": totals["macs_by_kind"],
        "forward_act_elems_unfused": totals["act_elems_unfused"],
        "forward_act_elems_fused": totals["act_elems_fused"],
        "floors": rows,
    }


def load_config(path):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError as e:
        raise SystemExit(f"error: cannot read --config {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: --config {path} is not valid JSON: {e}")
    cls = cfg.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise SystemExit(f"error: --config {path}: _class_name is '{cls}', expected UNet2DModel")
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=BYTES_MODEL,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="built-in config (default cifar10)")
    src.add_argument("--config", metavar="PATH", help="a UNet2DModel config.json")
    ap.add_argument("--tflops", type=float, default=None,
                    help="one peak in TFLOP/s instead of the H100 bf16/tf32/fp32 rows")
    ap.add_argument("--act-bytes", type=int, default=2,
                    help="bytes per activation element with --tflops (default 2)")
    ap.add_argument("--bandwidth-gbs", type=float, default=H100_BANDWIDTH_GBS,
                    help=f"memory bandwidth in GB/s (default {H100_BANDWIDTH_GBS:g}, H100 SXM)")
    ap.add_argument("--batch-train", type=int, default=128)
    ap.add_argument("--batch-sample", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1000, help="sampling steps (default 1000)")
    ap.add_argument("--measure", action="store_true",
                    help="also measure bf16 GEMM TFLOP/s and copy GB/s with torch on the GPU")
    ap.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    args = ap.parse_args(argv)
    for flag in ("batch_train", "batch_sample", "steps", "act_bytes"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be at least 1")

    if args.config:
        name, config = args.config, load_config(args.config)
    else:
        name = args.preset or "cifar10"
        config = PRESETS[name]
    args.measured = measure_card() if args.measure else None
    try:
        result = report(name, config, args)
    except ConfigError as e:
        raise SystemExit(f"error: {name}: {e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
