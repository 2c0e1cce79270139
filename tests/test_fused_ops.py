"""Cutout and erasing inside the fused pass, and the thread rule: same pixels as the separate passes, any thread count."""

import numba
import numpy as np
import pytest

import fastseq.kernels as K
from fastseq.kernels import config
from tests import reference as R

DTYPES = ("float32", "float16", "bfloat16", "uint8")
FORMATS = ("channels_last", "channels_first")


def _case(rng, C, n=13, H=9, W=11, padding=3, crop=(8, 10)):
    x = rng.integers(0, 256, (40, H, W, C), dtype=np.uint8)
    idx = rng.integers(0, 40, n)
    origins, flips = K.random_params(5, 1, idx, image_size=(H, W), crop_size=crop, padding=padding, vertical=0.5)
    return x, idx, origins, flips


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("C", [1, 3, 4])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_fused_erase_equals_cutout_on_the_finished_batch(dtype, data_format, C, pad_mode):
    rng = np.random.default_rng(C * 7 + len(dtype))
    x, idx, origins, flips = _case(rng, C)
    norm = {} if dtype == "uint8" else {"mean": [30.0, 100.0, 7.0, 200.0][:C], "std": [60.0, 3.0, 0.5, 40.0][:C]}
    plan = K.FusedPlan(x, crop=(8, 10), padding=3, pad_mode=pad_mode, fill=17, dtype=dtype, data_format=data_format,
                       **norm)
    fill = 9 if dtype == "uint8" else -1.75
    for params in (K.CutoutParams(image_size=(8, 10), size=5, count=3), K.ErasingParams(image_size=(8, 10),
                                                                                         probability=0.7)):
        boxes = params(3, 2, idx)
        expected = K.cutout(plan(idx, origins, flips), boxes, fill=fill, data_format=data_format)
        actual = plan(idx, origins, flips, erase=boxes, erase_fill=fill)
        assert np.array_equal(actual.view(np.uint8), expected.view(np.uint8))
        # ... and the NumPy twin of the whole pass: crop, flip, normalise, then the boxes set to fill.
        twin = R.fused(x, idx, crop=(8, 10), origins=origins, flips=flips, padding=3, pad_mode=pad_mode, fill=17,
                       dtype=dtype, data_format=data_format, **norm)
        view = twin if data_format == "channels_first" else np.moveaxis(twin, -1, 1)
        for k in range(idx.size):
            for t, b, left, r in boxes[k]:
                view[k, :, t:b, left:r] = fill
        assert np.array_equal(actual.view(np.uint8), twin.astype(actual.dtype).view(np.uint8))
        assert (boxes[..., 1] > boxes[..., 0]).any()  # something was erased


def test_fused_erase_errors():
    x = np.zeros((4, 6, 6, 3), np.uint8)
    plan = K.FusedPlan(x, crop=(4, 4), padding=1, mean=1, std=2)
    idx = np.arange(2)
    with pytest.raises(ValueError, match=r"erase must hold .* inside the 4x4 output\), got \[0, 5, 0, 1\]"):
        plan(idx, np.zeros((2, 2), np.int64), np.zeros(2, np.uint8), erase=np.array([[[0, 1, 0, 1]], [[0, 5, 0, 1]]]))
    with pytest.raises(ValueError, match=r"erase must have shape \(2, count, 4\), got \(3, 1, 4\)"):
        plan(idx, erase=np.zeros((3, 1, 4), np.int64))
    with pytest.raises(ValueError, match="fill must be a finite number"):
        plan(idx, erase=np.zeros((2, 1, 4), np.int64), erase_fill=float("nan"))
    u8 = K.FusedPlan(x, dtype="uint8")
    with pytest.raises(ValueError, match="fill must be an integer 0..255 for a uint8 batch, got 300"):
        u8(idx, erase=np.zeros((2, 1, 4), np.int64), erase_fill=300)


@pytest.mark.parametrize("work, limit, expected", [
    (0, 8, 1), (config.WORK_PER_THREAD - 1, 8, 1), (2 * config.WORK_PER_THREAD, 8, 2),
    (5 * config.WORK_PER_THREAD + 3, 4, 4), (10**15, 1, 1), (10**15, 3, 3),
])
def test_threads_for_follows_the_work_and_never_exceeds_the_setting(work, limit, expected):
    assert config.threads_for(work, limit) == expected


def test_launch_sets_the_thread_count_from_the_work_and_restores_it(monkeypatch):
    seen = []

    def kernel(*args):
        seen.append(numba.get_num_threads())
        return args

    full = numba.get_num_threads()
    monkeypatch.setattr(config, "_concurrent_safe", True)
    assert config.launch(kernel, 1, 2, work=0) == (1, 2)
    config.launch(kernel, work=10**18)
    config.launch(kernel)
    assert seen == [1, full, full]
    assert numba.get_num_threads() == full
    if full > 1:  # the user's lower setting is the ceiling
        numba.set_num_threads(1)
        try:
            config.launch(kernel, work=10**18)
        finally:
            numba.set_num_threads(full)
        assert seen[-1] == 1


@pytest.mark.parametrize("per_thread", [1, 4096, None])
def test_same_pixels_whatever_the_thread_count_and_batch_size(monkeypatch, per_thread):
    """1 thread, all threads, a few: the fused, erase, mix and resize passes give the same bytes."""
    if per_thread is not None:
        monkeypatch.setattr(config, "WORK_PER_THREAD", per_thread)
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    plan = K.FusedPlan(x, crop=(16, 16), padding=2, mean=(1, 2, 3), std=(4, 5, 6))
    rplan = K.ResizePlan(x, size=(12, 12), mean=(1, 2, 3), std=(4, 5, 6))
    cut = K.CutoutParams(image_size=(16, 16), size=6)
    rcp = K.ResizedCropParams(image_size=(16, 16))
    idx = rng.integers(0, 64, 200)
    origins, flips = K.random_params(1, 0, idx, image_size=(16, 16), crop_size=(16, 16), padding=2)
    boxes, rflips = rcp(1, 0, idx)
    whole = plan(idx, origins, flips, erase=cut(1, 0, idx))
    rwhole = rplan(idx, boxes, rflips)
    fm = K.FusedMix(plan, "float16")
    draw = K.MixParams(num_items=64, image_size=(16, 16), alpha=1.0, mode="cutmix")(1, 0, idx)
    mo, mf = K.random_params(1, 0, draw.partners, image_size=(16, 16), crop_size=(16, 16), padding=2)
    mwhole = fm(np.concatenate([idx, draw.partners]), np.concatenate([origins, mo]), np.concatenate([flips, mf]),
                draw.weights, draw.boxes)
    for n in (1, 8, 77, 200):  # every batch size gives the same samples
        s = slice(0, n)
        np.testing.assert_array_equal(plan(idx[s], origins[s], flips[s], erase=cut(1, 0, idx[s])), whole[s])
        np.testing.assert_array_equal(rplan(idx[s], boxes[s], rflips[s]), rwhole[s])
        mixed = fm(np.concatenate([idx[s], draw.partners[s]]), np.concatenate([origins[s], mo[s]]),
                   np.concatenate([flips[s], mf[s]]), draw.weights[s], draw.boxes[s])
        np.testing.assert_array_equal(mixed.view(np.uint16), mwhole[s].view(np.uint16))
    np.testing.assert_array_equal(K.gather(x, idx), x[idx])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_fused_mix_equals_mix_of_the_pair_batches(dtype, data_format, mode):
    """FusedMix == mix(plan(samples and partners)) then cutout: the old path is the twin, bit for bit."""
    C = 3 if data_format == "channels_last" else 4
    rng = np.random.default_rng(len(dtype) + len(mode))
    x, idx, _, _ = _case(rng, C, n=37)
    pair = "uint8" if dtype == "uint8" else "float32"
    norm = {} if dtype == "uint8" else {"mean": [30.0, 100.0, 7.0, 200.0][:C], "std": [60.0, 3.0, 0.5, 40.0][:C]}
    plan = K.FusedPlan(x, crop=(8, 10), padding=3, pad_mode="edge", dtype=pair, data_format=data_format, **norm)
    fm = K.FusedMix(plan, dtype)
    draw = K.MixParams(num_items=len(x), image_size=(8, 10), alpha=0.4, mode=mode)(7, 1, idx)
    both = np.concatenate([idx, draw.partners])
    origins, flips = K.random_params(7, 1, both, image_size=(9, 11), crop_size=(8, 10), padding=3, vertical=0.3)
    pairs = plan(both, origins, flips)
    n = idx.size
    expected = K.mix(pairs[:n], pairs[n:], draw.weights, draw.boxes, dtype=dtype, data_format=data_format)
    actual = fm(both, origins, flips, draw.weights, draw.boxes)
    assert actual.dtype == expected.dtype
    assert np.array_equal(actual.view(np.uint8), expected.view(np.uint8))
    # With Cutout after the blend, into a given out.
    boxes = K.CutoutParams(image_size=(8, 10), size=4, count=2)(7, 1, idx)
    fill = 3 if dtype == "uint8" else 0.5
    K.cutout(expected, boxes, fill=fill, data_format=data_format)
    out = np.empty_like(actual)
    assert fm(both, origins, flips, draw.weights, draw.boxes, out=out, erase=boxes, erase_fill=fill) is out
    assert np.array_equal(out.view(np.uint8), expected.view(np.uint8))
    # The NumPy twin of the blend, from the twin of the fused pass.
    twin_pairs = R.fused(x, both, crop=(8, 10), origins=origins, flips=flips, padding=3, pad_mode="edge", dtype=pair,
                         data_format=data_format, **norm)
    twin = R.mix_images(twin_pairs[:n], twin_pairs[n:], draw.weights, draw.boxes, dtype=dtype,
                        data_format=data_format)
    assert np.array_equal(actual.view(np.uint8), np.asarray(twin).astype(actual.dtype).view(np.uint8))


def test_fused_mix_errors():
    x = np.zeros((4, 6, 6, 3), np.uint8)
    plan = K.FusedPlan(x, crop=(4, 4), padding=1, mean=1, std=2)
    with pytest.raises(ValueError, match="plan must make uint8 batches for a uint8 output, got a float32 plan"):
        K.FusedMix(plan, "uint8")
    fm = K.FusedMix(plan, "bfloat16")
    both = np.arange(4) % 4
    o, f = np.zeros((4, 2), np.int64), np.zeros(4, np.uint8)
    with pytest.raises(ValueError, match="an even count"):
        fm(both[:3], o[:3], f[:3], np.ones(1, np.float32), np.zeros((1, 4), np.int64))
    with pytest.raises(ValueError, match=r"weights must lie in \[0, 1\]"):
        fm(both, o, f, np.array([0.5, 1.5], np.float32), np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="boxes must hold"):
        fm(both, o, f, np.ones(2, np.float32), np.array([[0, 5, 0, 1], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="origins"):
        fm(both, o + 9, f, np.ones(2, np.float32), np.zeros((2, 4), np.int64))
