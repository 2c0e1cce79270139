"""Draw what each fastseq augmentation does to a real photograph.

Every picture in ``docs/guides/augmentation.md`` comes from this script:

    python docs/scripts/draw_augmentations.py            # writes docs/images/augment-*.png

Each PNG is one row: the source image, then the first few samples that
``ArraySequence`` serves with that op (``dtype="uint8"``, no normalisation),
exactly as a training loop would get them. The photograph is the portrait of
Grace Hopper that ships inside matplotlib (``mpl-data/sample_data``), so the
script needs nothing downloaded; MixUp and CutMix mix it with the gift-box
drawing shipped beside it.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

import fastseq
from fastseq import ArraySequence

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images")


def sample_image(name, size):
    """A square RGB uint8 image of ``size`` pixels from matplotlib's bundled sample data."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data(name) as f:
        im = Image.open(f)
        im.load()
    if im.mode == "RGBA":  # the drawing's transparent background becomes white
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    im = im.convert("RGB")
    w, h = im.size
    s = min(w, h)
    top = (h - s) // 4  # a little above centre: the face, not the collar
    im = im.crop(((w - s) // 2, top, (w - s) // 2 + s, top + s)).resize((size, size), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def ops(size):
    """``(file name, ArraySequence keyword arguments)`` for every picture; sizes scale with ``size``."""
    crop = size * 3 // 4
    return [
        ("augment-random-crop", dict(crop=fastseq.RandomCrop(size, size, padding=size // 8))),
        ("augment-random-crop-reflect",
         dict(crop=fastseq.RandomCrop(size, size, padding=size // 8, pad_mode="reflect"))),
        ("augment-random-flip", dict(flip=fastseq.RandomFlip("horizontal_and_vertical"))),
        ("augment-random-resized-crop", dict(crop=fastseq.RandomResizedCrop(size, size))),
        ("augment-center-crop", dict(crop=fastseq.CenterCrop(crop, crop))),
        ("augment-resize", dict(crop=fastseq.Resize(size, size // 2))),
        ("augment-cutout", dict(cutout=fastseq.Cutout(size // 3, count=2))),
        ("augment-random-erasing", dict(cutout=fastseq.RandomErasing(probability=1.0, fill=128))),
        ("augment-mixup", dict(mix=fastseq.MixUp(alpha=0.4), num_classes=2)),
        ("augment-cutmix", dict(mix=fastseq.CutMix(alpha=1.0), num_classes=2)),
    ]


def samples(x, kwargs, count):
    """The first ``count`` versions of sample 0 that the sequence serves, one per epoch.

    For MixUp and CutMix, only the epochs where sample 0's partner is the other
    image (its target is not pure class 0) are kept: mixing a photo with itself
    shows nothing.
    """
    seq = ArraySequence(x, np.arange(len(x)), batch_size=len(x), shuffle=False, seed=0, dtype="uint8", **kwargs)
    out = []
    for epoch in range(200):
        seq.set_epoch(epoch)
        batch, y = seq[0]
        if "mix" in kwargs and y[0][1] == 0:
            continue
        out.append(batch[0])
        if len(out) == count:
            return out
    raise RuntimeError(f"{kwargs}: fewer than {count} useful samples in 200 epochs")


def row(images, gap):
    """Images side by side on a white background, ``gap`` pixels apart, top-aligned."""
    h = max(im.shape[0] for im in images)
    w = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    canvas = np.full((h, w, 3), 255, np.uint8)
    left = 0
    for im in images:
        canvas[: im.shape[0], left : left + im.shape[1]] = im
        left += im.shape[1] + gap
    return canvas


def draw(out_dir=OUT_DIR, size=160, count=5):
    """Write one PNG per op into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    photo = sample_image("grace_hopper.jpg", size)
    drawing = sample_image("Minduka_Present_Blue_Pack.png", size)
    x = np.stack([photo, drawing])
    paths = []
    for name, kwargs in ops(size):
        picture = row([photo, *samples(x, kwargs, count)], gap=max(2, size // 32))
        path = os.path.join(out_dir, name + ".png")
        Image.fromarray(picture).save(path, optimize=True)
        paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT_DIR, help="output folder (default: docs/images)")
    parser.add_argument("--size", type=int, default=160, help="side of each square image in pixels (default 160)")
    parser.add_argument("--count", type=int, default=5, help="augmented samples per picture (default 5)")
    args = parser.parse_args(argv)
    for path in draw(args.out, args.size, args.count):
        print(path)


if __name__ == "__main__":
    main()
