#!/usr/bin/env python3
"""Draws the garments of examples/clothing/drawn-*.png: a T-shirt, trousers, a sneaker, a bag,
a dress and an ankle boot, each a dark, flat-shaded shape with a few seams on white paper with
uneven light and a little noise, off-centre on a large canvas, as a phone photo of a drawing
would be; shoes face left, as in Fashion-MNIST's catalogue photos. Deterministic (fixed seed).

Usage (needs Pillow): python3 bench/draw_garments.py examples/clothing
"""
import os
import random
import sys

from PIL import Image, ImageDraw, ImageFilter

INK = (60, 62, 70)
SEAM = (35, 35, 40)


def paper(w, h, rng):
    """Off-white paper, lit from the top left, with a little noise."""
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            light = 246 - 18 * (x / w + y / h) / 2 + rng.uniform(-3, 3)
            px[x, y] = (int(light), int(light - 2), int(light - 8))
    return img


def tshirt(d, ox, oy, s):
    body = [(-0.5, -0.45), (-0.2, -0.5), (0.2, -0.5), (0.5, -0.45), (0.85, -0.15),
            (0.65, 0.05), (0.42, -0.1), (0.42, 0.55), (-0.42, 0.55), (-0.42, -0.1),
            (-0.65, 0.05), (-0.85, -0.15)]
    d.polygon([(ox + s * x, oy + s * y) for x, y in body], fill=INK)
    d.arc([ox - 0.2 * s, oy - 0.62 * s, ox + 0.2 * s, oy - 0.38 * s], 0, 180, fill=SEAM, width=3)


def trousers(d, ox, oy, s):
    legs = [(-0.35, -0.6), (0.35, -0.6), (0.42, 0.6), (0.1, 0.6), (0.0, -0.2), (-0.1, 0.6),
            (-0.42, 0.6)]
    d.polygon([(ox + s * x, oy + s * y) for x, y in legs], fill=INK)
    d.line([(ox - 0.35 * s, oy - 0.5 * s), (ox + 0.35 * s, oy - 0.5 * s)], fill=SEAM, width=3)


def sneaker(d, ox, oy, s):
    # Toe to the left, as Fashion-MNIST's catalogue photos show shoes.
    upper = [(0.6, 0.1), (0.55, -0.15), (0.2, -0.2), (-0.05, -0.05), (-0.45, 0.0), (-0.6, 0.08),
             (-0.62, 0.18), (0.6, 0.18)]
    d.polygon([(ox + s * x, oy + s * y) for x, y in upper], fill=INK)
    d.rectangle([ox - 0.64 * s, oy + 0.18 * s, ox + 0.62 * s, oy + 0.26 * s], fill=SEAM)
    for i in range(4):
        x = ox + s * (0.25 - 0.08 * i)
        d.line([(x, oy - 0.17 * s + 0.03 * i * s), (x - 0.06 * s, oy - 0.1 * s)], fill=(120, 120, 120), width=2)


def bag(d, ox, oy, s):
    d.rectangle([ox - 0.5 * s, oy - 0.2 * s, ox + 0.5 * s, oy + 0.45 * s], fill=INK)
    d.arc([ox - 0.28 * s, oy - 0.55 * s, ox + 0.28 * s, oy + 0.1 * s], 180, 360, fill=INK, width=int(0.06 * s))
    d.line([(ox - 0.5 * s, oy), (ox + 0.5 * s, oy)], fill=SEAM, width=3)


def dress(d, ox, oy, s):
    shape = [(-0.15, -0.6), (0.15, -0.6), (0.2, -0.15), (0.45, 0.6), (-0.45, 0.6), (-0.2, -0.15)]
    d.polygon([(ox + s * x, oy + s * y) for x, y in shape], fill=INK)
    d.line([(ox - 0.2 * s, oy - 0.15 * s), (ox + 0.2 * s, oy - 0.15 * s)], fill=SEAM, width=3)


def ankle_boot(d, ox, oy, s):
    # Toe to the left, shaft to the right, as in Fashion-MNIST.
    shape = [(0.35, -0.55), (-0.05, -0.55), (-0.08, -0.05), (-0.5, 0.12), (-0.58, 0.3), (0.4, 0.3),
             (0.38, 0.0)]
    d.polygon([(ox + s * x, oy + s * y) for x, y in shape], fill=INK)
    d.rectangle([ox - 0.6 * s, oy + 0.3 * s, ox + 0.42 * s, oy + 0.4 * s], fill=SEAM)


GARMENTS = [("tshirt", tshirt), ("trousers", trousers), ("sneaker", sneaker), ("bag", bag),
            ("dress", dress), ("ankle-boot", ankle_boot)]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "examples/clothing"
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    for name, draw in GARMENTS:
        w, h = 480, 360
        img = paper(w, h, rng)
        draw(ImageDraw.Draw(img), 0.55 * w, 0.5 * h, 220)
        img = img.filter(ImageFilter.GaussianBlur(1.2))
        img.save(os.path.join(out, f"drawn-{name}.png"))


if __name__ == "__main__":
    main()
