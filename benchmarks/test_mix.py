"""Cutout and MixUp throughput on the CIFAR job (batch 512, pad 4, crop 32, flip, CIFAR mean/std, float32).

Groups:

- ``cifar-b512-cutout``: ``ArraySequence.__getitem__`` with ``Cutout(16)``
  and with ``RandomErasing()`` (both inside the fused pass) against the
  same sequence without them (target: at most 1.15x its time), and Keras'
  ``keras.layers.RandomErasing`` on a ready batch.
  Both rows cycle through the same batches of one epoch. Because the
  machine is shared, the ratio is also measured with the two calls
  alternating (``paired_*_ratio`` in extra_info), as the kernel suite does.
- ``cifar-b512-mixup``: ``ArraySequence.__getitem__`` with ``MixUp(0.2)``
  and ``CutMix(1.0)`` (sample and partner made and blended inside the
  fused pass, each output value written once: target at most 1.6x the
  plain pass, ``paired_*_ratio``), Keras' ``keras.layers.CutMix`` on a
  ready batch,
  the same without MixUp, and Keras' ``keras.layers.MixUp`` layer applied to
  a ready float32 batch and its one-hot labels (the layer alone: the Keras
  path's gather, crop, flip and normalisation are not even counted), and
  the whole job in Keras (``fastseq.bench.baselines.keras_layers_pipeline`` then
  the MixUp layer, both in ``tf.function``). Target: fastseq's whole batch
  at least 10x faster than Keras'.

Every benchmark checks its output after timing.
"""

import time

import numpy as np
import pytest

import fastseq
from conftest import CIFAR_MEAN, CIFAR_STD
from tests import reference as R

BATCH = 512
N_BATCHES = 6  # distinct batches cycled through, so caches do not flatter a row


def _sequence(x, y, **kw):
    seq = fastseq.ArraySequence(
        x, y, batch_size=BATCH, seed=0, crop=fastseq.RandomCrop(32, 32, padding=4), flip="horizontal",
        normalize=fastseq.Normalize(CIFAR_MEAN, CIFAR_STD), num_classes=10, **kw,
    )
    for i in range(N_BATCHES):  # compile (or load) every kernel, fill the buffer pools
        seq[i]
    return seq


def _cycling(seq):
    state = {"i": 0}

    def step():
        i = state["i"]
        state["i"] = (i + 1) % N_BATCHES
        return i, seq[i]

    return step


def _info(benchmark, **facts):
    benchmark.extra_info.update(facts)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = round(BATCH / stats.stats.min)


def _paired_ratio(slow, fast, pairs=60):
    """Time ratios with the two calls alternating: (ratio of the two minima, median of per-pair ratios)."""
    slow_times, fast_times = [], []
    for _ in range(pairs):
        t0 = time.perf_counter()
        fast()
        t1 = time.perf_counter()
        slow()
        t2 = time.perf_counter()
        fast_times.append(t1 - t0)
        slow_times.append(t2 - t1)
    ratios = np.array(slow_times) / np.array(fast_times)
    return min(slow_times) / min(fast_times), float(np.median(ratios))


@pytest.fixture(scope="module")
def plain(cifar):
    return _sequence(*cifar)


@pytest.fixture(scope="module")
def cutout(cifar):
    return _sequence(*cifar, cutout=fastseq.Cutout(16))


@pytest.fixture(scope="module")
def erasing(cifar):
    return _sequence(*cifar, cutout=fastseq.RandomErasing())


@pytest.fixture(scope="module")
def mixup(cifar):
    return _sequence(*cifar, mix=fastseq.MixUp(0.2))


@pytest.fixture(scope="module")
def cutmix(cifar):
    return _sequence(*cifar, mix=fastseq.CutMix(1.0))


@pytest.mark.benchmark(group="cifar-b512-cutout")
def test_without_cutout(benchmark, plain):
    i, (bx, by) = benchmark(_cycling(plain))
    _info(benchmark, row="fastseq, no cutout", shape=list(bx.shape), dtype=str(bx.dtype))
    assert bx.shape == (BATCH, 32, 32, 3) and np.isfinite(bx).all()


@pytest.mark.benchmark(group="cifar-b512-cutout")
def test_cutout16(benchmark, cutout, plain):
    i, (bx, by) = benchmark(_cycling(cutout))
    info = dict(row="fastseq, Cutout(16)", shape=list(bx.shape), dtype=str(bx.dtype), target_ratio="<= 1.15")
    if not benchmark.disabled:
        lo, med = _paired_ratio(lambda: cutout[0], lambda: plain[0])
        info.update(paired_min_ratio=round(lo, 3), paired_median_ratio=round(med, 3))
    _info(benchmark, **info)
    # The check: the batch without Cutout, with 0 exactly inside the twin's squares.
    boxes = R.cutout_params(0, 0, cutout.indices(i), image_size=(32, 32), size=16)
    expected = R.cutout(plain[i][0], boxes, fill=0.0)
    np.testing.assert_array_equal(bx, expected)


@pytest.mark.benchmark(group="cifar-b512-cutout")
def test_random_erasing(benchmark, erasing, plain):
    i, (bx, by) = benchmark(_cycling(erasing))
    info = dict(row="fastseq, RandomErasing()", shape=list(bx.shape), dtype=str(bx.dtype), target_ratio="<= 1.15")
    if not benchmark.disabled:
        lo, med = _paired_ratio(lambda: erasing[0], lambda: plain[0])
        info.update(paired_min_ratio=round(lo, 3), paired_median_ratio=round(med, 3))
    _info(benchmark, **info)
    boxes = R.erasing_params(0, 0, erasing.indices(i), image_size=(32, 32))
    np.testing.assert_array_equal(bx, R.cutout(plain[i][0], boxes, fill=0.0))


@pytest.mark.benchmark(group="cifar-b512-cutout")
def test_keras_random_erasing_layer(benchmark, plain):
    """``keras.layers.RandomErasing`` (tf.function) on batches fastseq already made: the layer only."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    layer = keras.layers.RandomErasing(factor=1.0, scale=(0.02, 0.33), fill_value=0.0, value_range=(-3, 3), seed=0)
    erase = tf.function(lambda images: layer(images, training=True))
    batches = [plain[i][0] for i in range(N_BATCHES)]
    state = {"i": 0}

    def step():
        bx = batches[state["i"]]
        state["i"] = (state["i"] + 1) % N_BATCHES
        return bx, erase(bx).numpy()

    step()
    bx, ex = benchmark(step)
    assert ex.shape == bx.shape and ((ex == bx) | (ex == 0)).all() and (ex != bx).any()
    _info(benchmark, row="keras.layers.RandomErasing (tf.function) on a ready batch: the layer only")


@pytest.mark.benchmark(group="cifar-b512-mixup")
def test_without_mixup(benchmark, plain):
    i, (bx, by) = benchmark(_cycling(plain))
    _info(benchmark, row="fastseq, no MixUp", shape=list(bx.shape), dtype=str(bx.dtype))
    assert bx.shape == (BATCH, 32, 32, 3) and by.shape == (BATCH, 10)


@pytest.mark.benchmark(group="cifar-b512-mixup")
def test_mixup(benchmark, mixup, plain, cifar):
    i, (bx, by) = benchmark(_cycling(mixup))
    info = dict(row="fastseq, MixUp(0.2)", shape=list(bx.shape), dtype=str(bx.dtype), target_ratio="<= 1.6")
    if not benchmark.disabled:
        lo, med = _paired_ratio(lambda: mixup[0], lambda: plain[0])
        info.update(paired_min_ratio=round(lo, 3), paired_median_ratio=round(med, 3))
    _info(benchmark, **info)
    # The check: sample and partner as the plain sequence makes them (same
    # (seed, epoch, index) crops and flips), mixed by the twin, labels alike.
    idx = mixup.indices(i)
    partners, lam, weights, boxes = R.mix_params(0, 0, idx, num_items=len(cifar[0]), image_size=(32, 32), alpha=0.2)
    made = plain._plan(np.concatenate([idx, partners]), *plain._params(np.concatenate([idx, partners]), 0))
    expected = R.mix_images(made[:BATCH], made[BATCH:], weights, boxes)
    np.testing.assert_array_equal(bx, expected)
    eye = np.eye(10, dtype=np.float32)
    np.testing.assert_array_equal(by, R.mix_labels(eye[cifar[1][idx]], eye[cifar[1][partners]], lam))


@pytest.mark.benchmark(group="cifar-b512-mixup")
def test_cutmix(benchmark, cutmix, plain, cifar):
    i, (bx, by) = benchmark(_cycling(cutmix))
    info = dict(row="fastseq, CutMix(1.0)", shape=list(bx.shape), dtype=str(bx.dtype), target_ratio="<= 1.6")
    if not benchmark.disabled:
        lo, med = _paired_ratio(lambda: cutmix[0], lambda: plain[0])
        info.update(paired_min_ratio=round(lo, 3), paired_median_ratio=round(med, 3))
    _info(benchmark, **info)
    idx = cutmix.indices(i)
    partners, lam, weights, boxes = R.mix_params(0, 0, idx, num_items=len(cifar[0]), image_size=(32, 32), alpha=1.0,
                                                 mode="cutmix")
    made = plain._plan(np.concatenate([idx, partners]), *plain._params(np.concatenate([idx, partners]), 0))
    np.testing.assert_array_equal(bx, R.mix_images(made[:BATCH], made[BATCH:], weights, boxes))


@pytest.mark.benchmark(group="cifar-b512-mixup")
def test_keras_cutmix_layer(benchmark, plain):
    """``keras.layers.CutMix`` (tf.function) on batches fastseq already made: the layer only."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    layer = keras.layers.CutMix(factor=1.0, seed=0)
    cut = tf.function(lambda images, labels: layer({"images": images, "labels": labels}, training=True))
    batches = [plain[i] for i in range(N_BATCHES)]
    state = {"i": 0}

    def step():
        bx, by = batches[state["i"]]
        state["i"] = (state["i"] + 1) % N_BATCHES
        out = cut(bx, by)
        return bx, out["images"].numpy(), out["labels"].numpy()

    step()
    bx, cx, cy = benchmark(step)
    assert cx.shape == bx.shape and cy.shape == (BATCH, 10)
    np.testing.assert_allclose(cy.sum(axis=1), 1.0, rtol=1e-5)
    _info(benchmark, row="keras.layers.CutMix (tf.function) on a ready batch: the layer only")


def _keras_mixup(seed=0):
    """``keras.layers.MixUp(alpha=0.2)`` on a dict batch, inside ``tf.function`` as in ``model.fit``/``tf.data``."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    layer = keras.layers.MixUp(alpha=0.2, seed=seed)
    return tf.function(lambda images, labels: layer({"images": images, "labels": labels}, training=True))


def _check_keras_mixup(bx, by, mx, my):
    """Labels are convex combinations of two one-hot rows, and sample 0's pixels mix with that same weight."""
    assert mx.shape == bx.shape and my.shape == by.shape
    np.testing.assert_allclose(my.sum(axis=1), 1.0, rtol=1e-5)
    own = np.argmax(by[0])
    classes = np.flatnonzero(my[0] > 1e-6)
    if classes.size == 2:  # else the partner has the same class (or lambda rounds to 0/1)
        lam = my[0, own]
        partner_class = classes[classes != own][0]
        candidates = np.flatnonzero(np.argmax(by, axis=1) == partner_class)
        errors = [np.abs(mx[0] - (lam * bx[0] + (1 - lam) * bx[j])).max() for j in candidates]
        assert min(errors) < 1e-3


@pytest.mark.benchmark(group="cifar-b512-mixup")
def test_keras_mixup_layer(benchmark, plain):
    """The MixUp layer alone, on batches fastseq already made: the most favourable comparison for Keras."""
    mixup = _keras_mixup()
    batches = [plain[i] for i in range(N_BATCHES)]
    state = {"i": 0}

    def step():
        bx, by = batches[state["i"]]
        state["i"] = (state["i"] + 1) % N_BATCHES
        out = mixup(bx, by)
        return bx, by, out["images"].numpy(), out["labels"].numpy()

    step()  # trace outside the timing
    _check_keras_mixup(*benchmark(step))
    _info(benchmark, row="keras.layers.MixUp (tf.function) on a ready batch: the layer only")


@pytest.mark.benchmark(group="cifar-b512-mixup")
def test_keras_layers_and_mixup(benchmark, cifar):
    """The whole job in Keras: NumPy gather, then ZeroPadding2D, RandomCrop, RandomFlip, Normalization, MixUp."""
    from fastseq.bench import baselines

    x, y = cifar
    pipeline = baselines.keras_layers_pipeline(crop=(32, 32), padding=4, mean=CIFAR_MEAN, std=CIFAR_STD, seed=0)
    mixup = _keras_mixup()
    rng = np.random.default_rng(0)
    order = [rng.permutation(len(x))[:BATCH] for _ in range(N_BATCHES)]
    eye = np.eye(10, dtype=np.float32)
    state = {"i": 0}

    def step():
        idx = order[state["i"]]
        state["i"] = (state["i"] + 1) % N_BATCHES
        images = pipeline(x[idx])
        labels = eye[y[idx]]
        out = mixup(images, labels)
        return images.numpy(), labels, out["images"].numpy(), out["labels"].numpy()

    step()
    _check_keras_mixup(*benchmark(step))
    _info(benchmark, row="Keras layers (pad, crop, flip, normalise) + keras.layers.MixUp, tf.function")
