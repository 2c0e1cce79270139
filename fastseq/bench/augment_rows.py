"""Keras' augmentation layers (``augment=[...]``) against the same augmentation in Keras and in albumentations.

Shared by ``benchmarks/test_augment.py`` and ``python -m fastseq bench --augment``, so both time the same code:

- :func:`fastseq_maker`: a sequence's batches made as ``seq[i]`` makes them (the draws, then the pass into
  a reused buffer), cycling through a few precomputed batches;
- :func:`keras_pipeline`: the job as Keras layers (pad, crop, flip, the ops, normalise) in one
  ``tf.function`` on the gathered uint8 batch, as :func:`fastseq.bench.baselines.keras_layers_pipeline` does;
- :func:`albumentations_compose` and :class:`AlbumentationsPool`: the job as an albumentations ``Compose``
  applied image by image, in one process per core (as a ``DataLoader`` with workers runs it), each worker
  holding its own copy of the images (it is sent indices, and returns float32 samples).

The op sets: :data:`GEOMETRY` (``RandomRotation(0.1)``, ``RandomZoom(0.2)``, ``RandomTranslation(0.1, 0.1)``),
:data:`JITTER` (``RandomColorJitter``) and :func:`color_cases` (each of the 14 color ops alone, with the
albumentations transform that does the same kind of work where it has one). Keras, TensorFlow and
albumentations are imported only by the functions that need them.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

#: Keras' "reflect" (d c b a | a b c d) is OpenCV's BORDER_REFLECT (2); its "constant" is BORDER_CONSTANT (0).
CV2_BORDER_CONSTANT, CV2_BORDER_REFLECT = 0, 2


def geometry_ops():
    """``RandomRotation(0.1)``, ``RandomZoom(0.2)``, ``RandomTranslation(0.1, 0.1)``: one composed resample."""
    from fastseq import augment as fastseq  # the specs, not the facade (tests/test_layout.py)

    return [fastseq.RandomRotation(0.1), fastseq.RandomZoom(0.2), fastseq.RandomTranslation(0.1, 0.1)]


def jitter_ops():
    from fastseq import augment as fastseq  # the specs, not the facade (tests/test_layout.py)

    return [fastseq.RandomColorJitter(brightness_factor=0.2, contrast_factor=0.2, saturation_factor=0.2, hue_factor=0.1)]


def albumentations_geometry():
    """albumentations' ``Affine`` with Keras' ranges: rotation 0.1 of a turn (36 degrees), zoom 0.2, shift 0.1."""
    import albumentations as A

    return [A.Affine(rotate=(-36.0, 36.0), scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), border_mode=CV2_BORDER_REFLECT,
                     p=1.0)]


def albumentations_jitter():
    import albumentations as A

    return [A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1, p=1.0)]


@dataclasses.dataclass(frozen=True)
class ColorCase:
    """One color op alone: its fastseq spec, the albumentations transforms doing its work (or None), its target."""

    name: str
    op: object
    albumentations: object  # a callable returning a list of transforms, or None
    target: float  # the op's time over the plain pass's, at most


def _a(name, **kw):
    def make():
        import albumentations as A

        return [getattr(A, name)(**kw)]

    return make


def color_cases():
    """Each of Keras' 14 color and filter layers alone, with albumentations' nearest transform where it has one."""
    from fastseq import augment as fastseq  # the specs, not the facade (tests/test_layout.py)

    cases = [
        ("brightness", fastseq.RandomBrightness(0.2), _a("RandomBrightnessContrast", brightness_limit=0.2, contrast_limit=0.0,
                                                          p=1.0)),
        ("contrast", fastseq.RandomContrast(0.2), _a("RandomBrightnessContrast", brightness_limit=0.0, contrast_limit=0.2,
                                                      p=1.0)),
        ("saturation", fastseq.RandomSaturation((0.3, 0.7)), _a("HueSaturationValue", hue_shift_limit=0, sat_shift_limit=30,
                                                                 val_shift_limit=0, p=1.0)),
        ("hue", fastseq.RandomHue(0.1), _a("HueSaturationValue", hue_shift_limit=18, sat_shift_limit=0, val_shift_limit=0,
                                           p=1.0)),
        ("color-degeneration", fastseq.RandomColorDegeneration(0.5), None),
        ("grayscale", fastseq.RandomGrayscale(0.5), _a("ToGray", p=0.5)),
        ("invert", fastseq.RandomInvert(0.5), _a("InvertImg", p=0.5)),
        ("solarization", fastseq.Solarization(addition_factor=0.0, threshold_factor=(0.4, 0.6)),
         _a("Solarize", threshold_range=(0.4, 0.6), p=1.0)),
        ("posterization", fastseq.RandomPosterization(4), _a("Posterize", num_bits=(1, 4), p=1.0)),
        ("autocontrast", fastseq.AutoContrast(), _a("AutoContrast", p=1.0)),
        ("equalization", fastseq.Equalization(), _a("Equalize", p=1.0)),
        ("sharpness", fastseq.RandomSharpness(0.5), _a("Sharpen", alpha=(0.0, 0.5), lightness=(1.0, 1.0), p=1.0)),
        ("gaussian-blur", fastseq.RandomGaussianBlur(factor=1.0, kernel_size=3, sigma=1.0),
         _a("GaussianBlur", blur_limit=(3, 3), sigma_limit=(0.1, 1.0), p=1.0)),
        ("color-jitter", jitter_ops()[0], albumentations_jitter),
    ]
    heavy = {"equalization", "gaussian-blur"}  # a histogram per sample; a 3x3 neighbourhood per value
    return [ColorCase(name, op, alb, 2.5 if name in heavy else 1.5) for name, op, alb in cases]


# -- fastseq ------------------------------------------------------------------------------


def cifar_sequence(x, y, augment=None, *, batch_size=512, seed=0, mean=None, std=None, padding=4):
    """The kernel job (pad ``padding``, crop back, flip, normalise, float32) as an ``ArraySequence``, plus ``augment``."""
    from fastseq import augment as fastseq  # the specs, not the facade (tests/test_layout.py)
    from fastseq.bench import synthetic
    from fastseq.sequence.array_sequence import ArraySequence

    mean = synthetic.CIFAR_MEAN if mean is None else mean
    std = synthetic.CIFAR_STD if std is None else std
    h, w = x.shape[1:3]
    return ArraySequence(x, y, batch_size=batch_size, seed=seed, crop=fastseq.RandomCrop(h, w, padding=padding),
                                 flip="horizontal", normalize=fastseq.Normalize(mean, std), augment=augment)


class _Cycle:
    def __init__(self, items):
        self.items, self.next, self.last = list(items), 0, None

    def __call__(self):
        self.last = self.items[self.next]
        self.next = (self.next + 1) % len(self.items)
        return self.last


def fastseq_maker(seq, batches=4, epoch=0):
    """``make() -> (indices, draw, batch)``: the next of ``batches`` batches of ``seq``, made as ``seq[i]`` makes it.

    The draws (``seq._draws``) are timed with the pass, as they are in ``seq[i]``; the batch goes into one
    reused buffer (the sequence's pool does the same). Calls it once per batch before returning, so the
    pass is compiled (or loaded) before anything is timed.
    """
    order = _Cycle(seq.indices(i) for i in range(min(batches, len(seq))))
    out = np.empty(seq._plan.output_shape(seq.batch_size), np.dtype(seq.dtype) if seq.dtype != "bfloat16" else np.uint16)

    def make():
        idx = order()
        draw = seq._draws(seq.seed, epoch, idx)
        return idx, draw, seq._plan(idx, *draw, out=out)

    for _ in order.items:
        make()
    return make


def pass_threads(seq):
    """The threads a launch of ``seq``'s batch pass gets by the work rule."""
    from fastseq.bench.kernel_rows import rule_threads
    from fastseq.kernels.config import RESAMPLE_COST

    nbytes = int(np.prod(seq._plan.output_shape(seq.batch_size))) * np.dtype(np.float32).itemsize
    return rule_threads(nbytes * (RESAMPLE_COST if seq.augment else 1))


# -- Keras ----------------------------------------------------------------------------------


def keras_layer(op, seed=0):
    """Keras' layer of the same name and arguments as the fastseq ``op``."""
    import keras

    kw = {f.name: getattr(op, f.name) for f in dataclasses.fields(op)}
    layer = getattr(keras.layers, type(op).__name__)
    try:
        return layer(**kw, seed=seed)
    except TypeError:  # the deterministic ones (AutoContrast, Equalization) take no seed
        return layer(**kw)


def keras_pipeline(ops, *, padding=4, crop=(32, 32), mean, std, seed=0):
    """``f(uint8 batch) -> float32 tensor``: ZeroPadding2D, RandomCrop, RandomFlip, Keras' layers of ``ops``,
    Normalization, in one ``tf.function`` (as in ``model.fit`` or a ``tf.data`` map). Keras' RandomCrop
    takes one window per batch (:data:`fastseq.bench.baselines.KERAS_RANDOM_CROP_NOTE`)."""
    import keras
    import tensorflow as tf

    mean = np.atleast_1d(np.asarray(mean, np.float64))
    std = np.atleast_1d(np.asarray(std, np.float64))
    front = [keras.layers.ZeroPadding2D(padding), keras.layers.RandomCrop(*crop, seed=seed),
             keras.layers.RandomFlip("horizontal", seed=seed)] if padding else []
    augment = [keras_layer(op, seed=seed + k) for k, op in enumerate(ops)]
    norm = keras.layers.Normalization(mean=mean, variance=std**2)

    @tf.function
    def apply(batch):
        v = tf.cast(batch, tf.float32)
        for layer in front[:1]:
            v = layer(v)
        for layer in front[1:] + augment:
            v = layer(v, training=True)
        return norm(v)

    return apply


# -- albumentations -------------------------------------------------------------------------


def albumentations_compose(ops, *, padding=4, crop=(32, 32), mean=None, std=None, front=None, seed=0):
    """The job as albumentations does it per image: pad, random crop, flip (or ``front``), ``ops``, normalise.

    ``Normalize(max_pixel_value=1)`` with the statistics in pixel units gives ``(v - mean) / std``.
    """
    import albumentations as A

    if front is None:
        front = [A.PadIfNeeded(crop[0] + 2 * padding, crop[1] + 2 * padding, border_mode=CV2_BORDER_CONSTANT, fill=0),
                 A.RandomCrop(*crop), A.HorizontalFlip(p=0.5)]
    tail = [] if mean is None else [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=1.0)]
    return A.Compose([*front, *ops, *tail], seed=seed)


def _ready():
    import time

    time.sleep(0.05)  # long enough that the pool hands these out to every worker
    return "compose" in _WORKER


def run_compose(compose, images, positions):
    """``compose`` on each of ``images[positions]`` (an array or a list of arrays): float32 ``(n, h, w, C)``."""
    if len(positions) == 0:
        return np.empty((0,), np.float32)
    first = np.asarray(compose(image=images[positions[0]])["image"], np.float32)
    out = np.empty((len(positions), *first.shape), np.float32)
    out[0] = first
    for k in range(1, len(positions)):
        out[k] = compose(image=images[positions[k]])["image"]
    return out


_WORKER = {}


def _worker_init(images, build, kwargs, seed):
    import os as _os

    _os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only compete with the other workers
    _WORKER["images"] = images
    _WORKER["compose"] = build(**kwargs, seed=seed + _os.getpid())


def _worker_run(job):
    name, positions = job
    compose = _WORKER["compose"] if name is None else _WORKER["compose"][name]
    return run_compose(compose, _WORKER["images"], positions)


class AlbumentationsPool:
    """``pool(positions, name=None) -> float32 batch``: an albumentations ``Compose`` in ``workers`` processes, each
    taking an equal share of the batch; every worker holds ``images`` (an array, or a list of arrays of different sizes).

    ``build(**kwargs, seed=...)`` makes the ``Compose`` (or a dict of them, one picked by ``name`` per call)
    inside each worker (a module-level function, so the workers can import it). The processes are started
    (and every worker has built its transforms) here, before any timing.
    ``workers=0`` runs in this process.
    """

    def __init__(self, images, build, kwargs, *, workers=None, seed=0):
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.images = images
        if self.workers == 0:
            self.compose = build(**kwargs, seed=seed)
            self.executor = None
            return
        import concurrent.futures
        import multiprocessing

        # spawn: the parent holds TensorFlow's and Numba's threads, which fork() must not copy.
        self.executor = concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
            initargs=(images, build, kwargs, seed))
        self.executor.submit(_worker_run, (None, [])).result()  # the pool starts every worker for its first job
        self._warm()

    def _warm(self):
        """One call per worker so that each has imported and built everything before timing."""
        import concurrent.futures

        futures = [self.executor.submit(_ready) for _ in range(4 * self.workers)]
        concurrent.futures.wait(futures)

    def __call__(self, positions, name=None):
        positions = np.asarray(positions)
        if self.executor is None:
            compose = self.compose if name is None else self.compose[name]
            return run_compose(compose, self.images, positions)
        parts = np.array_split(positions, self.workers)
        return np.concatenate(list(self.executor.map(_worker_run, [(name, p) for p in parts])))

    def close(self):
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None


def build_cifar_compose(*, kind, mean, std, padding=4, crop=(32, 32), case=None, seed=0):
    """A ``Compose`` for the CIFAR job with the ops of ``kind`` ("plain", "geometry", "jitter" or "color" with
    ``case`` naming one of :func:`color_cases`): importable by the pool's workers."""
    if kind == "plain":
        ops = []
    elif kind == "geometry":
        ops = albumentations_geometry()
    elif kind == "jitter":
        ops = albumentations_jitter()
    else:
        ops = next(c for c in color_cases() if c.name == case).albumentations()
    return albumentations_compose(ops, padding=padding, crop=crop, mean=mean, std=std, seed=seed)


def cifar_composes(*, mean, std, seed=0):
    """Every CIFAR ``Compose`` of the augment benchmarks, by row name: "plain", "geometry", "jitter" and each color
    case albumentations has (built once per worker of an :class:`AlbumentationsPool`)."""
    made = {kind: build_cifar_compose(kind=kind, mean=mean, std=std, seed=seed) for kind in ("plain", "geometry", "jitter")}
    for c in color_cases():
        if c.albumentations is not None and c.name != "color-jitter":
            made[c.name] = build_cifar_compose(kind="color", case=c.name, mean=mean, std=std, seed=seed)
    return made


def build_photo_compose(*, size=(224, 224), rotate=True, seed=0):
    """``RandomResizedCrop(size)`` (+ ``Affine(rotate=36 degrees)``), then ``/ 1`` to float32: the photo job."""
    import albumentations as A

    ops = [A.Affine(rotate=(-36.0, 36.0), border_mode=CV2_BORDER_REFLECT, p=1.0)] if rotate else []
    return A.Compose([A.RandomResizedCrop(size=size, p=1.0), *ops], seed=seed)


# -- the rows of ``python -m fastseq bench --augment`` (kernel_rows.Row on the kernel job) --------------------------

#: ``bench --augment``'s rows, each read against the plain ``fastseq`` row or its fastseq twin.
CLI_ROWS = ("albumentations", "fastseq+geometry", "albumentations+geometry", "fastseq+jitter", "albumentations+jitter")


def _need_rgb_float32(job, row):
    if not job.float32_nhwc or job.x.ndim != 4 or job.x.shape[3] != 3:
        raise ValueError(f"row {row!r} runs on float32 channels_last RGB batches; the job is {job.dtype} "
                         f"{job.data_format} of {'x'.join(map(str, job.x.shape[1:]))} images.")


def fastseq_row(job, kind):
    """The kernel job (pad, crop, flip, normalise) plus the ``kind`` ops ("geometry" or "jitter") in ``augment``."""
    from fastseq.bench.kernel_rows import Row

    _need_rgb_float32(job, f"fastseq+{kind}")
    ops = geometry_ops() if kind == "geometry" else jitter_ops()
    seq = cifar_sequence(job.x, job.y, ops, batch_size=job.batch_size, seed=job.seed, mean=job.mean, std=job.std,
                         padding=job.padding)
    make = fastseq_maker(seq)
    label = {"geometry": "fastseq + rotation, zoom, translation", "jitter": "fastseq + RandomColorJitter"}[kind]
    return Row(f"fastseq+{kind}", label, make, job.batch_size, job.out_bytes, pass_threads(seq), job.out_shape, "float32")


def albumentations_row(job, kind="plain", batches=4):
    """albumentations' ``Compose`` for the job (plus ``kind``'s ops), one process per core over halves of the batch."""
    from fastseq.bench.kernel_rows import Row

    name = "albumentations" if kind == "plain" else f"albumentations+{kind}"
    _need_rgb_float32(job, name)
    rng = np.random.default_rng(job.seed)
    order = [rng.choice(len(job.x), job.batch_size, replace=False) for _ in range(batches)]
    images = np.ascontiguousarray(job.x[np.concatenate(order)])
    kwargs = {"kind": kind, "mean": tuple(map(float, job.mean)), "std": tuple(map(float, job.std)),
              "padding": job.padding, "crop": tuple(job.crop)}
    pool = AlbumentationsPool(images, build_cifar_compose, kwargs)
    cycle = _Cycle(range(batches))

    def albumentations_batch():
        k = cycle()
        return pool(np.arange(k * job.batch_size, (k + 1) * job.batch_size))

    what = {"plain": "", "geometry": " + Affine", "jitter": " + ColorJitter"}[kind]
    row = Row(name, f"albumentations{what}, {pool.workers} processes", albumentations_batch, job.batch_size,
              job.out_bytes, pool.workers, job.out_shape, "float32", note="one process per core, per-image Compose")
    row.close = pool.close
    return row


BUILDERS = {
    "albumentations": albumentations_row,
    "fastseq+geometry": lambda job: fastseq_row(job, "geometry"),
    "albumentations+geometry": lambda job: albumentations_row(job, "geometry"),
    "fastseq+jitter": lambda job: fastseq_row(job, "jitter"),
    "albumentations+jitter": lambda job: albumentations_row(job, "jitter"),
}
