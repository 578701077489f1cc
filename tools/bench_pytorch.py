#!/usr/bin/env python3
"""PyTorch baselines for the DDPM CIFAR-10 UNet: the yardstick for the engine's speed.

Builds diffusers' UNet2DModel (google/ddpm-cifar10-32 config, random weights; or
any UNet2DModel config.json with --config) and measures, for each mode:
  - training throughput (img/s) of the full DDPM step: q_sample (linear betas
    1e-4..0.02, T=1000), forward, MSE, backward, grad clip 1.0, AdamW lr 2e-4,
    EMA 0.9999; batch 128 on synthetic data already on the device;
  - DDPM ancestral sampling throughput (diffusers DDPMScheduler, fixed_large,
    clip_sample) at batch 256, timed over a window of steps and reported per
    1000 steps (img/s = batch / (1000 x median step time));
  - the time of one sampling step (model + scheduler) at batch 1;
with warm-up, CUDA-event timing, the median of repeats and peak memory
(torch.cuda.max_memory_allocated).  Modes are named <exec>-<precision>[-cl]:
exec eager | compile (torch.compile mode "reduce-overhead", CUDA graphs) |
autotune (mode "max-autotune", long compile); precision fp32 | bf16 (autocast);
-cl = channels_last.  Every speed claim of the engine is a ratio against these
numbers on the same card in the same run.

    python3 tools/bench_pytorch.py --json out/bench.json   # GPU; ends within ~6 min
    python3 tools/bench_pytorch.py --tiny                  # CPU smoke check, seconds
"""

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings

CIFAR10_CONFIG = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 32, "norm_eps": 1e-6, "act_fn": "silu", "attention_head_dim": None,
    "time_embedding_type": "positional", "flip_sin_to_cos": False, "freq_shift": 1,
    "downsample_padding": 0, "mid_block_scale_factor": 1, "dropout": 0.1,
}
# --tiny: the same code on the CPU at a size that runs in seconds.
TINY_CONFIG = dict(CIFAR10_CONFIG, sample_size=16, block_out_channels=[32, 64],
                   layers_per_block=1, norm_num_groups=8,
                   down_block_types=["DownBlock2D", "AttnDownBlock2D"],
                   up_block_types=["AttnUpBlock2D", "UpBlock2D"])

GPU_MODES = "eager-fp32,eager-bf16,eager-bf16-cl,compile-bf16-cl"
TINY_MODES = "eager-fp32,eager-bf16,eager-bf16-cl"
T_TRAIN, LR, EMA_DECAY, CLIP = 1000, 2e-4, 0.9999, 1.0


def log(msg=""):
    print(msg, flush=True)


def parse_mode(spec):
    parts = spec.split("-")
    if (len(parts) not in (2, 3) or parts[0] not in ("eager", "compile", "autotune")
            or parts[1] not in ("fp32", "bf16") or (len(parts) == 3 and parts[2] != "cl")):
        raise ValueError(f"mode '{spec}': expected <eager|compile|autotune>-<fp32|bf16>[-cl]")
    return {"name": spec, "exec": parts[0], "bf16": parts[1] == "bf16", "cl": len(parts) == 3}


class Timer:
    """Median seconds per call over `repeats` windows of `window` calls."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def per_call(self, fn, window, repeats):
        times = []
        for _ in range(repeats):
            if self.cuda:
                start = self.torch.cuda.Event(enable_timing=True)
                end = self.torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(window):
                    fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3 / window)
            else:
                t0 = time.perf_counter()
                for _ in range(window):
                    fn()
                times.append((time.perf_counter() - t0) / window)
        return statistics.median(times), times


class Bench:
    def __init__(self, torch, diffusers, args, device, config):
        self.torch, self.diffusers, self.args = torch, diffusers, args
        self.device, self.config = device, config
        self.timer = Timer(torch, device)
        size = config.get("sample_size", 32)
        self.hw = (size, size) if isinstance(size, int) else tuple(size)
        self.channels = config.get("in_channels", 3)

    # -- setup --------------------------------------------------------------
    def model(self, mode):
        torch = self.torch
        torch.manual_seed(0)
        model = self.diffusers.UNet2DModel.from_config(self.config).to(self.device)
        if mode["cl"]:
            model = model.to(memory_format=torch.channels_last)
        if mode["exec"] == "eager":
            return model, model
        compiled = torch.compile(model, mode="reduce-overhead" if mode["exec"] == "compile"
                                 else "max-autotune", dynamic=False)
        return model, compiled

    def autocast(self, mode):
        if mode["bf16"]:
            return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)
        return self.torch.autocast(self.device.type, enabled=False)

    def images(self, batch, mode):
        x = self.torch.randn(batch, self.channels, *self.hw, device=self.device)
        return x.contiguous(memory_format=self.torch.channels_last) if mode["cl"] else x

    def reset_memory(self):
        if self.device.type == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self):
        if self.device.type == "cuda":
            return self.torch.cuda.max_memory_allocated() / 2 ** 20
        return None

    def finite(self, what, value):
        """A sanity check that the timed work computed numbers, not NaNs."""
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            log(f"    WARNING: {what} is {value}")
        return value

    def run_phase(self, what, step, warmup, window, repeats):
        """Warm up (compiles happen here), then time; returns seconds per step etc."""
        self.reset_memory()
        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        self.timer.sync()
        warm_s = time.perf_counter() - t0
        median, times = self.timer.per_call(step, window, repeats)
        spread = (max(times) - min(times)) / median if median else 0.0
        log(f"    {what}: {median * 1e3:.2f} ms/step (median of {repeats} x {window} steps, "
            f"spread {100 * spread:.1f}%; warm-up {warmup} steps {warm_s:.1f} s)")
        return {"step_ms": median * 1e3, "times_ms": [t * 1e3 for t in times],
                "warmup_s": warm_s, "peak_mib": self.peak_mib()}

    # -- training ------------------------------------------------------------
    def train(self, mode):
        torch, a = self.torch, self.args
        base, model = self.model(mode)
        base.train()
        params = [p for p in base.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=0.0, fused=True)
        ema = [p.detach().clone() for p in params]
        betas = torch.linspace(1e-4, 0.02, T_TRAIN, dtype=torch.float64)
        abar = torch.cumprod(1 - betas, 0)
        sqrt_ab = abar.sqrt().float().to(self.device)
        sqrt_1mab = (1 - abar).sqrt().float().to(self.device)
        x0 = self.images(a.train_batch, mode).clamp_(-1, 1)   # synthetic data in [-1, 1]
        compiled = mode["exec"] != "eager"
        last = {}

        def step():
            t = torch.randint(0, T_TRAIN, (a.train_batch,), device=self.device)
            noise = torch.randn_like(x0)
            xt = sqrt_ab[t].view(-1, 1, 1, 1) * x0 + sqrt_1mab[t].view(-1, 1, 1, 1) * noise
            if compiled:
                torch.compiler.cudagraph_mark_step_begin()
            with self.autocast(mode):
                pred = model(xt, t).sample
            loss = torch.nn.functional.mse_loss(pred.float(), noise)
            loss.backward()
            last["loss"] = loss.detach()
            torch.nn.utils.clip_grad_norm_(params, CLIP, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1 - EMA_DECAY)

        warm = a.warmup + (4 if compiled else 0)
        r = self.run_phase(f"train batch {a.train_batch}", step, warm, a.train_window, a.repeats)
        r["img_s"] = a.train_batch / (r["step_ms"] / 1e3)
        r["last_loss"] = self.finite("train loss", last["loss"])
        return r

    # -- sampling ------------------------------------------------------------
    def sample(self, mode, batch, window):
        torch, a = self.torch, self.args
        base, model = self.model(mode)
        base.eval()
        sched = self.diffusers.DDPMScheduler(
            num_train_timesteps=T_TRAIN, beta_start=1e-4, beta_end=0.02,
            beta_schedule="linear", variance_type="fixed_large", clip_sample=True)
        sched.set_timesteps(T_TRAIN)
        steps = [int(t) for t in sched.timesteps]
        t_dev = sched.timesteps.to(self.device)
        state = {"i": 0, "x": self.images(batch, mode)}
        compiled = mode["exec"] != "eager"

        def step():
            i = state["i"]
            if compiled:
                torch.compiler.cudagraph_mark_step_begin()
            with torch.no_grad():
                with self.autocast(mode):
                    eps = model(state["x"], t_dev[i]).sample
                state["x"] = sched.step(eps.float(), steps[i], state["x"]).prev_sample
            state["i"] = (i + 1) % len(steps)

        warm = a.warmup + (4 if compiled else 0)
        r = self.run_phase(f"sample batch {batch}", step, warm, window, a.repeats)
        r["img_s_per_1000_steps"] = batch / (1000 * r["step_ms"] / 1e3)
        r["sample_abs_max"] = self.finite("sample |x| max", state["x"].abs().max())
        return r

    def mode(self, mode, t_start):
        torch, a = self.torch, self.args
        t0 = time.perf_counter()
        log(f"[{mode['name']}] start")
        out = {"mode": mode["name"]}
        for key, fn in (("train", lambda: self.train(mode)),
                        ("sample", lambda: self.sample(mode, a.sample_batch, a.sample_window)),
                        ("batch1", lambda: self.sample(mode, 1, a.b1_window))):
            elapsed = time.perf_counter() - t_start
            if elapsed > a.budget_s:
                log(f"    {key}: skipped, {elapsed:.0f} s elapsed > --budget-s {a.budget_s:g}")
                out[key] = {"skipped": "budget"}
                continue
            try:
                out[key] = fn()
            except Exception as e:            # one failing mode must not end the run
                log(f"    {key}: FAILED: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
                out[key] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        if mode["exec"] != "eager":
            torch._dynamo.reset()
        out["elapsed_s"] = time.perf_counter() - t0
        log(f"[{mode['name']}] done in {out['elapsed_s']:.1f} s")
        return out


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def table(results, args):
    head = (f"{'mode':<18}{'train img/s':>12}{'sample img/s':>14}{'b1 step ms':>12}"
            f"{'peak MiB train':>16}{'peak MiB sample':>17}{'elapsed s':>11}")
    lines = [head]
    for r in results:
        tr, sa, b1 = r.get("train", {}), r.get("sample", {}), r.get("batch1", {})
        lines.append(f"{r['mode']:<18}{fmt(tr.get('img_s')):>12}"
                     f"{fmt(sa.get('img_s_per_1000_steps'), 3):>14}"
                     f"{fmt(b1.get('step_ms'), 2):>12}{fmt(tr.get('peak_mib'), 0):>16}"
                     f"{fmt(sa.get('peak_mib'), 0):>17}{fmt(r.get('elapsed_s')):>11}")
    lines.append(f"train: batch {args.train_batch}, full DDPM step.  sample: batch "
                 f"{args.sample_batch}, img/s for 1000 steps (timed over windows of "
                 f"{args.sample_window} steps, scaled to 1000).  b1: one sampling step at batch 1.")
    return "\n".join(lines)


def main():
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true",
                    help="CPU smoke check: tiny model, small batches, few steps, wall-clock timing")
    ap.add_argument("--config", metavar="PATH", help="a UNet2DModel config.json "
                    "(default: the built-in google/ddpm-cifar10-32 config)")
    ap.add_argument("--dropout", type=float, default=None,
                    help="override the config's dropout (built-in config: 0.1)")
    ap.add_argument("--modes", default=None,
                    help=f"comma-separated modes (GPU default {GPU_MODES}; "
                    f"--tiny default {TINY_MODES}); autotune-bf16-cl is the opt-in max-autotune")
    ap.add_argument("--train-batch", type=int, default=None, help="default 128 (tiny 8)")
    ap.add_argument("--sample-batch", type=int, default=None, help="default 256 (tiny 8)")
    ap.add_argument("--train-window", type=int, default=None,
                    help="training steps per timed window (5; tiny 3)")
    ap.add_argument("--sample-window", type=int, default=None,
                    help="sampling steps per timed window, at least 50 on a GPU (50; tiny 5)")
    ap.add_argument("--b1-window", type=int, default=None,
                    help="batch-1 steps per window (50; tiny 5)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed windows, median taken (5; tiny 3)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps first (3; compiled modes 4 more; tiny 1)")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="skip the modes and phases not yet started once this many seconds "
                    "have passed (default 300, so that a run ends within about 6 minutes)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads with --tiny (default 1)")
    ap.add_argument("--json", metavar="PATH", help="write all numbers and the setup as JSON")
    args = ap.parse_args()

    gpu_defaults = dict(train_batch=128, sample_batch=256, train_window=5, sample_window=50,
                        b1_window=50, repeats=5, warmup=3)
    tiny_defaults = dict(train_batch=8, sample_batch=8, train_window=3, sample_window=5,
                         b1_window=5, repeats=3, warmup=1)
    for key, value in (tiny_defaults if args.tiny else gpu_defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} must be at least 1")
    if not args.tiny and args.sample_window < 50:
        ap.error("--sample-window must be at least 50 steps on a GPU (per-1000-step figures "
                 "come from it)")
    try:
        modes = [parse_mode(m) for m in (args.modes or (TINY_MODES if args.tiny else GPU_MODES))
                 .split(",") if m]
    except ValueError as e:
        ap.error(str(e))

    try:
        import torch
    except ImportError:
        sys.exit("error: torch is not installed (pip install torch)")
    try:
        import diffusers
    except ImportError:
        sys.exit("error: diffusers is not installed. Here: pip install diffusers. On the GPU "
                 "machine (no network): run `bash tools/fetch_wheels.sh` on a networked machine, "
                 "carry .whl, then `python3 -m pip install -q --no-index --no-deps --target "
                 "/tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site`")

    if args.config:
        try:
            with open(args.config) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"error: --config {args.config}: {e}")
        if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
            sys.exit(f"error: --config {args.config}: _class_name is "
                     f"'{config.get('_class_name')}', expected UNet2DModel")
    else:
        config = dict(TINY_CONFIG if args.tiny else CIFAR10_CONFIG)
    if args.dropout is not None:
        config["dropout"] = args.dropout

    if args.tiny:
        device = torch.device("cpu")
        # One thread by default: the smoke check stays steady on a busy machine,
        # where OpenMP's spinning barriers can make multi-threaded steps 100x slower.
        torch.set_num_threads(args.threads)
        n = torch.get_num_threads()
        cpu = platform.processor() or platform.machine()
        card = f"CPU ({cpu}, {n} thread{'' if n == 1 else 's'})"
    else:
        if not torch.cuda.is_available():
            sys.exit(f"error: torch {torch.__version__} sees no CUDA GPU "
                     f"(built for CUDA {torch.version.cuda}). This benchmark needs one; "
                     "`--tiny` runs the same code on the CPU as a smoke check.")
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        card = torch.cuda.get_device_name()

    n_params = sum(p.numel() for p in diffusers.UNet2DModel.from_config(config).parameters())
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "card": card, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "diffusers": diffusers.__version__, "python": platform.python_version(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "tiny": args.tiny, "params": n_params, "config": config,
        "sizes": {k: getattr(args, k) for k in gpu_defaults},
        "timing": "CUDA events" if device.type == "cuda" else "wall clock (perf_counter)",
    }
    smoke = "TINY CPU SMOKE CHECK, not a performance figure; " if args.tiny else ""
    log(f"bench_pytorch: {card}; torch {torch.__version__}, diffusers {diffusers.__version__}; "
        f"{n_params:,} params; {smoke}timing by {meta['timing']}")
    if device.type == "cuda":
        log(f"fp32 convolutions use TF32: {meta['cudnn_allow_tf32']}; fp32 matmuls use TF32: "
            f"{meta['matmul_allow_tf32']} (torch defaults); cudnn.benchmark on")
    log(f"modes: {', '.join(m['name'] for m in modes)}")

    # Dynamo notes each functools.lru_cache it traces through in diffusers; not ours to fix.
    warnings.filterwarnings("ignore", message=".*functools.lru_cache.*")
    bench = Bench(torch, diffusers, args, device, config)
    t_start = time.perf_counter()
    results = []
    for mode in modes:
        elapsed = time.perf_counter() - t_start
        if elapsed > args.budget_s:
            log(f"[{mode['name']}] skipped: {elapsed:.0f} s elapsed > --budget-s {args.budget_s:g}")
            results.append({"mode": mode["name"], "skipped": "budget"})
            continue
        results.append(bench.mode(mode, t_start))
    total = time.perf_counter() - t_start
    log("")
    log(table(results, args))
    log(f"total {total:.1f} s on {card}"
        + ("  (CPU smoke check, not a performance figure)" if args.tiny else ""))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "total_s": total}, f, indent=2)
        log(f"wrote {args.json}")
    failed = [r["mode"] for r in results
              if any("error" in r.get(k, {}) for k in ("train", "sample", "batch1"))]
    if failed:
        log(f"some measurements failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
