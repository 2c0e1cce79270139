"""``python -m fastseq bench --compile``: what each kernel variant costs to compile, from an empty Numba cache.

A new user's first batch waits for Numba to compile the kernels of its
variant (issue 26). This module measures that wait for every variant a user
can reach, as a user meets it: each row is a small self-contained snippet
that builds a sequence (or a kernel plan) and makes its first batch, run in
a fresh interpreter (``sys.executable -c``) whose ``NUMBA_CACHE_DIR`` is a
new, empty directory. The snippets use only public entry points
(``fastseq.ArraySequence``, ``fastseq.augment``'s specs,
``fastseq.ragged.RaggedImages``, ``fastseq.kernels``' plans), so they
measure any version of the kernels.

Per row:

* ``first_batch_s``: wall time from just before construction to the end of
  the first batch (``seq[0]``); imports (NumPy, Numba, fastseq, Keras) and
  the data are made before the clock starts, so a compile moved into a
  constructor still counts;
* ``first_batch_cpu_s``: the child's CPU time over the same span (all its
  threads): on a shared machine, less disturbed by other work than wall time;
* ``compile_s``: the time inside Numba's compile events
  (``numba.core.event`` kind ``"numba:compile"``; outermost events only, per
  thread, so a background compile thread counts too);
* ``llvm_s``: the time under ``"numba:llvm_lock"`` (LLVM's optimisation and
  code generation); ``compile_s - llvm_s`` is Numba's typing and lowering;
* ``functions``: each compiled function (``module`` and ``qualname`` of the
  dispatcher's Python function) with its *exclusive* seconds: compile
  events nest (a function's compile includes its callees' when they are
  compiled on demand), so each event's children are subtracted on a stack.

The serial rows time the serial twin that process workers
(``use_multiprocessing=True``, forked after parallel use) run: the parallel
kernel is compiled before the clock (``plan.compile()``), then the clock
runs over ``plan.compile(serial=True)`` (the twin; the parallel kernel is
warm), and a batch is made after it for the check.

NumPy and Numba only in the measuring process; rows that build a sequence
need Keras in the child and are skipped (with the reason) without it.
:class:`CompileEvents` is also what ``tests/test_compile_events.py`` uses.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

#: The child prints its result on one line that starts with this.
MARK = "@@fastseq-compile-row@@ "


# ---------------------------------------------------------------------------------------------------------------
# The measurement, inside the child process.


class CompileEvents:
    """Record Numba's compile and LLVM-lock events while installed (a ``numba.core.event.Listener`` each).

    Events nest: a compile that calls a not-yet-compiled function compiles
    it inside its own event, and start and end arrive as different objects.
    So each thread keeps a stack of open events; an event's exclusive time is
    its duration less its children's. Use as a context manager, or call
    :meth:`install`/:meth:`uninstall`; :meth:`reset` forgets what was
    recorded (events still open keep running into the new record).
    """

    def __init__(self):
        from numba.core import event

        self._event = event
        self._lock = threading.Lock()
        self._stacks = {}  # thread id -> [[start, children_s, key], ...]
        self._llvm = {}  # thread id -> [depth, start of the outermost]
        outer = self

        class _Compile(event.Listener):
            def on_start(self, ev):
                outer._compile_start(ev)

            def on_end(self, ev):
                outer._compile_end(ev)

        class _Llvm(event.Listener):
            def on_start(self, ev):
                outer._llvm_start()

            def on_end(self, ev):
                outer._llvm_end()

        self._listeners = (("numba:compile", _Compile()), ("numba:llvm_lock", _Llvm()))
        self.reset()

    def reset(self):
        with self._lock:
            self.functions = {}  # (module, qualname) -> {"exclusive_s", "inclusive_s", "count"}
            self.compile_s = 0.0
            self.llvm_s = 0.0
            self.events = 0

    def install(self):
        for kind, listener in self._listeners:
            self._event.register(kind, listener)
        return self

    def uninstall(self):
        for kind, listener in self._listeners:
            self._event.unregister(kind, listener)

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.uninstall()

    @staticmethod
    def _key(ev):
        dispatcher = (ev.data or {}).get("dispatcher")
        fn = getattr(dispatcher, "py_func", None)
        if fn is None:
            return ("?", repr(dispatcher))
        return (getattr(fn, "__module__", None) or "?", getattr(fn, "__qualname__", None) or fn.__name__)

    def _compile_start(self, ev):
        key = self._key(ev)
        now = time.perf_counter()
        with self._lock:
            self._stacks.setdefault(threading.get_ident(), []).append([now, 0.0, key])

    def _compile_end(self, ev):
        now = time.perf_counter()
        with self._lock:
            stack = self._stacks.get(threading.get_ident())
            if not stack:
                return  # started before install
            start, children, key = stack.pop()
            inclusive = now - start
            if stack:
                stack[-1][1] += inclusive
            else:
                self.compile_s += inclusive
            row = self.functions.setdefault(key, {"exclusive_s": 0.0, "inclusive_s": 0.0, "count": 0})
            row["exclusive_s"] += inclusive - children
            row["inclusive_s"] += inclusive
            row["count"] += 1
            self.events += 1

    def _llvm_start(self):
        now = time.perf_counter()
        with self._lock:
            state = self._llvm.setdefault(threading.get_ident(), [0, 0.0])
            if state[0] == 0:
                state[1] = now
            state[0] += 1

    def _llvm_end(self):
        now = time.perf_counter()
        with self._lock:
            state = self._llvm.get(threading.get_ident())
            if not state or state[0] == 0:
                return
            state[0] -= 1
            if state[0] == 0:
                self.llvm_s += now - state[1]

    def summary(self):
        """``{"compile_s", "llvm_s", "events", "functions": [{"module", "name", "exclusive_s", ...}]}``, slowest first."""
        with self._lock:
            functions = [
                {"module": m, "name": q, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}}
                for (m, q), r in self.functions.items()
            ]
            functions.sort(key=lambda f: -f["exclusive_s"])
            return {"compile_s": round(self.compile_s, 4), "llvm_s": round(self.llvm_s, 4), "events": self.events,
                    "functions": functions}


# ---------------------------------------------------------------------------------------------------------------
# The variants.


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row: ``setup`` runs before the clock (imports, data); ``run`` is timed and sets ``batch``.

    Snippets run at module level of the child (``after``, if any, once the clock has stopped); ``WORKDIR`` names a scratch
    directory (the Numba cache is elsewhere). ``shape``/``dtype`` are what
    the first batch's images must be; ``keras``: the row builds a sequence.
    """

    name: str
    what: str
    setup: str
    run: str
    shape: tuple
    dtype: str
    keras: bool = True
    after: str = ""  # run after the clock and the compile record stop (sets ``batch`` where ``run`` does not)


_SEQ_SETUP = """
import numpy as np
import fastseq
import fastseq.kernels
fastseq.ArraySequence  # imports Keras (and its backend) before the clock
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, 512)
"""

_X64 = """
x64 = rng.integers(0, 256, (512, 64, 64, 3), dtype=np.uint8)
"""

_MNIST = """
x28 = rng.integers(0, 256, (512, 28, 28), dtype=np.uint8)
"""

_PHOTOS = """
from fastseq.ragged import RaggedImages
photos = RaggedImages.from_images(
    [rng.integers(0, 256, (int(rng.integers(20, 120)), int(rng.integers(20, 120)), 3), dtype=np.uint8)
     for _ in range(64)])
"""

_PHOTO_FOLDER = """
import os
from fastseq.bench.photos import make_photo_folder
folder = os.path.join(WORKDIR, "photos")
make_photo_folder(folder, n_images=48, n_classes=3, sizes=(40, 120), seed=0, formats=("png",))
fastseq.image_dataset_from_directory  # its module, before the clock
"""

_KERNEL_SETUP = """
import numpy as np
import fastseq.kernels as K
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
idx = np.arange(128, dtype=np.int64)
"""

#: The README quickstart's options (but the dtype and layout).
_QUICKSTART = ('crop=fastseq.RandomCrop(32, 32, padding=4), flip="horizontal", '
               'normalize=fastseq.Rescale(1 / 255)')
_NORMALIZE = "normalize=fastseq.Normalize((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))"


def _seq(options, *, data="x", extra_setup="", shape=(128, 32, 32, 3), dtype="float32", then=""):
    """setup, run, shape, dtype of a row that builds ``ArraySequence(data, y, batch_size=128, options)``."""
    run = f"seq = fastseq.ArraySequence({data}, y, batch_size=128, {options})\n"
    run += then or "batch = seq[0]\n"
    return dict(setup=_SEQ_SETUP + extra_setup, run=run, shape=shape, dtype=dtype)


def _rows():
    rows = []

    def add(name, what, **kw):
        rows.append(Variant(name, what, **kw))

    add("quickstart", "README quickstart: RandomCrop(32, pad 4) + horizontal flip + Rescale, float32 NHWC",
        **_seq(_QUICKSTART))
    for dtype in ("float16", "bfloat16"):
        add(f"quickstart_{dtype}", f"the quickstart, {dtype} NHWC", **_seq(_QUICKSTART + f', dtype="{dtype}"',
                                                                             dtype=dtype))
    add("quickstart_uint8", "the quickstart without Rescale, uint8 NHWC",
        **_seq('crop=fastseq.RandomCrop(32, 32, padding=4), flip="horizontal", dtype="uint8"', dtype="uint8"))
    for dtype in ("float32", "float16", "bfloat16", "uint8"):
        opts = _QUICKSTART if dtype != "uint8" else 'crop=fastseq.RandomCrop(32, 32, padding=4), flip="horizontal"'
        add(f"nchw_{dtype}", f"the quickstart, {dtype} channels_first",
            **_seq(opts + f', dtype="{dtype}", data_format="channels_first"', shape=(128, 3, 32, 32), dtype=dtype))
    for mode in ("edge", "reflect"):
        add(f"pad_{mode}", f"RandomCrop(32, pad 4, pad_mode={mode!r}) + flip + Rescale, float32 NHWC",
            **_seq(f'crop=fastseq.RandomCrop(32, 32, padding=4, pad_mode="{mode}"), flip="horizontal", '
                   "normalize=fastseq.Rescale(1 / 255)"))
    add("flip_both", "RandomCrop + horizontal_and_vertical flip + Rescale, float32 NHWC",
        **_seq('crop=fastseq.RandomCrop(32, 32, padding=4), flip="horizontal_and_vertical", '
               "normalize=fastseq.Rescale(1 / 255)"))
    add("normalize", "RandomCrop + flip + Normalize(mean, std), float32 NHWC",
        **_seq(f'crop=fastseq.RandomCrop(32, 32, padding=4), flip="horizontal", {_NORMALIZE}'))
    add("mnist", "MNIST shape (N, 28, 28): RandomCrop(28, pad 2) + Rescale, float32 NHWC (C = 1)",
        **_seq("crop=fastseq.RandomCrop(28, 28, padding=2), normalize=fastseq.Rescale(1 / 255)", data="x28",
               extra_setup=_MNIST, shape=(128, 28, 28, 1)))
    add("eval_center", "for_evaluation of RandomCrop(24) + flip: CenterCrop(24) + Rescale, float32 NHWC",
        **_seq('crop=fastseq.RandomCrop(24, 24), flip="horizontal", normalize=fastseq.Rescale(1 / 255)',
               shape=(128, 24, 24, 3), then="ev = seq.for_evaluation(x, y)\nbatch = ev[0]\n"))
    add("resize", "Resize(40, 40, crop=(32, 32)) + Rescale on 32x32, float32 NHWC",
        **_seq("crop=fastseq.Resize(40, 40, crop=(32, 32)), normalize=fastseq.Rescale(1 / 255)"))
    add("eval_resize", "for_evaluation of RandomResizedCrop(56) on 64x64: Resize(64, 64, crop=(56, 56)), float32",
        **_seq('crop=fastseq.RandomResizedCrop(56, 56), flip="horizontal", normalize=fastseq.Rescale(1 / 255)',
               data="x64", extra_setup=_X64, shape=(128, 56, 56, 3),
               then="ev = seq.for_evaluation(x64, y)\nbatch = ev[0]\n"))
    add("random_resized_crop", "RandomResizedCrop(56) + flip + Rescale on 64x64, float32 NHWC",
        **_seq('crop=fastseq.RandomResizedCrop(56, 56), flip="horizontal", normalize=fastseq.Rescale(1 / 255)',
               data="x64", extra_setup=_X64, shape=(128, 56, 56, 3)))
    add("cutout", "the quickstart + Cutout(8)", **_seq(_QUICKSTART + ", cutout=fastseq.Cutout(8)"))
    add("random_erasing", "the quickstart + RandomErasing()", **_seq(_QUICKSTART + ", cutout=fastseq.RandomErasing()"))
    add("mixup", "RandomCrop + flip + Normalize + MixUp(0.2), float32 NHWC",
        **_seq(f'crop=fastseq.RandomCrop(32, 32, padding=4), flip="horizontal", {_NORMALIZE}, '
               "mix=fastseq.MixUp(0.2), num_classes=10"))
    add("cutmix", "the quickstart + CutMix(1.0), float32 NHWC",
        **_seq(_QUICKSTART + ", mix=fastseq.CutMix(1.0), num_classes=10"))
    add("mixup_resized", "RandomResizedCrop(56) + flip + Rescale + MixUp(0.2) on 64x64 (the separate mix pass)",
        **_seq('crop=fastseq.RandomResizedCrop(56, 56), flip="horizontal", normalize=fastseq.Rescale(1 / 255), '
               "mix=fastseq.MixUp(0.2), num_classes=10", data="x64", extra_setup=_X64, shape=(128, 56, 56, 3)))
    for dtype in ("float32", "float16", "bfloat16", "uint8"):
        norm = ", normalize=fastseq.Rescale(1 / 255)" if dtype != "uint8" else ""
        add(f"photos_{dtype}", f"photo resample: 64 RaggedImages (20-120 px) -> Resize(32, 32){norm and ' + Rescale'}, "
            f"{dtype} NHWC",
            setup=_SEQ_SETUP + _PHOTOS,
            run=(f'seq = fastseq.ArraySequence(photos, batch_size=16, crop=fastseq.Resize(32, 32){norm}, '
                 f'dtype="{dtype}")\nbatch = seq[0]\n'),
            shape=(16, 32, 32, 3), dtype=dtype)
    add("photos_random_resized_crop", "photo resample: RaggedImages -> RandomResizedCrop(32) + flip + Rescale, float32",
        setup=_SEQ_SETUP + _PHOTOS,
        run=('seq = fastseq.ArraySequence(photos, batch_size=16, crop=fastseq.RandomResizedCrop(32, 32), '
             'flip="horizontal", normalize=fastseq.Rescale(1 / 255))\nbatch = seq[0]\n'),
        shape=(16, 32, 32, 3), dtype="float32")
    add("photo_folder", "image_dataset_from_directory: 48 PNGs (40-120 px) decoded, then Resize(64, 64), float32",
        setup=_SEQ_SETUP + _PHOTO_FOLDER,
        run=('seq = fastseq.image_dataset_from_directory(folder, image_size=(64, 64), batch_size=16, verbose=False, '
             'cache_dir=os.path.join(WORKDIR, "store"))\nbatch = seq[0]\n'),
        shape=(16, 64, 64, 3), dtype="float32")
    # The augmentation pass of augment=[...] (Keras' layers as fastseq ops): one row per variant it compiles.
    add("augment_geometry", "the quickstart + augment=[RandomRotation(0.1), RandomZoom(0.2), RandomTranslation(0.1, 0.1)]",
        **_seq(_QUICKSTART + ", augment=[fastseq.RandomRotation(0.1), fastseq.RandomZoom(0.2), "
               "fastseq.RandomTranslation(0.1, 0.1)]"))
    add("augment_color", "the quickstart + augment=[RandomColorJitter(0.2, 0.2, 0.2, 0.1)] (no geometric op)",
        **_seq(_QUICKSTART + ", augment=[fastseq.RandomColorJitter(brightness_factor=0.2, contrast_factor=0.2, "
               "saturation_factor=0.2, hue_factor=0.1)]"))
    add("augment_both", "the quickstart + augment=[RandomRotation(0.1), RandomColorJitter(brightness_factor=0.2)]",
        **_seq(_QUICKSTART + ", augment=[fastseq.RandomRotation(0.1), fastseq.RandomColorJitter(brightness_factor=0.2)]"))
    add("augment_randaugment", "the quickstart + augment=[RandAugment(num_ops=2, factor=0.5)]",
        **_seq(_QUICKSTART + ", augment=[fastseq.RandAugment(num_ops=2, factor=0.5)]"))
    add("augment_trivial", "the quickstart + augment=[TrivialAugmentWide()] (the extended pass)",
        **_seq(_QUICKSTART + ", augment=[fastseq.TrivialAugmentWide()]"))
    # Kernel plans only (no Keras).
    add("kernel_quickstart", "the quickstart's kernels without Keras: RandomParams + FusedPlan, float32 NHWC",
        setup=_KERNEL_SETUP,
        run=("draws = K.RandomParams(image_size=(32, 32), crop_size=(32, 32), padding=4, horizontal=0.5)\n"
             "plan = K.FusedPlan(x, crop=(32, 32), padding=4, scale=1 / 255, offset=0.0)\n"
             "origins, flips = draws(0, 0, idx)\n"
             "batch = plan(idx, origins, flips)\n"),
        shape=(128, 32, 32, 3), dtype="float32", keras=False)
    serial = [
        ("serial_fused_float32", "float32 NHWC", "K.FusedPlan(x, crop=(32, 32), padding=4, scale=1 / 255)",
         (128, 32, 32, 3), "float32"),
        ("serial_fused_float16", "float16 NHWC",
         'K.FusedPlan(x, crop=(32, 32), padding=4, scale=1 / 255, dtype="float16")', (128, 32, 32, 3), "float16"),
        ("serial_fused_uint8", "uint8 NHWC", 'K.FusedPlan(x, crop=(32, 32), padding=4, dtype="uint8")',
         (128, 32, 32, 3), "uint8"),
        ("serial_fused_nchw", "float32 NCHW",
         'K.FusedPlan(x, crop=(32, 32), padding=4, scale=1 / 255, data_format="channels_first")',
         (128, 3, 32, 32), "float32"),
    ]
    for name, what, plan, shape, dtype in serial:
        add(name, f"serial twin of the fused kernel, {what} (parallel kernel compiled before the clock)",
            setup=_KERNEL_SETUP + f"plan = {plan}\nplan.compile()\n",
            run="plan.compile(serial=True)\n", after="batch = plan(idx)\n", shape=shape, dtype=dtype, keras=False)
    add("serial_resize", "serial twin of the resized-crop kernel, float32 (parallel compiled before the clock)",
        setup=_KERNEL_SETUP + "plan = K.ResizePlan(x, size=(24, 24), scale=1 / 255)\nplan.compile()\n",
        run="plan.compile(serial=True)\n", after="batch = plan(idx)\n", shape=(128, 24, 24, 3), dtype="float32",
        keras=False)
    add("serial_mix", "serial twin of the fused MixUp/CutMix kernel, float32 NHWC (parallel compiled before the clock)",
        setup=_KERNEL_SETUP + ("mixed = K.FusedMix(K.FusedPlan(x, crop=(32, 32), padding=4, scale=1 / 255), 'float32')\n"
                               "mixed.compile()\n"
                               "d = K.MixParams(num_items=512, image_size=(32, 32), alpha=0.2)(0, 0, idx)\n"
                               "both = np.concatenate([idx, d.partners])\n"),
        run="mixed.compile(serial=True)\n",
        after=("batch = mixed(both, np.zeros((256, 2), np.int64), np.zeros(256, np.uint8), d.weights, d.boxes)\n"),
        shape=(128, 32, 32, 3), dtype="float32", keras=False)
    add("serial_photos", "serial twin of the photo resample, float32 (parallel compiled before the clock)",
        setup=_KERNEL_SETUP + ("from fastseq.ragged import RaggedImages\n"
                               "photos = RaggedImages.from_images([rng.integers(0, 256, (int(rng.integers(20, 120)), "
                               "int(rng.integers(20, 120)), 3), dtype=np.uint8) for _ in range(64)])\n"
                               "plan = K.RaggedResizePlan(photos.pixels, photos.offsets, photos.shapes, size=(32, 32), "
                               "scale=1 / 255)\nplan.compile()\n"),
        run="plan.compile(serial=True)\n",
        after="batch = plan(np.arange(16), K.keras_boxes(photos.shapes, (32, 32))[:16])\n",
        shape=(16, 32, 32, 3), dtype="float32", keras=False)
    return rows


#: Every row, by name, in table order.
VARIANTS = {v.name: v for v in _rows()}



# ---------------------------------------------------------------------------------------------------------------
# Running a row in a fresh interpreter.


_CHILD = """
import json, sys, time
from fastseq.bench.compile_rows import MARK, CompileEvents
WORKDIR = {workdir!r}
events = CompileEvents().install()
{setup}
events.reset()
t0, c0 = time.perf_counter(), time.process_time()
{run}
t1, c1 = time.perf_counter(), time.process_time()
first = events.summary()
# The tiered start: a sequence compiles its kernel in a background thread and makes its first batches with NumPy
# meanwhile. Wait for those compiles, so the table shows both what the first batch waited for and what followed.
from fastseq.kernels import config as _config
for _job in list(_config._compiles.values()):
    _job.wait()
t2 = time.perf_counter()
result = events.summary()
events.uninstall()
{after}
images = batch[0] if isinstance(batch, tuple) else batch
result.update(first_batch_s=round(t1 - t0, 4), first_batch_cpu_s=round(c1 - c0, 4), shape=list(images.shape),
              dtype=str(images.dtype), first_batch_compile_s=first["compile_s"], background_s=round(t2 - t1, 4),
              first_batch_functions=[f["module"] + ":" + f["name"] for f in first["functions"]])
print(MARK + json.dumps(result), flush=True)
"""


def child_script(variant, workdir):
    """The Python source a row's child process runs."""
    return _CHILD.format(workdir=str(workdir), setup=textwrap.dedent(variant.setup).strip(),
                         run=textwrap.dedent(variant.run).strip(), after=textwrap.dedent(variant.after).strip())


def keras_available():
    return importlib.util.find_spec("keras") is not None


def _package_root():
    """The folder holding the ``fastseq`` package this module belongs to (``fastseq/bench/..`` up twice)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measure(variant, *, timeout=900, keep_cache=None):
    """Run one row in a fresh interpreter with an empty Numba cache; return its result dict.

    ``variant``: a :class:`Variant` or a name from :data:`VARIANTS`. The child
    imports the same ``fastseq`` as this process. The result has the child's
    summary (``first_batch_s``, ``compile_s``, ``llvm_s``, ``events``,
    ``functions``, ``shape``, ``dtype``) plus ``variant``, ``what`` and
    ``wall_s`` (the whole child, imports included); on failure ``error``
    (and the child's stderr tail) instead. ``keep_cache``: a directory to
    use as the (empty) Numba cache instead of a temporary one.
    """
    if isinstance(variant, str):
        variant = VARIANTS[variant]
    base = {"variant": variant.name, "what": variant.what}
    if variant.keras and not keras_available():
        return {**base, "skipped": "needs Keras (not installed)"}
    workdir = tempfile.mkdtemp(prefix=f"fastseq-compile-{variant.name}-")
    try:
        cache = keep_cache or os.path.join(workdir, "numba-cache")
        os.makedirs(cache, exist_ok=True)
        if os.listdir(cache):
            raise ValueError(f"the Numba cache {cache} must be empty")
        # The thread compile, so that Numba's compile events of the background compile are this child's to record
        # (the default, a compile process, would take them elsewhere): the rows measure what each function costs.
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1",
                   FASTSEQ_COMPILE_IN="thread")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
        t0 = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-c", child_script(variant, workdir)], capture_output=True,
                                  text=True, env=env, timeout=timeout, cwd=workdir, check=False)
        except subprocess.TimeoutExpired:
            return {**base, "error": f"timed out after {timeout} s"}
        wall = time.perf_counter() - t0
        lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
            return {**base, "error": f"exit status {done.returncode}", "stderr": "\n".join(tail)}
        result = json.loads(lines[-1][len(MARK):])
        return {**base, **result, "wall_s": round(wall, 3), "stderr": done.stderr.strip()[-2000:]}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_MEASURED = {}
_MEASURED_LOCK = threading.Lock()


def measured(name):
    """:func:`measure` ``(name)``, once per process: the suite's correctness checks share one cold compile of a row.

    Not for timings that must be fresh (the timed benchmark calls :func:`measure`).
    """
    with _MEASURED_LOCK:
        if name not in _MEASURED:
            _MEASURED[name] = measure(name)
        return _MEASURED[name]


def measure_all(names=None, *, jobs=1, report=None, timeout=900):
    """Measure rows (default: all) in order; ``jobs`` children at once (default 1: clean figures).

    ``report(result)`` is called as each row finishes. Returns the results in
    the order of ``names``.
    """
    names = list(VARIANTS) if names is None else list(names)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    results = {}
    if jobs <= 1:
        for name in names:
            results[name] = measure(name, timeout=timeout)
            if report:
                report(results[name])
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(measure, name, timeout=timeout): name for name in names}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                if report:
                    report(results[futures[future]])
    return [results[n] for n in names]


# ---------------------------------------------------------------------------------------------------------------
# The table and the command.


def short_name(function):
    """``module:qualname`` without the ``fastseq.kernels.`` prefix: ``images:_block_affine``."""
    module = function["module"]
    for prefix in ("fastseq.kernels.", "fastseq."):
        if module.startswith(prefix):
            module = module[len(prefix):]
            break
    return f"{module}:{function['name']}"


def top_functions(result, n=3):
    return [(short_name(f), f["exclusive_s"]) for f in result.get("functions", [])[:n]]


def table_lines(results, *, top=3, markdown=False):
    """The table as text lines (or Markdown rows)."""
    cols = ["variant", "first batch s", "CPU s", "then background s", "compile s", "LLVM s",
            f"top {top} functions (exclusive s)"]
    rows = []
    for r in results:
        if "first_batch_s" in r:
            tops = ", ".join(f"{name} {s:.1f}" for name, s in top_functions(r, top))
            rows.append([r["variant"], f"{r['first_batch_s']:.1f}", f"{r['first_batch_cpu_s']:.1f}",
                         f"{r.get('background_s', 0.0):.1f}", f"{r['compile_s']:.1f}", f"{r['llvm_s']:.1f}", tops])
        else:
            rows.append([r["variant"], "", "", "", "", "", f"({r.get('skipped') or r.get('error')})"])
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|---|--:|--:|--:|--:|--:|---|"]

        def cell(text):
            return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")

        lines += ["| " + " | ".join([f"`{row[0]}`", *row[1:6], cell(row[6])]) + " |" for row in rows]
        return lines
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols[:6])]

    def fmt(row):
        return "  ".join([row[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(row[1:6], widths[1:])), row[6]])

    return [fmt(cols), "  ".join("-" * w for w in widths) + "  " + "-" * len(cols[6]), *(fmt(row) for row in rows)]


def _load():
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def configure_parser(parser):
    """``bench --compile``'s own options (``--markdown`` is ``bench``'s)."""
    parser.add_argument("--compile", action="store_true",
                        help="instead of the throughput rows: the first batch of every kernel variant from an empty "
                        "Numba cache, each in a fresh process, with Numba's compile time per function")
    parser.add_argument("--variants", default=None, metavar="A,B,...",
                        help=f"with --compile: comma-separated rows (default: all): {', '.join(VARIANTS)}")
    parser.add_argument("--jobs", type=int, default=1,
                        help="with --compile: rows measured at once (default 1; more share the cores and slow each)")
    return parser


def _first_run_rows(out):
    """The ``first-run`` rows (:mod:`fastseq.bench.first_run`), printed with their verdicts; their lines."""
    import tempfile

    from fastseq.bench import first_run
    from fastseq.bench import verdicts as v

    if not keras_available():
        return []
    print(file=out)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="fastseq-first-run-") as cache:
        for row in first_run.ROWS:
            try:
                if row == "fastseq-warm-cache":
                    first_run.wait_for_compile(cache)
                rows[row] = first_run.measure(row, cache)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                print(f"  first run {row}: {exc}", file=out, flush=True)
        first_run.wait_for_compile(cache)  # the compile process is done before its cache folder goes
    lines = first_run.table_lines(rows)
    found = first_run.verdicts(rows)
    if found:
        lines += ["  targets (issue 34):", *v.verdict_lines(found, indent="    ")]
    for line in lines:
        print(line, file=out, flush=True)
    return lines


def run(args, out=None):
    """``python -m fastseq bench --compile``: print the table; return the exit status."""
    out = out or sys.stdout
    names = [n.strip() for n in (getattr(args, "variants", None) or ",".join(VARIANTS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"bench --compile: unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}.", file=sys.stderr)
        return 2
    jobs = max(1, int(getattr(args, "jobs", 1) or 1))
    load_before = _load()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"fastseq bench --compile: {len(names)} variants, each in a fresh process with an empty Numba cache, "
          f"{jobs} at a time; {os.cpu_count()} CPUs; load {load_before}; {started}", file=out, flush=True)
    print("first batch s: construction to the end of seq[0] (imports before the clock); CPU s: the process's CPU time "
          "over the same span; then background s: from there until the kernels compiling in the background (the "
          "tiered start) were done; compile s: all of it inside Numba's "
          "compile events; LLVM s: under Numba's LLVM lock (the rest of compile s is typing and lowering)",
          file=out, flush=True)

    def report(r):
        if "first_batch_s" in r:
            tops = ", ".join(f"{n} {s:.1f}" for n, s in top_functions(r))
            line = (f"  {r['variant']:<28} {r['first_batch_s']:6.1f} s (CPU {r['first_batch_cpu_s']:5.1f} s)  "
                    f"then background {r.get('background_s', 0.0):5.1f} s  compile {r['compile_s']:6.1f} s  "
                    f"LLVM {r['llvm_s']:5.1f} s  {tops}")
        else:
            line = f"  {r['variant']:<28} {r.get('skipped') or r.get('error')}"
            if r.get("stderr"):
                line += "\n" + textwrap.indent(r["stderr"], "    ")
        print(line, file=out, flush=True)

    results = measure_all(names, jobs=jobs, report=report)
    print(file=out)
    for line in table_lines(results):
        print(line, file=out)
    first = _first_run_rows(out) if getattr(args, "variants", None) is None else []
    load_after = _load()
    print(f"load average (1, 5, 15 min) before: {load_before}; after: {load_after}", file=out, flush=True)
    markdown = getattr(args, "markdown", None)
    if markdown:
        argv = sys.argv[2:] if sys.argv[1:2] == ["bench"] else ["--compile"]
        page = [
            "# Compile time per variant",
            "",
            (f"Written by `python -m fastseq bench {' '.join(argv)}` on {started}: each variant's first batch in a "
             f"fresh process with an empty Numba cache, {jobs} at a time; {os.cpu_count()} CPUs; load average (1, 5, "
             f"15 min) {load_before} before, {load_after} after."),
            "",
            *table_lines(results, markdown=True),
            "",
            *(["```", *first, "```", ""] if first else []),
        ]
        with open(markdown, "w", encoding="utf-8") as f:
            f.write("\n".join(page))
    failed = [r for r in results if "error" in r]
    return 1 if failed else 0
