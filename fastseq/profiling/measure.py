"""Is the accelerator starving, and by how much? GPU-starvation measurement and report.

``profile(model, data)`` runs three short measurements and compares them:

1. **loader alone**: iterate ``data`` with nothing consuming the batches;
2. **model alone**: the same compiled ``fit`` train step on one batch taken
   from ``data`` and kept resident (``tf.data.Dataset.from_tensors(batch)
   .repeat()``), so no input pipeline runs at all;
3. **achieved**: a real ``model.fit(data, steps_per_epoch=steps)``.

``starvation = max(0, 1 - t_model / t_fit)``, with ``t`` the mean wall time
per step after warm-up, is the share of a real step's wall time that an
infinitely fast loader would remove; ``1 / (1 - starvation)`` is the speed-up
that would buy. The report also carries the wait measured directly (the time
each step blocked on ``next(iterator)``, see ``fastseq.profiling.monitor``)
as a cross-check, and a verdict that names the next action (``fastseq.profiling.report.decide``).

``StarvationMonitor`` is the same measurement as a Keras callback for a normal
``fit``. ``python -m fastseq profile`` runs it all on a built-in model and
data set and compares loaders.

Keras and TensorFlow are imported inside the functions (and
``StarvationMonitor`` on first access) so ``python -m fastseq --help`` stays
instant.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np

from fastseq.profiling.report import ProfileReport, decide

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

# --------------------------------------------------------------------------
# Measurement.
# --------------------------------------------------------------------------


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _as_tuple(batch):
    if isinstance(batch, list):
        return tuple(batch)
    if isinstance(batch, (tuple, dict)):
        return batch
    return (batch,)


def _first_leaf(batch):
    if isinstance(batch, dict):
        return next(iter(batch.values()))
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _leading(batch):
    leaf = _first_leaf(batch)
    return int(leaf.shape[0])


def _dtype_name(leaf):
    dt = getattr(leaf, "dtype", None)
    name = getattr(dt, "name", None) or str(dt)
    return name


def _loader_batches(data, is_pydataset):
    """Yield ``data``'s batches the way ``fit`` would get them, plus a closer.

    A ``PyDataset`` goes through Keras' own ``PyDatasetAdapter`` (the object
    ``fit`` uses), so its ``workers``/``use_multiprocessing``/
    ``max_queue_size`` are honoured exactly as in training; on the TensorFlow
    backend through the same ``tf.data`` generator ``fit`` consumes. If that
    private class ever moves, batches are taken as ``data[i]`` in this thread.
    """
    if not is_pydataset:
        return iter(data), (lambda: None)
    try:
        import keras
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    except ImportError:  # Keras moved its internals: plain sequential indexing
        n = data.num_batches
        return (data[i] for i in (range(n) if n is not None else iter(int, 1))), (lambda: None)
    adapter = PyDatasetAdapter(data, shuffle=False)
    adapter.on_epoch_begin()
    if keras.backend.backend() == "tensorflow":
        it = iter(adapter.get_tf_dataset())
    else:
        it = adapter.get_numpy_iterator()
    return it, adapter.on_epoch_end


def _time_loader(data, is_pydataset, steps, warmup):
    it, close = _loader_batches(data, is_pydataset)
    times, images = [], 0
    try:
        t_prev = t_start = None
        for i, batch in enumerate(it):
            now = time.perf_counter()
            if i == warmup:
                t_start = now
            elif i > warmup:
                times.append(now - t_prev)
                images += _leading(batch)
            t_prev = now
            if i >= warmup + steps:
                break
    finally:
        close()
    if not times:
        raise ValueError(f"the loader yielded fewer than {warmup + 2} batches; give profile() more data.")
    wall = sum(times)
    return wall / len(times), images / wall, times


def _timed_fit(model, dataset, steps, warmup):
    """``fit`` for ``warmup + steps`` steps; time the last ``steps``."""
    from fastseq.profiling.monitor import StepRecorder, uninstall_fetch_timer

    rec = StepRecorder()
    try:
        model.fit(dataset, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[rec], shuffle=False)
    finally:  # on_train_end does not run when fit raises
        uninstall_fetch_timer(model, rec._on_fetch)
    n = len(rec.end)
    if n < warmup + 2:
        raise ValueError(f"fit ran only {n} steps; profile() needs at least warmup + 2 = {warmup + 2}.")
    begin, end = np.array(rec.begin[warmup:]), np.array(rec.end[warmup:])
    wall = float(end[-1] - begin[0])
    timed = len(begin)
    step = np.append(np.diff(begin), end[-1] - begin[-1])
    wait = np.array(rec.wait[warmup:])
    images = [im for im in rec.images[warmup:] if im is not None]
    return {
        "step_seconds": wall / timed,
        "images": (sum(images) if len(images) == timed else None),
        "wall": wall,
        "wait_fraction": (float(min(1.0, wait.sum() / wall)) if rec.fetch_timed and wall > 0 else None),
        "timeline": [[float(w), float(max(0.0, s - w))] for w, s in zip(wait, step)],
        "timed": timed,
    }


def _snapshot(model):
    """Weights and optimizer state, so profiling leaves the model as it found it."""
    if not model.built:
        return None
    opt = model.optimizer
    if not getattr(opt, "built", True):
        opt.build(model.trainable_variables)
    return [v.numpy() for v in model.variables], [v.numpy() for v in opt.variables]


def _restore(model, snap):
    weights, opt_state = snap
    for v, value in zip(model.variables, weights):
        v.assign(value)
    for v, value in zip(model.optimizer.variables, opt_state):
        v.assign(value)


def _position_keeper(data):
    """Read where ``data`` stands now; return a function that puts it back there."""
    if callable(getattr(data, "get_state", None)) and callable(getattr(data, "set_state", None)):
        state = data.get_state()
        return lambda: data.set_state(state)
    if callable(getattr(data, "set_epoch", None)) and isinstance(getattr(data, "epoch", None), int):
        epoch = data.epoch
        return lambda: data.set_epoch(epoch)
    return lambda: None


def _is_fastseq(data):
    from fastseq.sequence.array_sequence import ArraySequence

    return isinstance(data, ArraySequence)


def profile(
    model: keras.Model,
    data: keras.utils.PyDataset | tf.data.Dataset,
    *,
    steps: int = 50,
    warmup: int = 5,
    name: str | None = None,
    restore_weights: bool = True,
) -> ProfileReport:
    """Measure how much ``fit(model, data)`` waits for its input.

    Runs, in order: the loader alone for ``warmup + steps`` batches; ``fit``
    on one resident batch from ``data`` (model alone, first half of the
    steps); one untimed ``fit`` step on ``data`` (so tracing for its input
    signature happens before timing, and the loader cannot fill its prefetch
    buffer during tracing); ``fit`` on ``data`` for ``warmup + steps`` steps
    (achieved); the resident batch again (model alone, second half: the two
    halves around the real fit cancel a slow drift of the machine's speed).
    The first ``warmup`` steps of each are not timed.

    The model is trained by these runs; with ``restore_weights`` its weights
    and optimizer state are put back afterwards (when the model was built
    before the call). The data is left as it was found too: a sequence with
    ``get_state()``/``set_state()`` (or ``epoch``/``set_epoch()``), such as
    ``fastseq.ArraySequence``, gets its position back, so the epoch
    that training goes on with is the one it would have had.

    Args:
        model (keras.Model): a compiled Keras model. An uncompiled one raises: profiling
            must time your optimizer and loss, not a guess at them.
        data (keras.utils.PyDataset | tf.data.Dataset): a ``keras.utils.PyDataset`` (its workers settings are honoured)
            yielding ``(x, y)`` batches, or a ``tf.data.Dataset`` of batches
            (repeated if it is shorter than needed).
        steps (int): timed steps per measurement. For a ``PyDataset`` shorter than
            ``warmup + steps`` batches, ``steps`` is cut to fit (noted in the
            report).
        warmup (int): untimed steps at the start of each measurement (>= 1; the
            first step of a fit traces the train function).
        name (str | None): label for tables and plots; defaults to the data's class name.
        restore_weights (bool): put weights and optimizer state back afterwards.

    Returns:
        ProfileReport: the measurements, the starvation figure and the verdict.

    Raises:
        ValueError: the model is not compiled, or steps/warmup/data too short.
        TypeError: ``data`` is neither a ``PyDataset`` nor a ``tf.data.Dataset``.
    """
    import keras
    import tensorflow as tf

    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"profile() needs a compiled model, got an uncompiled {type(model).__name__}: call "
            "model.compile(optimizer=..., loss=...) first, with the optimizer and loss you train with."
        )
    steps, warmup = int(steps), int(warmup)
    if steps < 2 or warmup < 1:
        raise ValueError(f"steps must be >= 2 and warmup >= 1, got steps={steps}, warmup={warmup}.")
    notes = []
    is_pydataset = isinstance(data, keras.utils.PyDataset)
    if is_pydataset:
        n = data.num_batches
        if n is not None and n < warmup + steps + 1:
            if n < warmup + 3:
                raise ValueError(
                    f"data has {n} batches; profile() needs at least warmup + 3 = {warmup + 3}. "
                    "Use more data or a smaller batch."
                )
            notes.append(f"steps cut from {steps} to {n - warmup - 1}: the PyDataset has only {n} batches")
            steps = n - warmup - 1
        first = _as_tuple(data[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyDataset warns when super().__init__ was skipped
            workers = int(data.workers)
    elif isinstance(data, tf.data.Dataset):
        card = int(data.cardinality())
        if 0 <= card < warmup + steps + 1:
            data = data.repeat()
        first = _as_tuple(next(iter(data.take(1))))
        workers = None
    else:
        raise TypeError(
            f"data must be a keras.utils.PyDataset or a tf.data.Dataset, got {type(data).__name__}; wrap arrays in "
            "fastseq.ArraySequence."
        )
    leaf = _first_leaf(first)
    batch_size = int(leaf.shape[0])
    input_dtype = _dtype_name(leaf)
    memmap = any(isinstance(getattr(data, a, None), np.memmap) for a in ("x", "images"))

    snap = _snapshot(model) if restore_weights else None
    if restore_weights and snap is None:
        notes.append("the model was not built before profile(): its weights are left trained")
    put_back = _position_keeper(data)
    try:
        loader_step, loader_ips, loader_times = _time_loader(data, is_pydataset, steps, warmup)
        # Model alone is timed in two halves around the real fit, so that a
        # drifting machine (clock, other jobs) biases both sides alike.
        resident = tf.data.Dataset.from_tensors(first).repeat()
        before = _timed_fit(model, resident, max(2, steps - steps // 2), warmup)
        model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # trace for data's signature, untimed
        fit_run = _timed_fit(model, data, steps, warmup)
        after = _timed_fit(model, resident, max(2, steps // 2), min(warmup, 2))
    finally:
        if snap is not None:
            _restore(model, snap)
        put_back()

    t_model = (before["wall"] + after["wall"]) / (before["timed"] + after["timed"])
    t_fit = fit_run["step_seconds"]
    starvation = float(min(1.0, max(0.0, 1.0 - t_model / t_fit)))
    fit_images = fit_run["images"] if fit_run["images"] is not None else batch_size * fit_run["timed"]
    model_ips = batch_size / t_model
    verdict = decide(
        starvation=starvation,
        loader_images_per_sec=loader_ips,
        model_images_per_sec=model_ips,
        input_dtype=input_dtype,
        workers=workers,
        cpu_count=_cpu_count(),
        memmap=memmap,
        model_step_seconds=t_model,
        loader="fastseq" if _is_fastseq(data) else "other",
    )
    return ProfileReport(
        name=name or type(data).__name__,
        batch_size=batch_size,
        steps=fit_run["timed"],
        warmup=warmup,
        loader_step_seconds=loader_step,
        model_step_seconds=t_model,
        fit_step_seconds=t_fit,
        loader_images_per_sec=loader_ips,
        model_images_per_sec=model_ips,
        achieved_images_per_sec=fit_images / fit_run["wall"],
        starvation=starvation,
        measured_wait_fraction=fit_run["wait_fraction"],
        verdict=verdict,
        input_dtype=input_dtype,
        workers=workers,
        backend=keras.backend.backend(),
        fit_step_timeline=fit_run["timeline"],
        loader_batch_timeline=[float(t) for t in loader_times],
        notes=notes,
    )
