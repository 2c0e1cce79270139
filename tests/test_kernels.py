"""Every kernel against its plain-NumPy twin in tests/reference.py."""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastseq.kernels as K
from tests import reference as R

PAD_MODES = ("constant", "edge", "reflect")
DTYPES = ("float32", "float16", "bfloat16", "uint8")
FORMATS = ("channels_last", "channels_first")

# Fixed budget so CI stays fast; derandomize so a failure reproduces from its output.
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def bits(a):
    """Raw bytes of an array, for bit-exact comparisons of any dtype (float16, bfloat16 too)."""
    return np.ascontiguousarray(a).view(np.uint8)


@st.composite
def fused_case(draw):
    """A random valid fused() call: shapes, padding, crop, params, pad mode, dtype, layout."""
    H = draw(st.integers(1, 64))
    W = draw(st.integers(1, 64))
    C = draw(st.sampled_from([1, 3, 4]))
    grayscale = C == 1 and draw(st.booleans())
    N = draw(st.integers(1, 80))
    n = draw(st.integers(1, 64))
    padding = draw(st.integers(0, 8))
    h = draw(st.integers(1, H + 2 * padding))
    w = draw(st.integers(1, W + 2 * padding))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(N, H, W) if grayscale else (N, H, W, C), dtype=np.uint8)
    indices = rng.integers(0, N, size=n)
    origins = np.stack(
        [rng.integers(0, H + 2 * padding - h + 1, size=n), rng.integers(0, W + 2 * padding - w + 1, size=n)],
        axis=1,
    )
    flips = rng.integers(0, 4, size=n)
    dtype = draw(st.sampled_from(DTYPES))
    kwargs = dict(
        crop=(h, w),
        origins=origins,
        flips=flips,
        padding=padding,
        pad_mode=draw(st.sampled_from(PAD_MODES)),
        fill=int(rng.integers(0, 256)),
        dtype=dtype,
        data_format=draw(st.sampled_from(FORMATS)),
    )
    if dtype != "uint8":
        norm = draw(st.sampled_from(["meanstd", "scale", "none"]))
        if norm == "meanstd":
            kwargs.update(mean=rng.uniform(0, 255, C), std=rng.uniform(0.5, 100, C))
        elif norm == "scale":
            kwargs.update(scale=rng.uniform(-0.1, 0.1, C), offset=rng.uniform(-2, 2, C))
    memmap = draw(st.booleans())
    return x, indices, kwargs, memmap


@PROPERTY
@given(case=fused_case())
def test_fused_equals_composition_of_twins(case, tmp_path_factory):
    x, indices, kwargs, memmap = case
    if memmap:
        path = tmp_path_factory.mktemp("mm") / "x.npy"
        np.save(path, x)
        x = np.load(path, mmap_mode="r")
    expected = R.fused(np.asarray(x), indices, **kwargs)
    actual = K.fused(x, indices, **kwargs)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(bits(actual), bits(expected))


@pytest.mark.parametrize("dtype", ["float32", "uint8", "bfloat16"])
@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("crop", [(4, 3), (4, 6), (7, 9)], ids=["narrower", "image-wide", "wider"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_every_window_of_the_first_and_last_image(dtype, C, crop, data_format, tmp_path):
    """Every crop position and flip of the data set's first and last images, as a memmap.

    Unflipped constant-pad rows are converted straight from the image, reading
    the bytes left and right of the window's row; at the very start and end
    of the array those bytes do not exist, so the kernel must take its
    padded-row path there. This pins both paths to the twin, windows wholly
    inside the padding included. Image-wide windows of grayscale images take
    the one-long-run path; flipped grayscale and RGB rows, and RGB rows into
    planes (channels_first), are read straight from the image too.
    """
    rng = np.random.default_rng(C)
    H, W, pad = 5, 6, 3
    x = rng.integers(0, 256, size=(3, H, W, C), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    tops, lefts, flips = np.meshgrid(
        np.arange(H + 2 * pad - crop[0] + 1), np.arange(W + 2 * pad - crop[1] + 1), np.arange(4), indexing="ij"
    )
    origins = np.stack([tops.ravel(), lefts.ravel()], axis=1)
    n = len(origins)
    for image in (0, len(x) - 1):
        kwargs = dict(crop=crop, origins=origins, flips=flips.ravel(), padding=pad, fill=9, dtype=dtype,
                      data_format=data_format)
        if dtype != "uint8":
            kwargs.update(mean=[100.0] * C, std=[40.0] * C)
        indices = np.full(n, image)
        np.testing.assert_array_equal(bits(K.fused(x, indices, **kwargs)), bits(R.fused(np.asarray(x), indices, **kwargs)))


@PROPERTY
@given(case=fused_case())
def test_crop_flip_matches_np_pad_twin(case):
    x, _, kwargs, _ = case
    n = len(x)
    rng = np.random.default_rng(n)
    crop = kwargs["crop"]
    pad = kwargs["padding"]
    H, W = x.shape[1:3]
    origins = np.stack(
        [rng.integers(0, H + 2 * pad - crop[0] + 1, n), rng.integers(0, W + 2 * pad - crop[1] + 1, n)], axis=1
    )
    flips = rng.integers(0, 4, n)
    args = dict(padding=pad, pad_mode=kwargs["pad_mode"], fill=kwargs["fill"])
    actual = K.crop_flip(x, origins, flips, crop, **args)
    expected = R.crop_flip(x, origins, flips, crop, **args)
    assert actual.dtype == np.uint8
    np.testing.assert_array_equal(actual, expected)


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 16), st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])),
    dtype=st.sampled_from(DTYPES),
    data_format=st.sampled_from(FORMATS),
    seed=st.integers(0, 2**32 - 1),
)
def test_normalize_matches_twin(shape, dtype, data_format, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    kw = {} if dtype == "uint8" else dict(mean=rng.uniform(0, 255, shape[3]), std=rng.uniform(1, 90, shape[3]))
    actual = K.normalize(x, dtype=dtype, data_format=data_format, **kw)
    expected = R.normalize(x, dtype=dtype, data_format=data_format, **kw)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(bits(actual), bits(expected))


def test_float32_is_within_stated_tolerance_of_exact_arithmetic():
    """float32 output vs exact float64 ``(v - mean) / std``.

    The kernel computes ``float32(v) * a + b`` with ``a = fl(1/std)`` and
    ``b = fl(-mean/std)``: a and b carry one rounding each, the product one
    and the sum one, so the error is at most about 4 units of 2**-24 of
    ``|v * a| + |b|`` (the terms, not the possibly cancelled result). We
    allow exactly that bound, per element.
    """
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(32, 9, 11, 3), dtype=np.uint8)
    x[0, 0, 0] = (0, 255, 128)
    mean, std = rng.uniform(0, 255, 3), rng.uniform(0.3, 120, 3)
    actual = K.normalize(x, mean=mean, std=std).astype(np.float64)
    exact = R.normalize_exact(x, mean=mean, std=std)
    bound = 4 * 2.0**-24 * (np.abs(x / std) + np.abs(mean / std))
    assert np.all(np.abs(actual - exact) <= bound)
    # and the bound is not vacuous: it is far below the float16 spacing
    assert bound.max() < 1e-5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("data_format", FORMATS)
def test_half_precision_is_bit_exact_rounding_of_the_float32_result(dtype, data_format):
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, size=(20, 13, 7, 3), dtype=np.uint8)
    kw = dict(mean=(120.5, 3.25, 250.0), std=(0.37, 5.0, 1e-3 + 0.01), data_format=data_format)
    f32 = K.normalize(x, **kw)
    half = K.normalize(x, dtype=dtype, **kw)
    expected = f32.astype(np.float16 if dtype == "float16" else ml_dtypes.bfloat16)
    np.testing.assert_array_equal(bits(half), bits(expected))


def test_half_conversion_matches_numpy_and_ml_dtypes_on_every_rounding_case():
    """Normals, subnormals, ties, overflow, infinities and NaN, for both formats."""
    rng = np.random.default_rng(0)
    patterns = np.concatenate(
        [
            np.arange(0, 2**32, 2**12, dtype=np.uint64).astype(np.uint32),  # every exponent, many mantissas
            (np.arange(2**16, dtype=np.uint32) << 16) | 0x8000,  # bfloat16 ties
            (np.arange(2**19, dtype=np.uint32) << 13) | 0x1000,  # float16 ties
            rng.integers(0, 2**32, 2**18, dtype=np.uint64).astype(np.uint32),
        ]
    )
    values = patterns.view(np.float32)
    finite = ~np.isnan(values)
    with np.errstate(over="ignore", invalid="ignore"):
        for name, dtype in (("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16)):
            ours = K.to_half_bits(values, name)
            theirs = values.astype(dtype).view(np.uint16)
            np.testing.assert_array_equal(ours[finite], theirs[finite])
            assert np.isnan(ours[~finite].view(dtype).astype(np.float32)).all()


# ---- gather -----------------------------------------------------------------


@pytest.mark.parametrize(
    "x",
    [
        np.arange(50, dtype=np.int64),
        np.arange(150, dtype=np.float32).reshape(50, 3),
        np.random.default_rng(0).integers(0, 256, (50, 5, 4, 3), dtype=np.uint8),
        np.array([f"label{i}" for i in range(50)]),
        np.zeros(50, dtype=[("a", np.int16), ("b", np.float64, (2,))]),
        np.arange(50, dtype=np.int64) % 2 == 0,
        np.random.default_rng(1).integers(0, 256, (50, 300, 300, 3), dtype=np.uint8),  # parallel path
    ],
    ids=["int64", "float32x3", "images", "strings", "structured", "bool", "large"],
)
def test_gather_any_dtype_and_trailing_shape(x):
    if x.dtype.names:
        x["a"] = np.arange(50)
        x["b"] = np.arange(100).reshape(50, 2)
    indices = np.random.default_rng(2).integers(0, 50, 37)
    actual = K.gather(x, indices)
    expected = R.gather(x, indices)
    assert actual.dtype == x.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def test_gather_memmap_and_out(tmp_path):
    x = np.random.default_rng(3).integers(0, 256, (40, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    out = np.empty((5, 6, 6), np.uint8)
    result = K.gather(mm, [39, 0, 3, 3, 17], out=out)
    assert result is out
    np.testing.assert_array_equal(out, x[[39, 0, 3, 3, 17]])


@pytest.mark.parametrize("fn", ["gather", "fused"])
def test_empty_indices_give_an_empty_batch(fn):
    x = np.zeros((10, 8, 8, 3), np.uint8)
    if fn == "gather":
        out = K.gather(x, np.array([], dtype=np.int64))
        assert out.shape == (0, 8, 8, 3)
    else:
        out = K.fused(x, [], crop=(4, 4), mean=1, std=2, data_format="channels_first")
        assert out.shape == (0, 3, 4, 4) and out.dtype == np.float32


def test_outputs_keep_batch_order_with_repeated_and_unsorted_indices():
    x = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    out = K.fused(x, [9, 2, 2, 7, 0], dtype="uint8")
    assert out[:, 0, 0, 0].tolist() == [9, 2, 2, 7, 0]


def test_preallocated_out_is_filled_and_returned():
    x = np.random.default_rng(5).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    out = np.full((4, 3, 6, 6), np.nan, np.float32)
    plan = K.FusedPlan(x, crop=(6, 6), padding=1, scale=1 / 255, data_format="channels_first")
    result = plan([1, 2, 3, 4], [[0, 0], [1, 1], [2, 2], [3, 3]], [0, 1, 2, 3], out=out)
    assert result is out and not np.isnan(out).any()
    expected = R.fused(x, [1, 2, 3, 4], crop=(6, 6), padding=1, scale=1 / 255, data_format="channels_first",
                       origins=[[0, 0], [1, 1], [2, 2], [3, 3]], flips=[0, 1, 2, 3])
    np.testing.assert_array_equal(out, expected)
