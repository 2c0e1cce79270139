"""The tiered start: NumPy batches while the kernel compiles in the background, with the same pixels.

``fastseq.kernels.quick`` must equal the NumPy twins (and so the compiled
pass, which the twins pin in test_kernels.py) bit for bit on every dtype,
layout, pad mode, flip and erase box; a prepared plan must serve from it
until its kernel is ready and from the kernel after; a fork during a
background compile must leave the child able to compile.
"""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given

import fastseq.kernels as K
from fastseq.kernels import config, quick
from tests import reference as R
from tests.test_kernels import PROPERTY, bits, fused_case
from tests.test_resize import resize_case


class _NeverReady:
    """A background compile that never finishes: the plan keeps serving from NumPy."""

    def ready(self):
        return False


def serve_from_numpy(monkeypatch, module, name, batch_arg):
    """Make prepared plans serve every batch from ``module.name`` (a NumPy tier); return the list of batch sizes served.

    Their background compile never becomes ready, and a spy records ``len(args[batch_arg])`` of each call, so a
    test can show the NumPy path really ran. Shared with tests/test_quick_ragged.py.
    """
    job = _NeverReady()
    monkeypatch.setattr(config, "BACKGROUND_COMPILE", True)
    monkeypatch.setattr(config, "background_compile", lambda kernel, args, what: job)
    served = []
    real = getattr(module, name)

    def spy(*args):
        served.append(args[batch_arg].shape[0])
        return real(*args)

    monkeypatch.setattr(module, name, spy)
    return served


@pytest.fixture
def numpy_tier(monkeypatch):
    """Prepared plans serve every batch from ``quick`` (their compile never becomes ready); the batch sizes served."""
    return serve_from_numpy(monkeypatch, quick, "fused", 3)


def _plan_kwargs(kwargs):
    return {k: v for k, v in kwargs.items() if k not in ("origins", "flips")}


@PROPERTY
@given(case=fused_case())
def test_numpy_tier_equals_the_twins(case, tmp_path_factory, numpy_tier):
    x, indices, kwargs, memmap = case
    if memmap:
        path = tmp_path_factory.mktemp("mm") / "x.npy"
        np.save(path, x)
        x = np.load(path, mmap_mode="r")
    expected = R.fused(np.asarray(x), indices, **kwargs)
    plan = K.FusedPlan(x, **_plan_kwargs(kwargs)).prepare()
    served = len(numpy_tier)
    actual = plan(np.asarray(indices, np.int64), np.asarray(kwargs["origins"], np.int64),
                  np.asarray(kwargs["flips"], np.uint8))
    assert len(numpy_tier) == served + 1  # made by the NumPy tier, not the kernel
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(bits(actual), bits(expected))


@PROPERTY
@given(case=fused_case())
def test_numpy_tier_erases_as_cutout_does(case, numpy_tier):
    x, indices, kwargs, _ = case
    n = len(indices)
    h, w = kwargs["crop"]
    rng = np.random.default_rng(n * h * w)
    count = int(rng.integers(1, 4))
    y0 = rng.integers(0, h + 1, (n, count))
    x0 = rng.integers(0, w + 1, (n, count))
    boxes = np.stack([y0, rng.integers(y0, h + 1), x0, rng.integers(x0, w + 1)], axis=2).astype(np.int64)
    fill = 7 if kwargs["dtype"] == "uint8" else -0.5
    expected = R.cutout(R.fused(x, indices, **kwargs), boxes, fill=fill, data_format=kwargs["data_format"])
    plan = K.FusedPlan(x, **_plan_kwargs(kwargs)).prepare()
    actual = plan(np.asarray(indices, np.int64), np.asarray(kwargs["origins"], np.int64),
                  np.asarray(kwargs["flips"], np.uint8), erase=boxes, erase_fill=fill)
    assert numpy_tier
    np.testing.assert_array_equal(bits(actual), bits(expected))


def test_numpy_tier_refuses_what_the_kernel_refuses(numpy_tier):
    x = np.zeros((4, 5, 5, 3), np.uint8)
    plan = K.FusedPlan(x, crop=(5, 5), padding=1).prepare()
    one = np.zeros(1, np.int64)
    for indices, origins, flips, message in (
        (np.array([4]), np.zeros((1, 2), np.int64), np.zeros(1, np.uint8), "indices"),
        (one, np.array([[3, 0]]), np.zeros(1, np.uint8), "origins"),
        (one, np.array([[0, -1]]), np.zeros(1, np.uint8), "origins"),
        (one, np.zeros((1, 2), np.int64), np.array([4], np.uint8), "flips"),
    ):
        with pytest.raises(ValueError, match=message):
            plan(np.asarray(indices, np.int64), np.asarray(origins, np.int64), flips)
    boxes = np.array([[[0, 6, 0, 1]]], np.int64)  # bottom past the 5-row output
    with pytest.raises(ValueError, match="erase"):
        plan(one, np.zeros((1, 2), np.int64), np.zeros(1, np.uint8), erase=boxes)
    assert numpy_tier  # the NumPy tier saw them, and refused them as the kernel does


def test_prepared_plan_serves_from_the_kernel_once_it_is_compiled():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (20, 6, 7, 3), dtype=np.uint8)
    plan = K.FusedPlan(x, crop=(6, 7), padding=2, mean=[9.0] * 3, std=[3.0] * 3)
    indices = rng.integers(0, 20, 9).astype(np.int64)
    origins = np.stack([rng.integers(0, 5, 9), rng.integers(0, 5, 9)], 1).astype(np.int64)
    flips = rng.integers(0, 4, 9).astype(np.uint8)
    first = plan(indices, origins, flips)  # compiled in the foreground: not prepared
    plan.prepare()
    job = plan._tier_job()
    assert job.wait(600) and job.ready() and job.error is None
    served = []
    real = quick.fused
    try:
        quick.fused = lambda *a: served.append(a) or real(*a)
        again = plan(indices, origins, flips)
    finally:
        quick.fused = real
    assert not served
    np.testing.assert_array_equal(bits(again), bits(first))


def test_background_compile_off(monkeypatch):
    monkeypatch.setattr(config, "BACKGROUND_COMPILE", False)
    plan = K.FusedPlan(np.zeros((1, 2, 2, 1), np.uint8)).prepare()
    assert not plan._tiered and not plan._tier_jobs


def test_a_fork_waits_for_the_compile_in_progress(tmp_path):
    """A fork while another thread holds Numba's compiler lock: the child must still be able to compile.

    The compile is a stand-in that holds the lock until told to stop, so
    the fork is certain to come while it runs. Without the fork hooks the
    child inherits the held lock and its own compile hangs.
    """
    script = textwrap.dedent(
        """
        import os, sys, threading, time
        import numba
        from numba.core.compiler_lock import global_compiler_lock
        from fastseq.kernels import config

        holding, stop = threading.Event(), threading.Event()

        class SlowKernel:
            overloads = {}
            def compile(self, types):
                with global_compiler_lock:
                    holding.set()
                    stop.wait(10)

        job = config.background_compile(SlowKernel(), (), "a stand-in")
        assert holding.wait(10)
        threading.Timer(0.5, stop.set).start()
        pid = os.fork()
        if pid == 0:
            f = numba.njit(lambda v: v + 1)
            os._exit(0 if f(1) == 2 else 3)
        _, status = os.waitpid(pid, 0)
        assert job.wait(10)
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "child 0" in result.stdout


def test_concurrent_batches_while_compiling(numpy_tier):
    """Keras' worker threads ask for batches at once: the NumPy tier has no shared scratch."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    plan = K.FusedPlan(x, crop=(8, 8), padding=2, scale=1 / 255).prepare()
    cases = []
    for _ in range(8):
        indices = rng.integers(0, 64, 16).astype(np.int64)
        origins = rng.integers(0, 5, (16, 2)).astype(np.int64)
        flips = rng.integers(0, 4, 16).astype(np.uint8)
        cases.append((indices, origins, flips, R.fused(x, indices, crop=(8, 8), origins=origins, flips=flips,
                                                       padding=2, scale=1 / 255)))
    results = [None] * len(cases)

    def work(k):
        for _ in range(20):
            results[k] = plan(*cases[k][:3])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (_, _, _, expected), actual in zip(cases, results):
        np.testing.assert_array_equal(bits(actual), bits(expected))


@PROPERTY
@given(case=resize_case())
def test_numpy_tier_resizes_as_the_twin(case, numpy_tier, monkeypatch):
    x, indices, kwargs, _ = case
    expected = R.resized_crop(np.asarray(x), indices, **kwargs)
    resized = []
    real = quick.resize
    monkeypatch.setattr(quick, "resize", lambda *a: resized.append(1) or real(*a))
    plan_kwargs = {k: v for k, v in kwargs.items() if k not in ("boxes", "flips")}
    plan = K.ResizePlan(x, **plan_kwargs).prepare()
    actual = plan(np.asarray(indices, np.int64), kwargs["boxes"], np.asarray(kwargs["flips"], np.uint8))
    assert resized
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(bits(actual), bits(expected))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "uint8"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_numpy_tier_mixes_as_the_twins(dtype, data_format, mode, numpy_tier):
    C = 3 if data_format == "channels_last" else 4
    rng = np.random.default_rng(len(dtype) + len(mode))
    x = rng.integers(0, 256, (23, 9, 11, C), dtype=np.uint8)
    idx = rng.integers(0, 23, 37).astype(np.int64)
    pair = "uint8" if dtype == "uint8" else "float32"
    norm = {} if dtype == "uint8" else {"mean": [30.0, 100.0, 7.0, 200.0][:C], "std": [60.0, 3.0, 0.5, 40.0][:C]}
    plan = K.FusedPlan(x, crop=(8, 10), padding=3, pad_mode="edge", dtype=pair, data_format=data_format, **norm)
    fm = K.FusedMix(plan, dtype).prepare()
    draw = K.MixParams(num_items=len(x), image_size=(8, 10), alpha=0.4, mode=mode)(7, 1, idx)
    both = np.concatenate([idx, draw.partners])
    origins, flips = K.random_params(7, 1, both, image_size=(9, 11), crop_size=(8, 10), padding=3, vertical=0.3)
    boxes = K.CutoutParams(image_size=(8, 10), size=4, count=2)(7, 1, idx)
    fill = 3 if dtype == "uint8" else 0.5
    actual = fm(both, origins, flips, draw.weights, draw.boxes, erase=boxes, erase_fill=fill)
    assert numpy_tier  # made by the NumPy tier
    n = idx.size
    pairs = R.fused(x, both, crop=(8, 10), origins=origins, flips=flips, padding=3, pad_mode="edge", dtype=pair,
                    data_format=data_format, **norm)
    twin = R.mix_images(pairs[:n], pairs[n:], draw.weights, draw.boxes, dtype=dtype, data_format=data_format)
    twin = R.cutout(np.asarray(twin).astype(actual.dtype), boxes, fill=fill, data_format=data_format)
    assert actual.dtype == twin.dtype
    np.testing.assert_array_equal(bits(actual), bits(twin))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "uint8"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_numpy_tier_blends_made_pairs_as_the_kernel(dtype, data_format, mode, monkeypatch):
    """Mixing after a resample (``MixPass``): ``quick.mix`` gives the compiled ``mix``'s bits, and the twin's."""
    C = 3 if data_format == "channels_last" else 4
    rng = np.random.default_rng(len(dtype) * 7 + len(mode) + C)
    n, h, w = 29, 7, 10
    shape = (n, h, w, C) if data_format == "channels_last" else (n, C, h, w)
    if dtype == "uint8":
        a, b = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    else:  # normalised pixels, some far from 0: rounding to half precision matters
        a, b = (rng.normal(0, 3, shape).astype(np.float32) for _ in range(2))
    draw = K.MixParams(num_items=n, image_size=(h, w), alpha=0.4, mode=mode)(7, 1, np.arange(n, dtype=np.int64))
    compiled = K.mix(a, b, draw.weights, draw.boxes, dtype=dtype, data_format=data_format)  # not prepared: the kernel
    served = serve_from_numpy(monkeypatch, quick, "mix", 2)
    actual = K.MixPass(dtype, data_format).prepare()(a, b, draw.weights, draw.boxes)
    assert served == [n]  # made by the NumPy tier
    assert actual.dtype == compiled.dtype and actual.shape == compiled.shape
    np.testing.assert_array_equal(bits(actual), bits(compiled))
    twin = R.mix_images(a, b, draw.weights, draw.boxes, dtype=dtype, data_format=data_format)
    np.testing.assert_array_equal(bits(actual), bits(np.asarray(twin).astype(actual.dtype)))


def test_a_prepared_mix_pass_compiles_the_signature_its_batches_use():
    mixmod = sys.modules["fastseq.kernels.mix"]
    a = np.random.default_rng(0).normal(0, 1, (4, 3, 5, 3)).astype(np.float32)
    weights, boxes = np.full(4, 0.25, np.float32), np.zeros((4, 4), np.int64)
    for dtype, kernel in (("float32", mixmod._mix_f32), ("float16", mixmod._mix_rounded)):
        mp = K.MixPass(dtype).prepare()
        job = mp._tier_job()
        assert job.wait(600) and job.error is None
        known = set(kernel.overloads)
        mp(a, a[::-1].copy(), weights, boxes)
        assert set(kernel.overloads) == known, f"{dtype}: a batch compiled another signature"


@pytest.mark.slow
def test_mixup_after_a_resample_serves_its_first_batch_from_numpy_with_the_kernels_pixels(monkeypatch):
    """The ``mixup_resized`` row: RandomResizedCrop + MixUp. Its first batch comes from the two NumPy tiers."""
    pytest.importorskip("keras")
    import fastseq

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (40, 24, 24, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 40)

    def first_batch():
        seq = fastseq.ArraySequence(x, y, batch_size=16, crop=fastseq.RandomResizedCrop(20, 20), flip="horizontal",
                                    normalize=fastseq.Rescale(1 / 255), mix=fastseq.MixUp(0.2), num_classes=10, seed=3)
        return seq[0]

    monkeypatch.setattr(config, "BACKGROUND_COMPILE", False)
    compiled_x, compiled_y = first_batch()
    mixed = serve_from_numpy(monkeypatch, quick, "mix", 2)
    resized = []
    real = quick.resize
    monkeypatch.setattr(quick, "resize", lambda *a: resized.append(1) or real(*a))
    numpy_x, numpy_y = first_batch()
    assert mixed == [16] and resized == [1]
    np.testing.assert_array_equal(bits(numpy_x), bits(compiled_x))
    np.testing.assert_array_equal(numpy_y, compiled_y)
