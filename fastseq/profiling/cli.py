"""``python -m fastseq profile``: built-in models, loaders and data, the tables, the JSON and the plot.

Keras, TensorFlow and matplotlib are imported inside the functions, so that
``python -m fastseq --help`` stays instant.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

LOADERS = ("fastseq", "numpy", "tf.data")
MODELS = ("cnn", "resnet")
DTYPES = ("float32", "float16", "bfloat16", "uint8")


def _loader_list(values):
    """``--loader a --loader b,c`` -> ``["a", "b", "c"]`` (order kept, duplicates dropped)."""
    if not values:
        return list(LOADERS)
    out = []
    for v in values:
        for name in v.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in LOADERS:
                raise ValueError(f"--loader must be one of {', '.join(LOADERS)} (or a comma list), got {name!r}.")
            if name not in out:
                out.append(name)
    return out


def configure_parser(parser):
    """Add the ``profile`` sub-command's arguments to ``parser``."""
    parser.add_argument("--model", choices=MODELS, default="cnn", help="built-in model to train (default: cnn)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch (default: 128)")
    parser.add_argument("--workers", type=int, default=1, help="PyDataset workers (threads) for fastseq/numpy (default: 1)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each measurement (default: 3)")
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="fastseq's output dtype; uint8 normalises on the device, in the model's first layer (default: float32)",
    )
    parser.add_argument(
        "--loader",
        action="append",
        metavar="NAME",
        help=f"loader(s) to compare: {', '.join(LOADERS)}; repeat or give a comma list (default: all three)",
    )
    parser.add_argument(
        "--data",
        choices=("auto", "synthetic", "fashion-mnist"),
        default="auto",
        help="auto: Fashion-MNIST when installed, else synthetic CIFAR-shaped data (default: auto)",
    )
    parser.add_argument("--samples", type=int, default=None, help="synthetic images to make (default: enough for the run)")
    parser.add_argument("--plot", metavar="FILE.png", help="write the step timeline and throughput bars (needs matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="write every report as JSON")


# --------------------------------------------------------------------------
# Data, models, loaders.
# --------------------------------------------------------------------------


def load_data(choice, n):
    """Return ``(x, y, description, mean, std)``; Fashion-MNIST when asked/available."""
    from fastseq.bench import synthetic

    reason = None
    if choice in ("auto", "fashion-mnist"):
        try:
            from fastseq.datasets import load_fashion_mnist

            (x, y), _ = load_fashion_mnist()
            sample = x[:: max(1, len(x) // 5000)].astype(np.float64)
            mean, std = (float(sample.mean()),), (float(sample.std()),)
            return x, y.astype(np.int64), f"Fashion-MNIST train split ({len(x):,} images {x.shape[1]}x{x.shape[2]}x1)", mean, std
        except (ImportError, FileNotFoundError, OSError, ValueError) as e:
            if choice == "fashion-mnist":
                raise
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    x, y = synthetic.cifar_like(n, seed=0)
    desc = f"synthetic CIFAR-shaped data (fastseq.bench.synthetic.cifar_like, {n:,} images 32x32x3, seed 0)"
    if reason:
        desc += f"; Fashion-MNIST not used ({reason})"
    return x, y, desc, synthetic.CIFAR_MEAN, synthetic.CIFAR_STD


def build_model(kind, input_shape, num_classes=10, *, input_dtype="float32", mean=None, std=None, seed=0):
    """A small compiled CNN or ResNet-style model (Adam, sparse categorical cross-entropy).

    With ``mean``/``std`` the first layer is :class:`fastseq.DeviceNormalize`:
    normalisation on the device, for uint8 input.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, dtype=input_dtype)
    h = inp
    if mean is not None:
        from fastseq.augment import Normalize
        from fastseq.layers import DeviceNormalize

        h = DeviceNormalize(Normalize(mean, std))(h)
    if kind == "cnn":
        for filters in (16, 32):
            h = layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
            h = layers.MaxPooling2D()(h)
        h = layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    elif kind == "resnet":
        h = layers.Conv2D(16, 3, padding="same", use_bias=False)(h)
        h = layers.Activation("relu")(layers.BatchNormalization()(h))
        # Every block downsamples: the CPU default must stay within seconds per step.
        for filters, stride in ((16, 2), (32, 2), (64, 2)):
            shortcut = h
            r = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(h)
            r = layers.Activation("relu")(layers.BatchNormalization()(r))
            r = layers.Conv2D(filters, 3, padding="same", use_bias=False)(r)
            r = layers.BatchNormalization()(r)
            if stride != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
            h = layers.Activation("relu")(layers.Add()([r, shortcut]))
    else:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {kind!r}.")
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(num_classes)(h)
    model = keras.Model(inp, out, name=f"fastseq_{kind}")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # XLA compilation takes longer than the whole profile on a CPU.
        jit_compile=False,
    )
    return model


def make_loader(name, x, y, *, batch_size, workers, dtype, mean, std):
    """Return ``(data, output dtype)`` for loader ``name`` on ``x, y``."""
    h, w = x.shape[1:3]
    padding = 4 if h >= 32 else 2
    if name == "fastseq":
        from fastseq.augment import Normalize, RandomCrop, RandomFlip
        from fastseq.sequence.array_sequence import ArraySequence

        normalize = None if dtype == "uint8" else Normalize(mean=mean, std=std)
        seq = ArraySequence(
            x,
            y,
            batch_size=batch_size,
            shuffle=True,
            seed=0,
            crop=RandomCrop(h, w, padding=padding),
            flip=RandomFlip("horizontal"),
            normalize=normalize,
            dtype=dtype,
            workers=workers,
            num_classes=None,
        )
        return seq, dtype
    from fastseq.bench import baselines

    xb = x[..., None] if x.ndim == 3 else x
    if name == "numpy":
        seq = baselines.NumpySequence(
            xb, y, batch_size=batch_size, shuffle=True, seed=0, crop=(h, w), padding=padding, flip=True,
            mean=mean, std=std, workers=workers,
        )
        return seq, "float32"
    if name == "tf.data":
        ds = baselines.tf_data_pipeline(
            xb, y, batch_size=batch_size, seed=0, crop=(h, w), padding=padding, flip=True, mean=mean, std=std
        )
        return ds, "float32"
    raise ValueError(f"loader must be one of {', '.join(LOADERS)}, got {name!r}.")


# --------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------


def run(args):
    """Run the profile command; print the tables; return the exit status."""
    from fastseq.profiling.measure import profile
    from fastseq.profiling.plot import import_matplotlib, plot_reports
    from fastseq.profiling.report import summary_table

    try:
        loaders = _loader_list(args.loader)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.batch_size < 1 or args.steps < 2 or args.warmup < 1 or args.workers < 1:
        print(
            f"error: need --batch-size >= 1, --steps >= 2, --warmup >= 1, --workers >= 1; got {args.batch_size}, "
            f"{args.steps}, {args.warmup}, {args.workers}.",
            file=sys.stderr,
        )
        return 2
    if args.plot:
        try:
            import_matplotlib()
        except ImportError as e:  # fail before minutes of measuring, not after
            print(f"error: {e}", file=sys.stderr)
            return 2

    n = args.samples or max(2048, args.batch_size * (args.warmup + args.steps + 4))
    try:
        x, y, desc, mean, std = load_data(args.data, n)
    except (ImportError, FileNotFoundError, OSError, ValueError) as e:
        print(f"error: --data {args.data}: {e}", file=sys.stderr)
        return 2
    import keras

    print(f"data: {desc}")
    print(
        f"model: {args.model}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
        f"workers {args.workers}, fastseq dtype {args.dtype}, keras {keras.__version__} ({keras.backend.backend()})"
    )
    reports, skipped = [], []
    for name in loaders:
        t0 = time.perf_counter()
        try:
            data, out_dtype = make_loader(
                name, x, y, batch_size=args.batch_size, workers=args.workers, dtype=args.dtype, mean=mean, std=std
            )
        except (ImportError, AttributeError) as e:
            skipped.append(f"{name}: skipped, loader unavailable ({type(e).__name__}: {e})")
            print(skipped[-1], flush=True)
            continue
        on_device = out_dtype == "uint8"
        shape = tuple(x.shape[1:3]) + ((x.shape[3],) if x.ndim == 4 else (1,))
        model = build_model(
            args.model, shape, int(y.max()) + 1, input_dtype=out_dtype,
            mean=mean if on_device else None, std=std if on_device else None,
        )
        report = profile(model, data, steps=args.steps, warmup=args.warmup, name=name)
        if on_device:
            report.notes.append("normalisation runs on the device (fastseq.DeviceNormalize, the model's first layer)")
        reports.append(report)
        print(f"\n{report.table()}\n  ({time.perf_counter() - t0:.1f} s)", flush=True)
    if not reports:
        print("error: no loader could run.", file=sys.stderr)
        return 1
    print("\nsummary (starved = share of fit's step time spent waiting for input)\n")
    print(summary_table(reports))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": desc, "model": args.model, "skipped": skipped, "reports": [r.to_dict() for r in reports]},
                      f, indent=2)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot_reports(reports, args.plot, title=f"fastseq profile: {args.model} on {desc.split(' (')[0]}, "
                     f"batch {args.batch_size}")
        print(f"wrote {args.plot}")
    return 0


def main(argv=None):
    """``python -m fastseq.profiling.cli ...`` without the dispatcher (also used by the tests)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fastseq profile", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv)) or 0


if __name__ == "__main__":
    sys.exit(main())
