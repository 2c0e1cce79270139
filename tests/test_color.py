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


# ---- (c) argument checks ----


@pytest.mark.parametrize("make, argument", [
    (lambda: RandomBrightness(1.5), "factor"),
    (lambda: RandomBrightness((0.1, "a")), "factor"),
    (lambda: RandomBrightness(0.1, value_range=(1, 0)), "value_range"),
    (lambda: RandomContrast(-0.1), "factor"),
    (lambda: RandomContrast((1.5, 2.0)), "factor"),
    (lambda: RandomSaturation((0.2, 1.2)), "factor"),
    (lambda: RandomHue(-0.5), "factor"),
    (lambda: RandomHue(0.5, value_range=5), "value_range"),
    (lambda: RandomColorJitter(hue_factor=2.0), "hue_factor"),
    (lambda: RandomColorJitter(brightness_factor=(0, 3)), "brightness_factor"),
    (lambda: RandomGrayscale(1.5), "factor"),
    (lambda: RandomInvert(2.0), "factor"),
    (lambda: Solarization(addition_factor=1.5), "addition_factor"),
    (lambda: Solarization(threshold_factor=(0.1, 2)), "threshold_factor"),
    (lambda: RandomPosterization(9), "factor"),
    (lambda: RandomPosterization(2.5), "factor"),
    (lambda: RandomPosterization((0, 4)), "factor"),
    (lambda: AutoContrast(value_range=(0, 0)), "value_range"),
    (lambda: Equalization(bins=1), "bins"),
    (lambda: RandomSharpness(1.1), "factor"),
    (lambda: RandomColorDegeneration(-1.5), "factor"),
    (lambda: RandomGaussianBlur(kernel_size=4), "kernel_size"),
    (lambda: RandomGaussianBlur(kernel_size=(3, 5)), "kernel_size"),
    (lambda: RandomGaussianBlur(sigma=2.0), "sigma"),
    (lambda: RandomGaussianBlur(factor=(0.5, 1.5)), "factor"),
])
def test_arguments_are_checked(make, argument):
    with pytest.raises(ValueError, match=argument) as info:
        make()
    assert str(info.value).split(":")[0] in NAMES_BY_CLASS


NAMES_BY_CLASS = {type(s).__name__ for s in specs()}


def test_channels_and_wrapper_checks():
    x = images(0, (2, 4, 4, 4))
    for op in (RandomSaturation(0.5), RandomHue(0.5), RandomGrayscale(), RandomColorJitter(saturation_factor=0.5)):
        with pytest.raises(ValueError, match="channels"):
            color(x, op, seed=0)
    color(x, RandomColorJitter(brightness_factor=0.5, contrast_factor=0.5), seed=0)  # 4 channels are fine there
    with pytest.raises(TypeError, match="images"):
        color(x.astype(np.float64), RandomBrightness(0.1), seed=0)
    with pytest.raises(ValueError, match=r"u\[0\]"):
        color(x, RandomBrightness(0.1), u=[np.zeros((2, 2))])
    with pytest.raises(ValueError, match="out"):
        color(x, RandomBrightness(0.1), seed=0, out=np.zeros((2, 4, 4, 4), np.float64))


# ---- (d) the draws: params(u) for uniform u against Keras' own get_random_transformation ----

N_DRAWS = 4000


def keras_draws(op, value_range):
    import keras

    layer = op.keras_layer()
    x = keras.ops.zeros((N_DRAWS, 1, 1, 3))
    t = layer.get_random_transformation(x, training=True, seed=keras.random.SeedGenerator(7))
    step = (value_range[1] - value_range[0]) / 255.0
    get = {
        RandomBrightness: lambda: np.ravel(t["rgb_delta"]) / step,
        RandomContrast: lambda: np.ravel(t["contrast_factor"]),
        RandomSaturation: lambda: np.ravel(t["factor"]),
        RandomHue: lambda: np.ravel(t["factor"]),
        RandomGrayscale: lambda: np.ravel(t).astype(np.float64),
        RandomInvert: lambda: np.ravel(t["apply_inversion"]).astype(np.float64),
        Solarization: lambda: np.stack([np.ravel(t["additions"]), np.ravel(t["thresholds"])], axis=1),
        RandomPosterization: lambda: np.ravel(t["shift_factor"]).astype(np.float64),
        RandomSharpness: lambda: np.ravel(t["factor"]) * 2,
        RandomColorDegeneration: lambda: np.ravel(t["factor"]),
        RandomGaussianBlur: lambda: np.ravel(t["should_apply_blur"]).astype(np.float64),
    }[type(op)]
    return np.asarray(get(), np.float64).reshape(N_DRAWS, -1)


@pytest.mark.parametrize("op, columns", [
    (RandomBrightness((-0.3, 0.6), value_range=(0, 1)), [0]),
    (RandomContrast(0.4), [0]),
    (RandomContrast((0.2, 1.5)), [0]),
    (RandomSaturation((0.2, 0.7)), [0]),
    (RandomHue(0.6), [0]),
    (RandomGrayscale(0.3), [0]),
    (RandomInvert((0.2, 0.6)), [0]),
    (Solarization(addition_factor=(0.1, 0.4), threshold_factor=0.8), [0, 1]),
    (RandomPosterization((2, 7)), [0]),
    (RandomSharpness((0.1, 0.9)), [0]),
    (RandomColorDegeneration(0.7), [0]),
    (RandomGaussianBlur(factor=(0.1, 0.5)), [0]),
], ids=lambda v: type(v).__name__ if not isinstance(v, list) else "")
def test_draws_match_keras_distribution(op, columns):
    ours = op.params(np.random.default_rng(3).random((N_DRAWS, op.n_draws)))[:, columns]
    theirs = keras_draws(op, getattr(op, "value_range", (0, 255)))
    assert ours.shape == theirs.shape
    spread = np.maximum(theirs.max(axis=0) - theirs.min(axis=0), 1e-9)
    # Means within 4 standard errors; supports alike (ends within 2% of the spread).
    se = np.maximum(theirs.std(axis=0), 1e-9) / np.sqrt(N_DRAWS)
    np.testing.assert_array_less(np.abs(ours.mean(axis=0) - theirs.mean(axis=0)), 4 * np.sqrt(2) * se + 1e-9)
    np.testing.assert_array_less(np.abs(ours.min(axis=0) - theirs.min(axis=0)), 0.02 * spread + 1e-9)
    np.testing.assert_array_less(np.abs(ours.max(axis=0) - theirs.max(axis=0)), 0.02 * spread + 1e-9)
    if isinstance(op, RandomPosterization):
        assert set(np.unique(ours)) == set(np.unique(theirs))


def test_non_random_ops_are_marked():
    assert not AutoContrast().random and not Equalization().random
    assert all(s.random for s in specs() if not isinstance(s, (AutoContrast, Equalization)))
    assert all(s.family == "color" for s in specs())
    assert len({s.code for s in specs()}) == 14
