#!/usr/bin/env python3
"""Sample quality for Fashion-MNIST models: FID in the features of a small
Fashion-MNIST classifier (no Inception network exists on these machines: they
reach PyPI and Debian only), and the classifier's class histogram of the
samples, with a floor and a ceiling printed beside the figure so it means
something:

  floor    n real training images against the test set (what a perfect model
           would score with the same n);
  ceiling  n images of uniform noise against the test set.

The classifier (three 3x3 conv layers pooled to 3x3, a 128-unit feature layer, 10 classes;
~130k parameters) is trained once by `train` and written to
tools/fid/fashion_classifier.safetensors (committed, ~0.5 MB); `score` then
needs only numpy, torch and the dataset.

  python3 -m venv tools/.venv && tools/.venv/bin/pip install torch safetensors numpy
  tools/.venv/bin/python tools/fashion_fid.py train
  tools/.venv/bin/python tools/fashion_fid.py score runs/x/grid.npy [--json out.json]

SAMPLES: an .npy written by ddpm_cuda_sample (N x 28 x 28 x 1 float32 in
[0, 1], as DDPMPipeline's output_type="np") or a folder of 28x28 grey PNGs.
The data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
installed by tools/setup.sh; --data names another folder of the IDX files.
"""
import argparse
import gzip
import json
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "tools" / "fid" / "fashion_classifier.safetensors"
DATA = pathlib.Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(data, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(data / f"{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = read_idx(data / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels  # [N, 28, 28] in [0, 1]


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        c = torch.nn
        self.body = c.Sequential(
            c.Conv2d(1, 32, 3, padding=1), c.ReLU(), c.MaxPool2d(2),       # 14x14
            c.Conv2d(32, 64, 3, padding=1), c.ReLU(), c.MaxPool2d(2),      # 7x7
            c.Conv2d(64, 64, 3, padding=1), c.ReLU(), c.AdaptiveAvgPool2d(3),  # 3x3
            c.Flatten(), c.Linear(64 * 9, 128), c.ReLU())
        self.head = c.Linear(128, 10)

    def features(self, x):  # x: [N, 1, 28, 28] in [0, 1]
        return self.body(x * 2 - 1)

    def forward(self, x):
        return self.head(self.features(x))


def train(args):
    torch.manual_seed(0)
    x, y = load_split(args.data, "train")
    xt, yt = load_split(args.data, "test")
    x, xt = torch.from_numpy(x)[:, None], torch.from_numpy(xt)[:, None]
    y, yt = torch.from_numpy(y), torch.from_numpy(yt)
    model = Classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x))
        model.train()
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = sum((model(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum().item()
                      for i in range(0, len(xt), 1000)) / len(xt)
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f}", flush=True)
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(WEIGHTS),
              metadata={"test_accuracy": f"{acc:.4f}", "epochs": str(args.epochs)})
    print(f"wrote {WEIGHTS}")


def load_samples(path):
    path = pathlib.Path(path)
    if path.is_dir():
        from PIL import Image
        files = sorted(path.glob("*.png"))
        if not files:
            sys.exit(f"{path}: no PNG files")
        imgs = np.stack([np.asarray(Image.open(f).convert("L"), np.float32) / 255.0
                         for f in files])
    else:
        imgs = np.load(path)
        if imgs.ndim == 4:
            if imgs.shape[-1] != 1:
                sys.exit(f"{path}: expected one channel (N x 28 x 28 x 1), got {imgs.shape}")
            imgs = imgs[..., 0]
    if imgs.shape[1:] != (28, 28):
        sys.exit(f"{path}: expected 28x28 images, got {imgs.shape}")
    return np.clip(imgs.astype(np.float32), 0, 1)


def features_and_classes(model, imgs):
    feats, classes = [], []
    with torch.no_grad():
        for i in range(0, len(imgs), 1000):
            x = torch.from_numpy(np.ascontiguousarray(imgs[i:i + 1000]))[:, None]
            f = model.features(x)
            feats.append(f.double().numpy())
            classes.append(model.head(f).argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(classes)


def fid(a, b):
    """Frechet distance between Gaussians fitted to feature sets a and b."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # trace sqrt(ca cb) = sum of sqrt of the eigenvalues of ca cb (real, >= 0
    # up to rounding, as ca cb is similar to a positive semi-definite matrix).
    eig = np.linalg.eigvals(ca @ cb)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt)


def score(args):
    if not WEIGHTS.exists():
        sys.exit(f"{WEIGHTS} is missing: run `{sys.argv[0]} train` first")
    model = Classifier()
    model.load_state_dict(load_file(str(WEIGHTS)))
    model.eval()
    samples = load_samples(args.samples)
    n = len(samples)
    if n < 2:
        sys.exit("need at least 2 samples")
    test, _ = load_split(args.data, "test")
    train_imgs, _ = load_split(args.data, "train")
    rng = np.random.default_rng(0)
    real = train_imgs[rng.choice(len(train_imgs), n, replace=False)]
    noise = rng.random((n, 28, 28), dtype=np.float32)
    f_test, _ = features_and_classes(model, test)
    f_s, c_s = features_and_classes(model, samples)
    f_r, _ = features_and_classes(model, real)
    f_n, _ = features_and_classes(model, noise)
    hist = np.bincount(c_s, minlength=10) / n
    out = dict(samples=str(args.samples), n=n, fid=fid(f_s, f_test), floor=fid(f_r, f_test),
               ceiling=fid(f_n, f_test),
               classes={CLASSES[i]: round(float(hist[i]), 4) for i in range(10)},
               classes_present=int((hist >= 0.02).sum()))
    print(f"FID (classifier features, n={n} against the 10k test images): {out['fid']:.2f}")
    print(f"  floor (n real training images): {out['floor']:.2f}   "
          f"ceiling (n noise images): {out['ceiling']:.2f}")
    print("  classes of the samples: " +
          ", ".join(f"{k} {v:.0%}" for k, v in out["classes"].items()))
    print(f"  classes with >= 2% of the samples: {out['classes_present']} of 10")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=pathlib.Path, default=DATA,
                   help="folder of the Fashion-MNIST IDX .gz files")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the feature classifier (once)")
    t.add_argument("--epochs", type=int, default=6)
    s = sub.add_parser("score", help="FID and class histogram of samples")
    s.add_argument("samples", help=".npy from ddpm_cuda_sample or a folder of PNGs")
    s.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    train(args) if args.cmd == "train" else score(args)


if __name__ == "__main__":
    main()
