#!/usr/bin/env python3
"""Checks that a checkpoint written by ddpm_cuda_train loads into diffusers and
samples there the images ddpm_cuda_sample produced.

diffusers loads the folder with DDPMPipeline.from_pretrained, then runs the same
DDIM (eta 0) loop as `ddpm_cuda_sample --scheduler ddim` with the engine's own
x_T noise (Philox, reproduced in numpy by tools/gen_golden.py) and the UNet in
float64; the script prints the largest difference from the engine's .npy.

  ./build/apps/ddpm_cuda_sample --model RUN/checkpoint --scheduler ddim --steps 50 \\
      --num 16 --seed 0 --precision fp32 --out RUN/grid.png
  tools/.venv/bin/python tools/check_diffusers_roundtrip.py RUN/checkpoint RUN/grid.npy --steps 50
(--precision fp32: on a GPU the default is bf16, whose images differ from
diffusers' float64 loop by bf16 rounding, not by 1e-6.)
"""
import argparse
import pathlib
import sys

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMPipeline

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gen_golden  # noqa: E402  (engine_noise, float64_timestep_embedding)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a DDPMPipeline folder written by ddpm_cuda_train")
    p.add_argument("npy", help="the .npy ddpm_cuda_sample wrote (NHWC in [0, 1])")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed difference (float32 engine against float64 diffusers)")
    a = p.parse_args()
    pipe = DDPMPipeline.from_pretrained(a.checkpoint)
    unet = pipe.unet.double().eval()
    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(a.steps)
    ours = np.load(a.npy)
    n, h, w, c = ours.shape
    x = torch.from_numpy(np.stack([
        gen_golden.engine_noise(a.seed, 1, 0, i, h * w * c).reshape(h, w, c) for i in range(n)
    ])).permute(0, 3, 1, 2).double()
    # diffusers computes the timestep embedding in float32 even in a float64
    # model; the float64 version keeps the comparison at float64 accuracy.
    gen_golden.embeddings_module.get_timestep_embedding = gen_golden.float64_timestep_embedding
    for t in sched.timesteps:
        with torch.no_grad():
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    theirs = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    diff = float(np.abs(ours - theirs).max())
    print(f"{n} images {h}x{w}x{c}: max |engine - diffusers| = {diff:.3g} (tolerance {a.tolerance:g})")
    sys.exit(0 if diff <= a.tolerance else 1)


if __name__ == "__main__":
    main()
