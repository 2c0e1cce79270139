"""Draw what each fastseq augmentation does to a real photograph.

Every picture in ``docs/guides/augmentation.md`` comes from this script:

    python docs/scripts/draw_augmentations.py            # writes docs/images/augment-*.png

Each PNG is one row: the source image, then the first few samples that
``ArraySequence`` serves with that op (``dtype="uint8"``, no normalisation),
exactly as a training loop would get them. The photograph is the portrait of
Grace Hopper that ships inside matplotlib (``mpl-data/sample_data``), so the
script needs nothing downloaded; MixUp and CutMix mix it with the gift-box
drawing shipped beside it.

Keras' layers (``augment=[...]``) get a grid each instead of a row: the
photo, then the first samples of one batch of the photo repeated, so every
tile is another sample's draw. ``KERAS_OPS`` lists them as (file name,
title, call): the call is the ``ArraySequence`` keyword arguments exactly as
the guide prints them under the picture, and this script evaluates that very
text, so the caption cannot drift from the picture.
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


#: One grid per op of ``augment=[...]``: (file name, title, ``ArraySequence`` keyword arguments as written in the
#: guide). ``{crop}`` stands for three quarters of the tile's side. Keras' defaults where they show the op well.
KERAS_OPS = [
    # geometry: one matrix per sample, composed with the crop and flips, one resample
    ("augment-random-rotation", "RandomRotation", "augment=[fastseq.RandomRotation(0.1)]"),
    ("augment-random-zoom", "RandomZoom", "augment=[fastseq.RandomZoom(0.3)]"),
    ("augment-random-translation", "RandomTranslation",
     'augment=[fastseq.RandomTranslation(0.2, 0.2, fill_mode="constant")]'),
    ("augment-random-shear", "RandomShear", "augment=[fastseq.RandomShear(x_factor=0.3, y_factor=0.3)]"),
    ("augment-random-perspective", "RandomPerspective", "augment=[fastseq.RandomPerspective(scale=0.5)]"),
    ("augment-random-elastic-transform", "RandomElasticTransform",
     "augment=[fastseq.RandomElasticTransform(factor=(1.0, 1.0), scale=(1.0, 1.0))]"),
    ("augment-random-affine", "RandomAffine",
     "augment=[fastseq.RandomAffine(rotation=0.05, scale=(0.8, 1.2), translation=0.1, shear=0.2)]"),
    # color and filters: on each sample's values, in pixel units 0..255
    ("augment-random-brightness", "RandomBrightness", "augment=[fastseq.RandomBrightness(0.4)]"),
    ("augment-random-contrast", "RandomContrast", "augment=[fastseq.RandomContrast((0.6, 0.6))]"),
    ("augment-random-saturation", "RandomSaturation", "augment=[fastseq.RandomSaturation(0.8)]"),
    ("augment-random-hue", "RandomHue", "augment=[fastseq.RandomHue(0.5)]"),
    ("augment-random-color-jitter", "RandomColorJitter",
     "augment=[fastseq.RandomColorJitter(brightness_factor=0.2, contrast_factor=(0.3, 0.3), "
     "saturation_factor=0.5, hue_factor=0.1)]"),
    ("augment-random-grayscale", "RandomGrayscale", "augment=[fastseq.RandomGrayscale(0.5)]"),
    ("augment-random-invert", "RandomInvert", "augment=[fastseq.RandomInvert()]"),
    ("augment-solarization", "Solarization",
     "augment=[fastseq.Solarization(addition_factor=0.2, threshold_factor=(0.5, 1.0))]"),
    ("augment-random-posterization", "RandomPosterization", "augment=[fastseq.RandomPosterization((1, 4))]"),
    ("augment-auto-contrast", "AutoContrast", "augment=[fastseq.AutoContrast()]"),
    ("augment-equalization", "Equalization", "augment=[fastseq.Equalization()]"),
    ("augment-random-sharpness", "RandomSharpness", "augment=[fastseq.RandomSharpness(1.0)]"),
    ("augment-random-color-degeneration", "RandomColorDegeneration",
     "augment=[fastseq.RandomColorDegeneration(1.0)]"),
    ("augment-random-gaussian-blur", "RandomGaussianBlur",
     "augment=[fastseq.RandomGaussianBlur(kernel_size=7, sigma=(0.5, 3.0))]"),
    # the slots and the list together: the crop's window and the rotation are one resample of the photo
    ("augment-chain", "CenterCrop + RandomRotation + RandomBrightness, one resample",
     "crop=fastseq.CenterCrop({crop}, {crop}), flip=\"horizontal\", "
     "augment=[fastseq.RandomRotation(0.1), fastseq.RandomBrightness(0.3)]"),
    # the policies: their ops drawn per image (fastseq.augment.policies)
    ("augment-rand-augment", "RandAugment", "augment=[fastseq.RandAugment(num_ops=2, factor=0.5)]"),
    ("augment-trivial-augment-wide", "TrivialAugmentWide", "augment=[fastseq.TrivialAugmentWide()]"),
    ("augment-aug-mix", "AugMix", "augment=[fastseq.AugMix()]"),
]


def keras_ops(tile):
    """``(file name, title, call, keyword arguments)`` of every grid; ``call`` is the text the guide shows."""
    out = []
    for name, title, template in KERAS_OPS:
        call = template.format(crop=tile * 3 // 4)
        out.append((name, title, call, eval(f"dict({call})", {"fastseq": fastseq})))
    return out


def grid_samples(photo, kwargs, count):
    """The first ``count`` samples of one batch of ``photo`` repeated: each is another sample's draw."""
    x = np.repeat(photo[None], count, axis=0)
    seq = ArraySequence(x, batch_size=count, shuffle=False, seed=0, dtype="uint8", **kwargs)
    return list(seq[0][0])


def grid(images, columns, gap):
    """Images in rows of ``columns`` on a white background, ``gap`` pixels apart, top-left aligned in their cells."""
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    rows = -(-len(images) // columns)
    canvas = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 255, np.uint8)
    for k, im in enumerate(images):
        top, left = (k // columns) * (h + gap), (k % columns) * (w + gap)
        canvas[top : top + im.shape[0], left : left + im.shape[1]] = im
    return canvas


def draw_keras(out_dir=OUT_DIR, tile=96, count=5, columns=3):
    """Write one grid PNG per entry of ``KERAS_OPS`` (the photo, then ``count`` draws); return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    photo = sample_image("grace_hopper.jpg", tile)
    paths = []
    for name, _, _, kwargs in keras_ops(tile):
        picture = grid([photo, *grid_samples(photo, kwargs, count)], columns, gap=max(2, tile // 32))
        path = os.path.join(out_dir, name + ".png")
        Image.fromarray(picture).save(path, optimize=True)
        paths.append(path)
    return paths


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
    parser.add_argument("--tile", type=int, default=96, help="side of each tile of the augment=[...] grids (default 96)")
    parser.add_argument("--grid-count", type=int, default=5, help="draws per augment=[...] grid (default 5)")
    parser.add_argument("--only", choices=("rows", "grids"), help="draw only the rows (slots) or only the grids")
    args = parser.parse_args(argv)
    paths = [] if args.only == "grids" else draw(args.out, args.size, args.count)
    if args.only != "rows":
        paths += draw_keras(args.out, args.tile, args.grid_count)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
