"""End-to-end feed rate: ``model.fit`` on a trivial model, fed by each loader.

The model (GlobalAveragePooling2D + Dense) costs almost nothing, so the
steps per second ``fit`` achieves are what the input pipeline, Keras' data
adapter and TensorFlow's tensor conversion allow. A no-op ``PyDataset``
that returns one precomputed, page-aligned batch (which TensorFlow shares
instead of copying) is Keras' own ceiling; ``noop-copied`` returns the same
batch as a plain NumPy array would sit in memory, which TensorFlow copies
every step: the ceiling for a loader that returns ordinary arrays.
``convert`` does the memory-bandwidth ceiling's work every step (NumPy
converting the next contiguous slice of the data set to float32, no gather,
no augmentation) into reused page-aligned buffers, as ArraySequence does: the
ceiling for a loader that makes a new batch each step. Used by
``benchmarks/test_feed.py`` and ``python -m fastseq bench --e2e``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

#: The targets of these rows, per shape, are ``fastseq.bench.verdicts.TARGETS`` (the keys ``fit ...``): the
#: ratios are judged only where the loader, not the model's step, bounds the fit (``verdicts.step_bound``).

@dataclass
class FeedResult:
    name: str
    images_per_sec: float
    step_ms: float
    steps: int
    batch_size: int
    #: images/s of every window, in the order they ran
    windows: list = None


def _keras():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def trivial_model(input_shape, num_classes=10, seed=0, normalize=None):
    """GlobalAveragePooling2D + Dense; with ``normalize``, uint8 input and a DeviceNormalize first layer."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    if normalize is None:
        head = [keras.Input(input_shape)]
    else:
        from fastseq.layers import DeviceNormalize

        head = [keras.Input(input_shape, dtype="uint8"), DeviceNormalize(normalize)]
    model = keras.Sequential(head + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(num_classes)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _step_dataset(batch_of, steps):
    """A PyDataset of ``steps`` batches, batch ``i`` being ``batch_of(i)``."""
    keras = _keras()

    class Steps(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()

        def __len__(self):
            return steps

        def __getitem__(self, i):
            return batch_of(i)

    return Steps()


def noop_dataset(batch, steps):
    """A PyDataset returning the same precomputed batch ``steps`` times: Keras' own ceiling."""
    return _step_dataset(lambda i: batch, steps)


def convert_dataset(x, y, batch_size, steps):
    """A PyDataset doing the bandwidth ceiling's work each step, into reused page-aligned buffers.

    Batch ``i`` is NumPy's uint8 -> float32 conversion (``np.copyto``) of
    the data set's ``i``-th contiguous run of ``batch_size`` images (cycling),
    with their labels: new data every step, as a real loader must make, but
    no gather and no augmentation. Its buffers come from a
    :class:`fastseq.sequence._pool.BufferPool`, as ArraySequence's do.
    """
    from fastseq.sequence._pool import BufferPool

    x4 = x if x.ndim == 4 else x[..., None]
    runs = len(x4) // batch_size
    pool = BufferPool((batch_size, *x4.shape[1:]), np.float32, capacity=4)

    def convert(i):
        j = i % runs
        out = pool.take()
        np.copyto(out, x4[j * batch_size : (j + 1) * batch_size], casting="unsafe")
        return out, y[j * batch_size : (j + 1) * batch_size]

    return _step_dataset(convert, steps)


def malloc_like_copy(a):
    """A copy of ``a`` whose data starts 16 bytes past a 64-byte boundary, as a large ``np.empty`` does.

    TensorFlow's ``from_generator`` shares the memory of a 64-byte-aligned
    batch and copies any other; glibc's ``malloc`` puts a large array 16
    bytes past a page boundary, so a plain NumPy batch is copied every step.
    """
    raw = np.empty(a.nbytes + 128, np.uint8)
    start = (16 - raw.ctypes.data) % 64
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def time_fit(model, data, *, steps, warmup):
    """Steady-state seconds per step of ``fit`` over ``data``, after ``warmup`` steps.

    Timed by a callback from the start of step ``warmup`` to the end of the
    last step, so model building, tracing and Keras' set-up are excluded.
    """
    keras = _keras()
    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == warmup:
                marks["start"] = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            marks["end"] = time.perf_counter()

    # shuffle=False: Keras ignores it for a tf.data.Dataset, and warns mid-table when it is True.
    model.fit(data, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[Clock()], shuffle=False)
    return (marks["end"] - marks["start"]) / steps


def loaders(x, y, *, batch_size, mean, std, padding=4, x_memmap=None, seed=0):
    """``{name: factory()}`` for every feed row; factories build the loader on demand.

    A factory returns the loader, or ``(loader, model keyword arguments)``
    where the row needs another model than the float32 one (``fastseq-uint8``).
    """
    from fastseq.augment import Normalize, RandomCrop, RandomFlip
    from fastseq.bench import baselines
    from fastseq.sequence.array_sequence import ArraySequence

    H, W = x.shape[1:3]
    aug = dict(crop=RandomCrop(H, W, padding=padding), flip=RandomFlip("horizontal"), normalize=Normalize(mean, std))

    def noop(copied):
        batch = ArraySequence(x, y, batch_size=batch_size, seed=seed, **aug)[0]
        if copied:
            batch = (malloc_like_copy(batch[0]),) + tuple(np.array(b) for b in batch[1:])
        return noop_dataset(batch, steps=10**6)

    rows = {
        "noop": lambda: noop(False),
        "noop-copied": lambda: noop(True),
        "convert": lambda: convert_dataset(x, y, batch_size, steps=10**6),
        "fastseq": lambda: ArraySequence(x, y, batch_size=batch_size, seed=seed, **aug),
        "fastseq-memmap": None if x_memmap is None else (
            lambda: ArraySequence(x_memmap, y, batch_size=batch_size, seed=seed, **aug)
        ),
        "fastseq-uint8": lambda: (
            ArraySequence(x, y, batch_size=batch_size, seed=seed, dtype="uint8", crop=aug["crop"], flip=aug["flip"]),
            {"normalize": aug["normalize"]},
        ),
        "numpy": lambda: baselines.NumpySequence(
            x, y, batch_size=batch_size, seed=seed, crop=(H, W), padding=padding, flip=True, mean=mean, std=std
        ),
        "tf.data": lambda: baselines.tf_data_pipeline(
            x, y, batch_size=batch_size, seed=seed, crop=(H, W), padding=padding, flip=True, mean=mean, std=std
        ).repeat(),
        "grain": lambda: baselines.grain_pipeline(
            x, y, batch_size=batch_size, seed=seed, crop=(H, W), padding=padding, flip=True, mean=mean, std=std,
            repeat=True,
        ),
    }
    return {name: factory for name, factory in rows.items() if factory is not None}


def feed_table(x, y, *, batch_size, mean, std, padding, steps=20, seed=0, rows=None, rounds=3):
    """Run every feed row (the memmap row from a temporary .npy), interleaved; return ``{name: FeedResult}``."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fastseq-bench-") as tmp:
        path = f"{tmp}/x.npy"
        np.save(path, x)
        x_memmap = np.load(path, mmap_mode="r")
        int(x_memmap.reshape(-1)[::4096].sum())  # page cache warm, mapping populated
        factories = loaders(x, y, batch_size=batch_size, mean=mean, std=std, padding=padding, x_memmap=x_memmap,
                            seed=seed)
        if rows is not None:
            factories = {name: f for name, f in factories.items() if name in rows}
        image_shape = x.shape[1:] if x.ndim == 4 else x.shape[1:] + (1,)
        results = run_feeds(factories, image_shape=image_shape, batch_size=batch_size, steps=steps, rounds=rounds)
        del x_memmap, factories
    return results


def timings(results):
    """``{name: verdicts.Timing}`` of feed ``results``: median images/s, spread from the windows' times."""
    from fastseq.bench.verdicts import Timing, spread

    return {name: Timing(r.images_per_sec, spread([1 / w for w in r.windows or [] if w > 0]))
            for name, r in results.items()}


def render(results, out, *, shape=None, threads=None, image_shape=None):
    """Print the feed table and its verdicts on ``shape`` (a ``verdicts.TARGETS`` key); return the verdicts.

    ``threads``: ``{row: threads}``, the threads the work rule gives each fastseq row's launches (by its
    batch's output bytes: the uint8 row's are a quarter of the float32 rows'), shown as a column;
    ``image_shape``: one output image's shape, for the title.
    """
    from fastseq.bench import verdicts

    first = next(iter(results.values()), None)
    of = f" of {'x'.join(map(str, image_shape))}" if image_shape else ""
    batch = f"batch {first.batch_size}{of}; " if first else ""
    threads = threads or {}
    title = (f"end-to-end: model.fit on GlobalAveragePooling2D + Dense ({batch}steady state after 3 warm-up "
             "steps; rows interleaved, median of the rounds; threads: fastseq's launches by the work rule)")
    lines = ["", title]
    base = results.get("noop")
    lines.append(f"  {'loader':<16}{'threads':>8}{'images/s':>12}{'ms/step':>10}{'vs no-op':>10}{'median/min':>12}")
    tm = timings(results)
    for name, r in results.items():
        vs = f"{r.images_per_sec / base.images_per_sec:.2f}x" if base else ""
        lines.append(f"  {name:<16}{threads.get(name, '-'):>8}{r.images_per_sec:>12,.0f}{r.step_ms:>10.2f}{vs:>10}"
                     f"{tm[name].spread:>11.2f}x")
    found = verdicts.fit_verdicts(shape, tm)
    if found:
        bound = verdicts.step_bound(tm)
        where = verdicts.SHAPES.get(shape, "no targets for this shape")
        lines.append(f"  targets ({where}):")
        if bound:
            lines.append(f"    step-bound: {bound}; the fit ratios measure the step, not the loaders")
        lines += verdicts.verdict_lines(found, indent="    ")
        if base and "fastseq" in results:
            lines.append(f"    {'fastseq / noop':<26}{results['fastseq'].images_per_sec / base.images_per_sec:7.2f}x  "
                         "(not a target)")
    print("\n".join(lines), file=out)
    return found


def run_feeds(factories, *, image_shape, batch_size, steps, warmup=3, rounds=2):
    """Build every loader with a fresh trivial model; time ``rounds`` windows of each, in turn.

    Returns ``{name: FeedResult}`` with each row's median window (with
    fewer than three rounds, the better one). Interleaved (round 1 of every row, then round 2 of every
    row, ...), so every row is measured across the same stretch of time: on
    a shared machine whose speed drifts over seconds, rows timed one after
    another compare their moments as much as their loaders. The median, not
    the best window as for the kernel rows: a window is 50 steps of a whole
    training loop, and single windows came out both much slower and much
    faster (the no-op once at twice its usual rate) than the rest.
    """
    import gc

    built = {}
    for name, factory in factories.items():
        made = factory()
        data, model_kwargs = made if isinstance(made, tuple) else (made, {})
        built[name] = (trivial_model(image_shape, **model_kwargs), data)
    windows = {name: [] for name in built}
    for _ in range(rounds):
        for name, (model, data) in built.items():
            windows[name].append(time_fit(model, data, steps=steps, warmup=warmup))
            # The fit's tf.data iterator (and its prefetch threads) go now,
            # not while the next row is being timed.
            gc.collect()
    del built
    _keras().backend.clear_session()
    gc.collect()
    results = {}
    for name, w in windows.items():
        s = float(np.median(w)) if len(w) > 2 else min(w)
        results[name] = FeedResult(name, batch_size / s, s * 1e3, steps, batch_size, [batch_size / t for t in w])
    return results
