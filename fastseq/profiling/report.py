"""The starvation report: the verdict rules, ``ProfileReport`` and the summary table. NumPy only.

``decide`` is a pure function of the measurements, tested on its own;
``ProfileReport`` is what ``fastseq.profile`` returns and what
``fastseq.StarvationMonitor``'s figures mean.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: Below this starvation a run counts as compute-bound: the input side is not
#: worth touching (noise on a shared machine is a few percent).
STARVATION_THRESHOLD = 0.10
#: A model step shorter than this is dominated by fixed per-step costs
#: (Python, callbacks, the batch hand-off), which a bigger batch amortises.
SHORT_STEP_SECONDS = 0.010
#: The timed fit steps are cut into this many windows to show the spread of the starvation figure.
WINDOWS = 5


# --------------------------------------------------------------------------
# Verdict: explicit rules, pure function, tested on its own.
# --------------------------------------------------------------------------


#: What each verdict action means (the keys are ``Verdict.action``'s values).
ACTIONS = {
    "none": "compute-bound: the input side is not worth touching; speed up the model step",
    "more_workers": "the loader is too slow and has spare cores: raise the PyDataset's workers",
    "uint8_on_device": "the loader makes 4-byte floats: ship uint8 and normalise in the model, on the device",
    "page_cache": "the images come from a memmap on disk: warm the page cache or load them into RAM",
    "faster_loader": "the loader itself is the bottleneck: a faster loader, or more cores for it",
    "bigger_batch": "the loader is fast enough but short steps are dominated by per-batch costs: a bigger batch",
    "cpu_contention": "the loader is fast enough alone but competes with the step for CPU cores inside fit",
}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The next action to take, with the reason.

    ``str(verdict)`` is the message, followed by one ``also:`` line per hint;
    ``print(report.verdict)`` shows exactly that.

    Attributes:
        action: the first rule that matched, one of :data:`ACTIONS`' keys:
            ``"none"``, ``"more_workers"``, ``"uint8_on_device"``,
            ``"page_cache"``, ``"faster_loader"``, ``"bigger_batch"``,
            ``"cpu_contention"``.
        message: one sentence naming the action and the numbers behind it,
            worded for the loader measured (a fastseq loader is never told
            to use fastseq).
        hints: further ``(action, message)`` pairs whose rules also matched, in rule order.
    """

    action: str
    message: str
    hints: tuple = ()

    def to_dict(self):
        return {"action": self.action, "message": self.message, "hints": [list(h) for h in self.hints]}

    def __str__(self):
        return "\n".join([self.message] + [f"also: {message}" for _, message in self.hints])


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
    loader="other",
):
    """Name the next action from the measurements. First matching rule wins.

    ``loader`` is ``"fastseq"`` for a ``fastseq.ArraySequence`` (its
    advice then names the levers fastseq has: workers, ``dtype="uint8"``,
    Numba threads) and anything else for other loaders (which are pointed at
    fastseq).

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
        A ``Verdict``.
    """
    s = float(starvation)
    pct = f"{100 * s:.0f}%"
    if s < threshold:
        return Verdict(
            "none",
            f"compute-bound (starvation {pct} < {100 * threshold:.0f}%): nothing to do on the input side; "
            "speed up the model step instead (mixed precision, XLA, a bigger batch on the accelerator).",
        )
    loader_rate = float(loader_images_per_sec)
    model_rate = float(model_images_per_sec)
    rates = f"the loader alone delivers {loader_rate:,.0f} img/s, the model alone takes {model_rate:,.0f} img/s"
    found = []
    if loader_rate < model_rate:
        if workers is not None and cpu_count is not None and workers < cpu_count:
            want = min(int(cpu_count), max(int(workers) + 1, math.ceil(workers * model_rate / max(loader_rate, 1e-9))))
            found.append(
                ("more_workers", f"input-bound ({pct} waiting): use more workers, workers={want} ({rates}).")
            )
        dt = np.dtype(input_dtype) if _is_dtype(input_dtype) else None
        if dt is not None and dt.kind == "f" and dt.itemsize >= 4:
            found.append(
                (
                    "uint8_on_device",
                    f"input-bound ({pct} waiting): emit uint8 batches ({dt.name} now) and normalise on the device, "
                    "4x fewer bytes per image to make and copy: "
                    + (
                        "ArraySequence(..., dtype='uint8') without normalize, and fastseq.DeviceNormalize(your "
                        "Normalize) as the model's first layer."
                        if loader == "fastseq"
                        else "a keras.layers.Normalization/Rescaling first layer (with fastseq: "
                        "ArraySequence(..., dtype='uint8') and fastseq.DeviceNormalize as the first layer)."
                    ),
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
        if loader == "fastseq":
            lever = (
                "fastseq's kernel already runs at about memory speed, so give it more cores (NUMBA_NUM_THREADS, "
                "a machine with more CPUs) or less work per image (a smaller crop, fewer augmentations)"
            )
        else:
            lever = "use fastseq.ArraySequence or move augmentation onto the device"
        found.append(("faster_loader", f"input-bound ({pct} waiting): the loader is the bottleneck ({rates}); {lever}."))
    else:
        if model_step_seconds is not None and model_step_seconds < SHORT_STEP_SECONDS:
            found.append(
                (
                    "bigger_batch",
                    f"input-bound ({pct} waiting) although {rates}: steps of {1e3 * model_step_seconds:.1f} ms are "
                    "dominated by per-batch hand-off costs; use a bigger batch.",
                )
            )
        cheaper = "dtype='uint8' with normalisation in the model" if loader == "fastseq" else "fastseq, uint8"
        found.append(
            (
                "cpu_contention",
                f"input-bound ({pct} waiting) although {rates}: inside fit they compete for the same CPU cores; "
                f"give the loader its own cores (fewer threads elsewhere) or make it cheaper ({cheaper}).",
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
    """What ``profile`` measured. Times are seconds, rates images per second.

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
        verdict: the next action (``decide``).
        input_dtype: dtype of the images the loader yields.
        workers: the ``PyDataset``'s ``workers``, ``None`` for ``tf.data``.
        backend: the Keras backend.
        fit_step_timeline: per timed ``fit`` step, ``[wait, compute]``
            seconds (compute = step wall time - wait); see
            ``step_breakdown`` and ``window_starvation``.
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

    def window_starvation(self, windows=WINDOWS):
        """Starvation of each of ``windows`` consecutive, equal runs of the timed ``fit`` steps.

        Each is ``max(0, 1 - model_step_seconds / mean step time in the
        window)``; their spread shows how much the single figure can move
        between runs on this machine (fewer windows when there are fewer steps).
        """
        steps = np.array([w + c for w, c in self.fit_step_timeline], dtype=np.float64)
        if steps.size == 0:
            return []
        return [
            float(min(1.0, max(0.0, 1.0 - self.model_step_seconds / part.mean())))
            for part in np.array_split(steps, min(windows, steps.size))
        ]

    @property
    def starvation_spread(self):
        """``(lowest, highest)`` of ``window_starvation``, or ``None`` without a timeline."""
        parts = self.window_starvation()
        return (min(parts), max(parts)) if parts else None

    def step_breakdown(self):
        """Per timed ``fit`` step, ``(model, contention, wait)`` seconds, which add up to the step.

        ``wait`` is the time the step blocked on its batch; what is left is
        split into the model alone's step time (``model_step_seconds``) and
        the excess over it, ``contention``: a step that did not wait for its
        batch but ran slower than the model alone was slowed by the loader
        competing for the CPU cores.
        """
        out = []
        for wait, compute in self.fit_step_timeline:
            model = min(compute, self.model_step_seconds)
            out.append((model, compute - model, wait))
        return out

    def to_dict(self):
        """A JSON-serialisable dict of every field (the verdict as a dict), plus the derived figures."""
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict.to_dict()
        d["ideal_speedup"] = self.ideal_speedup
        d["starvation_windows"] = self.window_starvation()
        d["starvation_spread"] = self.starvation_spread
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
        ]
        spread = self.starvation_spread
        if spread is not None:
            n = len(self.window_starvation())
            lines.append(
                f"  {'starvation per window':<30}{100 * spread[0]:>5.0f} - {100 * spread[1]:.0f} %   "
                f"(lowest - highest of {n} windows of the {self.steps} steps)"
            )
        lines += [f"  {'measured fetch wait':<30}{wait:>12}"]
        lines += [f"  verdict: {line}" if i == 0 else f"  {line}" for i, line in enumerate(str(self.verdict).splitlines())]
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
