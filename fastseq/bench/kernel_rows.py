"""The kernel rows: fastseq, its baselines and the memory ceiling on one batch job.

One job, timed the same way for every row: gather a seeded random batch of
``batch_size`` indices, pad 4, random-crop back to the image size, random
horizontal flip (p = 0.5), per-channel normalise, float32 channels_last.

Rows (``--rows`` picks some):

- ``ceiling``: NumPy converting the same number of uint8 bytes to float32,
  contiguous, into a preallocated array, one thread: what memory allows.
  Each call converts the next contiguous slice of the data set (rotating
  through all of it), so its bytes come from memory as the kernel's do.
- ``ceiling-cache``: the same conversion of one fixed, cache-resident
  source: what cache bandwidth allows. Shown for transparency; the targets
  are against ``ceiling``.
- ``gather``: NumPy ``np.take`` of the batch then the same conversion, no
  augmentation: the ceiling for a loader that must gather random samples.
- ``fastseq`` / ``fastseq-1t``: a ``fastseq.kernels.FusedPlan`` built once
  (what the sequence does) with all Numba threads / one thread,
  preallocated ``out``.

``gather`` and the fastseq rows rotate through :data:`ROTATE` precomputed
random batches (indices and parameters), one per call, so that no row is
timed on a batch its previous call left in the caches.
- ``numpy``: the hand-written per-sample loop (:func:`fastseq.bench.baselines.numpy_batch`).
- ``tf.data``: :func:`fastseq.bench.baselines.tf_data_pipeline`, batches pulled
  from a warm iterator.
- ``keras``: :func:`fastseq.bench.baselines.keras_layers_pipeline` on the gathered
  uint8 batch (gather included). Its RandomCrop uses one offset per batch.

The row builders below are shared with ``benchmarks/test_kernels.py``, so
the CLI and ``pytest --benchmark-only`` measure the same code on the same
job. Keras and TensorFlow are imported only by the rows that need them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fastseq.bench import synthetic

ROWS = ("ceiling", "ceiling-cache", "gather", "fastseq", "fastseq-1t", "numpy", "tf.data", "grain", "keras")
#: Random batches the gather and fastseq rows cycle through, one per call: 32 CIFAR
#: batches read 48 MB, more than the last-level cache holds.
ROTATE = 32

# The targets of these rows, per shape, are fastseq.bench.verdicts.TARGETS.

#: The augmentation rows (``bench --augmentations``): the same job with one more op inside the fused pass,
#: each read as its time over the plain ``fastseq`` row's.
AUGMENTATION_ROWS = ("fastseq+cutout", "fastseq+erasing", "fastseq+mixup", "fastseq+cutmix")


# -- the job ------------------------------------------------------------------------


@dataclass
class Job:
    """One batch of work: which images, which augmentation, which output.

    Attributes:
        x: uint8 images ``(N, H, W)`` or ``(N, H, W, C)``, the whole data set.
        indices: int64 ``(batch,)`` positions of this batch in ``x``.
        crop: ``(height, width)`` of the output.
        padding: zero padding on every side before cropping.
        mean, std: per-channel float64 statistics in pixel units.
        horizontal: probability of a left-right flip.
        dtype: output dtype name (``float32``, ``float16``, ``bfloat16``).
        data_format: ``channels_last`` or ``channels_first``.
        seed: seeds the random parameters and the baselines.
        name: a short label, e.g. ``cifar-b512-f32``.
    """

    x: np.ndarray
    indices: np.ndarray
    crop: tuple = (32, 32)
    padding: int = 4
    mean: np.ndarray = None
    std: np.ndarray = None
    horizontal: float = 0.5
    dtype: str = "float32"
    data_format: str = "channels_last"
    seed: int = 0
    name: str = "job"
    y: np.ndarray = None

    @property
    def batch_size(self):
        return len(self.indices)

    @property
    def channels(self):
        return 1 if self.x.ndim == 3 else self.x.shape[3]

    @property
    def out_shape(self):
        n, (h, w), c = self.batch_size, self.crop, self.channels
        return (n, c, h, w) if self.data_format == "channels_first" else (n, h, w, c)

    @property
    def out_dtype(self):
        if self.dtype == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.dtype)

    @property
    def out_bytes(self):
        return int(np.prod(self.out_shape)) * self.out_dtype.itemsize

    @property
    def float32_nhwc(self):
        """Whether the baselines (float32 channels_last only) can run this job."""
        return self.dtype == "float32" and self.data_format == "channels_last"

    def params(self, epoch=0, indices=None):
        """``(origins, flips)`` for this batch (or ``indices``) from ``fastseq.kernels.random_params``."""
        from fastseq import kernels

        return kernels.random_params(
            self.seed,
            epoch,
            self.indices if indices is None else indices,
            image_size=self.x.shape[1:3],
            crop_size=self.crop,
            padding=self.padding,
            horizontal=self.horizontal,
        )

    def batches(self, count=ROTATE):
        """``count`` seeded random batches ``(indices, origins, flips)``; the first is this job's own.

        Batch ``j`` draws its indices with seed ``seed + j`` and its
        parameters for epoch ``j``, so the batches differ in samples,
        crops and flips.
        """
        out = [(self.indices, *self.params())]
        for j in range(1, count):
            indices = batch_indices(len(self.x), self.batch_size, self.seed + j)
            out.append((indices, *self.params(epoch=j, indices=indices)))
        return out

    def static_kwargs(self):
        """The arguments of ``kernels.FusedPlan`` for this job (everything but the batch)."""
        kw = self.fused_kwargs(None, None)
        del kw["origins"], kw["flips"]
        return kw

    def fused_kwargs(self, origins, flips):
        """Keyword arguments of ``kernels.fused`` (and ``reference.fused``) for this job."""
        return dict(
            crop=self.crop,
            origins=origins,
            flips=flips,
            padding=self.padding,
            mean=self.mean,
            std=self.std,
            dtype=self.dtype,
            data_format=self.data_format,
        )


def batch_indices(n, batch_size, seed=0):
    """A fixed seeded random batch (distinct, not contiguous, unsorted) of ``batch_size`` from ``n``."""
    return np.random.default_rng([seed, 7]).choice(n, size=batch_size, replace=False).astype(np.int64)


def cifar_job(x, y=None, *, batch_size=512, seed=0, dtype="float32", data_format="channels_last", name=None):
    """The headline job on CIFAR-shaped ``x``: pad 4, crop 32x32, flip, CIFAR mean/std."""
    short = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}.get(dtype, dtype)
    suffix = "-nchw" if data_format == "channels_first" else ""
    return Job(
        x=x,
        y=y,
        indices=batch_indices(len(x), batch_size, seed),
        crop=tuple(x.shape[1:3]),
        padding=4,
        mean=np.array(synthetic.CIFAR_MEAN),
        std=np.array(synthetic.CIFAR_STD),
        dtype=dtype,
        data_format=data_format,
        seed=seed,
        name=name or f"cifar-b{batch_size}-{short}{suffix}",
    )


def mnist_job(x, y=None, *, batch_size=512, seed=0, mean=None, std=None, name=None):
    """Grayscale 28x28 job: pad 2, crop 28x28, flip, normalise (data's own mean/std by default)."""
    if mean is None:
        mean = float(x[:10_000].mean())
    if std is None:
        std = float(x[:10_000].std())
    return Job(
        x=x,
        y=y,
        indices=batch_indices(len(x), batch_size, seed),
        crop=tuple(x.shape[1:3]),
        padding=2,
        mean=np.atleast_1d(np.asarray(mean, dtype=np.float64)),
        std=np.atleast_1d(np.asarray(std, dtype=np.float64)),
        seed=seed,
        name=name or f"mnist-b{batch_size}-f32",
    )


# -- the rows -----------------------------------------------------------------------


@dataclass
class Row:
    """One timed loader: ``fn()`` makes ``images`` images (``out_bytes`` bytes) per call."""

    name: str
    label: str
    fn: Callable[[], object]
    images: int
    out_bytes: int
    threads: int
    shape: tuple
    dtype: str
    note: str = ""
    extra: dict = field(default_factory=dict)
    check_data: object = None  # what a test needs to check fn()'s output: a callable for the rotating rows

    def info(self, seconds_per_call=None):
        """``benchmark.extra_info``-style facts, with rates when a time is known."""
        d = {"row": self.name, "shape": list(self.shape), "dtype": self.dtype, "threads": self.threads}
        if seconds_per_call:
            d["images_per_sec"] = round(self.images / seconds_per_call, 1)
            d["GB_per_sec"] = round(self.out_bytes / seconds_per_call / 1e9, 3)
        if self.note:
            d["note"] = self.note
        d.update(self.extra)
        return d


def all_threads():
    import numba

    return numba.config.NUMBA_NUM_THREADS


def rule_threads(work, limit=None):
    """The threads a launch of ``work`` bytes gets: the work rule of ``fit`` (``kernels.config.threads_for``).

    ``limit``: the calling thread's Numba setting (default: ``numba.get_num_threads()``).
    """
    import numba

    from fastseq.kernels.config import threads_for

    return threads_for(work, numba.get_num_threads() if limit is None else limit)


class _Cycle:
    """Hands out the items of a list in turn; remembers the last one handed out."""

    def __init__(self, items):
        self.items = list(items)
        self.next = 0
        self.last = None

    def __call__(self):
        self.last = self.items[self.next]
        self.next = (self.next + 1) % len(self.items)
        return self.last


def ceiling_row(job):
    """NumPy contiguous uint8 -> output dtype, same element count, preallocated, one thread; source from memory.

    Each call converts the next contiguous run of the data set's bytes,
    cycling through all of ``job.x``: like the kernel's gather, the bytes
    come from memory, not from a cache that the previous call warmed.
    ``check_data()`` is the source of the last call.
    """
    count = int(np.prod(job.out_shape))
    flat = np.ascontiguousarray(job.x).reshape(-1)
    if flat.size < count:
        raise ValueError(f"the data set has {flat.size} bytes, fewer than one batch ({count}).")
    sources = _Cycle(flat[j * count : (j + 1) * count] for j in range(flat.size // count))
    out = np.empty(job.out_shape, dtype=job.out_dtype)
    out_flat = out.reshape(-1)

    def ceiling():
        np.copyto(out_flat, sources(), casting="unsafe")
        return out

    return Row(
        "ceiling",
        f"ceiling: NumPy uint8->{job.dtype} copy, memory source",
        ceiling,
        job.batch_size,
        job.out_bytes,
        1,
        job.out_shape,
        job.dtype,
        extra={"source": f"{len(sources.items)} contiguous slices of the data set, in turn"},
        check_data=lambda: sources.last,
    )


def ceiling_cache_row(job):
    """The ceiling's conversion of one fixed source, which stays in the cache between calls."""
    src = np.random.default_rng(job.seed).integers(0, 256, size=job.out_shape, dtype=np.uint8)
    out = np.empty(job.out_shape, dtype=job.out_dtype)

    def ceiling_cache():
        np.copyto(out, src, casting="unsafe")
        return out

    return Row(
        "ceiling-cache",
        f"ceiling, cache-resident source: uint8->{job.dtype}",
        ceiling_cache,
        job.batch_size,
        job.out_bytes,
        1,
        job.out_shape,
        job.dtype,
        note="same source every call: cache bandwidth, not a target",
        check_data=lambda: src,
    )


def gather_row(job):
    """NumPy ``np.take`` of the batch into a preallocated uint8 buffer, then the ceiling's conversion.

    Not augmentation, only the two memory passes every loader must make
    (random reads from the data set, then the conversion): a second,
    gather-aware ceiling that shows how much of fastseq's distance to the
    contiguous ceiling is the gather itself. Cycles through the job's
    :data:`ROTATE` batches; ``check_data()`` is the last call's indices.
    """
    x = job.x
    batches = _Cycle(indices for indices, _, _ in job.batches())
    buf = np.empty((job.batch_size, *x.shape[1:]), dtype=np.uint8)
    out = np.empty(buf.shape, dtype=job.out_dtype)

    def gather_convert():
        np.take(x, batches(), axis=0, out=buf)
        np.copyto(out, buf, casting="unsafe")
        return out

    return Row(
        "gather",
        f"NumPy gather + uint8->{job.dtype} (no aug.)",
        gather_convert,
        job.batch_size,
        job.out_bytes,
        1,
        buf.shape,
        job.dtype,
        check_data=lambda: batches.last,
    )


def fastseq_row(job, threads=None):
    """A ``kernels.FusedPlan`` built once, called into a preallocated ``out``; ``threads=1`` pins Numba to one thread.

    Cycles through the job's :data:`ROTATE` batches (indices, origins,
    flips), one per call. ``check_data()`` is the last call's batch.
    """
    import numba

    from fastseq import kernels

    plan = kernels.FusedPlan(job.x, **job.static_kwargs())
    batches = _Cycle(job.batches())
    out = np.empty(job.out_shape, dtype=job.out_dtype)

    if threads is None:
        n = rule_threads(job.out_bytes)  # what each launch below really uses

        def fused():
            return plan(*batches(), out=out)

    else:
        n = threads

        def fused():
            # Numba's thread count is thread-local: set and restore it in the
            # thread that runs the kernel.
            numba.set_num_threads(threads)
            try:
                return plan(*batches(), out=out)
            finally:
                numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    name = "fastseq" if threads is None else f"fastseq-{threads}t"
    if threads is None:
        label = "fastseq fused, threads by the work rule"
    else:
        label = f"fastseq fused, pinned to {threads} thread{'s' if threads != 1 else ''}"
    return Row(
        name, label, fused, job.batch_size, job.out_bytes, n, job.out_shape, job.dtype,
        extra={"batches": len(batches.items)}, check_data=lambda: batches.last,
    )


def augmented_row(job, op):
    """The ``fastseq`` row's job with ``op`` ("cutout", "erasing", "mixup", "cutmix") inside the fused pass.

    Cutout and erasing: the boxes go to ``FusedPlan(..., erase=)``; MixUp and CutMix: ``kernels.FusedMix``
    makes each sample and its partner and blends them in one pass. Draws are made per batch beforehand, as
    the sequence makes them before its kernel call, and not timed.
    """
    from fastseq import kernels

    _require_float32_nhwc(job, f"fastseq+{op}")
    plan = kernels.FusedPlan(job.x, **job.static_kwargs())
    crop = job.crop
    out = np.empty(job.out_shape, dtype=job.out_dtype)
    items = []
    if op in ("cutout", "erasing"):
        draws = (kernels.CutoutParams(image_size=crop, size=16) if op == "cutout"
                 else kernels.ErasingParams(image_size=crop))
        for j, (indices, origins, flips) in enumerate(job.batches()):
            items.append((indices, origins, flips, draws(job.seed, j, indices)))

        def call():
            indices, origins, flips, boxes = batches()
            return plan(indices, origins, flips, out=out, erase=boxes)
    else:
        mix = kernels.FusedMix(plan, job.dtype)
        draws = kernels.MixParams(num_items=len(job.x), image_size=crop, alpha=0.2 if op == "mixup" else 1.0,
                                  mode=op)
        for j, (indices, _, _) in enumerate(job.batches()):
            draw = draws(job.seed, j, indices)
            both = np.concatenate([indices, draw.partners])
            items.append((both, *job.params(epoch=j, indices=both), draw.weights, draw.boxes))

        def call():
            both, origins, flips, weights, boxes = batches()
            return mix(both, origins, flips, weights, boxes, out=out)

    batches = _Cycle(items)
    n = rule_threads(job.out_bytes)
    label = {"cutout": "fastseq + Cutout(16)", "erasing": "fastseq + RandomErasing()", "mixup": "fastseq + MixUp(0.2)",
             "cutmix": "fastseq + CutMix(1.0)"}[op]
    return Row(f"fastseq+{op}", label, call, job.batch_size, job.out_bytes, n, job.out_shape, job.dtype,
               extra={"batches": len(items)}, check_data=lambda: batches.last)


def numpy_row(job):
    """The seed-style per-sample Python loop, the same code as ``NumpySequence.__getitem__``."""
    from fastseq.bench.baselines import numpy_batch

    _require_float32_nhwc(job, "numpy")
    x, indices = job.x, job.indices

    def numpy_loop():
        rng = np.random.default_rng([job.seed, 0, 1, 0])  # per batch, as in NumpySequence.__getitem__
        return numpy_batch(
            x, indices, rng, crop=job.crop, padding=job.padding, flip=job.horizontal > 0, mean=job.mean, std=job.std
        )

    return Row("numpy", "NumPy per-sample loop", numpy_loop, job.batch_size, job.out_bytes, 1, job.out_shape, "float32")


def tf_data_row(job, batches=8):
    """Pull ``batches`` batches per call from a warm ``tf_data_pipeline`` iterator.

    Several batches per call so that the prefetch buffer, filled while the
    timer is stopped, cannot make a batch look free: the time is the
    pipeline's steady-state rate. The labels are the sample positions, so
    ``fn()``'s ``(images, positions)`` of the last batch can be checked
    against the source images.
    """
    from fastseq.bench.baselines import tf_data_pipeline

    _require_float32_nhwc(job, "tf.data")
    y = np.arange(len(job.x), dtype=np.int64)
    ds = tf_data_pipeline(
        job.x,
        y,
        batch_size=job.batch_size,
        seed=job.seed,
        crop=job.crop,
        padding=job.padding,
        flip=job.horizontal > 0,
        mean=job.mean,
        std=job.std,
    ).repeat()
    import tensorflow as tf

    threads = tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()
    return _pulled_row(job, "tf.data", "tf.data per-sample map", ds, batches, threads, lambda t: t.numpy())


def grain_row(job, batches=8):
    """Pull ``batches`` batches per call from a warm :func:`fastseq.bench.baselines.grain_pipeline` iterator.

    As :func:`tf_data_row`: several batches per call, so the prefetch
    buffer cannot make a batch look free; labels are the sample positions.
    """
    from fastseq.bench.baselines import grain_pipeline

    _require_float32_nhwc(job, "grain")
    threads = os.cpu_count() or 1
    ds = grain_pipeline(
        job.x,
        np.arange(len(job.x), dtype=np.int64),
        batch_size=job.batch_size,
        seed=job.seed,
        crop=job.crop,
        padding=job.padding,
        flip=job.horizontal > 0,
        mean=job.mean,
        std=job.std,
        repeat=True,
        read_threads=threads,
    )
    return _pulled_row(job, "grain", "Grain MapDataset random_map", ds, batches, threads, lambda a: a)


def _pulled_row(job, name, label, dataset, batches, threads, to_numpy):
    """A row pulling ``batches`` batches per call from a warm iterator over ``dataset`` (endless).

    Several batches per call so that the prefetch buffer, filled while the
    timer is stopped, cannot make a batch look free. ``fn()`` returns the
    last batch's ``(images, positions)`` as NumPy arrays.
    """
    it = iter(dataset)
    for _ in range(3):  # fill the buffers, start the pipeline's threads
        next(it)

    def pull():
        for _ in range(batches):
            xb, yb = next(it)
        return to_numpy(xb), to_numpy(yb)

    return Row(
        name,
        label,
        pull,
        job.batch_size * batches,
        job.out_bytes * batches,
        threads,
        job.out_shape,
        "float32",
        extra={"batches_per_call": batches},
    )


def keras_row(job):
    """Keras 3 preprocessing layers on the gathered uint8 batch (the gather is timed too)."""
    from fastseq.bench.baselines import KERAS_RANDOM_CROP_NOTE, keras_layers_pipeline

    _require_float32_nhwc(job, "keras")
    f = keras_layers_pipeline(crop=job.crop, padding=job.padding, mean=job.mean, std=job.std, seed=job.seed)
    x, indices = job.x, job.indices
    np.asarray(f(x[indices]))  # trace the tf.function outside the timer

    def keras_layers():
        return np.asarray(f(x[indices]))

    return Row(
        "keras",
        "Keras layers per batch*",
        keras_layers,
        job.batch_size,
        job.out_bytes,
        os.cpu_count(),
        job.out_shape,
        "float32",
        note=KERAS_RANDOM_CROP_NOTE,
    )


def _require_float32_nhwc(job, row):
    if not job.float32_nhwc:
        raise ValueError(f"row {row!r} runs float32 channels_last only; the job is {job.dtype} {job.data_format}.")


BUILDERS = {
    "ceiling": ceiling_row,
    "ceiling-cache": ceiling_cache_row,
    "gather": gather_row,
    "fastseq": fastseq_row,
    "fastseq-1t": lambda job: fastseq_row(job, threads=1),
    "numpy": numpy_row,
    "tf.data": tf_data_row,
    "grain": grain_row,
    "keras": keras_row,
    **{f"fastseq+{op}": (lambda job, op=op: augmented_row(job, op)) for op in ("cutout", "erasing", "mixup", "cutmix")},
}
