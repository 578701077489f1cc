#!/usr/bin/env python3
"""PyTorch on the CPU: the yardstick for the engine's CPU backend.

Builds diffusers' UNet2DModel from a training config of ours (its "model"
section; or a bare UNet2DModel config.json) and times, with `--threads` torch
threads, on synthetic data already in memory:
  - train:  the full DDPM step at the config's batch: q_sample (the config's
            betas, linear), forward, MSE, backward, clip_grad_norm_, AdamW with
            the config's settings, EMA (diffusers' update, one lerp);
  - sample: one sampling step at --sample-batch: the model's forward (no grad)
            plus diffusers' DDIM (or DDPM) scheduler step;
  - forward: the model's forward alone at --sample-batch (no grad).
Each phase: --warmup untimed steps, then --repeats timed windows of --window
steps; the median window's seconds per step is reported (and min and max).
The engine's side of the comparison: `ddpm_cuda_train --device cpu` on the same
config (its log's img/s) or `ddpm_cuda_bench --e2e --device cpu`, run back to
back with this script, with the same threads (DDPM_CPU_THREADS), and with the
load average (printed here) noted beside both.

    tools/.venv/bin/python tools/bench_pytorch_cpu.py --config apps/configs/fashion_mnist_small.json
    tools/.venv/bin/python tools/bench_pytorch_cpu.py --config apps/configs/ddpm_cifar10.json \\
        --phases forward --sample-batch 16
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time


def load_config(path):
    with open(path) as f:
        cfg = json.load(f)
    model = cfg.get("model", cfg)
    model = {k: v for k, v in model.items() if not k.startswith("_")}
    return cfg, model


def time_phase(step, warmup, window, repeats):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(window):
            step()
        times.append((time.perf_counter() - t0) / window)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "times_s": times}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a training config of ours, or a "
                    "UNet2DModel config.json")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--phases", default="train,sample", help="comma-separated: train, sample, "
                    "forward (default train,sample)")
    ap.add_argument("--batch", type=int, default=None, help="training batch (default: the "
                    "config's training.batch_size, else 32)")
    ap.add_argument("--sample-batch", type=int, default=16, help="sampling batch (default 16, "
                    "ddpm_cuda_sample's default)")
    ap.add_argument("--scheduler", choices=("ddim", "ddpm"), default="ddim")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = ap.parse_args()

    # The environment first: torch's OpenMP reads it when torch is imported.
    import torch
    import diffusers

    torch.set_num_threads(args.threads)
    cfg, model_cfg = load_config(args.config)
    training = cfg.get("training", {})
    sched_cfg = {k: v for k, v in cfg.get("scheduler", {}).items() if not k.startswith("_")}
    batch = args.batch or training.get("batch_size", 32)
    torch.manual_seed(0)
    model = diffusers.UNet2DModel.from_config(model_cfg)
    size = model.config.sample_size
    hw = (size, size) if isinstance(size, int) else tuple(size)
    chans = model.config.in_channels
    n_params = sum(p.numel() for p in model.parameters())
    ddpm = diffusers.DDPMScheduler(**{k: v for k, v in sched_cfg.items() if k != "_class_name"})
    abar = ddpm.alphas_cumprod.double()
    sqrt_ab, sqrt_1mab = abar.sqrt().float(), (1 - abar).sqrt().float()
    num_t = ddpm.config.num_train_timesteps
    results = {}
    log = lambda m: print(m, flush=True)
    log(f"bench_pytorch_cpu: {args.config}; {n_params:,} params; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), diffusers {diffusers.__version__}; "
        f"{platform.processor() or platform.machine()}; load {os.getloadavg()[0]:.2f}")

    phases = [p for p in args.phases.split(",") if p]
    if "train" in phases:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=training.get("learning_rate", 1e-4),
                                betas=(training.get("adam_beta1", 0.9),
                                       training.get("adam_beta2", 0.999)),
                                eps=training.get("adam_epsilon", 1e-8),
                                weight_decay=training.get("weight_decay", 0.0))
        ema = [p.detach().clone() for p in params]
        decay = training.get("ema_decay", 0.9999)
        clip = training.get("grad_clip_norm", 1.0)
        x0 = torch.rand(batch, chans, *hw) * 2 - 1
        last = {}

        def train_step():
            t = torch.randint(0, num_t, (batch,))
            noise = torch.randn_like(x0)
            xt = sqrt_ab[t].view(-1, 1, 1, 1) * x0 + sqrt_1mab[t].view(-1, 1, 1, 1) * noise
            loss = torch.nn.functional.mse_loss(model(xt, t).sample, noise)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1 - decay)
            last["loss"] = loss.item()

        r = time_phase(train_step, args.warmup, args.window, args.repeats)
        r["img_s"] = batch / r["median_s"]
        r["batch"] = batch
        results["train"] = r
        log(f"  train  batch {batch}: {r['median_s'] * 1e3:.1f} ms/step (min "
            f"{r['min_s'] * 1e3:.1f}, max {r['max_s'] * 1e3:.1f}) = {r['img_s']:.1f} img/s "
            f"(loss {last['loss']:.4f})")

    model.eval()
    sb = args.sample_batch
    if "sample" in phases:
        sched = (diffusers.DDIMScheduler if args.scheduler == "ddim" else diffusers.DDPMScheduler)(
            **{k: v for k, v in sched_cfg.items() if k not in ("_class_name", "variance_type")})
        sched.set_timesteps(50 if args.scheduler == "ddim" else num_t)
        steps = list(sched.timesteps)
        state = {"i": 0, "x": torch.randn(sb, chans, *hw)}

        def sample_step():
            i = state["i"]
            with torch.no_grad():
                eps = model(state["x"], steps[i]).sample
                state["x"] = sched.step(eps, steps[i], state["x"]).prev_sample
            state["i"] = (i + 1) % len(steps)

        r = time_phase(sample_step, args.warmup, args.window, args.repeats)
        r["img_steps_s"] = sb / r["median_s"]
        r["batch"] = sb
        results["sample"] = r
        log(f"  sample batch {sb} ({args.scheduler}): {r['median_s'] * 1e3:.1f} ms/step (min "
            f"{r['min_s'] * 1e3:.1f}, max {r['max_s'] * 1e3:.1f}) = "
            f"{r['img_steps_s']:.1f} img-steps/s")

    if "forward" in phases:
        x = torch.randn(sb, chans, *hw)
        t = torch.full((sb,), 500)

        def forward():
            with torch.no_grad():
                model(x, t)

        r = time_phase(forward, args.warmup, args.window, args.repeats)
        r["img_s"] = sb / r["median_s"]
        r["batch"] = sb
        results["forward"] = r
        log(f"  forward batch {sb}: {r['median_s'] * 1e3:.1f} ms (min {r['min_s'] * 1e3:.1f}, "
            f"max {r['max_s'] * 1e3:.1f}) = {r['img_s']:.1f} img/s")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": args.config, "threads": args.threads, "torch": torch.__version__,
                       "diffusers": diffusers.__version__, "results": results}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
