#!/usr/bin/env python3
"""Generates the golden data the C++ parity tests compare against, with the
real PyTorch and diffusers libraries (not our reading of them).

Writes, under tests/golden/:
  unet_tiny/, unet_heads/   two small random UNet2DModel folders saved with
                            save_pretrained (config.json + safetensors, F32), and
                            golden.safetensors beside each: a fixed input
                            (NHWC), timesteps, target, the forward output, the
                            MSE loss and every parameter's gradient, all
                            computed in float64 from the saved float32 weights.
  schedulers.json           DDPMScheduler / DDIMScheduler tables, timesteps and
                            step outputs for given model outputs and noise.
  timestep_embedding.json   get_timestep_embedding in float32.

Run (once; the outputs are committed, CI never runs this):
  python3 -m venv tools/.venv && tools/.venv/bin/pip install torch diffusers
  tools/.venv/bin/python tools/gen_golden.py
"""
import argparse
import json
import math
import pathlib

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
import diffusers.models.embeddings as embeddings_module
from diffusers.models.embeddings import get_timestep_embedding
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent

MODELS = {
    # One attention level with a single head of all channels (as CIFAR-10),
    # a non-square input to catch height/width mix-ups.
    "unet_tiny": dict(
        config=dict(
            sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
            layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
            attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1,
            downsample_padding=0, mid_block_scale_factor=1, dropout=0.0),
        batch=3, height=8, width=12, timesteps=[3, 417, 999]),
    # Multi-head attention, flipped embedding, symmetric downsample padding,
    # a mid-block scale factor, 1 -> 2 channels, three levels.
    "unet_heads": dict(
        config=dict(
            sample_size=8, in_channels=1, out_channels=2, block_out_channels=(8, 16, 16),
            layers_per_block=1,
            down_block_types=("AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D"), norm_num_groups=4,
            attention_head_dim=4, flip_sin_to_cos=True, freq_shift=0, downsample_padding=1,
            mid_block_scale_factor=1.5, dropout=0.0),
        batch=2, height=8, width=8, timesteps=[0, 731]),
}


def float64_timestep_embedding(timesteps, embedding_dim, flip_sin_to_cos=False,
                               downscale_freq_shift=1, scale=1, max_period=10000):
    """diffusers' get_timestep_embedding, evaluated in float64. diffusers hard-codes
    float32 there even in a float64 model, which would limit the float64
    comparison to float32 accuracy; the float32 semantics are checked on their
    own against the unpatched function (timestep_embedding.json)."""
    half_dim = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half_dim, dtype=torch.float64)
    exponent = exponent / (half_dim - downscale_freq_shift)
    emb = timesteps[:, None].double() * torch.exp(exponent)[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half_dim:], emb[:, :half_dim]], dim=-1)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1, 0, 0))
    return emb


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def make_model(name, spec, out_dir):
    torch.manual_seed(sum(map(ord, name)))
    model = UNet2DModel(**spec["config"])
    with torch.no_grad():
        # Default GroupNorm affine parameters are 1 and 0, which would hide a
        # swapped gamma/beta; perturb every parameter a little.
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    folder = out_dir / name
    model.save_pretrained(folder, safe_serialization=True)

    model = model.double()
    embeddings_module.get_timestep_embedding = float64_timestep_embedding
    n, h, w = spec["batch"], spec["height"], spec["width"]
    c_in, c_out = spec["config"]["in_channels"], spec["config"]["out_channels"]
    g = torch.Generator().manual_seed(7)
    sample = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64)
    target = torch.randn(n, c_out, h, w, generator=g, dtype=torch.float64)
    timesteps = torch.tensor(spec["timesteps"], dtype=torch.float64)
    prediction = model(sample, timesteps).sample
    loss = torch.nn.functional.mse_loss(prediction, target)
    loss.backward()
    tensors = {
        "sample": nhwc(sample), "target": nhwc(target), "timesteps": timesteps,
        "prediction": nhwc(prediction.detach()), "loss": loss.detach().reshape(1),
    }
    for pname, p in model.named_parameters():
        tensors["grad." + pname] = p.grad.detach().contiguous()
    embeddings_module.get_timestep_embedding = get_timestep_embedding
    save_file(tensors, str(folder / "golden.safetensors"))
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, loss {loss.item():.6f}")


def scheduler_cases():
    ddpm = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    cases = []
    for schedule in ["linear", "scaled_linear", "squaredcos_cap_v2"]:
        for variance in ["fixed_small", "fixed_large"]:
            cases.append(("ddpm", dict(ddpm, beta_schedule=schedule, variance_type=variance), 1000, {}))
    for prediction in ["epsilon", "sample", "v_prediction"]:
        for clip in [True, False]:
            cases.append(("ddpm", dict(ddpm, prediction_type=prediction, clip_sample=clip,
                                       variance_type="fixed_large"), 1000, {}))
    for spacing in ["leading", "linspace", "trailing"]:
        for steps in [10, 7]:
            cases.append(("ddpm", dict(ddpm, timestep_spacing=spacing), steps, {}))
            cases.append(("ddim", dict(ddpm, timestep_spacing=spacing), steps, {"eta": 0.0}))
    cases.append(("ddpm", dict(ddpm, timestep_spacing="leading", steps_offset=1), 50, {}))
    for prediction in ["epsilon", "sample", "v_prediction"]:
        for eta in [0.0, 1.0]:
            for clipped in [False, True]:
                cases.append(("ddim", dict(ddpm, prediction_type=prediction), 20,
                              {"eta": eta, "use_clipped_model_output": clipped}))
    cases.append(("ddim", dict(ddpm, set_alpha_to_one=False, clip_sample=False), 20, {"eta": 0.5}))
    return cases


def make_schedulers(out_dir):
    out, tables = [], {}
    shape = (1, 3, 2, 2)
    for i, (kind, config, steps, step_kwargs) in enumerate(scheduler_cases()):
        cls = DDPMScheduler if kind == "ddpm" else DDIMScheduler
        sched = cls(**config)
        sched.set_timesteps(steps)
        ts = sched.timesteps.tolist()
        g = torch.Generator().manual_seed(100 + i)
        # Check a few steps along the run: first, middle, last.
        checked = sorted({0, len(ts) // 2, len(ts) - 1})
        records = []
        for idx in checked:
            t = ts[idx]
            sample = torch.randn(shape, generator=g)
            model_output = torch.randn(shape, generator=g)
            if kind == "ddpm":
                # DDPM draws its noise inside step() with randn_tensor(generator):
                # draw the same numbers from a twin generator to record them.
                seed = 1000 + 10 * i + idx
                noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
                prev = sched.step(model_output, t, sample,
                                  generator=torch.Generator().manual_seed(seed)).prev_sample
            else:
                noise = torch.randn(shape, generator=g)
                prev = sched.step(model_output, t, sample, variance_noise=noise,
                                  **step_kwargs).prev_sample
            records.append({
                "index": idx, "timestep": int(t),
                "sample": nhwc(sample).flatten().tolist(),
                "model_output": nhwc(model_output).flatten().tolist(),
                "noise": nhwc(noise).flatten().tolist(),
                "prev_sample": nhwc(prev).flatten().tolist(),
            })
        tables.setdefault(sched.config.beta_schedule, {
            "betas": sched.betas.tolist(), "alphas_cumprod": sched.alphas_cumprod.tolist()})
        out.append({
            "kind": kind, "steps": steps,
            "config": {k: v for k, v in sched.config.items() if not k.startswith("_")}, "step_kwargs": step_kwargs,
            "timesteps": ts, "records": records,
        })
    (out_dir / "schedulers.json").write_text(
        json.dumps({"shape_nhwc": [1, 2, 2, 3], "tables": tables, "cases": out}))
    print(f"schedulers: {len(out)} cases")


def philox4x32_10(counter, key):
    """Philox4x32-10 on numpy uint64 arrays holding 32-bit words (engine/random.h)."""
    c = [w.astype(np.uint64) for w in counter]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & mask
        hi1, lo1 = p1 >> np.uint64(32), p1 & mask
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = (k0 + np.uint64(0x9E3779B9)) & mask
        k1 = (k1 + np.uint64(0xBB67AE85)) & mask
    return c


def engine_noise(seed, purpose, step, image, count):
    """engine/noise.h's noise_normal for elements 0..count-1, as float32."""
    element = np.arange(count, dtype=np.uint64)
    block = element >> np.uint64(1)
    ones = np.ones(count, dtype=np.uint64)
    r = philox4x32_10([block, ones * image, ones * step, ones * purpose],
                      (seed & 0xFFFFFFFF, seed >> 32))
    u1 = ((r[0] >> np.uint64(8)).astype(np.float64) + 1) * (1.0 / 16777217.0)
    u2 = (r[1] >> np.uint64(8)).astype(np.float64) * (1.0 / 16777216.0)
    radius, angle = np.sqrt(-2 * np.log(u1)), 6.283185307179586 * u2
    z = np.where(element & np.uint64(1), radius * np.sin(angle), radius * np.cos(angle))
    return z.astype(np.float32)


def make_sampler_runs(out_dir):
    """Whole sampling loops of unet_tiny with the engine's own noise (x_T and
    every step's z, reproduced here bit for bit), through diffusers' schedulers
    with the model in float64: the C++ sampler must land on the same images."""
    import diffusers.schedulers.scheduling_ddpm as ddpm_module
    original_randn = ddpm_module.randn_tensor
    model = UNet2DModel.from_pretrained(out_dir / "unet_tiny").double().eval()
    embeddings_module.get_timestep_embedding = float64_timestep_embedding
    seed, batch, h, w, c = 1234, 2, 8, 12, 3
    runs = {}
    for kind, steps, kwargs in [("ddpm", 10, {}), ("ddim", 10, {"eta": 0.5})]:
        sched = (DDPMScheduler if kind == "ddpm" else DDIMScheduler)(num_train_timesteps=1000)
        sched.set_timesteps(steps)

        def noise(purpose, step):
            return torch.from_numpy(np.stack([
                engine_noise(seed, purpose, step, i, h * w * c).reshape(h, w, c) for i in range(batch)
            ])).permute(0, 3, 1, 2).double()
        x = noise(1, 0)  # NoisePurpose::initial_sample
        for i, t in enumerate(sched.timesteps):
            z = noise(2, i)  # NoisePurpose::step_noise
            with torch.no_grad():
                eps = model(x, t).sample
            if kind == "ddpm":
                ddpm_module.randn_tensor = lambda *a, _z=z, **k: _z
                x = sched.step(eps, t, x).prev_sample
            else:
                x = sched.step(eps, t, x, variance_noise=z, **kwargs).prev_sample
        runs[f"{kind}.images"] = nhwc(x).contiguous()
    embeddings_module.get_timestep_embedding = get_timestep_embedding
    ddpm_module.randn_tensor = original_randn
    save_file(runs, str(out_dir / "unet_tiny" / "sampler_runs.safetensors"),
              metadata={"seed": str(seed), "batch": str(batch), "steps": "10", "ddim_eta": "0.5"})
    print("sampler runs: ddpm and ddim, 10 steps, seed 1234")


def make_embeddings(out_dir):
    t = torch.tensor([0, 1, 17, 500, 999], dtype=torch.float32)
    cases = []
    for dim in [32, 7]:
        for flip in [False, True]:
            for shift in [0.0, 1.0]:
                emb = get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift)
                cases.append({"dim": dim, "flip_sin_to_cos": flip, "freq_shift": shift,
                              "embedding": emb.flatten().tolist()})
    (out_dir / "timestep_embedding.json").write_text(json.dumps({"timesteps": t.tolist(), "cases": cases}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "golden")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    for name, spec in MODELS.items():
        make_model(name, spec, args.out)
    make_sampler_runs(args.out)
    make_schedulers(args.out)
    make_embeddings(args.out)
    import diffusers
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
