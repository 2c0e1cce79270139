"""What ``python -m fastseq bench`` may conclude: per-shape targets, when each applies, and the closing summary.

Pure functions on timings (no Keras, no TensorFlow, no Numba), so that the
rules are tested on made-up numbers and shared by the CLI, its Markdown page
and the closing table of ``pytest benchmarks --benchmark-only``.

The rules:

- **Targets belong to a shape.** :data:`TARGETS` holds, for each shape the
  bench runs (CIFAR-sized 32x32x3, MNIST-sized 28x28x1, photos at 224), the
  ratios fastseq commits to on that shape. A shape without an entry gets its
  ratios printed and no verdict.
- **Threads:** the thread target applies only where the work rule
  (``fastseq.kernels.config.threads_for``) gave the launch more than one
  thread; otherwise the ratio is shown as "not judged".
- **Fit:** the fit ratios apply only where the loader bounds the feed. When
  the no-op loader (one ready batch, no work) is not clearly faster than
  fastseq's fit row (within :data:`STEP_BOUND`), what bounds both is the
  model's step (and Keras' cost per step), so each fit ratio says
  "step-bound" instead of PASS or MISS.
- **Noise:** a ratio whose rows have a spread (median time over minimum time)
  above :data:`NOISY_SPREAD` says "noisy: rerun" instead of PASS or MISS,
  unless it passes by more than that spread (e.g. 27x against a 10x target
  with a 2x spread), which no noise explains.
- **A MISS says what bounds it**, in a few words (:attr:`Target.bound`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: A row whose median time is more than this times its minimum was disturbed
#: by other work: its ratios say "noisy: rerun". A quiet 2-core machine keeps
#: median/min at 1.02-1.15 for the kernel rows and the fit windows; a busy one
#: (another training job on the cores) gave 1.3-2x.
NOISY_SPREAD = 1.25
#: The fit rows are step-bound when the no-op loader's images/s is at most
#: this times fastseq's: a loader that does no work is then not clearly
#: faster than fastseq, so the step, not the loader, sets the rate.
STEP_BOUND = 1.3


@dataclass(frozen=True)
class Target:
    """One committed ratio on one shape.

    Attributes:
        key: the ratio's name in :func:`kernel_ratios`, :func:`fit_ratios`, :func:`photo_ratios`.
        kind: ``"min"`` (pass when value >= ``value``) or ``"max"`` (pass when value <= ``value``).
        value: the target.
        bound: what bounds the ratio when it misses, in a few words.
        unit: ``"x"`` for ratios, ``" s"`` for seconds.
    """

    key: str
    kind: str
    value: float
    bound: str
    unit: str = "x"

    def text(self):
        return f"{'<=' if self.kind == 'max' else '>='} {self.value:g}{self.unit}"

    def passes(self, v):
        return v <= self.value if self.kind == "max" else v >= self.value


# Ratio keys and their labels, in the order they are printed.
KERNEL_LABELS = {
    "fused/ceiling": "fused / ceiling time",
    "fused/gather": "fused / gather time",
    "fused/tf.data": "fused vs tf.data",
    "fused/keras": "fused vs keras layers",
    "fused/grain": "fused vs grain",
    "fused/numpy": "fused vs NumPy loop",
    "threads": "work-rule threads vs 1 thread",
    "+cutout": "+ Cutout(16) / plain time",
    "+erasing": "+ RandomErasing / plain time",
    "+mixup": "+ MixUp(0.2) / plain time",
    "+cutmix": "+ CutMix(1.0) / plain time",
    "fused/albumentations": "fused vs albumentations (no target)",
    "+geometry": "+ rotation, zoom, shift / plain time",
    "+jitter": "+ RandomColorJitter / plain time",
    "+geometry/albumentations": "+ geometry vs albumentations + Affine",
    "+jitter/albumentations": "+ jitter vs albumentations + ColorJitter",
}
FIT_LABELS = {
    "fit fastseq/convert": "fastseq / convert",
    "fit fastseq/tf.data": "fastseq / tf.data",
    "fit fastseq/numpy": "fastseq / numpy",
    "fit fastseq/grain": "fastseq / grain",
    "fit memmap/fastseq": "fastseq-memmap / fastseq",
    "fit uint8/noop": "fastseq-uint8 / noop",
}
PHOTO_LABELS = {
    "photo epoch": "fastseq epoch vs keras epoch",
    "photo first call": "fastseq first call / keras epoch time",
    "photo second size": "second image_size, per 2,000 files",
}

_FUSED = "fastseq's kernel"
_AUG = ("one more pass inside the kernel", "mixing two samples per output")


def _fit_targets(convert):
    """The model.fit targets, the same on every array shape but fastseq / convert's."""
    step = "ArraySequence's own cost per step"
    return (
        Target("fit fastseq/convert", "min", convert, step),
        Target("fit fastseq/tf.data", "min", 4.0, step),
        Target("fit fastseq/numpy", "min", 3.0, step),
        Target("fit fastseq/grain", "min", 20.0, step),
        Target("fit memmap/fastseq", "min", 0.9, "page faults of the mapped file"),
        Target("fit uint8/noop", "min", 1.0, "DeviceNormalize on the same CPU cores"),
    )

#: What fastseq commits to, per shape. How each was measured: docs/guides/benchmarks.md ("Targets per shape").
TARGETS = {
    "cifar": (
        Target("fused/ceiling", "max", 1.5, "random reads + per-call cost, see the gather row"),
        Target("fused/tf.data", "min", 25.0, _FUSED),
        Target("fused/keras", "min", 10.0, _FUSED),
        Target("fused/grain", "min", 20.0, _FUSED),
        Target("threads", "min", 1.8, "the second core: busy, or memory-bound"),
        Target("+cutout", "max", 1.15, _AUG[0]),
        Target("+erasing", "max", 1.15, _AUG[0]),
        Target("+mixup", "max", 1.6, _AUG[1]),
        Target("+cutmix", "max", 1.6, _AUG[1]),
        Target("+geometry", "max", 3.0, "the resample of the augmentation pass"),
        Target("+jitter", "max", 2.0, "the color ops of the augmentation pass"),
        Target("+geometry/albumentations", "min", 20.0, "the augmentation pass"),
        Target("+jitter/albumentations", "min", 20.0, "the augmentation pass"),
        *_fit_targets(convert=0.95),
    ),
    # 28x28x1: a batch of 512 is 1.6 MB of float32, which the work rule runs on one thread. The time to
    # the contiguous ceiling is set by the random gather of 784-byte images (NumPy's gather alone: 2.6x),
    # not by the augmentation, so the kernel is held to the gather (fused / gather time) and the ceiling
    # ratio gets a looser bound. No thread target: a second thread gained nothing here even at batch
    # 4,096 (12.9 MB, 2 threads by the rule: 0.82x). MixUp and CutMix gather two images per output.
    "mnist": (
        Target("fused/ceiling", "max", 4.0, "the random gather, see the gather row"),
        Target("fused/gather", "max", 1.5, "fastseq's kernel beyond the gather"),
        Target("fused/tf.data", "min", 25.0, _FUSED),
        Target("fused/keras", "min", 10.0, _FUSED),
        Target("fused/grain", "min", 20.0, _FUSED),
        Target("+cutout", "max", 1.3, _AUG[0]),
        Target("+erasing", "max", 1.3, _AUG[0]),
        Target("+mixup", "max", 3.5, "two random gathers per output"),
        Target("+cutmix", "max", 3.5, "two random gathers per output"),
        *_fit_targets(convert=0.9),
    ),
    "photos-224": (
        Target("photo epoch", "min", 4.0, "the 224 resample from the store"),
        Target("photo first call", "max", 1.5, "decoding every file once"),
        Target("photo second size", "max", 1.0, "listing and checking every file", unit=" s"),
    ),
}

SHAPES = {
    "cifar": "CIFAR-sized 32x32x3",
    "mnist": "MNIST-sized 28x28x1",
    "photos-224": "photos at 224x224x3",
}


def shape_key(image_shape):
    """The :data:`TARGETS` key of one image's ``(H, W)`` or ``(H, W, C)``, or None for a shape without targets."""
    shape = tuple(int(s) for s in image_shape)
    if shape == (32, 32, 3):
        return "cifar"
    if shape in ((28, 28), (28, 28, 1)):
        return "mnist"
    if shape[:2] == (224, 224) and shape[2:] in ((), (3,)):
        return "photos-224"
    return None


def target_for(shape, key):
    """The :class:`Target` of ``key`` on ``shape`` (a :data:`TARGETS` key), or None."""
    for t in TARGETS.get(shape, ()):
        if t.key == key:
            return t
    return None


@dataclass
class Timing:
    """One row's result: images per second (from its best time), spread and threads.

    ``spread`` is the median time over the minimum time (1.0: every repeat the same).
    """

    ips: float
    spread: float = 1.0
    threads: int = 1


def spread(times):
    """Median over minimum of ``times`` (seconds per call or per window)."""
    times = sorted(t for t in times if t > 0)
    if not times:
        return 1.0
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    return median / times[0]


@dataclass
class Verdict:
    """A ratio and what may be said of it.

    ``status``: ``"PASS"``, ``"MISS"``, ``"noisy: rerun"``, ``"step-bound"``,
    ``"not judged"`` (the target does not apply) or ``""`` (no target on this shape).
    ``note``: for a MISS what bounds it; otherwise why no PASS or MISS.
    """

    key: str
    label: str
    value: float
    target: Target | None
    status: str
    note: str = ""

    @property
    def judged(self):
        return self.status in ("PASS", "MISS")

    def line(self, width=32):
        unit = self.target.unit if self.target else "x"
        value = f"{self.value:.2f}{unit.strip() if unit == 'x' else unit}"
        target = f"target {self.target.text():<8}" if self.target else " " * 15
        status = self.status + (f" ({self.note})" if self.note else "")
        return f"{self.label:<{width}} {value:>9}  {target} {status}".rstrip()


def judge(key, label, value, target, *, spreads=(), applies=True, why_not="", step_bound=None):
    """The verdict on ``value`` against ``target`` (a :class:`Target` or None).

    Checked in order: ``applies`` False: "not judged" with ``why_not``; no
    target: no verdict; ``step_bound`` (a phrase): "step-bound"; any of
    ``spreads`` above :data:`NOISY_SPREAD`: "noisy: rerun", unless the value
    passes even when worsened by that spread (then the noise cannot have made
    the verdict: PASS); then PASS, or MISS with the target's bound phrase.
    """
    if not applies:
        return Verdict(key, label, value, target, "not judged", why_not)
    if target is None:
        return Verdict(key, label, value, None, "", why_not)
    if step_bound:
        return Verdict(key, label, value, target, "step-bound", step_bound)
    worst = max(spreads, default=1.0)
    if worst > NOISY_SPREAD:
        # A busy machine: PASS only if the value would pass with every row that much slower in the
        # unfavourable direction (the noise cannot have made the verdict); otherwise ask for a rerun.
        worsened = value * worst if target.kind == "max" else value / worst
        if not target.passes(worsened):
            return Verdict(key, label, value, target, "noisy: rerun", f"median/min {worst:.2f}")
    if target.passes(value):
        return Verdict(key, label, value, target, "PASS")
    return Verdict(key, label, value, target, "MISS", f"bound: {target.bound}")


# -- the kernel rows ----------------------------------------------------------------


def kernel_ratios(rows):
    """``{key: (value, [row names])}`` from ``{row name: Timing}`` of the kernel rows present."""
    out = {}
    f = rows.get("fastseq")
    if not f or not f.ips:
        return out

    def ips(name):
        r = rows.get(name)
        return r.ips if r and r.ips else None

    if ips("ceiling"):
        out["fused/ceiling"] = (ips("ceiling") / f.ips, ["fastseq", "ceiling"])
    if ips("gather"):
        out["fused/gather"] = (ips("gather") / f.ips, ["fastseq", "gather"])
    for base, key in (("tf.data", "fused/tf.data"), ("keras", "fused/keras"), ("grain", "fused/grain"),
                      ("numpy", "fused/numpy")):
        if ips(base):
            out[key] = (f.ips / ips(base), ["fastseq", base])
    if ips("fastseq-1t"):
        out["threads"] = (f.ips / ips("fastseq-1t"), ["fastseq", "fastseq-1t"])
    for op in ("cutout", "erasing", "mixup", "cutmix", "geometry", "jitter"):
        if ips(f"fastseq+{op}"):
            out[f"+{op}"] = (f.ips / ips(f"fastseq+{op}"), ["fastseq", f"fastseq+{op}"])
    if ips("albumentations"):
        out["fused/albumentations"] = (f.ips / ips("albumentations"), ["fastseq", "albumentations"])
    for op in ("geometry", "jitter"):
        a, b = f"fastseq+{op}", f"albumentations+{op}"
        if ips(a) and ips(b):
            out[f"+{op}/albumentations"] = (ips(a) / ips(b), [a, b])
    return out


def kernel_verdicts(shape, rows, *, batch_mb=None):
    """Verdicts of the kernel ratios of ``rows`` (``{name: Timing}``) on ``shape`` (a :data:`TARGETS` key or None).

    The thread ratio is judged only when the ``fastseq`` row's launches used
    more than one thread; ``batch_mb`` (output MB) names the batch in the reason.
    """
    out = []
    f = rows.get("fastseq")
    for key, (value, names) in kernel_ratios(rows).items():
        label = KERNEL_LABELS[key]
        spreads = [rows[n].spread for n in names]
        applies, why = True, ""
        if key == "threads":
            if f.threads > 1:
                label = f"{f.threads} threads vs 1 thread"
            else:
                size = f"this {batch_mb:.1f} MB batch" if batch_mb else "this batch"
                applies, why = False, f"the work rule ran {size} on 1 thread"
        out.append(judge(key, label, value, target_for(shape, key), spreads=spreads, applies=applies, why_not=why))
    return out


# -- the fit rows -------------------------------------------------------------------


def fit_ratios(rows):
    """``{key: (value, [row names])}`` from ``{row name: Timing}`` of the fit rows present."""
    pairs = {
        "fit fastseq/convert": ("fastseq", "convert"),
        "fit fastseq/tf.data": ("fastseq", "tf.data"),
        "fit fastseq/numpy": ("fastseq", "numpy"),
        "fit fastseq/grain": ("fastseq", "grain"),
        "fit memmap/fastseq": ("fastseq-memmap", "fastseq"),
        "fit uint8/noop": ("fastseq-uint8", "noop"),
    }
    out = {}
    for key, (a, b) in pairs.items():
        if a in rows and b in rows and rows[b].ips:
            out[key] = (rows[a].ips / rows[b].ips, [a, b])
    return out


def step_bound(rows):
    """A phrase saying that the model's step bounds the fit rows, or None when the loader does.

    Step-bound when the no-op loader (one ready batch, no work) makes at most
    :data:`STEP_BOUND` times fastseq's images/s.
    """
    noop, f = rows.get("noop"), rows.get("fastseq")
    if not noop or not f or not f.ips:
        return None
    if noop.ips <= STEP_BOUND * f.ips:
        return (f"no-op loader {noop.ips:,.0f}/s is within {STEP_BOUND:g}x of fastseq's {f.ips:,.0f}/s: "
                f"the model's step bounds fit")
    return None


def fit_verdicts(shape, rows):
    """Verdicts of the fit ratios of ``rows`` (``{name: Timing}``, spread from the windows) on ``shape``."""
    bound = step_bound(rows)
    out = []
    for key, (value, names) in fit_ratios(rows).items():
        # The memmap row is held against fastseq in RAM: both are loaders, whatever bounds the step.
        sb = "the model's step bounds fit" if bound and key != "fit memmap/fastseq" else None
        out.append(judge(key, FIT_LABELS[key], value, target_for(shape, key),
                         spreads=[rows[n].spread for n in names], step_bound=sb))
    return out


# -- the photo-folder rows ----------------------------------------------------------


def photo_ratios(rows, files):
    """``{key: (value, [row names])}`` from ``{row: Timing}`` with ``ips`` as 1/seconds for the setup row.

    Rows: ``keras epoch``, ``fastseq first call``, ``fastseq epoch`` (images/s)
    and ``fastseq second size`` (``ips`` = calls per second); ``files``: the
    folder's file count (the second size is scaled to 2,000 files).
    """
    out = {}
    k = rows.get("keras epoch")
    if k and k.ips:
        if "fastseq epoch" in rows:
            out["photo epoch"] = (rows["fastseq epoch"].ips / k.ips, ["fastseq epoch", "keras epoch"])
        if "fastseq first call" in rows and rows["fastseq first call"].ips:
            out["photo first call"] = (k.ips / rows["fastseq first call"].ips, ["fastseq first call", "keras epoch"])
    s = rows.get("fastseq second size")
    if s and s.ips and files:
        out["photo second size"] = (2000 / files / s.ips, ["fastseq second size"])
    return out


#: The first-call target holds from this many files: below it the fixed cost of a first call (the cache
#: folder, the store's files, the kernel's first launch) is a large part of a short Keras epoch.
FIRST_CALL_MIN_FILES = 100


def photo_verdicts(rows, files, shape="photos-224"):
    """Verdicts of the photo-folder ratios (see :func:`photo_ratios`) on a folder of ``files`` files."""
    out = []
    for key, (value, names) in photo_ratios(rows, files).items():
        applies = key != "photo first call" or files >= FIRST_CALL_MIN_FILES
        why = f"{files} files: under {FIRST_CALL_MIN_FILES} the first call's fixed cost dominates"
        out.append(judge(key, PHOTO_LABELS[key], value, target_for(shape, key), spreads=[rows[n].spread for n in names],
                         applies=applies, why_not=why))
    return out


# -- printing ----------------------------------------------------------------------

#: Other work is running when the 1-minute load average before the bench starts exceeds this share of the cores.
BUSY_LOAD = 0.5


def busy_note(load, cpus):
    """A warning when the load average ``load`` (taken before the bench ran) shows other work on ``cpus`` cores.

    A machine busy throughout slows every repeat alike, which the spread does not show; a MISS made then
    may be the machine's, so say so beside the verdicts (they are not changed).
    """
    if load is None or not cpus or load <= BUSY_LOAD * cpus:
        return None
    return (f"note: the load average was {load:.1f} on {cpus} cores before the bench started: other work shared "
            "the cores, so rerun on a quiet machine before trusting a MISS.")



def verdict_lines(verdicts, indent="  "):
    width = max((len(v.label) for v in verdicts), default=0)
    return [indent + v.line(width) for v in verdicts]


def tally(verdicts):
    """``"5 PASS, 1 MISS, 2 noisy: rerun, 1 step-bound, 1 not judged"`` (the kinds present)."""
    order = ("PASS", "MISS", "noisy: rerun", "step-bound", "not judged")
    counts = {s: sum(v.status == s for v in verdicts) for s in order}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def summary_lines(*, kernel=None, fit=None, photos=None, what="arrays", photo_files=None):
    """The closing summary, three lines, from ``{name: Timing}`` of each table run (any may be None).

    Line 1: what fastseq makes (arrays, photos at 224). Line 2: against
    tf.data and Keras' folder loader. Line 3: the training step it keeps up
    with, or that the step bounds the fit rows.
    """
    kernel, fit, photos = kernel or {}, fit or {}, photos or {}
    f = kernel.get("fastseq")
    made = []
    if f:
        made.append(f"{f.ips:,.0f} images/s ({what}, {f.threads} thread{'s' if f.threads != 1 else ''})")
    pe = photos.get("fastseq epoch")
    if pe:
        made.append(f"{pe.ips:,.0f} photos/s at 224 from its store")
    first = ("On this machine fastseq makes " + " and ".join(made) + ".") if made else "fastseq's array rows did not run."
    than = []
    if f and kernel.get("tf.data"):
        than.append(f"{f.ips / kernel['tf.data'].ips:,.0f}x tf.data")
    if pe and photos.get("keras epoch"):
        k = photos["keras epoch"]
        extra = ""
        fc = photos.get("fastseq first call")
        if fc and fc.ips:
            extra = f" (first call, decoding every file once: {k.ips / fc.ips:.2f}x Keras' epoch time)"
        than.append(f"{pe.ips / k.ips:,.1f}x Keras' image_dataset_from_directory per epoch{extra}")
    second = ("That is " + " and ".join(than) + ".") if than else "No baseline ran beside it."
    if not pe and photos.get("keras epoch") and photos.get("fastseq first call"):
        ratio = photos["keras epoch"].ips / photos["fastseq first call"].ips
        first_call = f"its first call on a photo folder (decoding every file once) takes {ratio:.2f}x Keras' epoch time."
        second = (second[:-1] + "; " + first_call) if than else first_call[0].upper() + first_call[1:]
    ff = fit.get("fastseq")
    if ff:
        third = f"In model.fit it keeps up with a training step that consumes up to {ff.ips:,.0f} images/s"
        noop = fit.get("noop")
        if step_bound(fit):
            third += (f" at least: here the model's own step bounds fit on this CPU (a loader that does nothing "
                      f"fed {noop.ips:,.0f}), so the fit ratios are not judged.")
        else:
            third += f" (a loader that does nothing fed {noop.ips:,.0f})." if noop else "."
    else:
        third = "The model.fit rows did not run."
    return [first, second, third]


# -- the augmentation rows (benchmarks/test_augment.py, bench --augment) ---------------------


@dataclass(frozen=True)
class RowRatio:
    """A target between two named rows of one group.

    For a ``"max"`` target the value is ``row``'s time over ``other``'s (an op's cost over the plain pass);
    for a ``"min"`` target it is ``row``'s images/s over ``other``'s (fastseq's speedup over a baseline).
    """

    row: str
    other: str
    label: str
    target: Target

    def value(self, rows):
        a, b = rows[self.row].ips, rows[self.other].ips
        return b / a if self.target.kind == "max" else a / b


def _aug(row, other, label, kind, value, bound):
    return RowRatio(row, other, label, Target(f"{row}/{other}", kind, value, bound))


_PASS, _BASE = "the augmentation pass (resample or color, per value)", "fastseq's augmentation pass"
#: The CIFAR-shaped (batch 512, float32) and photo (224, batch 32) augmentation targets, per group.
#: Rows: ``plain`` (crop, flip, normalise), ``fastseq+OPS``, ``keras+OPS``, ``albumentations+OPS``.
AUGMENT_RATIOS = {
    "augment-geometry": (
        _aug("fastseq+geometry", "plain", "rotation+zoom+translation / plain time", "max", 3.0, _PASS),
        _aug("fastseq+geometry", "keras+geometry", "geometry vs Keras layers", "min", 30.0, _BASE),
        _aug("fastseq+geometry", "albumentations+geometry", "geometry vs albumentations", "min", 20.0, _BASE),
    ),
    "augment-color": (
        _aug("fastseq+jitter", "plain", "color jitter / plain time", "max", 2.0, _PASS),
        _aug("fastseq+jitter", "keras+jitter", "color jitter vs Keras layers", "min", 30.0, _BASE),
        _aug("fastseq+jitter", "albumentations+jitter", "color jitter vs albumentations", "min", 20.0, _BASE),
    ),
    "augment-photos": (
        _aug("fastseq+rotation", "fastseq", "RRC + rotation / RRC time", "max", 1.3, _PASS),
        _aug("fastseq+rotation+jitter", "fastseq+rotation", "+ color jitter / RRC + rotation time", "max", 1.3, _PASS),
        _aug("fastseq+rotation", "albumentations+rotation", "RRC + rotation vs albumentations", "min", 2.0, _BASE),
        _aug("fastseq+rotation", "keras+rotation", "RRC + rotation vs Keras", "min", 20.0, _BASE),
    ),
}


def color_op_ratio(name, target):
    """The target of one color op alone: its row's time over the plain pass's, and the ratio to albumentations'."""
    return (
        _aug(f"fastseq+{name}", "plain", f"{name} / plain time", "max", target, _PASS),
        RowRatio(f"fastseq+{name}", f"albumentations+{name}", f"{name} vs albumentations", Target(name, "min", 0.0, "")),
    )


def row_ratio_verdicts(ratios, rows):
    """Verdicts of ``ratios`` (:class:`RowRatio`) whose two rows are in ``rows`` (``{name: Timing}``).

    A target of 0 is shown without a verdict (a ratio worth seeing, with nothing committed).
    """
    out = []
    for r in ratios:
        if r.row not in rows or r.other not in rows or not rows[r.row].ips or not rows[r.other].ips:
            continue
        target = r.target if r.target.value else None
        out.append(judge(r.target.key, r.label, r.value(rows), target,
                         spreads=[rows[r.row].spread, rows[r.other].spread]))
    return out
