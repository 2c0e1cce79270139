"""RandomResizedCrop / Resize: the boxes, the resampling kernel, the specs and the sequence.

Kernel results are compared bit for bit with the NumPy twins in
tests/reference.py (the same float32 formula, written as a loop per value),
and against TensorFlow's bilinear resize with a stated tolerance.
"""

import math
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastseq
import fastseq.kernels as K
from fastseq.sequence import options
from tests import reference as R

DTYPES = ("float32", "float16", "bfloat16", "uint8")
FORMATS = ("channels_last", "channels_first")

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


# ---- the kernel against its twin -------------------------------------------


@st.composite
def resize_case(draw):
    """A random valid resized_crop() call: source 1..128 either way, output larger or smaller, any box."""
    H = draw(st.integers(1, 128))
    W = draw(st.integers(1, 128))
    C = draw(st.sampled_from([1, 3, 4]))
    grayscale = C == 1 and draw(st.booleans())
    N = draw(st.integers(1, 12))
    n = draw(st.integers(1, 6))
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    centre = draw(st.booleans())
    scaled = (h + draw(st.integers(0, 9)), w + draw(st.integers(0, 9))) if centre else None
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(N, H, W) if grayscale else (N, H, W, C), dtype=np.uint8)
    indices = rng.integers(0, N, size=n)
    bh = rng.integers(1, H + 1, size=n)
    bw = rng.integers(1, W + 1, size=n)
    boxes = np.stack([rng.integers(0, H - bh + 1), rng.integers(0, W - bw + 1), bh, bw], axis=1)
    dtype = draw(st.sampled_from(DTYPES))
    kwargs = dict(
        size=(h, w),
        scaled_size=scaled,
        boxes=None if draw(st.integers(0, 4)) == 0 else boxes,
        flips=rng.integers(0, 4, size=n),
        dtype=dtype,
        data_format=draw(st.sampled_from(FORMATS)),
    )
    if dtype != "uint8" and draw(st.booleans()):
        kwargs.update(mean=rng.uniform(0, 255, C), std=rng.uniform(0.5, 100, C))
    return x, indices, kwargs, draw(st.booleans())


@PROPERTY
@given(case=resize_case())
def test_resized_crop_equals_the_twin(case, tmp_path_factory):
    x, indices, kwargs, memmap = case
    if memmap:
        path = tmp_path_factory.mktemp("mm") / "x.npy"
        np.save(path, x)
        x = np.load(path, mmap_mode="r")
    expected = R.resized_crop(np.asarray(x), indices, **kwargs)
    actual = K.resized_crop(x, indices, **kwargs)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(bits(actual), bits(expected))


def test_float32_arithmetic_is_within_a_stated_tolerance_of_exact():
    """The float32 blends against the same formula in float64: within 2e-4 pixel units (0..255)."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (4, 37, 53, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 37, 53], [3, 5, 20, 11], [10, 0, 1, 53], [0, 40, 37, 13]])
    actual = K.resized_crop(x, np.arange(4), size=(29, 61), boxes=boxes)
    exact = R.resized_crop(x, np.arange(4), size=(29, 61), boxes=boxes, exact=True)
    np.testing.assert_allclose(actual, exact, rtol=0, atol=2e-4)


def test_the_pixel_centre_convention_is_half_pixel():
    """One row [0, 100] widened to 4: half-pixel centres read -0.25, 0.25, 0.75, 1.25 -> 0, 25, 75, 100.

    (Corner-aligned sampling would give 0, 33.3, 66.7, 100.) Halving takes
    the mean of each pair; the identical size copies the box exactly.
    """
    row = np.array([[[[0], [100]]]], np.uint8)  # (1, 1, 2, 1)
    np.testing.assert_array_equal(K.resized_crop(row, [0], size=(1, 4))[0, 0, :, 0], [0, 25, 75, 100])
    x = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    half = K.resized_crop(x, [0], size=(4, 4))
    pairs = x[0].astype(np.float32).reshape(4, 2, 4, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(half[0], pairs, atol=1e-5)
    box = K.resized_crop(x, [0], size=(5, 3), boxes=[[2, 4, 5, 3]], dtype="uint8")
    np.testing.assert_array_equal(box[0], x[0, 2:7, 4:7])


def test_resize_then_centre_crop_of_an_identity_resize_is_the_centre_window():
    x = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    out = K.resized_crop(x, [2, 0], size=(56, 56), scaled_size=(64, 64), dtype="uint8")
    np.testing.assert_array_equal(out, x[[2, 0], 4:60, 4:60])


@pytest.mark.slow
def test_matches_tensorflow_resize_of_the_sliced_box():
    """``tf.image.resize(box, scaled, "bilinear", antialias=False)`` then the centre window.

    Tolerance in float32: 5e-3 in pixel units (0..255). TensorFlow computes
    the sample coordinates in float32, the kernel in float64; measured
    worst difference 1.8e-3.
    """
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(2)
    for (H, W, C), size, scaled in [((64, 64, 3), (56, 56), None), ((96, 80, 3), (64, 64), (73, 73)),
                                    ((9, 128, 4), (5, 6), None), ((128, 3, 1), (100, 37), (101, 40))]:
        x = rng.integers(0, 256, (12, H, W, C), dtype=np.uint8)
        boxes, _ = K.resized_crop_params(3, 1, np.arange(12), image_size=(H, W))
        actual = K.resized_crop(x, np.arange(12), size=size, scaled_size=scaled, boxes=boxes)
        R_h, R_w = scaled or size
        oy, ox = (R_h - size[0]) // 2, (R_w - size[1]) // 2
        for k, (t, left, bh, bw) in enumerate(boxes):
            ref = tf.image.resize(x[k, t : t + bh, left : left + bw], (R_h, R_w), "bilinear", antialias=False).numpy()
            np.testing.assert_allclose(actual[k], ref[oy : oy + size[0], ox : ox + size[1]], rtol=0, atol=5e-3)


# ---- the boxes -------------------------------------------------------------


@pytest.mark.parametrize(
    "seed,epoch,image,scale,ratio",
    [
        (0, 0, (64, 64), (0.08, 1.0), (3 / 4, 4 / 3)),
        (7, 3, (5, 9), (0.08, 1.0), (3 / 4, 4 / 3)),
        (1, 2, (200, 3), (0.5, 1.0), (3 / 4, 4 / 3)),  # mostly the fallback, narrowed to the ratio
        (1, 2, (3, 200), (0.3, 0.9), (0.1, 10.0)),
        (2**40, 2**33, (1, 1), (1.0, 1.0), (1.0, 1.0)),
    ],
)
def test_boxes_equal_the_python_twin(seed, epoch, image, scale, ratio):
    indices = np.concatenate([np.arange(400), [10**9, 2**40]])
    kw = dict(image_size=image, scale=scale, ratio=ratio, horizontal=0.5, vertical=0.25)
    b1, f1 = K.resized_crop_params(seed, epoch, indices, **kw)
    b2, f2 = R.resized_crop_params(seed, epoch, indices, **kw)
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(f1, f2)
    H, W = image
    assert (b1[:, :2] >= 0).all() and (b1[:, 2:] >= 1).all()
    assert (b1[:, 0] + b1[:, 2] <= H).all() and (b1[:, 1] + b1[:, 3] <= W).all()


def test_the_fallback_is_the_centre_crop_clamped_to_the_ratio():
    # Area 1 at ratio 2 never fits a square image: every sample falls back to
    # the full width and height W / 2, centred.
    boxes, _ = K.resized_crop_params(0, 0, np.arange(50), image_size=(10, 10), scale=(1, 1), ratio=(2, 2))
    np.testing.assert_array_equal(boxes, np.tile([2, 0, 5, 10], (50, 1)))
    boxes, _ = K.resized_crop_params(0, 0, np.arange(50), image_size=(10, 40), scale=(1, 1), ratio=(1, 1))
    np.testing.assert_array_equal(boxes, np.tile([0, 15, 10, 10], (50, 1)))


def test_flip_bits_are_those_of_random_params():
    idx = np.arange(5000)
    _, f1 = K.resized_crop_params(9, 2, idx, image_size=(32, 32), horizontal=0.5, vertical=0.3)
    _, f2 = K.random_params(9, 2, idx, image_size=(32, 32), crop_size=(32, 32), horizontal=0.5, vertical=0.3)
    np.testing.assert_array_equal(f1, f2)


def ks_uniform(values, lo, hi):
    """Kolmogorov-Smirnov statistic of ``values`` against Uniform(lo, hi)."""
    v = np.sort((np.asarray(values, np.float64) - lo) / (hi - lo))
    n = v.size
    return max(np.max(np.arange(1, n + 1) / n - v), np.max(v - np.arange(n) / n))


def test_area_fraction_and_log_ratio_are_uniform():
    """KS tests with a fixed seed on a 1000x1000 image, where no draw is rejected.

    With scale <= 0.5 and ratio in [3/4, 4/3] every box fits, so the boxes'
    area fraction and log(width / height) follow the draws up to the integer
    rounding of the sides (< 0.2% here). Critical value at p = 1e-4:
    2.23 / sqrt(n). The corners are uniform over the valid positions (mean
    position at the middle, within 4.5 standard errors).
    """
    n = 20_000
    lo, hi, r0, r1 = 0.08, 0.5, 3 / 4, 4 / 3
    boxes, _ = K.resized_crop_params(2024, 0, np.arange(n), image_size=(1000, 1000), scale=(lo, hi), ratio=(r0, r1))
    top, left, h, w = boxes.T.astype(np.float64)
    critical = 2.23 / math.sqrt(n)
    assert ks_uniform(h * w / 1e6, lo, hi) < critical
    assert ks_uniform(np.log(w / h), math.log(r0), math.log(r1)) < critical
    # and not merely within range: a narrower uniform fails the same test
    assert ks_uniform(h * w / 1e6, lo, 0.45) > critical
    for corner, side in ((top, h), (left, w)):
        position = corner / (1000 - side)  # uniform on [0, 1] given the side
        assert abs(position.mean() - 0.5) < 4.5 * math.sqrt(1 / 12 / n)


def test_default_parameters_draw_the_whole_range():
    boxes, _ = K.resized_crop_params(5, 0, np.arange(20_000), image_size=(64, 64))
    area = boxes[:, 2] * boxes[:, 3] / 64**2
    ratio = boxes[:, 3] / boxes[:, 2]
    assert 0.07 < area.min() < 0.1 and area.max() == 1.0
    assert ratio.min() < 0.78 and ratio.max() > 1.28


# ---- determinism -----------------------------------------------------------


def per_sample(seq):
    """{sample index: its pixels} over one epoch."""
    got = {}
    for i in range(len(seq)):
        for idx, img in zip(seq.indices(i), seq[i][0]):
            got[int(idx)] = img
    return got


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).integers(0, 256, (90, 40, 52, 3), dtype=np.uint8)


def test_same_pixels_whatever_the_batch_size_or_a_pickled_copy(images, tmp_path):
    np.save(tmp_path / "x.npy", images)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(crop=fastseq.RandomResizedCrop(24, 30), flip="horizontal_and_vertical", seed=11,
              normalize=fastseq.Normalize((120, 110, 100), (60, 61, 62)))
    first = per_sample(fastseq.ArraySequence(images, batch_size=7, **kw))
    second = per_sample(fastseq.ArraySequence(mm, batch_size=32, **kw))
    copy = pickle.loads(pickle.dumps(fastseq.ArraySequence(mm, batch_size=90, **kw)))
    third = per_sample(copy)
    assert set(first) == set(second) == set(third) == set(range(90))
    for i in range(90):
        np.testing.assert_array_equal(first[i], second[i])
        np.testing.assert_array_equal(first[i], third[i])


def test_eight_threads_out_of_order_give_serial_results(images):
    plan = K.ResizePlan(images, size=(28, 28), mean=(1, 2, 3), std=(4, 5, 6), dtype="float16")
    params = K.ResizedCropParams(image_size=images.shape[1:3], vertical=0.5)
    rng = np.random.default_rng(0)
    jobs = []
    for _ in range(48):
        idx = rng.integers(0, len(images), 33)
        jobs.append((idx, *params(4, 1, idx)))
    serial = [plan(*job) for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda j: plan(*jobs[j]), reversed(range(len(jobs)))))[::-1]
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(bits(a), bits(b))


@pytest.mark.slow
def test_another_process_makes_the_same_pixels(images, tmp_path):
    """A fresh interpreter, given only (seed, epoch) and indices, makes the same boxes and bytes."""
    import subprocess
    import sys
    import textwrap

    np.save(tmp_path / "x.npy", images)
    idx = np.array([5, 89, 0, 5, 42])
    code = textwrap.dedent(
        f"""
        import numpy as np, fastseq.kernels as K
        x = np.load({str(tmp_path / "x.npy")!r}, mmap_mode="r")
        idx = np.array({idx.tolist()})
        boxes, flips = K.resized_crop_params(123, 7, idx, image_size=(40, 52), vertical=0.5)
        out = K.resized_crop(x, idx, size=(17, 23), boxes=boxes, flips=flips, dtype="float16")
        np.save({str(tmp_path / "out.npy")!r}, out)
        """
    )
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr
    boxes, flips = K.resized_crop_params(123, 7, idx[::-1], image_size=(40, 52), vertical=0.5)
    here = K.resized_crop(images, idx[::-1], size=(17, 23), boxes=boxes, flips=flips, dtype="float16")[::-1]
    np.testing.assert_array_equal(bits(np.load(tmp_path / "out.npy")), bits(here))


# ---- the sequence ----------------------------------------------------------


@pytest.mark.parametrize("data_format", FORMATS)
def test_sequence_batches_equal_the_twins(images, data_format):
    seq = fastseq.ArraySequence(images, np.arange(90), batch_size=16, crop=fastseq.RandomResizedCrop(20, 33),
                                flip="horizontal", normalize=fastseq.Rescale(1 / 255), seed=3,
                                data_format=data_format)
    seq.set_epoch(1)
    xb, yb = seq[4]
    idx = seq.indices(4)
    np.testing.assert_array_equal(yb, idx)
    boxes, flips = R.resized_crop_params(3, 1, idx, image_size=(40, 52))
    expected = R.resized_crop(images, idx, size=(20, 33), boxes=boxes, flips=flips, scale=1 / 255,
                              data_format=data_format)
    np.testing.assert_array_equal(xb, expected)


def test_sequence_without_flip_never_flips(images):
    seq = fastseq.ArraySequence(images, batch_size=32, crop=fastseq.RandomResizedCrop(30, 20), seed=8,
                                dtype="bfloat16", normalize=fastseq.Rescale(2 / 255, -1))
    xb = seq[1][0]
    idx = seq.indices(1)
    boxes, flips = R.resized_crop_params(8, 0, idx, image_size=(40, 52), horizontal=0.0)
    assert not flips.any()
    expected = R.resized_crop(images, idx, size=(30, 20), boxes=boxes, scale=2 / 255, offset=-1, dtype="bfloat16")
    np.testing.assert_array_equal(bits(xb), bits(expected))


def test_resize_with_centre_crop_in_a_sequence(images):
    seq = fastseq.ArraySequence(images, batch_size=8, shuffle=False, crop=fastseq.Resize(50, 60, crop=(44, 41)),
                                flip="horizontal", dtype="uint8", seed=1)
    xb = seq[1][0]
    idx = np.arange(8, 16)
    _, flips = R.random_params(1, 0, idx, image_size=(40, 52), crop_size=(40, 52))
    expected = R.resized_crop(images, idx, size=(44, 41), scaled_size=(50, 60), flips=flips, dtype="uint8")
    np.testing.assert_array_equal(xb, expected)


def test_for_evaluation_resizes_to_crop_over_0_875_then_centre_crops(images):
    seq = fastseq.ArraySequence(images, crop=fastseq.RandomResizedCrop(56, 56), flip="horizontal")
    x64 = np.random.default_rng(4).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    ev = seq.for_evaluation(x64, batch_size=5)
    assert ev.crop == fastseq.Resize(64, 64, crop=(56, 56)) and ev.flip is None and not ev.shuffle
    # 64 -> 64 is the identity: evaluation is the centre 56x56 window.
    np.testing.assert_array_equal(ev[0][0], x64[:, 4:60, 4:60].astype(np.float32))
    # torchvision's sizes: int(crop / 0.875) for the shorter side, aspect kept.
    assert fastseq.Resize.for_crop(64, 64, (96, 96)) == fastseq.Resize(73, 73, crop=(64, 64))
    assert fastseq.Resize.for_crop(224, 224, (375, 500)) == fastseq.Resize(256, 341, crop=(224, 224))
    assert fastseq.Resize.for_crop(20, 10, (10, 10)) == fastseq.Resize(22, 22, crop=(20, 10))


# ---- bad arguments ---------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: fastseq.RandomResizedCrop(32, 32, scale=(0.9, 0.1)), r"scale must be in order.*\(0.9, 0.1\).*swap"),
        (lambda: fastseq.RandomResizedCrop(32, 32, scale=(0, 1)), r"scale must have low > 0, got \(0, 1\)"),
        (lambda: fastseq.RandomResizedCrop(32, 32, scale=(0.5, 1.5)), r"scale must have high <= 1.*1.5"),
        (lambda: fastseq.RandomResizedCrop(32, 32, ratio=(4 / 3, 3 / 4)), r"ratio must be in order"),
        (lambda: fastseq.RandomResizedCrop(32, 32, ratio=(-1, 2)), r"ratio must have low > 0, got \(-1, 2\)"),
        (lambda: fastseq.RandomResizedCrop(32, 32, ratio=0.5), r"ratio must be a \(low, high\) pair.*0.5"),
        (lambda: fastseq.RandomResizedCrop(32, 32, scale=(0.1, float("nan"))), r"scale.*finite"),
        (lambda: fastseq.RandomResizedCrop(32, 32, interpolation="lanczos4"), r"interpolation.*'lanczos4'"),
        (lambda: fastseq.Resize(32, 32, interpolation="cubic"), r"interpolation must be one of .*'cubic'"),
        (lambda: fastseq.Resize(32, 32, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True), r"only one of"),
        (lambda: fastseq.Resize(32, 32, antialias="yes"), r"antialias must be True or False"),
        (lambda: fastseq.RandomResizedCrop(0, 32), r"height must be a positive integer, got 0"),
        (lambda: fastseq.Resize(32, 32, crop=(40, 8)), r"crop=40x8 is larger than the resized image 32x32"),
        (lambda: fastseq.Resize(32, -1), r"width must be a positive integer, got -1"),
        (lambda: fastseq.Resize(32, 32, crop=5), r"crop must be a \(height, width\) pair"),
    ],
)
def test_bad_specs(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_center_crop_larger_than_the_image_names_both_sizes():
    with pytest.raises(ValueError, match=r"a 48x48 centre crop does not fit a 40x52 image; use a crop of at most"):
        options.crop_arg(fastseq.CenterCrop(48, 48), (40, 52))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(boxes=[[0, 0, 9, 4]]), ValueError, r"boxes\[0\] = \(0, 0, 9, 4\) is not a non-empty box inside the 8x8"),
        (dict(boxes=[[-1, 0, 2, 2]]), ValueError, r"boxes\[0\]"),
        (dict(boxes=[[0, 0, 0, 2]]), ValueError, r"height, width >= 1"),
        (dict(boxes=[[0, 0, 2]]), ValueError, r"boxes must have shape \(1, 4\)"),
        (dict(boxes=[[0.5, 0, 2, 2]]), TypeError, r"boxes must be an integer array"),
        (dict(flips=[4]), ValueError, r"flips values must be 0..3"),
        (dict(size=(9, 9), scaled_size=(8, 8)), ValueError, r"size=\(9, 9\) must fit inside scaled_size=\(8, 8\)"),
        (dict(size=(0, 4)), ValueError, r"size height must be >= 1, got 0"),
        (dict(dtype="uint8", mean=1, std=2), ValueError, r"dtype='uint8'"),
        (dict(indices=[1]), ValueError, r"indices must lie in \[0, 1\)"),
    ],
)
def test_bad_kernel_arguments(kwargs, error, match):
    args = dict(indices=[0], size=(4, 4))
    args.update(kwargs)
    x = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(error, match=match):
        K.resized_crop(x, args.pop("indices"), **args)


def test_the_fast_path_refuses_out_of_range_boxes_with_the_full_error():
    # int64/uint8 arrays take the compiled check; a bad box must still raise, not read out of bounds.
    plan = K.ResizePlan(np.zeros((2, 8, 8, 1), np.uint8), size=(4, 4))
    with pytest.raises(ValueError, match=r"boxes\[1\] = \(4, 4, 5, 1\)"):
        plan(np.array([0, 1]), np.array([[0, 0, 8, 8], [4, 4, 5, 1]]), np.zeros(2, np.uint8))


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(scale=(0.5, 0.2)), "scale must be in order"), (dict(ratio=(0, 1)), "ratio must have low > 0"),
     (dict(horizontal=2), "horizontal"), (dict(image_size=(0, 3)), "image_size")],
)
def test_bad_param_arguments(kwargs, match):
    args = dict(image_size=(8, 8))
    args.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=match):
        K.resized_crop_params(0, 0, np.arange(3), **args)


# ---- compiling ahead of time -----------------------------------------------


def test_compile_kernels_with_resize_builds_each_variant_once():
    from fastseq import warmup

    seen = []
    timings = warmup.compile_kernels(("float32", "float16", "bfloat16"), ("channels_last", "channels_first"),
                                     resize=True, report=lambda what, s: seen.append(what))
    assert list(timings) == seen
    assert seen[-3:] == [
        "random resized crop boxes and flips",
        "resized-crop kernel, float32",
        "resized-crop kernel, float16/bfloat16",  # shared uint16 bits; the layout is a run-time flag
    ]


def test_a_compiled_resize_plan_runs_without_the_notice(monkeypatch, capsys):
    import time

    from fastseq.kernels import config

    monkeypatch.setattr(config, "COMPILE_NOTICE_SECONDS", 0.0)
    x = np.arange(48, dtype=np.uint8).reshape(1, 4, 4, 3)
    plan = K.ResizePlan(x, size=(4, 4), dtype="uint8")
    plan.compile(serial=True)
    out = plan(np.zeros(1, np.int64), np.array([[0, 0, 4, 4]]), np.zeros(1, np.uint8))
    np.testing.assert_array_equal(out[0], x[0])
    time.sleep(0.05)
    assert "fastseq: compiling" not in capsys.readouterr().err
