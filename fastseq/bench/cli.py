"""``python -m fastseq bench``: fastseq against its baselines and the memory ceiling, then the ``fit`` feed rows.

The kernel rows and their job are :mod:`fastseq.bench.kernel_rows`; the
``model.fit`` feed rows are :mod:`fastseq.bench.feed`.
"""

from __future__ import annotations

import os
import statistics

import numpy as np

from fastseq.bench import augment_rows, compile_rows, synthetic, verdicts
from fastseq.bench.kernel_rows import AUGMENTATION_ROWS, ROWS, Row, all_threads, cifar_job, mnist_job
from fastseq.bench.kernel_rows import BUILDERS as KERNEL_BUILDERS

from fastseq.bench.timing import measure

BUILDERS = {**KERNEL_BUILDERS, **augment_rows.BUILDERS}

DATA_CHOICES = ("synthetic", "fashion-mnist", "auto")
#: ``--quick``'s kernel and fit rows (unless ``--rows`` names others): what a user compares, in about 20 s.
QUICK_ROWS = ("ceiling", "gather", "fastseq", "fastseq-1t", "numpy", "tf.data", "keras")
QUICK_FIT_ROWS = ("noop", "convert", "fastseq")
#: Photos in the generated folder of the default photo rows (``--quick``: fewer; ``--photos``: more).
PHOTOS, QUICK_PHOTOS, MORE_PHOTOS = 200, 100, 2000


def configure_parser(parser):
    """Add ``bench``'s options to an ``argparse`` (sub)parser."""
    parser.add_argument("--batch-size", type=int, default=512, help="images per batch (default 512)")
    parser.add_argument(
        "--rows",
        default=None,
        help=f"comma-separated rows to run, from {', '.join(ROWS)} (default: all; --quick: {', '.join(QUICK_ROWS)})",
    )
    parser.add_argument(
        "--data",
        choices=DATA_CHOICES,
        default="auto",
        help="auto (default): the real Fashion-MNIST training set (28x28 grayscale, pad 2) when installed, "
        "else synthetic; synthetic: seeded CIFAR-shaped 50000x32x32x3; fashion-mnist: require the real data",
    )
    parser.add_argument("--no-e2e", dest="e2e", action="store_false",
                        help="skip the end-to-end model.fit feed rows (no-op PyDataset, the ceiling's conversion per "
                        "step, ArraySequence in RAM and memory-mapped, NumPy Sequence, tf.data)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                        help="output dtype (baseline rows need float32)")
    parser.add_argument("--data-format", default="channels_last", choices=("channels_last", "channels_first"),
                        help="output layout (baseline rows need channels_last)")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per row (default 30, --quick 5)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, rows and photos and a smaller data set: about 20 s in all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the batch and the augmentation")
    parser.add_argument("--augmentations", action="store_true",
                        help="also the rows with Cutout(16), RandomErasing, MixUp(0.2) and CutMix(1.0) inside the "
                        "fused pass, each against the plain fastseq row")
    parser.add_argument("--augment", action="store_true",
                        help="also the rows of augment=[...]: RandomRotation + RandomZoom + RandomTranslation and "
                        "RandomColorJitter, each against the plain fastseq row and albumentations (Affine, ColorJitter; "
                        "one process per core), and albumentations on the plain job")
    parser.add_argument("--photos", nargs="?", const="", default=None, metavar="DIR",
                        help="the photo-folder rows (Keras' image_dataset_from_directory against fastseq's: first "
                        f"call, second image_size, epoch; run by default on a generated folder of {PHOTOS} JPEGs, "
                        f"{QUICK_PHOTOS} with --quick) on DIR instead, or on a generated folder of {MORE_PHOTOS:,} "
                        "JPEGs when DIR is left out")
    parser.add_argument("--no-photos", dest="photo_rows", action="store_false", help="skip the photo-folder rows")
    parser.add_argument("--markdown", metavar="PATH", default=None,
                        help="also write the tables as a Markdown page to PATH, headed by the date, the command and "
                        "the machine (CPU model, cores, load, versions): the docs' numbers page is made this way")
    compile_rows.configure_parser(parser)  # --compile, --variants, --jobs
    return parser


class _Tee:
    """A text stream that writes to ``out`` and keeps a copy."""

    def __init__(self, out):
        self.out, self.parts = out, []

    def write(self, text):
        self.parts.append(text)
        return self.out.write(text)

    def flush(self):
        self.out.flush()

    def getvalue(self):
        return "".join(self.parts)


def machine_lines():
    """Describe this machine for a results page: CPU model, cores, load, OS and package versions."""
    import datetime
    import importlib.metadata
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        load = "unknown"
    versions = []
    for dist in ("fastseq", "numpy", "numba", "keras", "tensorflow", "jax", "grain"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- date: {now}",
        f"- CPU: {cpu}; {os.cpu_count()} logical cores; load average (1, 5, 15 min) at the start: {load}",
        f"- OS: {platform.platform()}; Python {platform.python_version()}",
        f"- versions: {', '.join(versions)}",
    ]


def write_markdown(path, text, argv, machine):
    """Write ``bench``'s printed ``text`` as a Markdown page with the ``machine`` lines and the command."""
    command = " ".join(["python -m fastseq bench", *argv])
    page = [
        "# Measured numbers",
        "",
        f"Written by `{command}`. Rerun it to measure your own machine; "
        "[Benchmarks](guides/benchmarks.md) explains every row and target.",
        "",
        *machine,
        "",
        "```text",
        text.rstrip("\n"),
        "```",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(page))


def load_data(choice, *, quick=False, seed=0):
    """Return ``(x, y, description, kind)`` for ``--data``; kind is ``"cifar"`` or ``"mnist"``."""
    if choice in ("fashion-mnist", "auto"):
        try:
            from fastseq.datasets.mnist import load_fashion_mnist

            (x, y), _ = load_fashion_mnist()
            return x, y, f"Fashion-MNIST training set {x.shape}", "mnist"
        except (ImportError, FileNotFoundError) as e:
            if choice == "fashion-mnist":
                raise SystemExit(f"bench: --data fashion-mnist: {e}") from None
    n = 10_000 if quick else 50_000
    x, y = synthetic.cifar_like(n, seed=seed)
    return x, y, f"synthetic CIFAR-shaped {x.shape} (seed {seed})", "cifar"


def _render(job, data_desc, rows, results, out):
    """Print the kernel table and its verdicts on the job's shape; return the verdicts."""
    ips = {name: r["ips"] for name, r in results.items() if "ips" in r}
    f_ips, c_ips = ips.get("fastseq"), ips.get("ceiling")
    shape = _shape(job)
    header = (
        f"fastseq bench: {job.name}, {data_desc}; batch {job.batch_size}, pad {job.padding} + crop "
        f"{job.crop[0]}x{job.crop[1]} + flip + normalise -> {job.dtype} {job.data_format} {job.out_shape} "
        f"({job.out_bytes / 1e6:.1f} MB); {os.cpu_count()} CPUs, {all_threads()} Numba threads; fastseq's launches "
        f"take one thread per {_work_per_thread()} of output"
    )
    cols = ["row", "threads", "batch x shape", "ms/batch", "images/s", "GB/s", "fastseq speedup", "time / ceiling",
            "median/min"]
    table, skipped = [], []
    for row in rows:
        r = results[row.name]
        if "error" in r:
            skipped.append(f"skipped {row.name}: {r['error']}")
            continue
        ms = 1e3 * job.batch_size / r["ips"]
        table.append(
            [
                row.label,
                str(row.threads),
                "x".join(str(d) for d in (job.batch_size, *row.shape[1:])),
                f"{ms:.2f}",
                f"{r['ips']:,.0f}",
                f"{r['gbps']:.2f}",
                f"{f_ips / r['ips']:.1f}x" if f_ips else "",
                f"{c_ips / r['ips']:.2f}x" if c_ips else "",
                f"{r['spread']:.2f}x",
            ]
        )
    lines = [header, ""]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))
    lines.append("  ".join("-" * w for w in widths))
    for t in table:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(t, widths))))
    lines.extend(skipped)
    lines.append("")
    lines.append(
        "fastseq speedup = fastseq images/s / row images/s; time / ceiling = row time per image / the "
        "memory-source ceiling's (the cache-resident ceiling row is shown for comparison only)."
    )
    lines.append(
        "ms/batch and the rates use the minimum over repeats (least disturbed by other work on the machine); "
        f"median/min is the spread: above {verdicts.NOISY_SPREAD:g}x the machine was busy and a verdict says "
        "'noisy: rerun'."
    )
    if "ips" in results.get("keras", {}):
        lines.append(f"* Keras 3: {results['keras'].get('note', '')} (one crop window per batch, not per image).")
    found = verdicts.kernel_verdicts(shape, kernel_timings(rows, results), batch_mb=job.out_bytes / 1e6)
    if found:
        lines.append("")
        what = f"{'x'.join(map(str, job.x.shape[1:]))} {job.dtype} {job.data_format}"
        where = verdicts.SHAPES.get(shape, f"no targets for {what}: ratios only")
        lines.append(f"targets ({where}; docs/guides/benchmarks.md):")
        lines += verdicts.verdict_lines(found)
    print("\n".join(lines), file=out)
    return found


def _shape(job):
    """The job's ``verdicts.TARGETS`` key: its image shape's, for float32 channels_last output (the targets were
    measured there), else None (ratios without verdicts)."""
    return verdicts.shape_key(job.x.shape[1:]) if job.float32_nhwc else None


def _work_per_thread():
    from fastseq.kernels.config import WORK_PER_THREAD

    return f"{WORK_PER_THREAD // 2**20} MiB" if WORK_PER_THREAD % 2**20 == 0 else f"{WORK_PER_THREAD:,} bytes"


def kernel_timings(rows, results):
    """``{row name: verdicts.Timing}`` of the kernel rows that ran."""
    return {row.name: verdicts.Timing(results[row.name]["ips"], results[row.name]["spread"], row.threads)
            for row in rows if "ips" in results.get(row.name, {})}


def _load():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _closing(found, summary, out, load=None):
    """Print the verdict tally, a warning when other work kept the machine busy, and the three-line summary."""
    lines = ["", f"verdicts: {verdicts.tally(found) or 'none on this shape'}"]
    busy = verdicts.busy_note(load, os.cpu_count())
    if busy:
        lines.append(busy)
    lines += ["", "summary:"]
    lines += [f"  {line}" for line in summary]
    print("\n".join(lines), file=out)


def run(args, out=None):
    """Run ``bench`` with parsed ``args``: the kernel rows, the fit rows, the photo rows, then the verdicts and the
    summary; return the exit status."""
    import sys

    if getattr(args, "compile", False):
        return compile_rows.run(args, out)  # the cold-compile table instead of the throughput rows
    out = out or sys.stdout
    markdown = getattr(args, "markdown", None)
    if markdown:
        machine = machine_lines()  # the load before the run, not the bench's own
        out = _Tee(out)
    rows_arg = getattr(args, "rows", None)
    names = [r.strip() for r in (rows_arg or ",".join(QUICK_ROWS if args.quick else ROWS)).split(",") if r.strip()]
    if getattr(args, "augmentations", False):
        names += [n for n in AUGMENTATION_ROWS if n not in names]
    if getattr(args, "augment", False):
        names += [n for n in augment_rows.CLI_ROWS if n not in names]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        print(f"bench: unknown row(s) {unknown}; choose from {', '.join(BUILDERS)}.", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"bench: --batch-size must be >= 1, got {args.batch_size}.", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    x, y, desc, kind = load_data(args.data, quick=args.quick, seed=args.seed)
    if args.batch_size > len(x):
        print(f"bench: --batch-size {args.batch_size} is more than the {len(x)} images of {desc}.", file=sys.stderr)
        return 2
    if kind == "mnist":
        job = mnist_job(x, y, batch_size=args.batch_size, seed=args.seed, name=f"fashion-mnist-b{args.batch_size}")
        job.dtype, job.data_format = args.dtype, args.data_format
    else:
        job = cifar_job(x, y, batch_size=args.batch_size, seed=args.seed, dtype=args.dtype, data_format=args.data_format)
    shape = _shape(job)
    found, summary = [], {}
    start_load = _load()

    # The kernel rows: one batch job, every loader.
    rows, results = _kernel_rows(args, job, names)
    found += _render(job, desc, rows, results, out)
    summary["kernel"] = kernel_timings(rows, results)
    what = "synthetic CIFAR-shaped arrays" if kind == "cifar" else "Fashion-MNIST arrays"
    summary["what"] = f"{what} {'x'.join(map(str, job.out_shape[1:]))}, batch {job.batch_size}" + (
        "" if job.float32_nhwc else f", {job.dtype} {job.data_format}")

    # The fit rows: model.fit fed by each loader.
    if args.e2e:
        from fastseq.bench import feed as bench_feed

        feed = bench_feed.feed_table(
            job.x, job.y, batch_size=job.batch_size, mean=job.mean, std=job.std, padding=job.padding,
            steps=6 if args.quick else 20, seed=args.seed, rows=QUICK_FIT_ROWS if args.quick else None,
        )
        from fastseq.bench.kernel_rows import rule_threads

        pixels = job.batch_size * int(np.prod(job.out_shape[1:]))
        threads = {"fastseq": rule_threads(pixels * 4), "fastseq-memmap": rule_threads(pixels * 4),
                   "fastseq-uint8": rule_threads(pixels)}
        found += bench_feed.render(feed, out, shape=shape, threads=threads, image_shape=job.out_shape[1:])
        summary["fit"] = bench_feed.timings(feed)

    # The photo-folder rows: Keras' image_dataset_from_directory against fastseq's.
    photos = getattr(args, "photos", None)
    if photos is not None or getattr(args, "photo_rows", True):
        from fastseq.bench import photo_rows

        n_images = MORE_PHOTOS if photos == "" else QUICK_PHOTOS if args.quick else PHOTOS
        what, files, timed = photo_rows.photo_timings(photos or None, n_images=n_images, seed=args.seed,
                                                      repeat=2 if args.quick else 3, first_repeat=2)
        found += photo_rows.render(what, timed, out, files=files)
        summary["photos"] = photo_rows.timings(timed)

    _closing(found, verdicts.summary_lines(**summary), out, load=start_load)
    if markdown:
        if sys.argv[1:2] == ["bench"]:
            argv = sys.argv[2:]
        else:  # called as a function: name the parsed options instead
            argv = [f"--{k.replace('_', '-')}={v}" for k, v in sorted(vars(args).items()) if not k.startswith("_")]
        write_markdown(markdown, out.getvalue(), argv, machine)
    return 0


def _kernel_rows(args, job, names):
    """Build and time each kernel row; return ``(rows, {name: result})`` (a row that cannot run: ``{"error"}``)."""
    repeat = args.repeat or (5 if args.quick else 30)
    max_seconds = 0.5 if args.quick else 3.0
    rows, results = [], {}
    for name in names:
        try:
            row = BUILDERS[name](job)
        except ValueError as e:
            # A baseline that cannot do this dtype/layout is skipped, not failed.
            rows.append(Row(name, name, None, 0, 0, 0, (), ""))
            results[name] = {"error": str(e)}
            continue
        if name in ("tf.data", "grain"):
            row_repeat = max(3, repeat // 4)
        elif name == "numpy" or name.startswith("albumentations"):
            row_repeat = max(3, repeat // 3)
        else:
            row_repeat = repeat
        try:
            times = measure(
                row.fn,
                repeat=row_repeat,
                warmup=1 if args.quick else 2,
                min_seconds=0.2 if args.quick else 1.0,
                max_seconds=max_seconds,
            )
        finally:
            if hasattr(row, "close"):  # a row with worker processes stops them before the next row is timed
                row.close()
        t = min(times)
        rows.append(row)
        results[name] = {
            "ips": row.images / t,
            "gbps": row.out_bytes / t / 1e9,
            "median_s": statistics.median(times),
            "min_s": t,
            "spread": verdicts.spread(times),
            "note": row.note,
        }
    return rows, results


def main(argv=None):
    """Run ``bench`` alone (``python -m fastseq.bench.cli``), without the other sub-commands."""
    import argparse

    parser = configure_parser(argparse.ArgumentParser(prog="python -m fastseq bench", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
