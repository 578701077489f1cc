"""Checks tools/roofline.py against counts made here in a different way.

- Parameters: summed from the 328-tensor name/shape list of google/ddpm-cifar10-32
  (tests/data/ddpm_cifar10_32_keys.txt), not from the block walk.
- Forward MACs: a per-layer tally written out by hand below, level by level, from
  the architecture in REFERENCE.md; its conv shapes are checked against the key list.

Standard library only (no torch); run with `python3 -m unittest -v test_roofline`
from this folder, or through CTest (label cpu).
"""

import contextlib
import io
import json
import math
import os
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools"))
import roofline  # noqa: E402

KEYS = HERE.parent / "data" / "ddpm_cifar10_32_keys.txt"


def read_keys():
    """{name: shape tuple} and the header's (tensor count, parameter count)."""
    lines = KEYS.read_text().splitlines()
    head = lines[0].split()           # "328 tensors 35746307 params"
    shapes = {}
    for line in lines[1:]:
        name, shape = line.split(" ", 1)
        shapes[name] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return shapes, int(head[0]), int(head[2])


# The CIFAR-10 forward, by hand. Conv rows: (count, output side, cin, cout, k).
# Down/up-sampling convs sit at their output resolution.
T = 512  # time embedding width
CONVS = {
    32: [
        (1, 32, 3, 128, 3),                        # conv_in
        (4, 32, 128, 128, 3),                      # down 0: 2 resnets x 2 convs
        (1, 32, 384, 128, 3), (1, 32, 128, 128, 3), (1, 32, 384, 128, 1),  # up 3 res 0
        (2, 32, 256, 128, 3), (2, 32, 128, 128, 3), (2, 32, 256, 128, 1),  # up 3 res 1, 2
        (1, 32, 256, 256, 3),                      # up 2 upsampler conv
        (1, 32, 128, 3, 3),                        # conv_out
    ],
    16: [
        (1, 16, 128, 128, 3),                      # down 0 downsampler
        (1, 16, 128, 256, 3), (1, 16, 256, 256, 3), (1, 16, 128, 256, 1),  # down 1 res 0
        (2, 16, 256, 256, 3),                      # down 1 res 1
        (2, 16, 512, 256, 3), (2, 16, 256, 256, 3), (2, 16, 512, 256, 1),  # up 2 res 0, 1
        (1, 16, 384, 256, 3), (1, 16, 256, 256, 3), (1, 16, 384, 256, 1),  # up 2 res 2
        (1, 16, 256, 256, 3),                      # up 1 upsampler conv
    ],
    8: [
        (1, 8, 256, 256, 3),                       # down 1 downsampler
        (4, 8, 256, 256, 3),                       # down 2: 2 resnets x 2 convs
        (3, 8, 512, 256, 3), (3, 8, 256, 256, 3), (3, 8, 512, 256, 1),     # up 1
        (1, 8, 256, 256, 3),                       # up 0 upsampler conv
    ],
    4: [
        (1, 4, 256, 256, 3),                       # down 2 downsampler
        (4, 4, 256, 256, 3),                       # down 3
        (4, 4, 256, 256, 3),                       # mid: 2 resnets x 2 convs
        (3, 4, 512, 256, 3), (3, 4, 256, 256, 3), (3, 4, 512, 256, 1),     # up 0
    ],
}
# Attention blocks: (count, side, channels): 2 down + 3 up at 16x16, 1 in the middle.
ATTENTIONS = [(5, 16, 256), (1, 4, 256)]
# Per-image vectors: time MLP 128 -> 512 -> 512, then one projection per resnet
# (8 down with out 128,128,256,256,256,256,256,256; 2 mid; 12 up).
RESNET_OUT = [128] * 2 + [256] * 6 + [256] * 2 + [256] * 9 + [128] * 3


def attention_macs(side, c):
    n = side * side
    projections = 4 * n * c * c          # q, k, v, out
    matmuls = 2 * n * n * c              # QK^T and PV, one head of width c
    return projections, matmuls


def hand_tally():
    """{side: MACs}, attention-matmul MACs, per-image vector MACs."""
    by_side = {}
    for side, rows in CONVS.items():
        by_side[side] = sum(n * s * s * cout * cin * k * k for n, s, cin, cout, k in rows)
    attn_mm = 0
    for n, side, c in ATTENTIONS:
        proj, mm = attention_macs(side, c)
        by_side[side] += n * (proj + mm)
        attn_mm += n * mm
    vectors = 128 * T + T * T + sum(T * c for c in RESNET_OUT)
    return by_side, attn_mm, vectors


class CifarParams(unittest.TestCase):
    def test_key_list_header_matches_its_shapes(self):
        shapes, n_tensors, n_params = read_keys()
        self.assertEqual(len(shapes), n_tensors)
        self.assertEqual(n_tensors, 328)
        self.assertEqual(sum(math.prod(s) for s in shapes.values()), n_params)
        self.assertEqual(n_params, 35_746_307)

    def test_roofline_params_equal_key_list(self):
        shapes, _, _ = read_keys()
        total = roofline.count(roofline.CIFAR10_CONFIG)["params"]
        self.assertEqual(total, sum(math.prod(s) for s in shapes.values()))

    def test_hand_tally_convs_are_the_checkpoint_convs(self):
        # The hand table must name every conv of the checkpoint, with its shape.
        shapes, _, _ = read_keys()
        from_keys = sorted((s[1], s[0], s[2]) for s in shapes.values() if len(s) == 4)
        from_hand = sorted((cin, cout, k) for rows in CONVS.values()
                           for n, _, cin, cout, k in rows for _ in range(n))
        self.assertEqual(from_hand, from_keys)
        n_proj = sum(1 for name in shapes if name.endswith("time_emb_proj.weight"))
        self.assertEqual(n_proj, len(RESNET_OUT))
        n_attn = sum(1 for name in shapes if name.endswith("to_q.weight"))
        self.assertEqual(n_attn, sum(n for n, _, _ in ATTENTIONS))


class CifarForward(unittest.TestCase):
    def setUp(self):
        self.totals = roofline.count(roofline.CIFAR10_CONFIG)
        self.by_side, self.attn_mm, self.vectors = hand_tally()
        self.hand_total = sum(self.by_side.values()) + self.vectors

    def test_total_macs(self):
        self.assertEqual(self.totals["forward_macs"], self.hand_total)
        # REFERENCE.md: 6.22 GMAC per 32x32 image (rounded); 0.5% tolerance.
        self.assertAlmostEqual(self.totals["forward_macs"] / 6.22e9, 1.0, delta=0.005)

    def test_split_by_resolution(self):
        got = self.totals["macs_by_resolution"]
        self.assertEqual(sorted(got), sorted(f"{s}x{s}" for s in self.by_side))
        for side, macs in self.by_side.items():
            self.assertEqual(got[f"{side}x{side}"], macs, f"{side}x{side}")
        # REFERENCE.md's shares (rounded to 0.5 or 0.1 points there).
        total = self.totals["forward_macs"]
        for side, share, tol in ((32, 46.0, 0.5), (16, 42.0, 0.5), (8, 9.5, 0.1),
                                 (4, 2.9, 0.1)):
            self.assertAlmostEqual(100 * got[f"{side}x{side}"] / total, share, delta=tol)

    def test_attention_matmuls(self):
        mm = self.totals["macs_by_kind"]["attn_matmul"]
        self.assertEqual(mm, self.attn_mm)
        self.assertAlmostEqual(100 * mm / self.totals["forward_macs"], 2.7, delta=0.05)

    def test_training_is_three_forwards_less_conv_in_input_grad(self):
        conv_in = 32 * 32 * 128 * 3 * 9
        self.assertEqual(self.totals["train_macs"], 3 * self.hand_total - conv_in)


class OtherModels(unittest.TestCase):
    def test_fashion_mnist_preset(self):
        totals = roofline.count(roofline.PRESETS["fashion-mnist"])
        # REFERENCE.md: 6.5M params, 1.2 GMAC (both rounded to one decimal).
        self.assertEqual(round(totals["params"] / 1e6, 1), 6.5)
        self.assertEqual(round(totals["forward_macs"] / 1e9, 1), 1.2)
        self.assertEqual(sorted(totals["macs_by_resolution"]), ["14x14", "28x28", "7x7"])

    def test_small_cifar_family_model(self):
        # REFERENCE.md: ch 32, mult (1,2,2,2), one channel, 32x32: 2.2M params, 0.42 GMAC.
        cfg = dict(roofline.CIFAR10_CONFIG, in_channels=1, out_channels=1,
                   block_out_channels=[32, 64, 64, 64])
        totals = roofline.count(cfg)
        self.assertEqual(round(totals["params"] / 1e6, 1), 2.2)
        self.assertEqual(round(totals["forward_macs"] / 1e9, 2), 0.42)

    def test_unsupported_configs_are_named(self):
        bad = dict(roofline.CIFAR10_CONFIG,
                   down_block_types=["DownBlock2D", "CrossAttnDownBlock2D",
                                     "DownBlock2D", "DownBlock2D"])
        with self.assertRaisesRegex(roofline.ConfigError, "CrossAttnDownBlock2D"):
            roofline.count(bad)
        odd = dict(roofline.CIFAR10_CONFIG, sample_size=36)
        with self.assertRaisesRegex(roofline.ConfigError, "sample_size"):
            roofline.count(odd)


class Floors(unittest.TestCase):
    def test_h100_bf16_floors(self):
        # REFERENCE.md: about 80 img/s for 1000-step sampling, about 26k img/s training.
        totals = roofline.count(roofline.CIFAR10_CONFIG)
        f = roofline.floors(totals, 989.0, 2, 3350.0, 128, 256, 1000)
        self.assertEqual(f["fused"]["sample_bound"], "compute")
        self.assertAlmostEqual(f["fused"]["sample_img_s"], 80, delta=2)
        self.assertAlmostEqual(f["fused"]["train_img_s"] / 26000, 1.0, delta=0.05)
        self.assertEqual(f["unfused"]["sample_bound"], "memory")
        self.assertLess(f["unfused"]["sample_img_s"], f["fused"]["sample_img_s"])

    def test_command_line_writes_json(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "roofline.json")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                roofline.main(["--preset", "fashion-mnist", "--json", path])
            with open(path) as f:
                data = json.load(f)
        expected = roofline.count(roofline.PRESETS["fashion-mnist"])["params"]
        self.assertEqual(data["params"], expected)
        self.assertIn("parameters", out.getvalue())

    def test_bad_config_file_is_a_clear_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "config.json")
            with open(path, "w") as f:
                f.write("{not json")
            with self.assertRaisesRegex(SystemExit, "not valid JSON"):
                roofline.main(["--config", path])


if __name__ == "__main__":
    unittest.main()
