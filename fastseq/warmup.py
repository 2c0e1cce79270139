"""``python -m fastseq compile``: compile the kernel variants a project uses, ahead of time.

Numba compiles each kernel variant on its first call and caches it on disk
(next to the package, or in ``NUMBA_CACHE_DIR``), so the first batch of a
new variant waits for the compiler. Run this once where that wait is
unwelcome: in a Docker build, in CI before the tests, or on a new machine
before training. A variant is the output dtype and layout: crop, padding,
flip mode, normalisation and image size are run-time values, so one
variant serves all of them (float16 and bfloat16 share one). NumPy and
Numba only: no Keras.
"""

from __future__ import annotations

import importlib
import os
import time

import numpy as np

from fastseq.kernels import (
    CutoutParams,
    ErasingParams,
    FusedMix,
    FusedPlan,
    MixParams,
    RaggedResizedCropParams,
    RaggedResizePlan,
    RandomParams,
    ResizedCropParams,
    ResizePlan,
    config,
    cutout,
    mix,
)

DTYPES = ("float32", "float16", "bfloat16", "uint8")
DATA_FORMATS = ("channels_last", "channels_first")


def compile_kernels(dtypes=("float32",), data_formats=("channels_last",), *, multiprocessing=False, resize=False,
                    augmentations=False, photos=False, augment=False, report=None, jobs=1, _only=None):
    """Compile (or load from the cache) the fused kernel for each dtype and layout, and the random parameters.

    Args:
        dtypes: output dtypes, from :data:`DTYPES`.
        data_formats: layouts, from :data:`DATA_FORMATS`.
        multiprocessing: also the serial twins that ``use_multiprocessing=True`` workers run.
        resize: also RandomResizedCrop's boxes and the resized-crop kernel
            (``RandomResizedCrop``/``Resize`` crops) for each dtype.
        augmentations: also the Cutout/RandomErasing and MixUp/CutMix draws and passes
            (``kernels/mix.py``) for each dtype (one variant serves both layouts).
        photos: also the photo-folder resample (``image_dataset_from_directory``) and its
            RandomResizedCrop boxes for each dtype (one variant serves both layouts and every interpolation).
        augment: also the pass of ``augment=[...]`` (Keras' geometry and color ops,
            ``fastseq.kernels.augment_pass``): its three variants (a whole-pixel window with color
            ops; geometric ops; both) for each dtype (one variant serves both layouts; float16 and
            bfloat16 share one), and the ops' draws.
        report: called as ``report(what, seconds)`` after each variant.
        jobs: processes compiling at once. Numba compiles on one thread, so
            on a machine with several cores ``jobs`` processes (one variant
            each at a time, all writing the same on-disk cache) finish
            sooner; this process then loads nothing. 1: here, in order.

    Returns:
        ``{what: seconds}``, in order.
    """
    for name, values, allowed in (("dtypes", dtypes, DTYPES), ("data_formats", data_formats, DATA_FORMATS)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ValueError(f"{name} must be a non-empty list from {allowed}, got {list(values)!r}.")
    timings = {}
    if jobs > 1:
        return _compile_in_processes(dict(dtypes=list(dtypes), data_formats=list(data_formats),
                                          multiprocessing=multiprocessing, resize=resize,
                                          augmentations=augmentations, photos=photos, augment=augment), jobs, report)
    seen = []

    def timed(what, fn):
        # _only: run the variant at that position only (a worker of _compile_in_processes), or none ("names"),
        # recording the others' names so that the callers' once-per-variant checks run as they do here.
        seen.append(what)
        if _only is not None and len(seen) - 1 != _only:
            timings.setdefault(what, None)
            return
        t0 = time.perf_counter()
        fn()
        timings[what] = time.perf_counter() - t0
        if report is not None:
            report(what, timings[what])

    x = np.zeros((1, 2, 2, 3), np.uint8)
    params = RandomParams(image_size=(2, 2), crop_size=(2, 2), padding=1, horizontal=0.5, vertical=0.5)
    timed("random crop and flip parameters", lambda: params(0, 0, np.zeros(1, np.int64)))
    # float16 and bfloat16 write the same uint16 bits: one compiled variant.
    for _, dtype in _storage_types(dtypes):
        for data_format in data_formats:
            normalize = {} if dtype == "uint8" else {"mean": 0.0, "std": 1.0}
            plan = FusedPlan(x, crop=(2, 2), dtype=dtype, data_format=data_format, **normalize)
            what = f"fused kernel, {plan.variant}" + (" + serial twin" if multiprocessing else "")
            timed(what, lambda: plan.compile(serial=multiprocessing))
    if resize:
        boxes = ResizedCropParams(image_size=(2, 2), horizontal=0.5, vertical=0.5)
        timed("random resized crop boxes and flips", lambda: boxes(0, 0, np.zeros(1, np.int64)))
        for dtype in dtypes:
            normalize = {} if dtype == "uint8" else {"mean": 0.0, "std": 1.0}
            plan = ResizePlan(x, size=(2, 2), dtype=dtype, **normalize)  # one variant serves both layouts
            what = f"resized-crop kernel, {plan.variant}" + (" + serial twin" if multiprocessing else "")
            if what not in timings:
                timed(what, lambda: plan.compile(serial=multiprocessing))
    if augmentations:
        _compile_augmentations(dtypes, data_formats, multiprocessing, timed)
    if photos:
        shapes = np.array([[2, 2, 3]], np.int64)
        boxes = RaggedResizedCropParams(shapes, horizontal=0.5, vertical=0.5)
        timed("photo random resized crop boxes and flips", lambda: boxes(0, 0, np.zeros(1, np.int64)))
        for dtype in dtypes:
            normalize = {} if dtype == "uint8" else {"mean": 0.0, "std": 1.0}
            plan = RaggedResizePlan(np.zeros(12, np.uint8), np.zeros(1, np.int64), shapes, size=(2, 2), dtype=dtype,
                                    **normalize)
            what = f"photo resample kernel, {plan.variant}" + (" + serial twin" if multiprocessing else "")
            if what not in timings:
                timed(what, lambda plan=plan: plan.compile(serial=multiprocessing))
    if augment:
        _compile_augment(dtypes, timed)
    if _only is not None and _only != "names":
        return {what: seconds for what, seconds in timings.items() if seconds is not None}
    return timings


def _storage_types(dtypes):
    """``(key, dtype)`` for the first of ``dtypes`` of each storage type: float16 and bfloat16 share ``"half"``."""
    seen = {}
    for dtype in dtypes:
        seen.setdefault("half" if dtype in ("float16", "bfloat16") else dtype, dtype)
    return list(seen.items())


def _compile_augmentations(dtypes, data_formats, multiprocessing, timed):
    """The draws, per storage type the erase and mix passes (their layout is a run-time value), and per dtype and
    layout the MixUp/CutMix kernel of the fused pass (Cutout/erasing in the fused pass is the fused kernel itself)."""
    one = np.zeros(1, np.int64)
    timed("cutout and random erasing boxes", lambda: (CutoutParams(image_size=(2, 2), size=1)(0, 0, one),
                                                       ErasingParams(image_size=(2, 2))(0, 0, one)))
    draw = MixParams(num_items=1, image_size=(2, 2), alpha=1.0, mode="cutmix")
    timed("mixup and cutmix draws", lambda: draw(0, 0, one))
    d = draw(0, 0, one)
    for key, dtype in _storage_types(dtypes):
        batch = np.zeros((1, 2, 2, 3), np.uint8 if dtype == "uint8" else np.float32)

        def passes(dtype=dtype, batch=batch):
            # Asked for: no compile notice (the command prints its own line).
            config.mark_warm(importlib.import_module("fastseq.kernels.mix").mix_variant(dtype))
            out = mix(batch, batch.copy(), d.weights, d.boxes, dtype=dtype)
            cutout(out, np.zeros((1, 1, 4), np.int64), fill=0)
            if multiprocessing:
                # The module, for its serial twins (``fastseq.kernels.mix`` the name is the function).
                mixmod = importlib.import_module("fastseq.kernels.mix")
                args = (batch.reshape(-1), batch.reshape(-1), d.weights, d.boxes, 1, 2, 6, 3)
                if dtype == "float32":
                    mixmod._mix_f32_serial(*args, np.empty(12, np.float32), 1)
                else:
                    target = np.empty(12, np.uint8 if dtype == "uint8" else np.uint16)
                    mixmod._mix_rounded_serial(*args, mixmod._KINDS[dtype], target, 1)

        timed(f"cutout and mix passes, {key}" + (" + serial twins" if multiprocessing else ""), passes)
    x = np.zeros((1, 2, 2, 3), np.uint8)
    compiled = set()
    for dtype in dtypes:
        for data_format in data_formats:
            normalize = {} if dtype == "uint8" else {"mean": 0.0, "std": 1.0}
            pair = "uint8" if dtype == "uint8" else "float32"
            fused_mix = FusedMix(FusedPlan(x, dtype=pair, data_format=data_format, **normalize), dtype)
            key = "half" if dtype in ("float16", "bfloat16") else dtype
            what = f"fused mix kernel, {key} {data_format}" + (" + serial twin" if multiprocessing else "")
            if what not in compiled:
                compiled.add(what)
                timed(what, lambda fm=fused_mix: fm.compile(serial=multiprocessing))


def _compile_augment(dtypes, timed):
    """The ops' uniforms, and the augmentation pass's variants per storage type (float32, the half types' bits, uint8)."""
    from fastseq.kernels.augment_pass import AugmentPass
    from fastseq.kernels.random import uniforms

    timed("augmentation op draws", lambda: uniforms(0, 0, np.zeros(1, np.int64), np.zeros(1, np.uint64)))
    progs = {"copy": [[0, 0, -1, 0, -1], [1, 1, 0, 1, -1]], "warp": [[0, 0, -1, 0, -1]],
             "warp_color": [[0, 0, -1, 0, -1], [1, 1, 0, 1, -1], [0, 0, -1, 0, -1]],
             "extended": [[0, 0, -1, 0, -1], [1, 1, 0, 1, -1]]}  # the policies' pass (TrivialAugmentWide, AugMix)
    for key, dtype in _storage_types(dtypes):
        normalize = {} if dtype == "uint8" else {"mean": 0.0, "std": 1.0}
        for variant, prog in progs.items():
            plan = AugmentPass(np.zeros(12, np.uint8), np.zeros(1, np.int64), np.array([[2, 2, 3]]), out_size=(2, 2),
                               prog=prog, run_interp=[1], run_mode=[2], run_fill=[0.0], n_params=1, n_fields=0,
                               variant=variant, dtype=dtype, **normalize)
            timed(f"augmentation pass ({variant}), {key}", plan.compile)


def _compile_in_processes(kwargs, jobs, report):
    """:func:`compile_kernels` with each variant in a process of its own, ``jobs`` at a time; timings in order."""
    import concurrent.futures
    import json
    import subprocess
    import sys

    names = list(compile_kernels(**kwargs, _only="names"))
    code = "import json, sys; from fastseq.warmup import compile_kernels; " \
           "t = compile_kernels(**json.loads(sys.argv[1]), _only=int(sys.argv[2])); print(json.dumps(t))"

    def one(index):
        result = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs), str(index)], capture_output=True,
                                text=True)
        if result.returncode:
            raise RuntimeError(f"compiling {names[index]!r} failed:\n{result.stderr}")
        return json.loads(result.stdout.splitlines()[-1])

    timings = {}
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for index, result in enumerate(pool.map(one, range(len(names)))):
            seconds = result.get(names[index], 0.0)
            timings[names[index]] = seconds
            if report is not None:
                report(names[index], seconds)
    return timings


def configure_parser(parser):
    """Add ``compile``'s options to an ``argparse`` (sub)parser."""
    parser.add_argument("--dtype", action="append", choices=DTYPES, metavar="DTYPE",
                        help=f"output dtype, repeatable: {', '.join(DTYPES)} (default: float32)")
    parser.add_argument("--data-format", action="append", choices=DATA_FORMATS, metavar="FORMAT",
                        help="layout, repeatable: channels_last, channels_first (default: channels_last)")
    parser.add_argument("--all", action="store_true", help="every dtype and layout")
    parser.add_argument("--multiprocessing", action="store_true",
                        help="also the serial kernels that use_multiprocessing=True workers run")
    parser.add_argument("--resize", action="store_true",
                        help="also the RandomResizedCrop/Resize kernel for each dtype")
    parser.add_argument("--augmentations", action="store_true",
                        help="also the Cutout/RandomErasing and MixUp/CutMix kernels")
    parser.add_argument("--photos", action="store_true",
                        help="also the photo-folder resample kernel (image_dataset_from_directory) for each dtype")
    parser.add_argument("--augment", action="store_true",
                        help="also the pass of augment=[...] (Keras' geometry and color ops) for each dtype")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="variants compiled at once, each in a process of its own (default: one per core; "
                        "Numba compiles on one thread)")
    return parser


def run(args):
    """Run ``compile`` with parsed ``args``; print one line per variant; return the exit status."""
    dtypes = DTYPES if args.all else tuple(dict.fromkeys(args.dtype or ["float32"]))
    formats = DATA_FORMATS if args.all else tuple(dict.fromkeys(args.data_format or ["channels_last"]))
    t0 = time.perf_counter()
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}.")
    timings = compile_kernels(dtypes, formats, multiprocessing=args.multiprocessing, resize=args.resize,
                              augmentations=getattr(args, "augmentations", False), photos=getattr(args, "photos", False),
                              augment=getattr(args, "augment", False),
                              report=lambda what, s: print(f"  {what:<58} {s:6.1f} s", flush=True), jobs=args.jobs)
    print(f"compiled {len(timings)} kernels in {time.perf_counter() - t0:.1f} s; later runs load them from the cache.")
    return 0
