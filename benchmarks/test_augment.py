"""Keras' augmentation layers in fastseq (``augment=[...]``) beside the same work in Keras and albumentations.

Groups (the targets, printed at the end of a timed run, are ``fastseq.bench.verdicts.AUGMENT_RATIOS``):

- ``augment-geometry``: CIFAR-shaped data (the ``cifar`` fixture), batch 512, pad 4 + crop 32 + flip +
  CIFAR mean/std, float32. Rows: ``plain`` (the same sequence without ``augment``: today's fused pass),
  ``fastseq+geometry`` (``RandomRotation(0.1)``, ``RandomZoom(0.2)``, ``RandomTranslation(0.1, 0.1)``:
  one composed resample), ``keras+geometry`` (Keras' same layers after its pad, crop and flip, in one
  ``tf.function`` on the gathered batch, as the kernel suite times Keras), ``albumentations+geometry``
  (``Affine`` with the same ranges after pad, crop, flip, then ``Normalize``, one process per core).
  Targets: fastseq <= 3x plain's time, >= 30x Keras, >= 20x albumentations.
- ``augment-color``: the same job with ``RandomColorJitter(0.2, 0.2, 0.2, 0.1)`` (rows ``fastseq+jitter``,
  ``keras+jitter``, ``albumentations+jitter``: <= 2x plain, >= 30x Keras, >= 20x albumentations), and each
  other color op alone (``fastseq+NAME``: <= 1.5x plain, Equalization and GaussianBlur <= 2.5x) beside
  albumentations' nearest transform where it has one (``albumentations+NAME``, ratio shown, no target).
- ``augment-photos``: photos of 200-500 px (``fastseq.bench.photo_rows.generated_folder``) through
  ``fastseq.image_dataset_from_directory(image_size=(224, 224), batch_size=32, crop=RandomResizedCrop(224, 224))``
  alone (``fastseq``), with ``RandomRotation(0.1)`` (``fastseq+rotation``: <= 1.3x), then also the color
  jitter (``fastseq+rotation+jitter``: <= 1.3x the rotation row), and albumentations' ``RandomResizedCrop``
  + ``Affine`` on the decoded photos, one process per core (>= 2x). No Keras row: Keras 3 has no
  ``RandomResizedCrop`` layer, and its layers take one ragged photo at a time.

The fastseq rows make each batch as ``seq[i]`` does (the draws, then the pass into a reused buffer),
cycling through a few batches. When the suite runs as correctness checks (``--benchmark-disable``,
a plain ``pytest``) each row runs once, albumentations in this process (no worker processes to
start) and the photo folder is a few small photos. Every row checks its result after timing: the
fastseq rows against ``tests/reference.py``'s twins of the warp and the color ops.
"""

import os

import numpy as np
import pytest

from benchmarks import checks, summary
from conftest import CIFAR_MEAN, CIFAR_STD
from fastseq.bench import augment_rows as AR
from fastseq.bench import verdicts
from fastseq.bench.kernel_rows import Row
from tests import reference

GEOMETRY, COLOR, PHOTOS = "augment-geometry", "augment-color", "augment-photos"
BATCH, N_BATCHES = 512, 4
PHOTO_SIZE, PHOTO_BATCH, PHOTO_BATCHES = (224, 224), 32, 3
CASES = [c for c in AR.color_cases() if c.name != "color-jitter"]  # the jitter is the group's own row
for _case in CASES:
    summary.RATIOS[COLOR].extend(verdicts.color_op_ratio(_case.name, _case.target))


def timed_run(config):
    return not getattr(config.option, "benchmark_disable", True)


def _run(benchmark, fn, *, rounds=None):
    if rounds is None or benchmark.disabled:
        return benchmark(fn)
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


def _record(benchmark, group, name, label, *, images, shape, threads, note=""):
    benchmark.group = group
    row = Row(name, label, None, images, images * int(np.prod(shape[1:])) * 4, threads, shape, "float32", note=note)
    return summary.record(benchmark, row, group)


# -- the checks ------------------------------------------------------------------------------


def _twin(seq, idx, draw, count):
    """``tests/reference.py``'s warp and color ops run through the pass's program for the first ``count`` samples:
    float64 values in pixel units, before normalisation."""
    from fastseq.kernels.warp import FILL_CODES, INTERP_CODES

    interp = {v: k for k, v in INTERP_CODES.items()}
    fill = {v: k for k, v in FILL_CODES.items()}
    chain, d = seq._draws.chain, draw[0]
    out = []
    for b in range(count):
        v = seq.x[idx[b]].astype(np.float32)
        v = v[..., None] if v.ndim == 2 else v
        for kind, a, c, stop, gate in chain.prog:
            if gate >= 0 and d.cparams[b, gate] == 0:
                continue
            if kind == 0:  # a warp through run a's matrix
                v = reference.warp(v[None], d.mats[b, a][None], interpolation=interp[int(chain.run_interp[a])],
                                   fill_mode=fill[int(chain.run_mode[a])], fill_value=float(chain.run_fill[a]),
                                   output_size=seq._plan.out_size)[0]
            else:
                v = reference.color_op(v, int(a), d.cparams[b, c:stop])
        out.append(np.asarray(v, np.float64))
    return np.stack(out)


def _check_fastseq(seq, made, count=3):
    idx, draw, batch = made
    assert batch.shape == (len(idx), 32, 32, 3) and batch.dtype == np.float32 and np.isfinite(batch).all()
    expected = (_twin(seq, idx, draw, count) - CIFAR_MEAN) / CIFAR_STD
    close = np.abs(batch[:count] - expected) <= 0.02  # float32 stages against float64 (0.02 = 1.3 levels of 255)
    # Thresholds (posterize, solarize, the histogram's bins) may round one value to the other side.
    assert close.mean() >= 0.995, f"{(~close).sum()} of {close.size} values differ from the twin"


def _check_plain(seq, made, x):
    idx, _, batch = made
    pixels = checks.denormalize(batch[:4], CIFAR_MEAN, CIFAR_STD)
    for j in range(4):
        assert checks.windows(pixels[j], x[idx[j]], 4), f"sample {j} is not a crop of its padded image"


def _check_pixels(out, n, mean=CIFAR_MEAN, std=CIFAR_STD, size=(32, 32)):
    """A baseline's float32 batch: its shape, finite, every value a normalised value in 0..255, not flat."""
    out = np.asarray(out)
    assert out.shape == (n, *size, 3) and out.dtype == np.float32, (out.shape, out.dtype)
    v = out.astype(np.float64) * std + mean
    assert np.isfinite(v).all() and v.min() > -0.5 and v.max() < 255.5, (v.min(), v.max())
    assert v.reshape(n, -1).std(axis=1).min() > 1.0


# -- CIFAR fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sequences(request, cifar):
    """``{name: (sequence, make)}``, every pass compiled (or loaded from the cache) before anything is timed.

    Run once as correctness checks, each row makes one batch (warming it up on one is enough).
    """
    x, y = cifar
    cycle = N_BATCHES if timed_run(request.config) else 1
    made = {"plain": None, "geometry": AR.geometry_ops(), "jitter": AR.jitter_ops(),
            **{c.name: [c.op] for c in CASES}}
    out = {}
    for name, ops in made.items():
        seq = AR.cifar_sequence(x, y, ops, batch_size=BATCH, mean=CIFAR_MEAN, std=CIFAR_STD)
        out[name] = (seq, AR.fastseq_maker(seq, cycle))
    return out


@pytest.fixture(scope="module")
def batches(sequences):
    """The sample indices of the batches every baseline cycles through: the plain sequence's."""
    seq = sequences["plain"][0]
    return [seq.indices(i) for i in range(N_BATCHES)]


@pytest.fixture(scope="module")
def albumentations_pool(request, cifar, batches):
    """albumentations over the cycled batches' images: one process per core when timed, this process otherwise."""
    pytest.importorskip("albumentations")
    images = np.ascontiguousarray(cifar[0][np.concatenate(batches)])
    pool = _CifarPool(images, workers=None if timed_run(request.config) else 0)
    yield pool
    pool.close()


class _CifarPool(AR.AlbumentationsPool):
    def __init__(self, images, workers):
        super().__init__(images, AR.cifar_composes, {"mean": tuple(CIFAR_MEAN), "std": tuple(CIFAR_STD)}, workers=workers)

    def step(self, kind):
        """A function making the next cycled batch with compose ``kind``."""
        state = {"k": 0}

        def make():
            k = state["k"]
            state["k"] = (k + 1) % N_BATCHES
            return self(np.arange(k * BATCH, (k + 1) * BATCH), kind)

        return make


def _keras_step(x, batches, ops):
    pytest.importorskip("tensorflow")
    apply = AR.keras_pipeline(ops, mean=CIFAR_MEAN, std=CIFAR_STD)
    state = {"k": 0}

    def make():
        k = state["k"]
        state["k"] = (k + 1) % N_BATCHES
        return np.asarray(apply(x[batches[k]]))

    make()  # trace the tf.function outside the timer
    return make


# -- augment-geometry and augment-color: the fastseq rows ------------------------------------------------


@pytest.mark.parametrize("group", [GEOMETRY, COLOR])
def test_plain(benchmark, group, sequences, cifar):
    seq, make = sequences["plain"]
    made = _run(benchmark, make)
    _record(benchmark, group, "plain", "fastseq crop + flip + normalise (no augment)", images=BATCH,
            shape=made[2].shape, threads=AR.pass_threads(seq))
    _check_plain(seq, made, cifar[0])


def test_fastseq_geometry(benchmark, sequences):
    seq, make = sequences["geometry"]
    made = _run(benchmark, make)
    _record(benchmark, GEOMETRY, "fastseq+geometry", "fastseq + rotation, zoom, translation (one resample)",
            images=BATCH, shape=made[2].shape, threads=AR.pass_threads(seq))
    _check_fastseq(seq, made)


def test_fastseq_jitter(benchmark, sequences):
    seq, make = sequences["jitter"]
    made = _run(benchmark, make)
    _record(benchmark, COLOR, "fastseq+jitter", "fastseq + RandomColorJitter", images=BATCH, shape=made[2].shape,
            threads=AR.pass_threads(seq))
    _check_fastseq(seq, made)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fastseq_color_op(benchmark, case, sequences):
    seq, make = sequences[case.name]
    made = _run(benchmark, make)
    _record(benchmark, COLOR, f"fastseq+{case.name}", f"fastseq + {type(case.op).__name__}", images=BATCH,
            shape=made[2].shape, threads=AR.pass_threads(seq), note=f"target <= {case.target:g}x plain")
    _check_fastseq(seq, made)


# -- the baselines ---------------------------------------------------------------------------


@pytest.mark.parametrize("ops", ["geometry", "jitter"])
def test_keras(benchmark, ops, cifar, batches):
    step = _keras_step(cifar[0], batches, AR.geometry_ops() if ops == "geometry" else AR.jitter_ops())
    out = _run(benchmark, step, rounds=5)
    _record(benchmark, GEOMETRY if ops == "geometry" else COLOR, f"keras+{ops}",
            f"Keras layers (pad, crop, flip, {ops}, normalise), tf.function", images=BATCH, shape=out.shape,
            threads=os.cpu_count(), note="RandomCrop: one window per batch")
    _check_pixels(out, BATCH)


@pytest.mark.parametrize("ops", ["geometry", "jitter"])
def test_albumentations(benchmark, ops, albumentations_pool):
    out = _run(benchmark, albumentations_pool.step(ops), rounds=5)
    _record(benchmark, GEOMETRY if ops == "geometry" else COLOR, f"albumentations+{ops}",
            f"albumentations Compose per image, {albumentations_pool.workers or 1} process(es)", images=BATCH,
            shape=out.shape, threads=max(1, albumentations_pool.workers))
    _check_pixels(out, BATCH)


ALB_CASES = [c for c in CASES if c.albumentations is not None]


@pytest.mark.parametrize("case", ALB_CASES, ids=[c.name for c in ALB_CASES])
def test_albumentations_color_op(benchmark, case, albumentations_pool):
    out = _run(benchmark, albumentations_pool.step(case.name), rounds=3)
    _record(benchmark, COLOR, f"albumentations+{case.name}", f"albumentations {case.name}, "
            f"{albumentations_pool.workers or 1} process(es)", images=BATCH, shape=out.shape,
            threads=max(1, albumentations_pool.workers))
    _check_pixels(out, BATCH)


# -- augment-photos --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_folder(request, tmp_path_factory):
    """A folder for a few batches: generated once per machine when timed, a few small photos otherwise."""
    from fastseq.bench import photo_rows
    from fastseq.bench.photos import make_photo_folder

    if timed_run(request.config):
        return photo_rows.generated_folder(PHOTO_BATCH * PHOTO_BATCHES)
    root = tmp_path_factory.mktemp("augment-photos") / "p"
    return str(make_photo_folder(root, n_images=2 * PHOTO_BATCH, n_classes=2, sizes=(40, 90), seed=0))


PHOTO_ROWS = {"fastseq": None, "fastseq+rotation": "rotation", "fastseq+rotation+jitter": "rotation+jitter"}


@pytest.fixture(scope="module")
def photo_sequences(photo_folder, tmp_path_factory):
    import fastseq

    cache = tmp_path_factory.mktemp("augment-photos-cache")
    out = {}
    for name, ops in PHOTO_ROWS.items():
        augment = None if ops is None else [fastseq.RandomRotation(0.1)] + (AR.jitter_ops() if "jitter" in ops else [])
        seq = fastseq.image_dataset_from_directory(
            photo_folder, image_size=PHOTO_SIZE, batch_size=PHOTO_BATCH, seed=0, verbose=False, cache_dir=str(cache),
            crop=fastseq.RandomResizedCrop(*PHOTO_SIZE), augment=augment)
        out[name] = (seq, AR.fastseq_maker(seq, PHOTO_BATCHES))
    return out


def _check_photos(seq, made, convex=True):
    idx, _, batch = made
    assert batch.shape == (len(idx), *PHOTO_SIZE, 3) and batch.dtype == np.float32 and np.isfinite(batch).all()
    for k in range(min(4, len(idx))):
        img = seq.x.image(int(idx[k])).reshape(-1, 3)
        lo, hi = (img.min(axis=0), img.max(axis=0)) if convex else (0, 255)
        values = batch[k].reshape(-1, 3)
        # Bilinear taps with reflected borders: every value a convex blend of the photo's own.
        assert (values >= lo - 1e-3).all() and (values <= hi + 1e-3).all(), k
        assert values.std() > 1.0, f"sample {k} is flat"


@pytest.mark.parametrize("name", list(PHOTO_ROWS))
def test_photos_fastseq(benchmark, name, photo_sequences):
    seq, make = photo_sequences[name]
    made = _run(benchmark, make)
    _record(benchmark, PHOTOS, name, f"fastseq RandomResizedCrop(224, 224){' + ' + PHOTO_ROWS[name] if PHOTO_ROWS[name] else ''}",
            images=len(made[0]), shape=made[2].shape, threads=AR.pass_threads(seq))
    _check_photos(seq, made, convex="jitter" not in name)


def test_photos_albumentations(benchmark, request, photo_sequences):
    pytest.importorskip("albumentations")
    seq = photo_sequences["fastseq"][0]
    batches = [seq.indices(i) for i in range(min(PHOTO_BATCHES, len(seq)))]
    photos = [seq.x.image(int(i)) for b in batches for i in b]
    pool = AR.AlbumentationsPool(photos, AR.build_photo_compose, {"size": PHOTO_SIZE},
                                 workers=None if timed_run(request.config) else 0)
    try:
        starts = np.cumsum([0] + [len(b) for b in batches])
        state = {"k": 0}

        def make():
            k = state["k"]
            state["k"] = (k + 1) % len(batches)
            return pool(np.arange(starts[k], starts[k + 1]))

        out = _run(benchmark, make, rounds=5)
    finally:
        pool.close()
    _record(benchmark, PHOTOS, "albumentations+rotation", f"albumentations RandomResizedCrop + Affine, "
            f"{pool.workers or 1} process(es)", images=len(out), shape=out.shape, threads=max(1, pool.workers))
    _check_pixels(out, len(out), mean=0.0, std=1.0, size=PHOTO_SIZE)
