#!/usr/bin/env python3
"""The figure to beat for the shipped Fashion-MNIST weights: the same
UNet2DModel, built by diffusers from the same training config, trained by
PyTorch on the same data with the same recipe (DDPM simple loss, AdamW with
linear warmup, global-norm clipping, diffusers' EMAModel, random flips) for the
same number of images, then sampled with DDIM 50 steps from the EMA weights
(DDIMPipeline-style loop) and written as an .npy that tools/fashion_fid.py
scores.

    tools/.venv/bin/python tools/train_pytorch_fashion.py \
        --config apps/configs/fashion_mnist.json --steps 2000 --out runs/torch_fashion
    tools/.venv/bin/python tools/fashion_fid.py score runs/torch_fashion/samples.npy

Long runs: it saves its whole state (model, AdamW, warmup, EMA, data order,
generator) to <out>/state.pt every --save-every steps (written to a temporary
file, then renamed) and continues from it with --resume, bitwise as if never
stopped (same process layout and threads).

It also prints training img/s: on the same machine and threads, the yardstick
for the CPU backend's speed (issue: CPU as fast as PyTorch).
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fashion_fid import DATA, load_split  # noqa: E402


def model_config(cfg):
    m = {k: v for k, v in cfg["model"].items() if not k.startswith("_")}
    return m


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="one of apps/configs/*.json")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the config's)")
    p.add_argument("--out", required=True, type=pathlib.Path)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=100, help="steps between state saves")
    p.add_argument("--resume", action="store_true", help="continue from <out>/state.pt")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = json.loads(pathlib.Path(args.config).read_text())
    t = cfg["training"]
    steps = args.steps or t["steps"]
    batch = t.get("batch_size", 128)
    model = UNet2DModel(**model_config(cfg))
    sched_cfg = {k: v for k, v in cfg.get("scheduler", {}).items() if not k.startswith("_")}
    noise_sched = DDPMScheduler(**sched_cfg)
    warmup = t.get("warmup_steps", 0)
    opt = torch.optim.AdamW(model.parameters(), lr=t.get("learning_rate", 2e-4),
                            betas=(t.get("adam_beta1", 0.9), t.get("adam_beta2", 0.999)),
                            eps=t.get("adam_epsilon", 1e-8),
                            weight_decay=t.get("weight_decay", 0.0))
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda e: min(1.0, (e + 1) / warmup) if warmup > 0 else 1.0)
    warm = t.get("ema_warmup", "default")
    ema = EMAModel(model.parameters(), decay=t.get("ema_decay", 0.9999),
                   use_ema_warmup=warm == "power", inv_gamma=t.get("ema_inv_gamma", 1.0),
                   power=t.get("ema_power", 2 / 3),
                   update_after_step=t.get("ema_update_after_step", 0),
                   min_decay=t.get("ema_min_decay", 0.0))
    if warm == "none":
        sys.exit("ema_warmup none has no EMAModel equivalent")
    images, _ = load_split(DATA, "train")
    x_all = torch.from_numpy(images * 2 - 1)[:, None]  # [N, 1, 28, 28] in [-1, 1]
    args.out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    perm, pos = torch.randperm(len(x_all), generator=gen), 0
    first, done_before = 1, 0.0
    state_path = args.out / "state.pt"
    if args.resume:
        if not state_path.exists():
            sys.exit(f"--resume: {state_path} does not exist")
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        lr_sched.load_state_dict(st["lr_sched"])
        ema.load_state_dict(st["ema"])
        gen.set_state(st["gen"])
        perm, pos, first, done_before = st["perm"], st["pos"], st["step"] + 1, st["elapsed"]
        print(f"resumed {state_path} at step {st['step']}", flush=True)
    log = open(args.out / "metrics.jsonl", "a" if args.resume else "w")
    if args.resume:  # drop lines logged after the saved step
        lines = (args.out / "metrics.jsonl").read_text().splitlines()
        log.close()
        keep = [l for l in lines if json.loads(l)["step"] < first]
        (args.out / "metrics.jsonl").write_text("".join(l + "\n" for l in keep))
        log = open(args.out / "metrics.jsonl", "a")
    start = time.time() - done_before
    for step in range(first, steps + 1):
        if pos + batch > len(perm):
            perm, pos = torch.randperm(len(x_all), generator=gen), 0
        x0 = x_all[perm[pos:pos + batch]]
        pos += batch
        if t.get("random_flip", True):
            flip = torch.rand(batch, generator=gen) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        noise = torch.randn(x0.shape, generator=gen)
        ts = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,), generator=gen)
        loss = torch.nn.functional.mse_loss(model(noise_sched.add_noise(x0, noise, ts), ts).sample,
                                            noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.get("grad_clip_norm", 1.0))
        opt.step()
        lr_sched.step()
        ema.step(model.parameters())
        elapsed = time.time() - start
        log.write(json.dumps(dict(step=step, loss=loss.item(), grad_norm=float(norm),
                                  img_per_s=step * batch / elapsed)) + "\n")
        if step % 50 == 0 or step == steps:
            log.flush()
            print(f"step {step}/{steps} loss {loss.item():.4f} {step * batch / elapsed:.1f} img/s",
                  flush=True)
        if step % args.save_every == 0 and step < steps:
            log.flush()
            tmp = state_path.with_suffix(".tmp")
            torch.save(dict(model=model.state_dict(), opt=opt.state_dict(),
                            lr_sched=lr_sched.state_dict(), ema=ema.state_dict(),
                            gen=gen.get_state(), perm=perm, pos=pos, step=step,
                            elapsed=elapsed), tmp)
            tmp.replace(state_path)
    ema.copy_to(model.parameters())
    model.eval()
    ddim = DDIMScheduler.from_config(noise_sched.config)
    ddim.set_timesteps(50)
    out = []
    with torch.no_grad():
        for i in range(0, args.samples, 100):
            n = min(100, args.samples - i)
            x = torch.randn((n, 1, 28, 28), generator=gen)
            for ts in ddim.timesteps:
                x = ddim.step(model(x, ts).sample, ts, x).prev_sample
            out.append((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy())
    np.save(args.out / "samples.npy", np.concatenate(out).astype(np.float32))
    model.save_pretrained(args.out / "unet")
    print(f"wrote {args.out / 'samples.npy'} and {args.out / 'unet'} "
          f"({steps} steps, {steps * batch} images, {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
