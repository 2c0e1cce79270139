"""The photo resample's tiered start: NumPy batches (kernels/quick_ragged.py) with the compiled pass's pixels.

A prepared ``RaggedResizePlan`` whose kernel is not compiled yet serves
from ``quick_ragged.resample``. It must equal the NumPy twin
(``tests/reference.py::ragged_resize``) bit for bit wherever the kernel does
(every filter of float32 arithmetic alone), and the compiled kernel itself
bit for bit everywhere, lanczos and gaussian included: the same pixels
whichever tier serves.
"""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given, settings

from fastseq.kernels import config, quick_ragged
from fastseq.kernels import ragged as RK
from tests import reference as R
from tests.test_quick import serve_from_numpy
from tests.test_ragged_resize import (
    DTYPES,
    PROPERTY,
    TRANSCENDENTAL,
    compare,
    ragged_case,
)
from tests.textured import ragged_images


@pytest.fixture
def numpy_tier(monkeypatch):
    """Prepared plans serve every batch from ``quick_ragged`` (their compile never becomes ready); returns the calls."""
    return serve_from_numpy(monkeypatch, quick_ragged, "resample", 4)


def _plan(c, **extra):
    norm = c["norm"] if c["dtype"] != "uint8" else {}
    return RK.RaggedResizePlan(c["pixels"], c["offsets"], c["shapes"], size=c["size"], scaled_size=c["scaled_size"],
                               interpolation=c["interpolation"], antialias=c["antialias"], allow_padding=c["padding"],
                               dtype=c["dtype"], data_format=c["data_format"], **norm, **extra)


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


@settings(PROPERTY, max_examples=100)  # more than the kernel's 40: the NumPy tier has no compile to amortise
@given(case=ragged_case())
def test_numpy_tier_equals_the_twin_and_the_kernel(case, numpy_tier):
    c = case
    plan = _plan(c).prepare()
    served = len(numpy_tier)
    actual = plan(c["indices"], c["boxes"], c["flips"], windows=c["windows"])
    assert len(numpy_tier) == served + 1  # made by the NumPy tier, not the kernel
    norm = c["norm"] if c["dtype"] != "uint8" else {}
    if c["interpolation"] in TRANSCENDENTAL:
        # sin/exp: the twin is within a tolerance, the kernel must be the same bits.
        expected = _plan(c)(c["indices"], c["boxes"], c["flips"], windows=c["windows"])  # unprepared: compiled
        assert len(numpy_tier) == served + 1
        np.testing.assert_array_equal(_bits(actual), _bits(expected))
        return
    expected = R.ragged_resize(c["pixels"], c["offsets"], c["shapes"], c["indices"], size=c["size"],
                               boxes=c["boxes"], windows=c["windows"], flips=c["flips"], scaled_size=c["scaled_size"],
                               interpolation=c["interpolation"], antialias=c["antialias"], dtype=c["dtype"],
                               data_format=c["data_format"], **norm)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    compare(actual, expected, c["dtype"], 0)


@pytest.mark.parametrize("interpolation", RK.INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [False, True])
def test_every_interpolation_up_and_down_equals_the_kernel(interpolation, antialias, numpy_tier):
    """Both tiers, bit for bit, on odd shapes up- and downscaled, padding boxes, windows and flips, each layout."""
    _, pixels, offsets, shapes = ragged_images(6, sides=(1, 90), seed=11)
    rng = np.random.default_rng(len(interpolation) + antialias)
    idx = np.array([0, 1, 2, 3, 4, 5, 2], np.int64)
    H, W = shapes[idx, 0], shapes[idx, 1]
    boxes = np.stack([rng.integers(-H // 2, H // 2 + 1), rng.integers(-W // 2, W // 2 + 1),
                      rng.integers(1, 2 * H + 1), rng.integers(1, 2 * W + 1)], axis=1)
    flips = rng.integers(0, 4, idx.size)
    for size, windows, data_format in [((1, 1), None, "channels_last"), ((17, 5), None, "channels_first"),
                                       ((45, 71), "random", "channels_last")]:
        if windows == "random":
            windows = np.stack([rng.integers(-10, 11, idx.size), rng.integers(-10, 11, idx.size),
                                rng.integers(1, 90, idx.size), rng.integers(1, 90, idx.size)], axis=1)
        kw = dict(size=size, interpolation=interpolation, antialias=antialias, allow_padding=True,
                  data_format=data_format, mean=[100.0, 120.0, 90.0][: shapes[0, 2]], std=40.0)
        tier = RK.RaggedResizePlan(pixels, offsets, shapes, **kw).prepare()
        served = len(numpy_tier)
        actual = tier(idx, boxes, flips, windows=windows)
        assert len(numpy_tier) == served + 1
        expected = RK.RaggedResizePlan(pixels, offsets, shapes, **kw)(idx, boxes, flips, windows=windows)
        np.testing.assert_array_equal(_bits(actual), _bits(expected))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_every_dtype_and_layout_of_a_photo_batch(dtype, data_format, numpy_tier):
    """Photos of 20-130 px to 24x32, the Keras defaults (bilinear) and bicubic, each output type and layout."""
    _, pixels, offsets, shapes = ragged_images(9, sides=(20, 130), seed=5)
    idx = np.arange(9)[::-1].astype(np.int64)
    norm = {} if dtype == "uint8" else {"scale": 1 / 127.5, "offset": -1.0}
    for interpolation in ("bilinear", "bicubic", "area"):
        kw = dict(size=(24, 32), interpolation=interpolation, dtype=dtype, data_format=data_format, **norm)
        plan = RK.RaggedResizePlan(pixels, offsets, shapes, **kw).prepare()
        out = np.zeros(plan.output_shape(idx.size), actual_dtype := plan(idx[:1]).dtype)
        actual = plan(idx, out=out)
        assert actual is out
        expected = R.ragged_resize(pixels, offsets, shapes, idx, **kw)
        assert actual.dtype == expected.dtype == actual_dtype
        compare(actual, expected, dtype, 0)
    assert len(numpy_tier) == 6


def test_numpy_tier_refuses_what_the_kernel_refuses(numpy_tier):
    _, pixels, offsets, shapes = ragged_images(3, sides=(4, 9), seed=2)
    plan = RK.RaggedResizePlan(pixels, offsets, shapes, size=(5, 5)).prepare()
    one = np.zeros(1, np.int64)
    for call, message in (
        (lambda: plan(np.array([3])), "indices"),
        (lambda: plan(np.array([-1])), "indices"),
        (lambda: plan(one, np.array([[0, 0, 0, 2]])), "boxes"),
        (lambda: plan(one, np.array([[-1, 0, 2, 2]])), "boxes"),  # outside the image without allow_padding
        (lambda: plan(one, flips=np.array([4])), "flips"),
        (lambda: plan(one, windows=np.array([[0, 0, 0, 3]])), "windows"),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    # The tier's own check: out-of-range values leave out untouched.
    args = list(plan._kernel_args(one, np.array([[0, 0, 2, 2]], np.int64), plan._windows(None, 1),
                                  np.zeros(1, np.uint8), np.full(plan.output_shape(1), 7, np.float32)))
    for position, bad in ((4, np.array([3], np.int64)), (8, np.array([4], np.uint8)),
                          (6, np.array([[0, 0, 0, 2]], np.int64)), (7, np.array([[0, 0, 3, 0]], np.int64))):
        trial = list(args)
        trial[position] = bad
        assert quick_ragged.resample(*trial) is False
        assert (trial[18] == 7).all()
    assert quick_ragged.resample(*args) is True


def test_tier_example_has_the_types_of_a_batch(tmp_path):
    """The background compile must compile the specialisation the batches call (numba.typeof of every argument)."""
    import numba

    _, pixels, offsets, shapes = ragged_images(5, sides=(10, 40), seed=4)
    for dtype in DTYPES:
        for data_format in ("channels_last", "channels_first"):
            for mapped in (False, True):
                px = pixels
                if mapped:
                    np.save(tmp_path / "px.npy", pixels)
                    px = np.load(tmp_path / "px.npy", mmap_mode="r")
                plan = RK.RaggedResizePlan(px, offsets, shapes, size=(8, 8), dtype=dtype, data_format=data_format)
                seen = []
                real = config.launch
                try:
                    RK.launch = lambda kernel, *args, seen=seen, **kw: seen.append(args)
                    idx = np.array([1, 3], np.int64)
                    plan(idx, RK.keras_boxes(shapes, (8, 8))[idx], np.array([1, 0]))
                    plan(idx, windows=RK.keras_pad_windows(shapes, (8, 8))[idx])
                    plan(idx[:1])  # one sample: the default window must not become a read-only view
                finally:
                    RK.launch = real
                example = tuple(numba.typeof(v) for v in plan._tier_example())
                for args in seen:
                    assert tuple(numba.typeof(v) for v in args) == example


def test_concurrent_batches_while_compiling(numpy_tier):
    """Keras' worker threads ask for batches at once: the NumPy tier has no shared scratch."""
    _, pixels, offsets, shapes = ragged_images(12, sides=(10, 60), seed=8)
    plan = RK.RaggedResizePlan(pixels, offsets, shapes, size=(16, 16), interpolation="area").prepare()
    rng = np.random.default_rng(0)
    cases = [rng.integers(0, 12, 5).astype(np.int64) for _ in range(6)]
    expected = [R.ragged_resize(pixels, offsets, shapes, idx, size=(16, 16), interpolation="area") for idx in cases]
    results = [None] * len(cases)

    def work(k):
        for _ in range(5):
            results[k] = plan(cases[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, a in zip(expected, results):
        np.testing.assert_array_equal(_bits(a), _bits(e))


def test_prepared_plan_serves_from_the_kernel_once_it_is_compiled():
    _, pixels, offsets, shapes = ragged_images(4, sides=(10, 30), seed=6)
    plan = RK.RaggedResizePlan(pixels, offsets, shapes, size=(9, 7), dtype="uint8")
    idx = np.array([3, 0, 2], np.int64)
    first = plan(idx)  # compiled in the foreground: not prepared
    plan.prepare()
    job = plan._tier_job()
    assert job.wait(600) and job.ready() and job.error is None
    served = []
    real = quick_ragged.resample
    try:
        quick_ragged.resample = lambda *a: served.append(a) or real(*a)
        again = plan(idx)
    finally:
        quick_ragged.resample = real
    assert not served
    np.testing.assert_array_equal(again, first)


def test_cold_first_batch_does_not_wait_for_the_compiler(tmp_path):
    """Empty cache, fresh process: a prepared lanczos plan's first batch comes from NumPy while the kernel compiles.

    Lanczos weights come from a small compiled loop: ``prepare()`` compiles it
    before the background compile takes Numba's compiler lock, or the first
    batch would wait for the whole kernel. The process leaves with
    ``os._exit`` instead of waiting for the background compile.
    """
    script = textwrap.dedent(
        """
        import os, time
        import numpy as np
        from fastseq.kernels import ragged as RK, quick_ragged
        from tests.textured import ragged_images

        _, pixels, offsets, shapes = ragged_images(5, sides=(20, 60), seed=1)
        served = []
        real = quick_ragged.resample
        quick_ragged.resample = lambda *a: served.append(1) or real(*a)
        plan = RK.RaggedResizePlan(pixels, offsets, shapes, size=(16, 16), interpolation="lanczos3").prepare()
        t0 = time.perf_counter()
        batch = plan(np.arange(5))
        seconds = time.perf_counter() - t0
        print("served", len(served), "ready", plan._tier_job().ready(), "finite", bool(np.isfinite(batch).all()),
              f"{seconds:.2f} s", flush=True)
        os._exit(0)
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTSEQ_BACKGROUND_COMPILE="1")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "served 1 ready False finite True" in result.stdout, result.stdout + result.stderr
