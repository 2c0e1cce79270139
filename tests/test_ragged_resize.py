"""Resampling images of different sizes (fastseq.kernels.ragged): against the NumPy twins and against TensorFlow.

The kernel equals its twin in tests/reference.py bit for bit for every
filter made of float32 arithmetic alone; lanczos and gaussian call sin/exp,
whose last bits may differ between libraries (tolerance 5e-4 of 255). Against
TensorFlow on textured images: bilinear, nearest and area are bit-exact, the
others within 2e-4 (TensorFlow's bicubic sums vertically first; the kernel
horizontally).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastseq.kernels as K
from fastseq.kernels import ragged as RK
from tests import reference as R
from tests.textured import ragged_images, textured_image

DTYPES = ("float32", "float16", "bfloat16", "uint8")
EXACT = ("bilinear", "nearest", "bicubic", "area", "mitchellcubic")
TRANSCENDENTAL = ("lanczos3", "lanczos5", "gaussian")

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def plan_for(pixels, offsets, shapes, **kw):
    return RK.RaggedResizePlan(pixels, offsets, shapes, **kw)


def compare(actual, expected, dtype, atol):
    if dtype == "uint8":
        if atol:  # a value within atol of .5 may round either way
            assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1
        else:
            np.testing.assert_array_equal(actual, expected)
    elif atol:
        # A value within atol of a half-precision rounding tie may round to either neighbour: one ulp of the
        # type (hypothesis found 105.6875 against 105.75 in float16, lanczos5, a 0.06 step at 2**-10 relative).
        ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7}.get(dtype, 0.0)
        np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=ulp,
                                   atol=atol * (8 if dtype in ("float16", "bfloat16") else 1))
    else:
        np.testing.assert_array_equal(np.ascontiguousarray(actual).view(np.uint8),
                                      np.ascontiguousarray(expected).view(np.uint8))


# ---- the kernel against its twin -------------------------------------------


@st.composite
def ragged_case(draw):
    """A random valid call: 1..10 images of 1..60 px sides, any box (inside, or reaching out when padding), window, flip."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    C = draw(st.sampled_from([1, 3, 4]))
    N = draw(st.integers(1, 10))
    images = [rng.integers(0, 256, (int(rng.integers(1, 61)), int(rng.integers(1, 61)), C), dtype=np.uint8)
              for _ in range(N)]
    if draw(st.booleans()):
        images = [textured_image(rng, a.shape[0], a.shape[1], C) for a in images]
    shapes = np.array([a.shape for a in images], np.int64)
    offsets = np.concatenate([[0], np.cumsum(shapes.prod(1))[:-1]]).astype(np.int64)
    pixels = np.concatenate([a.reshape(-1) for a in images] + [np.zeros(7, np.uint8)])  # slack at the end
    n = draw(st.integers(1, 6))
    indices = rng.integers(0, N, n)
    H, W = shapes[indices, 0], shapes[indices, 1]
    padding = draw(st.booleans())
    if padding:
        bh = rng.integers(1, 2 * H + 2)
        bw = rng.integers(1, 2 * W + 2)
        boxes = np.stack([rng.integers(-H, H + 1), rng.integers(-W, W + 1), bh, bw], axis=1)
    else:
        bh = rng.integers(1, H + 1)
        bw = rng.integers(1, W + 1)
        boxes = np.stack([rng.integers(0, H - bh + 1), rng.integers(0, W - bw + 1), bh, bw], axis=1)
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["none", "scaled", "windows"]))
    scaled = (h + draw(st.integers(0, 9)), w + draw(st.integers(0, 9))) if kind == "scaled" else None
    windows = None
    if kind == "windows":
        wh, ww = rng.integers(1, 2 * h + 2, n), rng.integers(1, 2 * w + 2, n)
        windows = np.stack([rng.integers(-h, h + 1, n), rng.integers(-w, w + 1, n), wh, ww], axis=1)
    return dict(
        pixels=pixels, offsets=offsets, shapes=shapes, indices=indices, boxes=boxes, windows=windows,
        flips=rng.integers(0, 4, n), size=(h, w), scaled_size=scaled, padding=padding,
        interpolation=draw(st.sampled_from(RK.INTERPOLATIONS)), antialias=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)), data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
        norm=draw(st.sampled_from([{}, {"scale": 1 / 255}, {"mean": 120.0, "std": 50.0}])),
    )


@PROPERTY
@given(case=ragged_case())
def test_kernel_equals_twin(case):
    c = case
    norm = c["norm"] if c["dtype"] != "uint8" else {}
    plan = plan_for(c["pixels"], c["offsets"], c["shapes"], size=c["size"], scaled_size=c["scaled_size"],
                    interpolation=c["interpolation"], antialias=c["antialias"], allow_padding=c["padding"],
                    dtype=c["dtype"], data_format=c["data_format"], **norm)
    actual = plan(c["indices"], c["boxes"], c["flips"], windows=c["windows"])
    expected = R.ragged_resize(c["pixels"], c["offsets"], c["shapes"], c["indices"], size=c["size"],
                               boxes=c["boxes"], windows=c["windows"], flips=c["flips"], scaled_size=c["scaled_size"],
                               interpolation=c["interpolation"], antialias=c["antialias"], dtype=c["dtype"],
                               data_format=c["data_format"], **norm)
    atol = 5e-4 if c["interpolation"] in TRANSCENDENTAL else 0
    compare(actual, expected, c["dtype"], atol * (np.max(np.abs(plan._a)) if norm else 1))


@pytest.mark.parametrize("interpolation", RK.INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
def test_every_interpolation_on_odd_shapes_up_and_down(interpolation, antialias):
    images, pixels, offsets, shapes = ragged_images(6, sides=(1, 70), seed=3)
    idx = np.arange(6)
    for size in [(1, 1), (17, 5), (45, 71)]:
        plan = plan_for(pixels, offsets, shapes, size=size, interpolation=interpolation, antialias=antialias)
        actual = plan(idx)
        expected = R.ragged_resize(pixels, offsets, shapes, idx, size=size, interpolation=interpolation,
                                   antialias=antialias)
        compare(actual, expected, "float32", 5e-4 if interpolation in TRANSCENDENTAL else 0)
        assert np.isfinite(actual).all() and actual.std() > 0 if size != (1, 1) else True


def test_out_is_filled_and_returned():
    _, pixels, offsets, shapes = ragged_images(4, seed=1)
    plan = plan_for(pixels, offsets, shapes, size=(8, 9), dtype="uint8")
    out = np.full(plan.output_shape(3), 7, np.uint8)
    got = plan([2, 0, 2], out=out)
    assert got is out
    np.testing.assert_array_equal(out, R.ragged_resize(pixels, offsets, shapes, [2, 0, 2], size=(8, 9), dtype="uint8"))


def test_memmapped_pixels_give_the_same_batch(tmp_path):
    _, pixels, offsets, shapes = ragged_images(9, seed=2)
    path = tmp_path / "pixels.u8"
    pixels.tofile(path)
    mm = np.memmap(path, np.uint8, mode="r")
    idx = np.array([8, 1, 4, 1, 0])
    a = plan_for(pixels, offsets, shapes, size=(16, 12))(idx)
    b = plan_for(mm, offsets, shapes, size=(16, 12))(idx)
    np.testing.assert_array_equal(a, b)


def test_batch_size_and_threads_do_not_change_a_sample():
    from concurrent.futures import ThreadPoolExecutor

    _, pixels, offsets, shapes = ragged_images(40, seed=4)
    plan = plan_for(pixels, offsets, shapes, size=(24, 20), interpolation="area")
    idx = np.arange(40)[::-1].copy()
    whole = plan(idx)
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda s: plan(idx[s : s + 7]), range(0, 40, 7)))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


# ---- against TensorFlow ------------------------------------------------------


def _tf():
    return pytest.importorskip("tensorflow")


def _photos(seed, n=10, sides=(30, 160)):
    return ragged_images(n, sides=sides, seed=seed)


def _stats(actual, expected):
    d = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    return d.mean(), np.percentile(d, 99), d.max()


@pytest.mark.parametrize("interpolation", RK.INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
def test_tf_image_resize(interpolation, antialias):
    tf = _tf()
    images, pixels, offsets, shapes = _photos(5)
    idx = np.arange(len(images))
    for size in [(64, 48), (224, 224)]:  # down and up
        plan = plan_for(pixels, offsets, shapes, size=size, interpolation=interpolation, antialias=antialias)
        actual = plan(idx)
        expected = np.stack([tf.image.resize(a, size, method=interpolation, antialias=antialias).numpy()
                             for a in images])
        mean, p99, worst = _stats(actual, expected)
        if interpolation in ("bilinear", "nearest", "area") and not antialias:
            assert worst == 0, (size, worst)
        else:
            assert worst <= 2e-4, (size, worst)
        # The bounds, for uint8 output (rounding only).
        u8 = plan_for(pixels, offsets, shapes, size=size, interpolation=interpolation, antialias=antialias,
                      dtype="uint8")(idx)
        mean, p99, _ = _stats(u8, expected)
        assert mean <= 1.0 and p99 <= 8


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "area"])
def test_keras_crop_and_pad_paths(interpolation):
    tf = _tf()
    from keras.src.backend import tensorflow as tf_backend
    from keras.src.backend.tensorflow import image as keras_tf_image
    from keras.src.utils import image_utils

    images, pixels, offsets, shapes = _photos(6, n=12, sides=(20, 200))
    idx = np.arange(len(images))
    exact = interpolation != "bicubic"
    for size in [(32, 40), (224, 224), (128, 96)]:
        plan = plan_for(pixels, offsets, shapes, size=size, interpolation=interpolation)
        # crop_to_aspect_ratio: Keras' smart_resize with the TensorFlow backend (what format="tf" runs)
        crop = plan(idx, RK.keras_boxes(shapes, size, crop_to_aspect_ratio=True))
        expected = np.stack([image_utils.smart_resize(tf.constant(a), size, interpolation=interpolation,
                                                      backend_module=tf_backend).numpy() for a in images])
        assert _stats(crop, expected)[2] <= (0 if exact else 2e-4)
        # pad_to_aspect_ratio, format="tf": tf.image.resize_with_pad
        pad = plan(idx, windows=RK.keras_pad_windows(shapes, size))
        expected = np.stack([tf.image.resize_with_pad(a, size[0], size[1], method=interpolation).numpy()
                             for a in images])
        assert _stats(pad, expected)[2] <= (0 if exact else 2e-4)
        # pad_to_aspect_ratio, format="grain": keras.ops.image.resize pads with zeros, then resizes
        padded = plan_for(pixels, offsets, shapes, size=size, interpolation=interpolation, allow_padding=True)
        grain = padded(idx, RK.keras_boxes(shapes, size, pad_to_aspect_ratio=True))
        expected = np.stack([keras_tf_image.resize(tf.constant(a.astype(np.float32)), size, interpolation=interpolation,
                                                   pad_to_aspect_ratio=True).numpy() for a in images])
        assert _stats(grain, expected)[2] <= (0 if exact else 2e-4)


def test_keras_geometry_equals_its_twin_on_many_shapes():
    rng = np.random.default_rng(7)
    shapes = np.stack([rng.integers(1, 3000, 500), rng.integers(1, 3000, 500), np.full(500, 3)], axis=1)
    for size in [(224, 224), (128, 96), (17, 300), (1, 1)]:
        for kw in [{}, {"crop_to_aspect_ratio": True}, {"pad_to_aspect_ratio": True}]:
            np.testing.assert_array_equal(RK.keras_boxes(shapes, size, **kw), R.keras_boxes(shapes, size, **kw))
        np.testing.assert_array_equal(RK.keras_pad_windows(shapes, size), R.keras_pad_windows(shapes, size))
    crop = RK.keras_boxes(shapes, (224, 224), crop_to_aspect_ratio=True)
    assert (crop[:, 0] >= 0).all() and (crop[:, 0] + crop[:, 2] <= shapes[:, 0]).all()
    assert (crop[:, 1] >= 0).all() and (crop[:, 1] + crop[:, 3] <= shapes[:, 1]).all()


def test_keras_boxes_known_values():
    shapes = np.array([[300, 400, 3], [400, 300, 3], [256, 256, 3]])
    np.testing.assert_array_equal(RK.keras_boxes(shapes, (224, 224), crop_to_aspect_ratio=True),
                                  [[0, 50, 300, 300], [50, 0, 300, 300], [0, 0, 256, 256]])
    np.testing.assert_array_equal(RK.keras_boxes(shapes, (224, 224), pad_to_aspect_ratio=True),
                                  [[-50, 0, 400, 400], [0, -50, 400, 400], [0, 0, 256, 256]])
    # 256 / (256 / 224) is 223.99998 in float32: TensorFlow's resize_with_pad resizes to 223 and pads one row.
    np.testing.assert_array_equal(RK.keras_pad_windows(shapes, (224, 224)),
                                  [[28, 0, 168, 224], [0, 28, 224, 168], [0, 0, 223, 223]])


# ---- RandomResizedCrop on the originals ---------------------------------------


def test_ragged_crop_params_equal_the_fixed_size_draws_per_image_size():
    shapes = np.array([[300, 400, 3], [17, 5, 3], [300, 400, 3], [64, 64, 3], [1, 1, 3], [5, 900, 3]])
    ragged = RK.RaggedResizedCropParams(shapes, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), horizontal=0.5,
                                        vertical=0.25)
    idx = np.array([0, 1, 2, 3, 4, 5, 5, 0])
    for seed, epoch in [(0, 0), (12345, 7)]:
        boxes, flips = ragged(seed, epoch, idx)
        for k, i in enumerate(idx):
            fixed = K.ResizedCropParams(image_size=tuple(shapes[i, :2]), horizontal=0.5, vertical=0.25)
            b, f = fixed(seed, epoch, [i])
            np.testing.assert_array_equal(boxes[k], b[0])
            assert flips[k] == f[0]
        rb, rf = R.ragged_resized_crop_params(seed, epoch, idx, shapes, horizontal=0.5, vertical=0.25)
        np.testing.assert_array_equal(boxes, rb)
        np.testing.assert_array_equal(flips, rf)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**63), epoch=st.integers(0, 1000), n=st.integers(1, 50),
       lo=st.floats(0.01, 1.0), hi=st.floats(0.01, 1.0))
def test_ragged_crop_boxes_lie_inside_each_image_and_match_the_twin(seed, epoch, n, lo, hi):
    rng = np.random.default_rng(seed % 2**32)
    shapes = np.stack([rng.integers(1, 600, 60), rng.integers(1, 600, 60), np.full(60, 3)], axis=1)
    scale = (min(lo, hi), max(lo, hi))
    idx = rng.integers(0, 60, n)
    boxes, flips = RK.RaggedResizedCropParams(shapes, scale=scale)(seed, epoch, idx)
    H, W = shapes[idx, 0], shapes[idx, 1]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 2] >= 1).all()
    assert (boxes[:, 0] + boxes[:, 2] <= H).all() and (boxes[:, 1] + boxes[:, 3] <= W).all()
    rb, rf = R.ragged_resized_crop_params(seed, epoch, idx, shapes, scale=scale)
    np.testing.assert_array_equal(boxes, rb)
    np.testing.assert_array_equal(flips, rf)


def test_ragged_crop_draws_do_not_depend_on_batching():
    shapes = np.stack([np.arange(10, 110), np.arange(200, 100, -1), np.full(100, 3)], axis=1)
    params = RK.RaggedResizedCropParams(shapes)
    idx = np.random.default_rng(0).permutation(100)
    whole = params(3, 2, idx)
    parts = [params(3, 2, idx[s : s + 13]) for s in range(0, 100, 13)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])
    assert not np.array_equal(params(3, 3, idx)[0], whole[0])  # another epoch, other boxes


def test_random_resized_crop_then_resample_end_to_end():
    images, pixels, offsets, shapes = ragged_images(8, sides=(30, 120), seed=9)
    params = RK.RaggedResizedCropParams(shapes)
    plan = plan_for(pixels, offsets, shapes, size=(32, 32), mean=(120, 110, 100), std=(50, 51, 52))
    idx = np.arange(8)
    boxes, flips = params(1, 0, idx)
    actual = plan(idx, boxes, flips)
    expected = R.ragged_resize(pixels, offsets, shapes, idx, size=(32, 32), boxes=boxes, flips=flips,
                               mean=(120, 110, 100), std=(50, 51, 52))
    np.testing.assert_array_equal(actual, expected)


# ---- Resize(h, w, crop=...) -------------------------------------------------


def test_scaled_size_is_resize_then_centre_crop():
    tf = _tf()
    images, pixels, offsets, shapes = _photos(11, n=5)
    plan = plan_for(pixels, offsets, shapes, size=(224, 224), scaled_size=(256, 256))
    actual = plan(np.arange(5))
    for k, a in enumerate(images):
        full = tf.image.resize(a, (256, 256)).numpy()
        np.testing.assert_array_equal(actual[k], full[16:240, 16:240])


# ---- bad input ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return ragged_images(3, sides=(10, 20), seed=0)


def test_unknown_interpolation_names_the_supported_ones(small):
    _, pixels, offsets, shapes = small
    with pytest.raises(ValueError, match="interpolation must be one of .*'bilinear'.*'area'.*got 'cubic'"):
        plan_for(pixels, offsets, shapes, size=(4, 4), interpolation="cubic")


@pytest.mark.parametrize("boxes, match", [
    ([[0, 0, 1, 1], [0, 0, 100, 1], [0, 0, 1, 1]], r"boxes\[1\] = \(0, 0, 100, 1\) .* inside the image"),
    ([[-1, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], r"boxes\[0\] = \(-1, 0, 1, 1\)"),
    ([[0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 1, 1]], r"boxes\[0\]"),
    ([[0, 0, 1, 1]], r"boxes must have shape \(3, 4\)"),
    ([[0.0, 0, 1, 1]] * 3, "boxes must be an integer array"),
])
def test_bad_boxes_are_refused(small, boxes, match):
    _, pixels, offsets, shapes = small
    plan = plan_for(pixels, offsets, shapes, size=(4, 4))
    with pytest.raises((ValueError, TypeError), match=match):
        plan([0, 1, 2], boxes)


def test_padding_boxes_need_allow_padding_and_read_zeros_outside(small):
    _, pixels, offsets, shapes = small
    box = [[-5, -5, int(shapes[0, 0]) + 10, int(shapes[0, 1]) + 10]]
    with pytest.raises(ValueError, match="allow_padding=True"):
        plan_for(pixels, offsets, shapes, size=(4, 4))([0], box)
    far = plan_for(pixels, offsets, shapes, size=(4, 4), allow_padding=True, dtype="uint8")([0], [[500, 500, 3, 3]])
    assert (far == 0).all()
    with pytest.raises(ValueError, match=r"boxes\[0\]"):
        plan_for(pixels, offsets, shapes, size=(4, 4), allow_padding=True)([0], [[0, 0, 1 << 21, 3]])


def test_bad_arrays_windows_and_indices(small):
    _, pixels, offsets, shapes = small
    with pytest.raises(TypeError, match="pixels must be a 1-D uint8"):
        plan_for(pixels.astype(np.int16), offsets, shapes, size=(4, 4))
    with pytest.raises(ValueError, match="reaches outside pixels"):
        plan_for(pixels[:-1], offsets, shapes, size=(4, 4))
    with pytest.raises(ValueError, match="same channel count"):
        plan_for(pixels, offsets, np.array([[10, 10, 3], [10, 10, 1], [1, 1, 3]]), size=(4, 4))
    plan = plan_for(pixels, offsets, shapes, size=(4, 4))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 3\)"):
        plan([3])
    with pytest.raises(ValueError, match=r"windows\[0\]"):
        plan([0], windows=[[0, 0, 0, 4]])
    with pytest.raises(ValueError, match="size=.* must fit inside scaled_size"):
        plan_for(pixels, offsets, shapes, size=(8, 8), scaled_size=(4, 8))
    with pytest.raises(ValueError, match="cannot hold normalised values"):
        plan_for(pixels, offsets, shapes, size=(4, 4), dtype="uint8", scale=1 / 255)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 3\)"):
        RK.RaggedResizedCropParams(shapes)(0, 0, [0, 3])


def test_centre_crop_windows_are_resize_for_crop_per_image():
    from fastseq import Resize

    shapes = np.array([[64, 64, 3], [96, 96, 3], [300, 400, 3], [500, 213, 3], [57, 1000, 3]])
    windows = RK.centre_crop_windows(shapes, (56, 56))
    for (H, W, _), (top, left, rh, rw) in zip(shapes, windows):
        spec = Resize.for_crop(56, 56, (int(H), int(W)))
        assert (rh, rw) == (spec.height, spec.width)
        assert (top, left) == (-((rh - 56) // 2), -((rw - 56) // 2))
    # the pixels: the centre of each image resized once
    images, pixels, offsets, shapes = ragged_images(4, sides=(40, 120), seed=12)
    windows = RK.centre_crop_windows(shapes, (32, 32))
    actual = plan_for(pixels, offsets, shapes, size=(32, 32))(np.arange(4), windows=windows)
    for k, (top, left, rh, rw) in enumerate(windows):
        whole = RK.RaggedResizePlan(pixels, offsets, shapes, size=(int(rh), int(rw)))([k])[0]
        np.testing.assert_array_equal(actual[k], whole[-top : -top + 32, -left : -left + 32])


@pytest.mark.slow
def test_no_read_or_write_out_of_bounds(tmp_path):
    """Every pass under Numba's bounds checks (a fresh cache, so the checks are compiled in).

    Found this way: output columns outside a window read the right
    neighbour C values past the end of the widened row (garbage, NaN once
    seen against Keras' resize_with_pad).
    """
    import os
    import subprocess
    import sys

    code = """
import numpy as np
from fastseq.kernels import ragged as RK
from tests.textured import ragged_images
_, pixels, offsets, shapes = ragged_images(12, sides=(3, 60), seed=1)
rng = np.random.default_rng(0)
idx = np.arange(12)
H, W = shapes[:, 0], shapes[:, 1]
for interpolation in RK.INTERPOLATIONS:
    for data_format in ("channels_last", "channels_first"):
        plan = RK.RaggedResizePlan(pixels, offsets, shapes, size=(23, 17), interpolation=interpolation,
                                   allow_padding=True, data_format=data_format, antialias=interpolation == "bicubic")
        boxes = np.stack([rng.integers(-H, H), rng.integers(-W, W), rng.integers(1, 2 * H + 1),
                          rng.integers(1, 2 * W + 1)], axis=1)
        windows = np.stack([rng.integers(-5, 20, 12), rng.integers(-5, 15, 12), rng.integers(1, 40, 12),
                            rng.integers(1, 30, 12)], axis=1)
        for b, w in ((None, None), (boxes, None), (None, windows), (boxes, windows)):
            out = plan(idx, b, rng.integers(0, 4, 12), windows=w)
            assert np.isfinite(out).all()
print("ok")
"""
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
