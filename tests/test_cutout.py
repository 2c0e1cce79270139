"""Cutout: the square draws, the erase pass and ArraySequence(cutout=...) against NumPy masks."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastseq
import fastseq.kernels as K
from tests import reference as R

DTYPES = ("float32", "float16", "bfloat16", "uint8")
FORMATS = ("channels_last", "channels_first")
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(
    h=st.integers(1, 128),
    w=st.integers(1, 128),
    size=st.integers(1, 140),
    count=st.integers(1, 4),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 2**20),
)
def test_cutout_params_match_twin(h, w, size, count, seed, epoch):
    indices = np.random.default_rng(epoch).integers(0, 2**40, 9)
    boxes = K.CutoutParams(image_size=(h, w), size=size, count=count)(seed, epoch, indices)
    np.testing.assert_array_equal(boxes, R.cutout_params(seed, epoch, indices, image_size=(h, w), size=size, count=count))
    top, bottom, left, right = np.moveaxis(boxes, -1, 0)
    assert np.all((0 <= top) & (top < bottom) & (bottom <= h) & (0 <= left) & (left < right) & (right <= w))
    assert np.all(bottom - top <= size) and np.all(right - left <= size)


def test_cutout_centres_are_uniform_and_squares_leave_the_image():
    stats = pytest.importorskip("scipy.stats")
    h, w, n = 7, 11, 30000
    centres = R.cutout_centres(3, 1, np.arange(0, 3000), image_size=(h, w), count=2)  # the twin: slow, so fewer
    boxes = K.CutoutParams(image_size=(h, w), size=4, count=2)(3, 1, np.arange(n))
    # The kernel's squares are the twin's centres +- size // 2, clipped.
    np.testing.assert_array_equal(np.maximum(centres[..., 0] - 2, 0), boxes[:3000, :, 0])
    np.testing.assert_array_equal(np.maximum(centres[..., 1] - 2, 0), boxes[:3000, :, 2])
    # Centres from the kernel's boxes: top + 2 when not clipped at the top, else bottom - 2.
    cy = np.where(boxes[..., 1] - boxes[..., 0] == 4, boxes[..., 0] + 2,
                  np.where(boxes[..., 0] > 0, boxes[..., 0] + 2, boxes[..., 1] - 2))
    cx = np.where(boxes[..., 3] - boxes[..., 2] == 4, boxes[..., 2] + 2,
                  np.where(boxes[..., 2] > 0, boxes[..., 2] + 2, boxes[..., 3] - 2))
    for values, bound in ((cy, h), (cx, w)):
        counts = np.bincount(values.reshape(-1), minlength=bound)
        assert counts.size == bound
        assert stats.chisquare(counts).pvalue > 1e-3, counts
    # Joint uniformity over the 77 cells, and the two squares of a sample independent.
    joint = np.bincount((cy[:, 0] * w + cx[:, 0]), minlength=h * w)
    assert stats.chisquare(joint).pvalue > 1e-3
    pair = np.bincount(cy[:, 0] * h + cy[:, 1], minlength=h * h)
    assert stats.chisquare(pair).pvalue > 1e-3
    # Squares at the border are clipped (partly outside the image).
    assert (boxes[..., 0] == 0).any() and (boxes[..., 1] == h).any() and ((boxes[..., 1] - boxes[..., 0]) < 4).any()


@st.composite
def cutout_case(draw):
    h = draw(st.integers(1, 128))
    w = draw(st.integers(1, 128))
    C = draw(st.sampled_from([1, 3, 4]))
    n = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from(DTYPES))
    data_format = draw(st.sampled_from(FORMATS))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (n, h, w, C) if data_format == "channels_last" else (n, C, h, w)
    if dtype == "uint8":
        batch = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        batch = rng.normal(0, 3, shape).astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    fill = int(rng.integers(0, 256)) if dtype == "uint8" else float(rng.normal(0, 3))
    size = draw(st.integers(1, 2 * max(h, w)))
    boxes = K.CutoutParams(image_size=(h, w), size=size, count=draw(st.integers(1, 3)))(seed, 1, np.arange(n))
    return batch, boxes, fill, data_format


@PROPERTY
@given(cutout_case())
def test_cutout_matches_a_numpy_mask(case):
    batch, boxes, fill, data_format = case
    expected = R.cutout(batch, boxes, fill=fill, data_format=data_format)
    actual = batch.copy()
    assert K.cutout(actual, boxes, fill=fill, data_format=data_format) is actual
    np.testing.assert_array_equal(actual.view(np.uint8), expected.view(np.uint8))


def test_cutout_wrapper_errors():
    batch = np.zeros((2, 8, 8, 3), np.float32)
    ok = np.array([[[0, 4, 0, 4]], [[2, 8, 3, 5]]])
    with pytest.raises(ValueError, match="boxes must hold"):
        K.cutout(batch, [[[0, 9, 0, 4]], [[0, 1, 0, 1]]])
    with pytest.raises(ValueError, match="boxes must have shape"):
        K.cutout(batch, ok[:1])
    with pytest.raises(ValueError, match="fill must be an integer 0..255"):
        K.cutout(np.zeros((2, 8, 8, 3), np.uint8), ok, fill=256)
    with pytest.raises(ValueError, match="fill must be a finite number"):
        K.cutout(batch, ok, fill=float("nan"))
    with pytest.raises(TypeError, match="batch must have dtype"):
        K.cutout(batch.astype(np.float64), ok)
    readonly = batch.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="batch must be writeable"):
        K.cutout(readonly, ok)
    with pytest.raises(ValueError, match="size must be >= 1"):
        K.CutoutParams(image_size=(8, 8), size=0)


@pytest.mark.parametrize(
    "dtype, data_format, memmap, fill",
    [
        ("float32", "channels_last", False, 0.0),
        ("float32", "channels_first", True, -1.5),
        ("float16", "channels_last", True, 0.1),
        ("bfloat16", "channels_first", False, 2.0),
        ("uint8", "channels_last", True, 128),
        ("uint8", "channels_first", False, 0),
    ],
)
def test_sequence_cutout_against_a_numpy_mask(tmp_path, dtype, data_format, memmap, fill):
    """The batch equals the same sequence's batch without Cutout, with fill exactly where the twin's mask is."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (45, 19, 14, 3), dtype=np.uint8)
    if memmap:
        np.save(tmp_path / "x.npy", x)
        x = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(
        batch_size=16, seed=2, crop=fastseq.RandomCrop(17, 12, padding=1), flip="horizontal_and_vertical",
        normalize=None if dtype == "uint8" else fastseq.Normalize(120, 60), dtype=dtype, data_format=data_format,
    )
    plain = fastseq.ArraySequence(x, **kw)
    cut = fastseq.ArraySequence(x, cutout=fastseq.Cutout(6, count=2, fill=fill), **kw)
    for seq in (plain, cut):
        seq.set_epoch(1)
    for i in (0, len(cut) - 1):
        (made,), (erased,) = plain[i], cut[i]
        boxes = R.cutout_params(2, 1, cut.indices(i), image_size=(17, 12), size=6, count=2)
        expected = R.cutout(made, boxes, fill=fill, data_format=data_format)
        np.testing.assert_array_equal(erased.view(np.uint8), expected.view(np.uint8))
        mask = R.box_mask(boxes, (17, 12))
        assert mask.any() and not mask.all()


def test_sequence_cutout_is_per_sample_whatever_the_batching():
    x = np.random.default_rng(0).integers(0, 256, (50, 8, 9), dtype=np.uint8)  # grayscale
    kw = dict(seed=8, cutout=fastseq.Cutout(3, count=3, fill=255), dtype="uint8")

    def by_sample(seq):
        seq.set_epoch(4)
        return {int(j): b[k].copy() for i in range(len(seq)) for b in [seq[i][0]] for k, j in enumerate(seq.indices(i))}

    reference = by_sample(fastseq.ArraySequence(x, batch_size=50, **kw))
    for other in (
        fastseq.ArraySequence(x, batch_size=3, shuffle=False, **kw),
        pickle.loads(pickle.dumps(fastseq.ArraySequence(x, batch_size=9, **kw))),
    ):
        got = by_sample(other)
        for j in reference:
            np.testing.assert_array_equal(reference[j], got[j])
    seq = fastseq.ArraySequence(x, batch_size=4, **kw)
    seq.set_epoch(4)
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda i: (i, seq[i][0]), reversed(range(len(seq)))))
    for i, b in batches:
        for k, j in enumerate(seq.indices(i)):
            np.testing.assert_array_equal(reference[int(j)], b[k])
    assert all((reference[j] == 255).sum() >= 1 for j in reference)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: fastseq.Cutout(-1), ValueError, "Cutout: size must be a positive integer"),
        (lambda: fastseq.Cutout(0), ValueError, "Cutout: size must be a positive integer"),
        (lambda: fastseq.Cutout(2.5), ValueError, "Cutout: size must be a positive integer"),
        (lambda: fastseq.Cutout(4, count=0), ValueError, "Cutout: count must be an integer"),
        (lambda: fastseq.Cutout(4, fill=float("inf")), ValueError, "Cutout: fill must be a finite number"),
        (lambda: fastseq.ArraySequence(np.zeros((4, 8, 8, 3), np.uint8), cutout=16), TypeError, r"cutout must be fastseq.Cutout"),
        (
            lambda: fastseq.ArraySequence(np.zeros((4, 8, 8, 3), np.uint8), dtype="uint8", cutout=fastseq.Cutout(4, fill=0.5)),
            ValueError,
            "fill is a raw pixel value and must be an integer 0..255",
        ),
        (
            lambda: fastseq.ArraySequence(np.zeros((4, 8, 8, 3), np.uint8), dtype="float16", cutout=fastseq.Cutout(4, fill=1e6)),
            ValueError,
            "does not fit float16",
        ),
    ],
)
def test_cutout_argument_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


# ---- RandomErasing ----------------------------------------------------------------


@PROPERTY
@given(
    h=st.integers(1, 128),
    w=st.integers(1, 128),
    probability=st.sampled_from([0.0, 0.5, 1.0]),
    scale=st.sampled_from([(0.02, 0.33), (0.5, 0.5), (0.9, 1.0)]),
    ratio=st.sampled_from([(0.3, 3.3), (1.0, 1.0), (0.1, 0.2)]),
    seed=st.integers(0, 2**64 - 1),
)
def test_erasing_params_match_twin(h, w, probability, scale, ratio, seed):
    indices = np.arange(20)
    kw = dict(image_size=(h, w), probability=probability, scale=scale, ratio=ratio)
    boxes = K.ErasingParams(**kw)(seed, 3, indices)
    np.testing.assert_array_equal(boxes, R.erasing_params(seed, 3, indices, **kw))
    top, bottom, left, right = np.moveaxis(boxes[:, 0], -1, 0)
    erased = bottom > top
    assert np.all((bottom - top < h) | ~erased) and np.all((right - left < w) | ~erased)
    if probability == 0.0:
        assert not erased.any()


def test_erasing_area_and_log_ratio_are_uniform_and_probability_holds():
    stats = pytest.importorskip("scipy.stats")
    h = w = 128  # large, so that rounding the sides barely moves the area
    boxes = K.ErasingParams(image_size=(h, w), probability=0.5, scale=(0.05, 0.3), ratio=(0.5, 2.0))(7, 0, np.arange(6000))
    eh, ew = boxes[:, 0, 1] - boxes[:, 0, 0], boxes[:, 0, 3] - boxes[:, 0, 2]
    erased = eh > 0
    assert abs(erased.mean() - 0.5) < 0.03
    area = eh[erased] * ew[erased] / (h * w)
    log_ratio = np.log(eh[erased] / ew[erased])
    # Every box of these ranges fits at the first try, so area and log-ratio
    # are the uniform draws up to the rounding of the sides (< 1 pixel each).
    assert stats.kstest(area, stats.uniform(0.05, 0.25).cdf).statistic < 0.04
    assert stats.kstest(log_ratio, stats.uniform(np.log(0.5), np.log(4.0)).cdf).statistic < 0.04
    assert stats.kstest(area, stats.uniform(0.05, 0.35).cdf).pvalue < 1e-6  # and not a wider range


def test_sequence_random_erasing_against_a_numpy_mask():
    x = np.random.default_rng(1).integers(0, 256, (30, 24, 20, 3), dtype=np.uint8)
    erasing = fastseq.RandomErasing(probability=0.8, fill=-2.0)
    kw = dict(batch_size=16, seed=6, normalize=fastseq.Rescale(1 / 255), data_format="channels_first")
    plain, erased = fastseq.ArraySequence(x, **kw), fastseq.ArraySequence(x, cutout=erasing, **kw)
    for i in range(len(plain)):
        boxes = R.erasing_params(6, 0, erased.indices(i), image_size=(24, 20), probability=0.8)
        expected = R.cutout(plain[i][0], boxes, fill=-2.0, data_format="channels_first")
        np.testing.assert_array_equal(erased[i][0], expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scale=(0.3, 0.1)), "scale must be"),
        (dict(scale=(0.0, 0.1)), "scale must be"),
        (dict(scale=(0.1, 1.5)), "scale must be"),
        (dict(ratio=(2.0, 1.0)), "ratio must be"),
        (dict(ratio=(-1.0, 1.0)), "ratio must be"),
        (dict(ratio=3), "ratio must be a"),
        (dict(probability=1.5), "probability must be"),
        (dict(fill=float("nan")), "fill must be a finite number"),
    ],
)
def test_random_erasing_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=f"RandomErasing: {match}"):
        fastseq.RandomErasing(**kwargs)
