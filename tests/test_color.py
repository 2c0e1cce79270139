"""fastseq's color ops: the compiled kernels against their NumPy twins, and against Keras' own layers' pixels.

Keras' parameters are pinned through each layer's ``transform_images(images,
transformation)`` (TensorFlow backend), built from our per-sample params.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from fastseq.augment.color import (  # noqa: E402
    AutoContrast,
    Equalization,
    RandomBrightness,
    RandomColorDegeneration,
    RandomColorJitter,
    RandomContrast,
    RandomGaussianBlur,
    RandomGrayscale,
    RandomHue,
    RandomInvert,
    RandomPosterization,
    RandomSaturation,
    RandomSharpness,
    Solarization,
)
from fastseq.kernels.color import color  # noqa: E402
from tests import reference  # noqa: E402


def specs(value_range=(0, 255)):
    vr = {"value_range": value_range}
    return [
        RandomBrightness(0.4, **vr),
        RandomContrast((0.5, 0.8), **vr),
        RandomSaturation((0.1, 0.9), **vr),
        RandomHue(0.8, **vr),
        RandomColorJitter(brightness_factor=0.2, contrast_factor=0.5, saturation_factor=(0.2, 0.8), hue_factor=0.5, **vr),
        RandomGrayscale(0.5),
        RandomInvert(**vr),
        Solarization(addition_factor=(0.0, 0.3), threshold_factor=(0.2, 0.9), **vr),
        RandomPosterization((1, 8), **vr),
        AutoContrast(**vr),
        Equalization(**vr),
        Equalization(bins=37, **vr),
        RandomSharpness(1.0, **vr),
        RandomColorDegeneration(1.0, **vr),
        RandomGaussianBlur(factor=1.0, kernel_size=5, sigma=(0.3, 2.0), **vr),
        RandomGaussianBlur(**vr),
    ]


NAMES = [f"{type(s).__name__}{i}" for i, s in enumerate(specs())]


def images(seed, shape, integer=True):
    rng = np.random.default_rng(seed)
    if integer:
        return rng.integers(0, 256, shape).astype(np.uint8)
    # Low-contrast, off-grid values: auto-contrast and equalization have work to do, and no value sits on a bin edge.
    return (rng.random(shape) * 180 + 30).astype(np.float32)


def draws(op, n, seed):
    return op.params(np.random.default_rng(seed).random((n, op.n_draws)))


# ---- (a) kernel vs its NumPy twin ----


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
@pytest.mark.parametrize("shape", [(5, 7, 9, 3), (3, 1, 13, 3), (2, 16, 1, 3), (4, 6, 5, 1)])
def test_kernel_matches_reference(index, shape):
    op = specs()[index]
    if shape[-1] == 1 and type(op) in (RandomSaturation, RandomHue, RandomColorJitter):
        with pytest.raises(ValueError, match="3 channels"):
            color(images(0, shape), op, seed=0)
        return
    for integer in (True, False):
        x = images(index, shape, integer)
        p = draws(op, shape[0], index + 100)
        got = color(x, op, params=[p])
        want = np.stack([reference.color_op(x[i].astype(np.float32), op.code, p[i]) for i in range(shape[0])])
        # float32 vs float64: a few 1e-3 levels; equalization and posterization are exact tables.
        np.testing.assert_allclose(got, want, atol=2e-3, rtol=0, err_msg=f"{NAMES[index]} {shape} integer={integer}")


def test_ops_in_sequence_and_out_in_place():
    x = images(1, (6, 8, 8, 3)).astype(np.float32)
    ops = [RandomBrightness(0.3), RandomGaussianBlur(), Equalization()]
    ps = [draws(op, 6, k) for k, op in enumerate(ops)]
    want = x.copy()
    for op, p in zip(ops, ps):
        want = np.stack([reference.color_op(want[i], op.code, p[i]) for i in range(6)]).astype(np.float32)
    got = color(x, ops, params=ps, out=x)
    assert got is x
    np.testing.assert_allclose(got, want, atol=2e-3)


# ---- (b) Keras' own pixels ----


def keras_pixels(op, x, p):
    """Keras' layer of the same name, pinned to our params, on ``x`` (float32 NHWC as Keras sees it)."""
    import tensorflow as tf

    if isinstance(op, (Equalization, RandomGaussianBlur)):  # batch statistic / one sigma pair per batch: image by image
        return np.concatenate([keras_pixels_batch(op, x[i:i + 1], p[i:i + 1]) for i in range(len(x))])
    del tf
    return keras_pixels_batch(op, x, p)


def keras_pixels_batch(op, x, p):
    import tensorflow as tf

    layer = op.keras_layer()
    t = tf.constant(x)
    if isinstance(op, RandomColorJitter):
        t = tf.cast(t, layer.compute_dtype)
        parts = (layer.random_brightness, layer.random_contrast, layer.random_saturation, layer.random_hue)
        for sub, tr in zip(parts, op.keras_part_transformations(p)):
            if sub is not None:
                t = sub.transform_images(t, {k: tf.constant(v) for k, v in tr.items()}, training=True)
        return np.asarray(t)
    tr = op.keras_transformation(p)
    if isinstance(tr, dict):
        tr = {k: tf.constant(v) for k, v in tr.items()}
    elif tr is not None:
        tr = tf.constant(tr)
    return np.asarray(layer.transform_images(t, tr, training=True))


MAX_DIFF = {}


@pytest.mark.parametrize("value_range", [(0, 255), (0, 1)], ids=["0-255", "0-1"])
@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_matches_keras_pinned(index, value_range):
    op = specs(value_range)[index]
    scale = 255.0 / (value_range[1] - value_range[0])
    worst = 0.0
    for integer, shape in ((True, (6, 9, 11, 3)), (False, (4, 17, 6, 3))):
        x = images(index + 7, shape, integer)
        p = draws(op, shape[0], index + 200)
        ours = color(x, op, params=[p])
        theirs = keras_pixels(op, (value_range[0] + x.astype(np.float32) / np.float32(scale)).astype(np.float32), p)
        diff = np.abs(ours - (theirs - value_range[0]) * scale)
        worst = max(worst, float(diff.max()))
    MAX_DIFF[(NAMES[index], value_range)] = worst
    print(f"max |fastseq - Keras| {NAMES[index]} value_range={value_range}: {worst:.3g} levels of 255")
    assert worst <= 1.0, f"{NAMES[index]} {value_range}: {worst} levels"


def test_keras_gray_input_grayscale_and_degeneration():
    x = images(3, (4, 5, 6, 1))
    for op in (RandomGrayscale(1.0), RandomColorDegeneration((0.5, 0.5))):
        p = draws(op, 4, 0)
        np.testing.assert_allclose(color(x, op, params=[p]), keras_pixels(op, x.astype(np.float32), p), atol=1e-4)
