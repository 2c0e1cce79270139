"""Seeded images with real texture, for tests and benchmarks of the resampling kernels.

Flat colours make every resize look right; these have edges, gradients,
stripes at several frequencies and noise, so a wrong tap, weight or
rounding shows. A stand-in for ``fastseq.bench.photos`` until that lands.
"""

import numpy as np


def textured_image(rng, height, width, channels=3):
    """A uint8 (height, width, channels) image: smooth waves, a few hard-edged blocks and noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, size=(channels, 3))
    freq = rng.uniform(0.02, 0.6, size=(channels, 2))
    img = np.empty((height, width, channels), np.float64)
    for c in range(channels):
        img[..., c] = (128 + 50 * np.sin(freq[c, 0] * x + phase[c, 0]) * np.cos(freq[c, 1] * y + phase[c, 1])
                       + 30 * np.sin(0.05 * (x + y) + phase[c, 2]))
    for _ in range(4):  # hard edges
        t, left = rng.integers(0, height), rng.integers(0, width)
        img[t : t + rng.integers(1, height + 1), left : left + rng.integers(1, width + 1)] += rng.uniform(-80, 80, channels)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def ragged_images(n, *, sides=(20, 90), channels=3, seed=0):
    """``n`` textured images with sides uniform in ``sides`` (inclusive): ``(images, pixels, offsets, shapes)``."""
    rng = np.random.default_rng(seed)
    images = [textured_image(rng, int(rng.integers(sides[0], sides[1] + 1)), int(rng.integers(sides[0], sides[1] + 1)),
                             channels) for _ in range(n)]
    shapes = np.array([a.shape for a in images], np.int64).reshape(-1, 3)
    sizes = shapes.prod(axis=1)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    pixels = np.concatenate([a.reshape(-1) for a in images]) if images else np.zeros(0, np.uint8)
    return images, pixels, offsets, shapes
