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
each step blocked on ``next(iterator)``, see :mod:`fastseq._profile_monitor`)
as a cross-check, and a verdict that names the next action (:func:`decide`).

``StarvationMonitor`` is the same measurement as a Keras callback for a normal
``fit``. ``python -m fastseq profile`` runs it all on a built-in model and
data set and compares loaders.

Keras and TensorFlow are imported inside the functions (and
``StarvationMonitor`` on first access) so ``python -m fastseq --help`` stays
instant.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import warnings

import numpy as np

__all__ = [
    "ProfileReport",
    "STARVATION_THRESHOLD",
    "StarvationMonitor",
    "Verdict",
    "configure_parser",
    "decide",
    "main",
    "profile",
    "run",
    "summary_table",
]

#: Below this starvation a run counts as compute-bound: the input side is not
#: worth touching (noise on a shared machine is a few percent).
STARVATION_THRESHOLD = 0.10
#: A model step shorter than this is dominated by fixed per-step costs
#: (Python, callbacks, the batch hand-off), which a bigger batch amortises.
SHORT_STEP_SECONDS = 0.010


# --------------------------------------------------------------------------
# Verdict: explicit rules, pure function, tested on its own.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The next action to take, with the reason.

    Attributes:
        action: one of ``"none"``, ``"more_workers"``, ``"uint8_on_device"``,
            ``"page_cache"``, ``"faster_loader"``, ``"bigger_batch"``,
            ``"cpu_contention"``.
        message: one sentence naming the action and the numbers behind it.
        hints: further ``(action, message)`` pairs whose rules also matched, in rule order.
    """

    action: str
    message: str
    hints: tuple = ()

    def to_dict(self):
        return {"action": self.action, "message": self.message, "hints": [list(h) for h in self.hints]}

    def __str__(self):
        return self.message


def decide(
    *,
    starvation,
    loader_images_per_sec,
    model_images_per_sec,
    input_dtype="float32",
    workers=None,
    cpu_count=None,
    memmap=False,
    model_step_seconds=None,
    threshold=STARVATION_THRESHOLD,
):
    """Name the next action from the measurements. First matching rule wins.

    Rules:

    0. ``starvation < threshold`` -> ``"none"``: compute-bound; speed up the model.

    When input-bound and the loader alone is slower than the model alone
    (``loader_images_per_sec < model_images_per_sec``), the loader itself must
    get faster:

    1. ``workers`` known and ``< cpu_count`` -> ``"more_workers"``, suggesting
       ``ceil(workers * model / loader)`` capped at ``cpu_count``;
    2. floating-point batches of 4+ bytes per value -> ``"uint8_on_device"``:
       emit uint8 and normalise in the model (4x fewer bytes per image);
    3. ``memmap`` -> ``"page_cache"``: the images are read from disk;
    4. otherwise -> ``"faster_loader"``.

    When input-bound although the loader alone is fast enough, the two do not
    overlap well inside ``fit``:

    5. ``model_step_seconds < SHORT_STEP_SECONDS`` -> ``"bigger_batch"``: fixed
       per-batch costs dominate such short steps;
    6. otherwise -> ``"cpu_contention"``: the loader and the step share the
       CPU cores.

    Every later rule that also matches is returned in ``hints``.

    Returns:
        A :class:`Verdict`.
    """
    s = float(starvation)
    pct = f"{100 * s:.0f}%"
    if s < threshold:
        return Verdict(
            "none",
            f"compute-bound (starvation {pct} < {100 * threshold:.0f}%): nothing to do on the input side; "
            "speed up the model step instead (mixed precision, XLA, a bigger batch on the accelerator).",
        )
    loader = float(loader_images_per_sec)
    model = float(model_images_per_sec)
    rates = f"the loader alone delivers {loader:,.0f} img/s, the model alone takes {model:,.0f} img/s"
    found = []
    if loader < model:
        if workers is not None and cpu_count is not None and workers < cpu_count:
            want = min(int(cpu_count), max(int(workers) + 1, math.ceil(workers * model / max(loader, 1e-9))))
            found.append(
                ("more_workers", f"input-bound ({pct} waiting): use more workers, workers={want} ({rates}).")
            )
        dt = np.dtype(input_dtype) if _is_dtype(input_dtype) else None
        if dt is not None and dt.kind == "f" and dt.itemsize >= 4:
            found.append(
                (
                    "uint8_on_device",
                    f"input-bound ({pct} waiting): emit uint8 batches ({dt.name} now) and normalise on the device "
                    "(a Normalization/Rescaling first layer): 4x fewer bytes per image to make and copy.",
                )
            )
        if memmap:
            found.append(
                (
                    "page_cache",
                    f"input-bound ({pct} waiting): the images are read from a memmap; warm the page cache "
                    "(read the file once, e.g. `cat x.npy > /dev/null`) or load them into RAM.",
                )
            )
        found.append(
            (
                "faster_loader",
                f"input-bound ({pct} waiting): the loader is the bottleneck ({rates}); use fastseq.ArraySequence "
                "or move augmentation onto the device.",
            )
        )
    else:
        if model_step_seconds is not None and model_step_seconds < SHORT_STEP_SECONDS:
            found.append(
                (
                    "bigger_batch",
                    f"input-bound ({pct} waiting) although {rates}: steps of {1e3 * model_step_seconds:.1f} ms are "
                    "dominated by per-batch hand-off costs; use a bigger batch.",
                )
            )
        found.append(
            (
                "cpu_contention",
                f"input-bound ({pct} waiting) although {rates}: inside fit they compete for the same CPU cores; "
                "give the loader its own cores (fewer threads elsewhere) or make it cheaper (fastseq, uint8).",
            )
        )
    (action, message), rest = found[0], tuple(found[1:])
    return Verdict(action, message, rest)


def _is_dtype(x):
    try:
        np.dtype(x)
        return True
    except TypeError:
        return False


# --------------------------------------------------------------------------
# The report.
# --------------------------------------------------------------------------


@dataclasses.dataclass
class ProfileReport:
    """What :func:`profile` measured. Times are seconds, rates images per second.

    Attributes:
        name: what was profiled (for tables and plots).
        batch_size: images per batch (the first batch's leading dimension).
        steps: steps timed in each measurement, after ``warmup`` untimed ones.
        warmup: untimed steps at the start of each measurement.
        loader_step_seconds, model_step_seconds, fit_step_seconds: mean wall
            time per batch of the loader alone, the model alone (resident
            batch) and the real ``fit``.
        loader_images_per_sec, model_images_per_sec, achieved_images_per_sec:
            the same as throughputs.
        starvation: ``max(0, 1 - model_step_seconds / fit_step_seconds)`` in
            ``[0, 1]``: the share of a real step's wall time spent waiting for
            input.
        measured_wait_fraction: the direct measurement: time the ``fit``
            steps blocked on their batch over the window's wall time, or
            ``None`` where the backend does not allow it.
        verdict: the next action (:func:`decide`).
        input_dtype: dtype of the images the loader yields.
        workers: the ``PyDataset``'s ``workers``, ``None`` for ``tf.data``.
        backend: the Keras backend.
        fit_step_timeline: per timed ``fit`` step, ``[wait, compute]``
            seconds (compute = step wall time - wait).
        loader_batch_timeline: per timed loader batch, seconds.
        notes: anything the reader should know (steps capped, data set used).
    """

    name: str
    batch_size: int
    steps: int
    warmup: int
    loader_step_seconds: float
    model_step_seconds: float
    fit_step_seconds: float
    loader_images_per_sec: float
    model_images_per_sec: float
    achieved_images_per_sec: float
    starvation: float
    measured_wait_fraction: float | None
    verdict: Verdict
    input_dtype: str = "float32"
    workers: int | None = None
    backend: str = "tensorflow"
    fit_step_timeline: list = dataclasses.field(default_factory=list)
    loader_batch_timeline: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def ideal_speedup(self):
        """How much faster ``fit`` would run with an infinitely fast loader: ``1 / (1 - starvation)``."""
        return 1.0 / max(1e-9, 1.0 - self.starvation)

    def to_dict(self):
        """A JSON-serialisable dict of every field (the verdict as a dict)."""
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict.to_dict()
        d["ideal_speedup"] = self.ideal_speedup
        return _jsonable(d)

    def table(self):
        """The report as a plain-text table."""
        wait = "n/a" if self.measured_wait_fraction is None else f"{100 * self.measured_wait_fraction:5.1f} %"
        w = "-" if self.workers is None else str(self.workers)
        rows = [
            ("loader alone", self.loader_images_per_sec, self.loader_step_seconds),
            ("model alone (resident batch)", self.model_images_per_sec, self.model_step_seconds),
            ("achieved in fit", self.achieved_images_per_sec, self.fit_step_seconds),
        ]
        lines = [
            f"fastseq profile: {self.name}",
            f"  batch {self.batch_size}, {self.input_dtype}, workers {w}, {self.steps} timed steps "
            f"after {self.warmup} warm-up, backend {self.backend}",
            f"  {'':<30}{'images/s':>12}{'ms/batch':>11}",
        ]
        lines += [f"  {label:<30}{ips:>12,.0f}{1e3 * sec:>11.1f}" for label, ips, sec in rows]
        lines += [
            f"  {'starvation':<30}{100 * self.starvation:>10.1f} %   "
            f"(ideal speed-up with a free loader: x{self.ideal_speedup:.2f})",
            f"  {'measured fetch wait':<30}{wait:>12}",
            f"  verdict: {self.verdict.message}",
        ]
        lines += [f"  also: {msg}" for _, msg in self.verdict.hints]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def summary_table(reports):
    """Several reports (one per loader) side by side, as plain text."""
    head = f"{'loader':<12}{'workers':>8}{'dtype':>9}{'loader img/s':>14}{'model img/s':>13}"
    head += f"{'fit img/s':>11}{'starved':>9}{'wait':>7}  next action"
    lines = [head, "-" * (len(head) + 14)]
    for r in reports:
        wait = "  n/a" if r.measured_wait_fraction is None else f"{100 * r.measured_wait_fraction:5.0f}%"
        w = "-" if r.workers is None else str(r.workers)
        lines.append(
            f"{r.name:<12}{w:>8}{r.input_dtype:>9}{r.loader_images_per_sec:>14,.0f}{r.model_images_per_sec:>13,.0f}"
            f"{r.achieved_images_per_sec:>11,.0f}{100 * r.starvation:>8.0f}%{wait:>7}  {r.verdict.action}"
        )
    lines.append("")
    lines += [f"{r.name}: {r.verdict.message}" for r in reports]
    return "\n".join(lines)


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
    from fastseq._profile_monitor import StepRecorder, uninstall_fetch_timer

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


def profile(model, data, *, steps=50, warmup=5, name=None, restore_weights=True):
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
    before the call). A ``PyDataset``'s ``on_epoch_end`` is called by each run
    (its epoch counter advances).

    Args:
        model: a compiled Keras model. An uncompiled one raises: profiling
            must time your optimizer and loss, not a guess at them.
        data: a ``keras.utils.PyDataset`` (its workers settings are honoured)
            yielding ``(x, y)`` batches, or a ``tf.data.Dataset`` of batches
            (repeated if it is shorter than needed).
        steps: timed steps per measurement. For a ``PyDataset`` shorter than
            ``warmup + steps`` batches, ``steps`` is cut to fit (noted in the
            report).
        warmup: untimed steps at the start of each measurement (>= 1; the
            first step of a fit traces the train function).
        name: label for tables and plots; defaults to the data's class name.
        restore_weights: put weights and optimizer state back afterwards.

    Returns:
        A :class:`ProfileReport`.

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
    try:
        loader_step, loader_ips, loader_times = _time_loader(data, is_pydataset, steps, warmup)
        # Model alone is timed in two halves around the real fit, so that a
        # drifting machine (clock, other jobs) biases both sides alike.
        resident = tf.data.Dataset.from_tensors(first).repeat()
        before = _timed_fit(model, resident, steps - steps // 2, warmup)
        model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # trace for data's signature, untimed
        fit_run = _timed_fit(model, data, steps, warmup)
        after = _timed_fit(model, resident, max(2, steps // 2), min(warmup, 2))
    finally:
        if snap is not None:
            _restore(model, snap)

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


# --------------------------------------------------------------------------
# Command line (``python -m fastseq profile``), in fastseq._profile_cli.
# --------------------------------------------------------------------------


def configure_parser(parser):
    """Add ``python -m fastseq profile``'s arguments to ``parser``."""
    from fastseq._profile_cli import configure_parser as _configure

    _configure(parser)


def run(args):
    """Run ``python -m fastseq profile`` with parsed ``args``; return the exit status."""
    from fastseq._profile_cli import run as _run

    return _run(args)


def main(argv=None):
    """``python -m fastseq.profiling ...`` without the dispatcher (also used by the tests)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fastseq profile", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv)) or 0


def __getattr__(name):
    # StarvationMonitor subclasses keras.callbacks.Callback, so it lives in a
    # module that imports Keras; load it on first access only.
    if name in ("StarvationMonitor", "StepRecorder"):
        from fastseq import _profile_monitor

        value = getattr(_profile_monitor, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
