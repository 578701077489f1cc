#!/usr/bin/env python3
"""Golden data for the optimizer step, from the libraries a PyTorch user trains
with: torch.nn.utils.clip_grad_norm_, torch.optim.AdamW (weight decay, bias
correction) under a LambdaLR linear warmup, and diffusers' EMAModel (each of its
warmup modes, update_after_step and min_decay).

Writes tests/golden/optimizer.json: for each case the settings, the initial
parameters (float32, two tensors flattened in order: 37 values, not a multiple
of 4) and, for each of 12 steps, the gradients fed in, then what the libraries
computed: the total norm clip_grad_norm_ returned, the learning rate used, the
EMA decay used, and the parameters and EMA after the step. The C++ tests
(tests/test_optimizer_golden.cpp, tests/cuda_backend/test_cuda_optimizer_golden.cpp)
feed the same gradients to the CPU and CUDA parameter updaters.

The warmup: ours is lr * min(1, k / warmup_steps) at the k-th step (k from 1);
LambdaLR's factor is evaluated at last_epoch = k - 1 when scheduler.step()
follows optimizer.step(), so the lambda is min(1, (e + 1) / warmup_steps).

Run (once; the output is committed, CI never runs this):
  python3 -m venv tools/.venv && tools/.venv/bin/pip install torch diffusers
  tools/.venv/bin/python tools/gen_golden_optimizer.py
"""
import json
import pathlib

import diffusers
import torch
from diffusers.training_utils import EMAModel

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 12

# Every case: AdamW lr 1e-2 (updates far above float rounding), betas (0.9,
# 0.999), eps 1e-8, weight decay 0.05, warmup over 4 steps, clip at norm 1.0
# (the odd steps' gradients, scale 1, are clipped; the even steps', 0.05, not).
CASES = {
    "default": dict(ema=dict(decay=0.99)),
    "default_after_step": dict(ema=dict(decay=0.45, update_after_step=3, min_decay=0.3)),
    "power": dict(ema=dict(decay=0.999, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)),
    "power_after_step": dict(
        ema=dict(decay=0.65, use_ema_warmup=True, inv_gamma=2.0, power=0.75,
                 update_after_step=2, min_decay=0.5)),
    "no_clip_no_warmup": dict(ema=dict(decay=0.99), clip=0.0, warmup=0, weight_decay=0.0),
}


def run_case(name, case, seed):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(5, 7, generator=gen)),
              torch.nn.Parameter(torch.randn(2, generator=gen))]
    initial = torch.cat([p.detach().flatten() for p in params]).tolist()
    lr, warmup = 1e-2, case.get("warmup", 4)
    clip, weight_decay = case.get("clip", 1.0), case.get("weight_decay", 0.05)
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=weight_decay, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda e: min(1.0, (e + 1) / warmup) if warmup > 0 else 1.0)
    ema = EMAModel(params, **case["ema"])
    steps = []
    for k in range(1, STEPS + 1):
        scale = 1.0 if k % 2 else 0.05
        grads = [torch.randn(p.shape, generator=gen) * scale for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if clip > 0 else \
            torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
        used_lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        ema.step(params)
        steps.append(dict(
            grads=torch.cat([g.flatten() for g in grads]).tolist(),
            grad_norm=float(norm), lr=used_lr, ema_decay=ema.cur_decay_value,
            params=torch.cat([p.detach().flatten() for p in params]).tolist(),
            ema=torch.cat([s.flatten() for s in ema.shadow_params]).tolist()))
    settings = dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay,
                    warmup_steps=warmup, grad_clip_norm=clip,
                    ema_decay=case["ema"]["decay"],
                    ema_warmup="power" if case["ema"].get("use_ema_warmup") else "default",
                    ema_inv_gamma=case["ema"].get("inv_gamma", 1.0),
                    ema_power=case["ema"].get("power", 2 / 3),
                    ema_update_after_step=case["ema"].get("update_after_step", 0),
                    ema_min_decay=case["ema"].get("min_decay", 0.0))
    return dict(name=name, settings=settings, initial=initial, steps=steps)


def main():
    out = dict(torch=torch.__version__, diffusers=diffusers.__version__,
               cases=[run_case(n, c, 100 + i) for i, (n, c) in enumerate(CASES.items())])
    path = ROOT / "tests" / "golden" / "optimizer.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
