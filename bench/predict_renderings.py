#!/usr/bin/env python3
"""How well `mnist-lab predict` reads test images drawn the ways a user's photos come.

The first N test images of a dataset are written as PNG files three ways and given to
`predict` with a saved model; the script prints the share each way gets right:

  original   the 28×28 image itself (light product on black, as in the dataset)
  up112      upscaled 4× to 112×112 (bilinear), still light on black
  catalog    negated (dark product on white), upscaled 4× (bilinear), in RGB, with a 24-pixel
             white margin on every side (160×160): a catalog photo on a plain background

Usage (needs Pillow: `python3 -m venv v && v/bin/pip install pillow`):
  python3 bench/predict_renderings.py MODEL DATA_DIR [N] [BIN]
  e.g. python3 bench/predict_renderings.py results/fashion-deeper/final data/fashion-mnist 200
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

from PIL import Image, ImageOps


def read_idx(path):
    if not os.path.exists(path):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return dims, data[4 + 4 * ndim :]


def main():
    model, data_dir = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    binary = sys.argv[4] if len(sys.argv) > 4 else "target/release/mnist-lab"
    dims, pixels = read_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte"))
    _, labels = read_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte"))
    h, w = dims[1], dims[2]
    ways = ["original", "up112", "catalog"]
    with tempfile.TemporaryDirectory() as tmp:
        files = {way: [] for way in ways}
        for i in range(n):
            img = Image.frombytes("L", (w, h), pixels[i * h * w : (i + 1) * h * w])
            up = img.resize((4 * w, 4 * h), Image.BILINEAR)
            catalog = ImageOps.expand(ImageOps.invert(up).convert("RGB"), 24, "white")
            for way, im in zip(ways, [img, up, catalog]):
                path = os.path.join(tmp, f"{way}-{i:05d}.png")
                im.save(path)
                files[way].append(path)
        for way in ways:
            out = subprocess.run(
                [binary, "predict", model, "--json", *files[way]],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            classes = [json.loads(line)["class"] for line in out.splitlines()]
            right = sum(c == labels[i] for i, c in enumerate(classes))
            print(f"{way:10s} {right}/{n} = {100.0 * right / n:.1f}%")


if __name__ == "__main__":
    main()
