"""MixUp and CutMix: draws, the mixing pass and ArraySequence(mix=...) against the NumPy twins."""

import pickle
from concurrent.futures import ThreadPoolExecutor

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
MEAN, STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)


# ---- the draws ----------------------------------------------------------------


@PROPERTY
@given(
    h=st.integers(1, 128),
    w=st.integers(1, 128),
    num_items=st.integers(1, 10**6),
    alpha=st.sampled_from([0.05, 0.2, 0.999, 1.0, 2.5]),
    mode=st.sampled_from(["mixup", "cutmix"]),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 1000),
)
def test_mix_params_match_twin(h, w, num_items, alpha, mode, seed, epoch):
    indices = np.random.default_rng(epoch).integers(0, 2**40, 12)
    draw = K.MixParams(num_items=num_items, image_size=(h, w), alpha=alpha, mode=mode)(seed, epoch, indices)
    partners, lam, weights, boxes = R.mix_params(
        seed, epoch, indices, num_items=num_items, image_size=(h, w), alpha=alpha, mode=mode
    )
    np.testing.assert_array_equal(draw.partners, partners)
    np.testing.assert_array_equal(draw.boxes, boxes)
    np.testing.assert_array_equal(draw.weights, weights)
    np.testing.assert_array_equal(draw.lam, lam)
    assert draw.partners.min() >= 0 and draw.partners.max() < num_items
    assert np.all((draw.lam >= 0) & (draw.lam <= 1))


def test_cutmix_label_weight_is_the_clipped_box_area():
    h, w = 17, 40
    draw = K.MixParams(num_items=50, image_size=(h, w), alpha=1.0, mode="cutmix")(3, 1, np.arange(2000))
    top, bottom, left, right = draw.boxes.T
    assert np.all((0 <= top) & (top <= bottom) & (bottom <= h) & (0 <= left) & (left <= right) & (right <= w))
    area = (bottom - top) * (right - left)
    np.testing.assert_array_equal(draw.lam, (1 - area / (h * w)).astype(np.float32))
    np.testing.assert_array_equal(draw.weights, 1)
    assert (area == 0).any() and (area > 0).any()  # both empty and non-empty boxes occur
    assert (draw.lam < 1 - 0.5).any()  # some boxes cover more than half the image


def test_mixup_weights_are_lambda_and_boxes_empty():
    draw = K.MixParams(num_items=50, image_size=(8, 8), alpha=0.4)(0, 0, np.arange(100))
    np.testing.assert_array_equal(draw.weights, draw.lam)
    np.testing.assert_array_equal(draw.boxes, 0)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_mixup_lambda_is_beta_alpha_alpha(alpha):
    """Kolmogorov-Smirnov: 20000 lambdas (fixed seed) against Beta(alpha, alpha).

    Against NumPy's Beta sample rounded to float32 like lambda (two-sample
    KS): a one-sample test against the exact CDF fails for small alpha,
    because about 2 % of Beta(0.2, 0.2)'s mass lies within float32's
    rounding of 1.0 and lands on exactly 1.0.
    """
    stats = pytest.importorskip("scipy.stats")
    lam = K.MixParams(num_items=10, image_size=(4, 4), alpha=alpha)(12345, 7, np.arange(20000)).lam
    numpy_beta = np.random.default_rng(0).beta(alpha, alpha, 20000).astype(np.float32)
    assert stats.ks_2samp(lam, numpy_beta).pvalue > 1e-3
    # The test has power: Beta(2 alpha, 2 alpha) is rejected.
    wider = np.random.default_rng(1).beta(2 * alpha, 2 * alpha, 20000).astype(np.float32)
    assert stats.ks_2samp(lam, wider).pvalue < 1e-6
    # Between 0.05 and 0.95, where float32 rounding is far below the sample's
    # resolution, also the exact CDF (one-sample KS on the conditional law).
    inner = lam[(lam > 0.05) & (lam < 0.95)].astype(np.float64)
    dist = stats.beta(alpha, alpha)
    lo, hi = dist.cdf(0.05), dist.cdf(0.95)
    assert stats.kstest(inner, lambda v: (dist.cdf(v) - lo) / (hi - lo)).pvalue > 1e-3


def test_partners_are_uniform_over_the_data_set():
    stats = pytest.importorskip("scipy.stats")
    partners = K.MixParams(num_items=20, image_size=(4, 4), alpha=1.0)(1, 2, np.arange(40000)).partners
    counts = np.bincount(partners, minlength=20)
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_draws_are_a_function_of_seed_epoch_index_only():
    p = K.MixParams(num_items=1000, image_size=(32, 32), alpha=1.0, mode="cutmix")
    whole = p(5, 3, np.arange(300))
    parts = [p(5, 3, np.arange(300)[s : s + 7]) for s in range(0, 300, 7)]
    for field in range(4):
        np.testing.assert_array_equal(whole[field], np.concatenate([part[field] for part in parts]))
    other_epoch = p(5, 4, np.arange(300))
    assert not np.array_equal(whole.partners, other_epoch.partners)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=0.0), "alpha must be a finite number > 0"),
        (dict(alpha=-1.0), "alpha must be a finite number > 0"),
        (dict(alpha=float("nan")), "alpha must be a finite number > 0"),
        (dict(alpha=1.0, mode="mixdown"), "mode must be 'mixup' or 'cutmix'"),
        (dict(alpha=1.0, num_items=0), "num_items must be >= 1"),
    ],
)
def test_mix_params_errors(kwargs, match):
    args = dict(num_items=10, image_size=(4, 4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        K.MixParams(**args)


# ---- the mixing pass --------------------------------------------------------------


@st.composite
def mix_case(draw):
    h = draw(st.integers(1, 128))
    w = draw(st.integers(1, 128))
    C = draw(st.sampled_from([1, 3, 4]))
    n = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(DTYPES))
    data_format = draw(st.sampled_from(FORMATS))
    mode = draw(st.sampled_from(["mixup", "cutmix"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (2 * n, h, w, C) if data_format == "channels_last" else (2 * n, C, h, w)
    if dtype == "uint8":
        pairs = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        pairs = rng.normal(0, 2, shape).astype(np.float32)
    d = K.MixParams(num_items=7, image_size=(h, w), alpha=0.7, mode=mode)(seed, 0, np.arange(n))
    return pairs[:n], pairs[n:], d, dtype, data_format


@PROPERTY
@given(mix_case())
def test_mix_matches_twin(case):
    a, b, d, dtype, data_format = case
    actual = K.mix(a, b, d.weights, d.boxes, dtype=dtype, data_format=data_format)
    expected = R.mix_images(a, b, d.weights, d.boxes, dtype=dtype, data_format=data_format)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(actual.view(np.uint8), expected.view(np.uint8))  # bit for bit


def test_mix_into_out_and_errors():
    a = np.ones((2, 4, 4, 3), np.float32)
    b = np.zeros_like(a)
    out = np.empty_like(a)
    assert K.mix(a, b, [0.25, 1.0], np.zeros((2, 4), int), out=out) is out
    np.testing.assert_array_equal(out[0], 0.25)
    np.testing.assert_array_equal(out[1], 1.0)
    with pytest.raises(ValueError, match=r"weights must lie in \[0, 1\]"):
        K.mix(a, b, [1.5, 0.0], np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="boxes must hold"):
        K.mix(a, b, [0.5, 0.5], [[0, 5, 0, 1], [0, 0, 0, 0]])
    with pytest.raises(TypeError, match="a must have dtype uint8"):
        K.mix(a, b, [0.5, 0.5], np.zeros((2, 4), int), dtype="uint8")
    with pytest.raises(ValueError, match="out must not overlap a"):
        K.mix(a, b, [0.5, 0.5], np.zeros((2, 4), int), out=a)


# ---- ArraySequence(mix=...) ------------------------------------------------------------


def _data(n=61, H=13, W=10, C=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, H, W, C), dtype=np.uint8), rng.integers(0, 5, n)


def _expected(seq, x, labels, idx, epoch, mix, dtype, data_format, normalize_kwargs):
    """Batch ``idx`` made by the twins: fused sample and partner, mixed, labels mixed with the same weight."""
    H, W = x.shape[1:3]
    h, w, pad = seq.crop.height, seq.crop.width, seq.crop.padding
    partners, lam, weights, boxes = R.mix_params(
        seq.seed, epoch, idx, num_items=len(x), image_size=(h, w), alpha=mix.alpha, mode=mix.mode
    )

    def made(indices):
        origins, flips = R.random_params(seq.seed, epoch, indices, image_size=(H, W), crop_size=(h, w), padding=pad)
        return R.fused(
            x, indices, crop=(h, w), origins=origins, flips=flips, padding=pad,
            dtype="uint8" if dtype == "uint8" else "float32", data_format=data_format, **normalize_kwargs,
        )

    pixels = R.mix_images(made(idx), made(partners), weights, boxes, dtype=dtype, data_format=data_format)
    eye = np.eye(5, dtype=np.float32)
    return pixels, R.mix_labels(eye[labels[idx]], eye[labels[partners]], lam)


@pytest.mark.parametrize("mix", [fastseq.MixUp(0.4), fastseq.CutMix(1.0)], ids=["mixup", "cutmix"])
@pytest.mark.parametrize(
    "dtype, data_format, memmap",
    [
        ("float32", "channels_last", False),
        ("float32", "channels_first", True),
        ("float16", "channels_last", True),
        ("bfloat16", "channels_first", False),
        ("uint8", "channels_last", False),
        ("uint8", "channels_first", True),
    ],
)
def test_sequence_mixes_pixels_and_labels_as_the_twins(tmp_path, mix, dtype, data_format, memmap):
    x, labels = _data()
    if memmap:
        np.save(tmp_path / "x.npy", x)
        x = np.load(tmp_path / "x.npy", mmap_mode="r")
    normalize_kwargs = {} if dtype == "uint8" else dict(mean=MEAN, std=STD)
    seq = fastseq.ArraySequence(
        x, labels, batch_size=16, seed=9, crop=fastseq.RandomCrop(11, 9, padding=2), flip="horizontal",
        normalize=None if dtype == "uint8" else fastseq.Normalize(MEAN, STD), dtype=dtype,
        data_format=data_format, num_classes=5, mix=mix,
    )
    seq.set_epoch(2)
    for i in (0, len(seq) - 1):  # a full batch (pooled buffers) and the short last one
        bx, by = seq[i]
        ex, ey = _expected(seq, np.asarray(x), labels, seq.indices(i), 2, mix, dtype, data_format, normalize_kwargs)
        assert bx.dtype == ex.dtype and bx.shape == ex.shape
        if dtype in ("uint8",):
            np.testing.assert_array_equal(bx, ex)
        else:  # float32 sample and partner from the fused kernel equal the twin to 1 ulp
            tol = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype]
            np.testing.assert_allclose(bx.astype(np.float32), ex.astype(np.float32), rtol=tol, atol=tol)
        np.testing.assert_array_equal(by, ey)
        np.testing.assert_allclose(by.sum(axis=1), 1.0, rtol=1e-6)


def _by_sample(seq, epoch):
    """{sample index: (pixels, target)} over a whole epoch."""
    seq.set_epoch(epoch)
    result = {}
    for i in range(len(seq)):
        bx, by = seq[i][:2]
        for k, j in enumerate(seq.indices(i)):
            result[int(j)] = (bx[k].copy(), by[k].copy())
    return result


def _same(a, b):
    assert a.keys() == b.keys()
    for j in a:
        np.testing.assert_array_equal(a[j][0], b[j][0])
        np.testing.assert_array_equal(a[j][1], b[j][1])


@pytest.mark.parametrize("mix", [fastseq.MixUp(0.2), fastseq.CutMix(1.0)], ids=["mixup", "cutmix"])
def test_a_samples_mix_does_not_depend_on_batch_size_threads_or_pickling(mix):
    x, labels = _data(n=97)
    kw = dict(seed=4, crop=fastseq.RandomCrop(13, 10, padding=3), flip="horizontal", num_classes=5, mix=mix,
              cutout=fastseq.Cutout(5, count=2, fill=-1.0), normalize=fastseq.Rescale(1 / 255))
    reference = _by_sample(fastseq.ArraySequence(x, labels, batch_size=32, **kw), 3)
    _same(reference, _by_sample(fastseq.ArraySequence(x, labels, batch_size=7, shuffle=False, **kw), 3))
    _same(reference, _by_sample(pickle.loads(pickle.dumps(fastseq.ArraySequence(x, labels, batch_size=11, **kw))), 3))
    # 8 threads requesting the batches out of order
    seq = fastseq.ArraySequence(x, labels, batch_size=5, **kw)
    seq.set_epoch(3)
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda i: (i, seq[i]), reversed(range(len(seq)))))
    threaded = {}
    for i, (bx, by) in batches:
        for k, j in enumerate(seq.indices(i)):
            threaded[int(j)] = (bx[k], by[k])
    _same(reference, threaded)
    # another epoch mixes differently
    other = _by_sample(fastseq.ArraySequence(x, labels, batch_size=32, **kw), 4)
    assert any(not np.array_equal(reference[j][1], other[j][1]) for j in reference)


def test_float_one_hot_targets_are_mixed():
    x, labels = _data()
    y = np.eye(5, dtype=np.float32)[labels]
    seq = fastseq.ArraySequence(x, y, batch_size=8, shuffle=False, seed=1, mix=fastseq.MixUp(1.0))
    _, by = seq[0]
    draw = K.MixParams(num_items=len(x), image_size=x.shape[1:3], alpha=1.0)(1, 0, np.arange(8))
    np.testing.assert_array_equal(by, R.mix_labels(y[:8], y[draw.partners], draw.lam))


def test_evaluation_never_mixes():
    x, labels = _data()
    seq = fastseq.ArraySequence(x, labels, batch_size=8, num_classes=5, mix=fastseq.CutMix(),
                                cutout=fastseq.Cutout(4), normalize=fastseq.Rescale(1 / 255))
    ev = seq.for_evaluation(x, labels)
    assert ev.mix is None and ev.cutout is None
    bx, by = ev[0]
    np.testing.assert_array_equal(by, np.eye(5, dtype=np.float32)[labels[:8]])
    np.testing.assert_allclose(bx, x[:8] / np.float32(255), rtol=1e-6)


@pytest.mark.parametrize(
    "y, kwargs, error, match",
    [
        (None, dict(mix=fastseq.MixUp()), ValueError, "y is None"),
        ("int", dict(mix=fastseq.MixUp()), ValueError, "must be one-hot"),
        ("int", dict(mix="mixup", num_classes=5), TypeError, r"mix must be fastseq.MixUp\(alpha\)"),
    ],
)
def test_sequence_mix_errors(y, kwargs, error, match):
    x, labels = _data()
    with pytest.raises(error, match=match):
        fastseq.ArraySequence(x, None if y is None else labels, **kwargs)


@pytest.mark.parametrize("spec", [fastseq.MixUp, fastseq.CutMix])
@pytest.mark.parametrize("alpha", [0, -0.5, float("inf"), True, "1"])
def test_spec_alpha_must_be_positive(spec, alpha):
    with pytest.raises(ValueError, match=f"{spec.__name__}: alpha must be a finite number > 0"):
        spec(alpha)


@pytest.mark.parametrize("dtype", DTYPES)
def test_serial_twins_match_the_parallel_kernels(dtype):
    """The serial kernels run in processes forked after parallel use (``config.launch``): same output."""
    import importlib

    mixmod = importlib.import_module("fastseq.kernels.mix")
    rng = np.random.default_rng(3)
    shape = (9, 5, 7, 3)
    a, b = (rng.integers(0, 256, shape, dtype=np.uint8) if dtype == "uint8" else rng.random(shape, dtype=np.float32)
            for _ in range(2))
    d = K.MixParams(num_items=9, image_size=(5, 7), alpha=0.5, mode="cutmix")(0, 0, np.arange(9))
    d = d._replace(weights=np.linspace(0, 1, 9, dtype=np.float32))  # blend and box together
    parallel = K.mix(a, b, d.weights, d.boxes, dtype=dtype)
    serial = np.empty_like(parallel)
    flat = serial.reshape(-1).view(np.uint16) if dtype in ("float16", "bfloat16") else serial.reshape(-1)
    args = (a.reshape(-1), b.reshape(-1), d.weights, d.boxes, 1, 5, 21, 3)
    if dtype == "float32":
        mixmod._mix_f32_serial(*args, flat, 9)
    else:
        mixmod._mix_rounded_serial(*args, mixmod._KINDS[dtype], flat, 9)
    np.testing.assert_array_equal(serial.view(np.uint8), parallel.view(np.uint8))
    np.testing.assert_array_equal(parallel.view(np.uint8), R.mix_images(a, b, d.weights, d.boxes, dtype=dtype).view(np.uint8))


@pytest.mark.slow
def test_another_process_makes_the_same_mixed_batch(tmp_path):
    """A pickled sequence over a memmap, unpickled in a fresh interpreter, gives the same pixels and targets."""
    import subprocess
    import sys

    x, labels = _data(n=40)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    seq = fastseq.ArraySequence(xm, labels, batch_size=8, seed=3, crop=fastseq.RandomCrop(13, 10, padding=2),
                                flip="horizontal", num_classes=5, mix=fastseq.CutMix(0.7), cutout=fastseq.Cutout(4),
                                normalize=fastseq.Rescale(1 / 255))
    seq.set_epoch(5)
    (tmp_path / "seq.pkl").write_bytes(pickle.dumps(seq))
    code = (
        "import pickle, sys, numpy as np; seq = pickle.load(open(sys.argv[1], 'rb')); "
        "bx, by = seq[2]; np.savez(sys.argv[2], bx=bx, by=by, idx=seq.indices(2))"
    )
    env = {**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "seq.pkl"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "out.npz")
    bx, by = seq[2]
    np.testing.assert_array_equal(got["idx"], seq.indices(2))
    np.testing.assert_array_equal(got["bx"], bx)
    np.testing.assert_array_equal(got["by"], by)


def test_compile_command_warms_the_augmentation_kernels():
    from fastseq import warmup

    # Without the serial twins (multiprocessing=False), as the suite's precompile warms them: with them this
    # test compiled the twins of every storage type again (55 s of the suite; the twins are compiled and
    # tested by test_serial_twins_match_the_parallel_kernels).
    timings = warmup.compile_kernels(("float32", "float16", "bfloat16", "uint8"), augmentations=True)
    names = list(timings)
    assert "cutout and random erasing boxes" in names and "mixup and cutmix draws" in names
    # one pass variant per storage type: float16 and bfloat16 share one
    assert [n for n in names if n.startswith("cutout and mix passes")] == [
        "cutout and mix passes, float32",
        "cutout and mix passes, half",
        "cutout and mix passes, uint8",
    ]


@pytest.mark.parametrize("data_format", FORMATS)
def test_mix_and_cutout_after_a_random_resized_crop(data_format):
    """Partners go through the resampling pass too; boxes are in the output's (h, w); per-sample as ever."""
    x, labels = _data(n=50, H=20, W=17)
    kw = dict(seed=2, crop=fastseq.RandomResizedCrop(12, 10), flip="horizontal", num_classes=5,
              mix=fastseq.CutMix(1.0), cutout=fastseq.Cutout(3, fill=9.0), normalize=fastseq.Rescale(1 / 255),
              data_format=data_format)
    big = fastseq.ArraySequence(x, labels, batch_size=50, **kw)
    bx, by = big[0]
    assert bx.shape == ((50, 12, 10, 3) if data_format == "channels_last" else (50, 3, 12, 10))
    assert (bx == 9.0).any()  # the Cutout squares
    draw = K.MixParams(num_items=50, image_size=(12, 10), alpha=1.0, mode="cutmix")(2, 0, big.indices(0))
    eye = np.eye(5, dtype=np.float32)
    np.testing.assert_array_equal(by, R.mix_labels(eye[labels[big.indices(0)]], eye[labels[draw.partners]], draw.lam))
    _same(_by_sample(big, 1), _by_sample(fastseq.ArraySequence(x, labels, batch_size=6, **kw), 1))
