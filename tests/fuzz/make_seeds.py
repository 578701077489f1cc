#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<harness>/):
a few tiny valid files of each format (seed-valid-*: the fuzz.<harness>.valid
tests check that they load) and a few invalid ones, so the fuzzer starts from
every code path. Standard library only. Regression inputs of past
findings (regress-*) sit beside the seeds and are kept; this script rewrites
only the seed-* files.

    python3 tests/fuzz/make_seeds.py
"""
import gzip
import json
import pathlib
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"


def write(harness, name, data):
    d = ROOT / harness
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# --- safetensors ------------------------------------------------------------
def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, bytes)] laid out in order."""
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def f32(*v):
    return struct.pack(f"<{len(v)}f", *v)


write("safetensors", "valid-f32", safetensors([("w", "F32", [2], f32(1.5, -2.0))], {"format": "pt"}))
write("safetensors", "valid-mixed", safetensors([
    ("a.weight", "F64", [], struct.pack("<d", 3.25)),
    ("b.weight", "F32", [1, 2], f32(0.0, float("inf"))),
    ("c.bias", "BF16", [2], bytes([0x80, 0x3f, 0xc0, 0x7f])),
    ("d", "F16", [2, 1], bytes([0x00, 0x3c, 0x01, 0x00])),
    ("empty", "F32", [0, 3], b""),
]))
write("safetensors", "valid-empty-header", struct.pack("<Q", 2) + b"{}")
write("safetensors", "bad-dtype", safetensors([("x", "I32", [1], b"\0" * 4)]))
write("safetensors", "bad-offsets",
      struct.pack("<Q", 56) + b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}' + b"\0" * 8)
write("safetensors", "bad-length", struct.pack("<Q", 1 << 40) + b"{}")
write("safetensors", "truncated", safetensors([("w", "F32", [4], f32(1, 2, 3, 4))])[:-5])

# --- JSON configs ------------------------------------------------------------
unet = {
    "_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1,
    "block_out_channels": [4, 8], "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 2,
    "attention_head_dim": 4, "time_embedding_dim": None, "freq_shift": 0,
    "flip_sin_to_cos": True, "dropout": 0.1,
}
ddim = {"_class_name": "DDIMScheduler", "num_train_timesteps": 10,
        "beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing",
        "set_alpha_to_one": False, "prediction_type": "v_prediction", "steps_offset": 1}
ddpm = {"_class_name": "DDPMScheduler", "num_train_timesteps": 4,
        "trained_betas": [0.1, 0.2, 0.3, 0.4], "variance_type": "fixed_large",
        "timestep_spacing": "linspace"}
train = {
    "model": dict(unet, sample_size=[8, 6]), "scheduler": ddpm,
    "data": {"kind": "idx", "path": "x.idx"},
    "training": {"batch_size": 2, "steps": 3, "learning_rate": 1e-3, "ema_warmup": "power",
                 "ema_inv_gamma": 1.0, "ema_power": 0.75, "seed": 7, "weight_decay": 0.01},
    "logging": {"log_every": 1, "sample_steps": 2, "sample_scheduler": "ddim",
                "checkpoint_every": 2},
}
write("json_config", "unet.json", json.dumps(unet))
write("json_config", "ddim.json", json.dumps(ddim))
write("json_config", "ddpm.json", json.dumps(ddpm))
write("json_config", "train.json", json.dumps(train))
write("json_config", "bad-type.json", json.dumps(dict(unet, layers_per_block="2")))
write("json_config", "bad-groups.json", json.dumps(dict(unet, norm_num_groups=3)))
write("json_config", "unknown-key.json", json.dumps(dict(ddim, thresholding=True, foo=1)))
write("json_config", "not-json.json", '{"model": {"sample_size": 8,')

# --- IDX ---------------------------------------------------------------------
images = bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 2, 3) + bytes(range(12))
labels = bytes([0, 0, 8, 1]) + struct.pack(">I", 1) + bytes([7])
write("idx", "images", images)
write("idx", "images.gz", gz(images))
write("idx", "labels", labels)
write("idx", "bad-magic", bytes([0, 0, 8, 2]) + struct.pack(">II", 1, 1) + b"\0")
write("idx", "trailing", images + b"\0")
write("idx", "two-members.gz", gz(images[:7]) + gz(images[7:]))

# --- CIFAR-10 ----------------------------------------------------------------
record = bytes([3]) + bytes(i % 251 for i in range(3072))
write("cifar10", "valid-one-record", record)
write("cifar10", "valid-two-records.gz", gz(record + bytes([9]) + bytes(3072)))
write("cifar10", "bad-label.gz", gz(bytes([10]) + bytes(3072)))
write("cifar10", "short", record[:100])


# --- PNG ---------------------------------------------------------------------
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, depth, color, rows, interlace=0, extra=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


write("png", "valid-grey8.png", png(2, 2, 8, 0, [b"\x00\xff", b"\x80\x40"]))
write("png", "valid-rgb8.png", png(2, 1, 8, 2, [b"\xff\0\0\0\xff\0"]))
write("png", "valid-rgba16.png", png(1, 1, 16, 6, [b"\x12\x34\x56\x78\x9a\xbc\xff\xff"]))
write("png", "valid-palette1-trns.png",
      png(3, 2, 1, 3, [b"\xa0", b"\x40"], extra=chunk(b"PLTE", b"\0\0\0\xff\xff\xff") +
          chunk(b"tRNS", b"\x80")))
# Adam7 of a 3x3 image: passes 1, 4, 5, 6, 6, 7 have one row each (1, 1, 2, 1, 1, 3 pixels).
adam7 = [b"\x80", b"\x00", b"\x40", b"\xc0", b"\x80", b"\xa0"]
write("png", "valid-grey1-interlaced.png", png(3, 3, 1, 0, adam7, interlace=1))
write("png", "truncated.png", png(2, 2, 8, 0, [b"\x00\xff", b"\x80\x40"])[:40])
write("png", "not-png", b"GIF89a\0\0")
