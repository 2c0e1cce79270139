"""A seeded folder of photo-like images, one subfolder per class.

Shared by the tests and benchmarks of the photo-folder path (the store, the
resample kernel, ``image_dataset_from_directory``) so that each measures the
very files the others check. The images have real texture (smooth noise,
gradients and shapes), not flat colours, on which every resize looks right.
The same arguments always give the same bytes (Pillow's encoders are
deterministic for the same input and settings).
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FORMATS = ("jpg", "jpeg", "png", "bmp", "gif")


def photo(height, width, *, seed=0, label=0):
    """One seeded uint8 RGB ``(height, width, 3)`` photo-like image.

    Smooth value noise at two scales (a low-resolution random grid upsampled
    bicubically) over a colour gradient, with a few translucent ellipses and
    polygons, a light blur and some grain, so that neighbouring pixels
    correlate as in photos. ``label`` tints the image and picks the shapes' kind, so that a
    model can tell the classes apart.
    """
    rng = np.random.default_rng([seed, label, height, width])
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    c0, c1, c2 = (rng.uniform(0, 255, 3).astype(np.float32) for _ in range(3))
    image = c0 + (c1 - c0) * yy + (c2 - c0) * xx * 0.5
    for cells, amplitude in ((6, 60.0), (24, 25.0)):
        grid = rng.uniform(-1.0, 1.0, (cells, cells, 3)).astype(np.float32)
        layer = np.stack([np.asarray(Image.fromarray(grid[..., k], mode="F").resize((width, height), Image.BICUBIC))
                          for k in range(3)], axis=-1)
        image = image + amplitude * layer
    hue = np.array([(label * 97) % 256, (label * 53 + 80) % 256, (label * 29 + 160) % 256], np.float32)
    image = 0.8 * image + 0.2 * hue
    out = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="RGB")
    shapes = out.copy()
    draw = ImageDraw.Draw(shapes)
    for _ in range(int(rng.integers(3, 8))):
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, 2) * width)
        y0, y1 = sorted(rng.uniform(-0.1, 1.1, 2) * height)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if label % 2 == 0:
            draw.ellipse([x0, y0, x1 + 2, y1 + 2], fill=fill)
        else:
            k = 3 + label % 4
            angles = np.sort(rng.uniform(0, 2 * np.pi, k))
            cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 4) / 2
            draw.polygon([(float(cx + r * np.cos(a)), float(cy + r * np.sin(a))) for a in angles], fill=fill)
    out = Image.blend(out, shapes, 0.7).filter(ImageFilter.GaussianBlur(0.8))  # the texture shows through the shapes
    fine = 6.0 * rng.standard_normal((height, width, 3), dtype=np.float32)  # sensor-like grain
    return np.clip(np.asarray(out, np.float32) + fine, 0, 255).astype(np.uint8)


def make_photo_folder(root, n_images=2000, n_classes=5, sizes=(200, 500), seed=0, formats=("jpg",)):
    """Write a seeded folder of photos ``root/class_K/img_IIIII.EXT`` and return ``root``.

    Image ``i`` belongs to class ``i % n_classes``, has height and width drawn
    independently in ``[sizes[0], sizes[1]]`` and is saved in format
    ``formats[i % len(formats)]`` (JPEG at quality 90; PNG, BMP and GIF
    (palette, adaptive) losslessly as Pillow writes them). Image ``i``'s
    pixels depend only on ``(seed, i)``, not on ``n_images``.

    Args:
        root: the folder to create (parents too); existing files of the same
            names are overwritten.
        n_images: how many images, in total.
        n_classes: how many class subfolders ``class_0 .. class_{n-1}``.
        sizes: ``(smallest, largest)`` side, inclusive.
        seed: the seed every image derives from.
        formats: extensions to cycle through, from ``FORMATS``.

    Returns:
        ``root`` as a ``pathlib.Path``.
    """
    root = pathlib.Path(root)
    bad = [f for f in formats if f.lower() not in FORMATS]
    if not formats or bad:
        raise ValueError(f"formats must be a non-empty sequence of {FORMATS}, got {formats!r}.")
    if n_classes < 1 or n_images < 0:
        raise ValueError(f"n_images must be >= 0 and n_classes >= 1, got n_images={n_images}, n_classes={n_classes}.")
    lo, hi = sizes
    if not 1 <= lo <= hi:
        raise ValueError(f"sizes must be (smallest, largest) with 1 <= smallest <= largest, got {sizes!r}.")
    for k in range(n_classes):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        label = i % n_classes
        rng = np.random.default_rng([seed, i])
        height, width = (int(v) for v in rng.integers(lo, hi + 1, 2))
        pixels = photo(height, width, seed=seed * 1_000_003 + i, label=label)
        ext = formats[i % len(formats)]
        path = root / f"class_{label}" / f"img_{i:05d}.{ext}"
        image = Image.fromarray(pixels, mode="RGB")
        kind = ext.lower()
        if kind in ("jpg", "jpeg"):
            image.save(path, format="JPEG", quality=90)
        elif kind == "gif":
            image.convert("P", palette=Image.ADAPTIVE).save(path, format="GIF")
        else:
            image.save(path, format="PNG" if kind == "png" else "BMP")
    return root
