"""``python -m fastseq convert SOURCE OUT_DIR``: any supported source -> ``.npy`` memmap cache.

SOURCE is CIFAR-10 (archive or batch folder), MNIST/Fashion-MNIST (``.npz`` or a
folder of IDX files), or a folder of images with one subfolder per class (as
for ``keras.utils.image_dataset_from_directory``). OUT_DIR receives one cache
folder per split (``train/``, ``test/``; an image folder gives one split,
``--split``, default ``train``), each readable with ``fastseq.datasets.open``.
An image folder without ``--size`` becomes a ragged image store instead (every
photo its own size, decoded as Keras decodes it; ``--max-side`` caps the long
side), readable with ``fastseq.datasets.open_store(OUT_DIR / "train")``.
The whole OUT_DIR is built under a temporary name beside it and renamed at the
end, so an interrupted convert leaves nothing behind.
"""

import argparse
import collections
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fastseq.datasets import cache
from fastseq.datasets.cifar import BATCHES, CIFAR10_CLASSES, _candidates, load_cifar10
from fastseq.datasets.mnist import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    find_idx_files,
    load_fashion_mnist,
    load_mnist,
    load_mnist_like,
)

# The extensions keras.utils.image_dataset_from_directory accepts.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
FORMATS = ("auto", "cifar10", "mnist", "fashion_mnist", "idx", "npz", "folder")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box")
_BLOCK = 32  # images per thread-pool task: amortizes the per-future overhead


def configure_parser(parser):
    """Add convert's arguments to ``parser`` (an ``argparse.ArgumentParser``)."""
    parser.add_argument("source", help="CIFAR-10 archive/folder, mnist.npz, a folder of IDX files, or an image folder")
    parser.add_argument("out_dir", help="folder to create; receives OUT_DIR/train/ (and OUT_DIR/test/)")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="source format (default: detected)")
    parser.add_argument(
        "--size", type=int, nargs="+", metavar="N",
        help="resize images to H W (or N N); image folders only (without it: a ragged store, each photo its own size)"
    )
    parser.add_argument("--grayscale", action="store_true", help="store (N, H, W, 1) grayscale; image folders only")
    parser.add_argument(
        "--max-side", type=int, default=None, metavar="N",
        help="without --size: shrink photos whose longer side exceeds N (default: keep the originals)",
    )
    parser.add_argument(
        "--no-exif-transpose", action="store_true",
        help="without --size: keep the raw pixels as Keras does instead of turning photos upright per EXIF",
    )
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default="bilinear", help="resize filter")
    parser.add_argument("--split", default="train", help="split name for an image folder (default: train)")
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: min(8, CPUs))")
    parser.add_argument(
        "--strict", action="store_true", help="an unreadable image is an error (exit 1) instead of being skipped"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it holds a previous convert")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    """Parse ``argv`` and run; for ``python -c`` and tests. Returns the exit status."""
    parser = configure_parser(argparse.ArgumentParser(prog="python -m fastseq convert", description=__doc__))
    return run(parser.parse_args(argv))


def run(args):
    """Run a parsed ``convert`` command line. Returns 0 on success, 1 on a reported error."""
    try:
        size = _parse_size(args.size)
        convert(
            args.source,
            args.out_dir,
            format=args.format,
            size=size,
            grayscale=args.grayscale,
            max_side=args.max_side,
            exif_transpose=not args.no_exif_transpose,
            interpolation=args.interpolation,
            split=args.split,
            workers=args.workers,
            strict=args.strict,
            overwrite=args.overwrite,
            quiet=args.quiet,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"fastseq convert: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastseq convert: interrupted; {args.out_dir} was not written", file=sys.stderr)
        return 130
    return 0


def _parse_size(size):
    if size is None:
        return None
    if len(size) not in (1, 2) or min(size) < 1:
        raise ValueError(f"--size takes H W or N (positive integers), got {' '.join(map(str, size))}")
    return (size[0], size[0]) if len(size) == 1 else tuple(size)


def detect_format(source):
    """Guess the format of ``source``: one of ``FORMATS`` other than "auto".

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: nothing recognisable in it.
    """
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix == ".npz":
            return "npz"
        import tarfile

        if tarfile.is_tarfile(p):
            return "cifar10"
        raise ValueError(f"{p}: not a CIFAR-10 archive or a .npz file; pass a folder for IDX files or images")
    if any((p / b).is_file() for b in BATCHES) or any(c.exists() for c in _candidates(p)):
        return "cifar10"
    if any(find_idx_files(p).values()):
        return "idx"
    if any((p / n).is_file() for n in ("mnist.npz", "fashion-mnist.npz")):
        return "npz"
    if any(c.is_dir() and not c.name.startswith(".") for c in p.iterdir()):
        return "folder"
    raise ValueError(
        f"{p}: cannot tell the format: no CIFAR-10 batches or archive, no IDX files, no mnist.npz "
        "and no class subfolders of images"
    )


def _class_names_for(path, y_train):
    if "fashion" in str(path).lower():
        return FASHION_MNIST_CLASSES
    top = int(y_train.max()) if y_train.size else 0
    return MNIST_CLASSES if top < 10 else tuple(str(i) for i in range(top + 1))


def _load_arrays(source, fmt):
    p = Path(source)
    if fmt == "cifar10":
        return load_cifar10(p), CIFAR10_CLASSES, "cifar10"
    if fmt == "mnist":
        return load_mnist(p), MNIST_CLASSES, "mnist"
    if fmt == "fashion_mnist":
        return load_fashion_mnist(p), FASHION_MNIST_CLASSES, "fashion_mnist"
    if fmt == "npz" and p.is_dir():
        p = next((p / n for n in ("mnist.npz", "fashion-mnist.npz") if (p / n).is_file()), p / "mnist.npz")
    splits = load_mnist_like([(fmt, p)], f"{fmt} data", "Pass a .npz file or a folder with the four IDX files.")
    return splits, _class_names_for(p, splits[0][1]), p.stem if fmt == "npz" else p.name


def _progress(quiet):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
        transient=True,
    )


def convert(
    source,
    out_dir,
    *,
    format="auto",
    size=None,
    grayscale=False,
    max_side=None,
    exif_transpose=True,
    interpolation="bilinear",
    split="train",
    workers=None,
    strict=False,
    overwrite=False,
    quiet=False,
):
    """Convert ``source`` into cache folders under ``out_dir``; prints a one-line summary.

    Args:
        source: see the module docstring.
        out_dir: created (atomically); must not exist unless ``overwrite``.
        format: one of ``FORMATS``; "auto" detects it.
        size: ``(height, width)`` to resize every image to (image folders only);
            required when an image folder's images differ in size.
        grayscale: decode to one channel, ``(N, H, W, 1)`` (image folders only;
            otherwise RGB ``(N, H, W, 3)``).
        max_side: without ``size``: shrink photos whose longer side exceeds it.
        exif_transpose: without ``size``: turn photos upright per EXIF (Keras
            does not; False keeps its raw pixels).
        interpolation: the Pillow filter for ``size``.
        split: the split name an image folder is written under.
        workers: decode threads; None means ``min(8, os.cpu_count())``.
        strict: an unreadable image is an error instead of being skipped.
        overwrite: replace ``out_dir`` if it holds a previous convert.
        quiet: no progress bar (it is also off when stderr is not a terminal).

    Returns:
        A dict: ``out_dir``, ``format``, ``splits`` (name -> shape of x; for a
        ragged store ``(N,)``),
        ``class_names`` and ``skipped`` (list of ``(file, reason)``).

    Raises:
        FileNotFoundError, FileExistsError, ValueError: with a message naming
        the file and the problem; nothing is written then.
    """
    fmt = detect_format(source) if format == "auto" else format
    if fmt != "folder" and (size is not None or grayscale or max_side is not None):
        raise ValueError(f"--size, --grayscale and --max-side apply to image folders only; {source} is {fmt}")
    if size is not None and max_side is not None:
        raise ValueError(f"--max-side {max_side} applies to the ragged store, written without --size; with "
                         f"--size {size[0]} {size[1]} every image is resized to that size anyway")
    out_dir = Path(out_dir)
    skipped = []
    with cache.AtomicDir(out_dir, overwrite=overwrite) as out:
        if fmt == "folder" and size is None:
            x_shape, class_names, skipped = _convert_folder_ragged(
                Path(source), out.tmp / split, grayscale, max_side, exif_transpose, workers, strict, quiet
            )
            shapes = {split: x_shape}
            name = Path(source).name
        elif fmt == "folder":
            x_shape, class_names, skipped = _convert_folder(
                Path(source), out.tmp / split, size, grayscale, interpolation, workers, strict, quiet
            )
            shapes = {split: x_shape}
            name = Path(source).name
        else:
            with _progress(quiet) as progress:
                task = progress.add_task(f"reading {source}", total=None)
                splits, class_names, name = _load_arrays(source, fmt)
                shapes = {}
                progress.update(task, description=f"writing {out_dir}", total=len(splits), completed=0)
                for part, (x, y) in zip(("train", "test"), splits):
                    d = out.tmp / part
                    d.mkdir()
                    np.save(d / "x.npy", x)
                    np.save(d / "y.npy", np.ascontiguousarray(y.ravel()))
                    cache.write_manifest(d, class_names=class_names, name=name, source=Path(source).resolve())
                    shapes[part] = x.shape
                    progress.advance(task)
        out.commit()
    parts = " + ".join(f"{k} {v[0]}" for k, v in shapes.items())
    shape = "x".join(map(str, next(iter(shapes.values()))[1:]))
    what = f"images of {shape} uint8" if shape else "uint8 images of their own sizes (a ragged image store)"
    note = f", skipped {len(skipped)} unreadable" if skipped else ""
    print(f"converted {fmt} {source}: {parts} {what}, {len(class_names)} classes{note} -> {out_dir}")
    return {"out_dir": out_dir, "format": fmt, "splits": shapes, "class_names": class_names, "skipped": skipped}


def list_image_folder(root):
    """Files and labels of an image folder, in ``image_dataset_from_directory``'s layout.

    Class names are the sorted names of ``root``'s subfolders (hidden ones, whose
    names start with ".", are ignored); each class folder is walked recursively,
    files sorted; only ``IMAGE_EXTENSIONS`` (any case) are taken.

    Returns:
        ``(files, labels, class_names)``: list of Path, int64 array, tuple of str.

    Raises:
        ValueError: no class subfolders, or no image files in them.
    """
    root = Path(root)
    classes = sorted(c.name for c in root.iterdir() if c.is_dir() and not c.name.startswith("."))
    if not classes:
        raise ValueError(f"{root}: no class subfolders; expected {root}/<class name>/<image files>")
    files, labels = [], []
    for label, cls in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / cls):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(Path(dirpath) / fn)
                    labels.append(label)
    if not files:
        raise ValueError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(classes)}")
    return files, np.asarray(labels, np.int64), tuple(classes)


class _SizeMismatch(ValueError):
    pass


def _convert_folder_ragged(root, dest, grayscale, max_side, exif_transpose, workers, strict, quiet):
    import warnings

    from fastseq.photos import store

    files, labels, class_names = list_image_folder(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", store.SkippedImageWarning)  # reported below, as the --size path does
        s = store.write_store(
            dest, root, files, color_mode="grayscale" if grayscale else "rgb", exif_transpose=exif_transpose,
            max_side=max_side, labels=labels, class_names=class_names, workers=workers, verbose=not quiet,
        )
    errors = [(f, s.reasons[f]) for f in s.skipped]
    for f, reason in errors:
        print(f"fastseq convert: skipped unreadable image {f} ({reason})", file=sys.stderr)
    if errors and strict:
        f, reason = errors[0]
        raise ValueError(f"unreadable image {f} ({reason}); {len(errors)} unreadable in all (--strict)")
    return (len(s.files),), class_names, [(Path(f), reason) for f, reason in errors]


def _decode_block(files, start, stop, out, mode, hw, resample, resize):
    from PIL import Image

    errors = []
    height, width = hw
    for i in range(start, stop):
        try:
            with Image.open(files[i]) as im:
                if im.size != (width, height) and not resize:
                    w, h = im.size
                    raise _SizeMismatch(
                        f"images differ in size: {files[i]} is {h}x{w} (HxW) but the first image is "
                        f"{height}x{width}; pass --size H W (or --size N) to resize them all"
                    )
                im = im.convert(mode)  # decodes; drops alpha, expands palettes
                if im.size != (width, height):
                    im = im.resize((width, height), resample)
                out[i] = np.asarray(im).reshape(out.shape[1:])
        except _SizeMismatch:
            raise
        except Exception as e:  # any decoder failure means "unreadable image"
            errors.append((i, f"{type(e).__name__}: {e}"))
    return errors


def _first_size(files):
    from PIL import Image

    for f in files:
        try:
            with Image.open(f) as im:
                return im.size[1], im.size[0]
        except Exception:
            continue
    return None


def _convert_folder(root, dest, size, grayscale, interpolation, workers, strict, quiet):
    from PIL import Image

    files, labels, class_names = list_image_folder(root)
    hw = size if size is not None else _first_size(files)
    if hw is None:
        raise ValueError(f"{root}: none of the {len(files)} image files could be read")
    channels = 1 if grayscale else 3
    mode = "L" if grayscale else "RGB"
    resample = Image.Resampling[interpolation.upper()]
    workers = workers or min(8, os.cpu_count() or 1)
    dest.mkdir()
    n = len(files)
    x = np.lib.format.open_memmap(dest / "x.npy", mode="w+", dtype=np.uint8, shape=(n, *hw, channels))
    errors = []
    blocks = [(s, min(s + _BLOCK, n)) for s in range(0, n, _BLOCK)]
    args = (x, mode, hw, resample, size is not None)
    with _progress(quiet) as progress:
        task = progress.add_task(f"decoding {root}", total=n)
        if workers == 1:
            for s, e in blocks:
                errors += _decode_block(files, s, e, *args)
                progress.advance(task, e - s)
        else:
            with ThreadPoolExecutor(workers) as pool:
                pending = collections.deque()
                try:
                    # A bounded window of blocks in flight: memory stays flat for any folder size.
                    for s, e in blocks:
                        pending.append((e - s, pool.submit(_decode_block, files, s, e, *args)))
                        while len(pending) >= 4 * workers:
                            count, fut = pending.popleft()
                            errors += fut.result()
                            progress.advance(task, count)
                    for count, fut in pending:
                        errors += fut.result()
                        progress.advance(task, count)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    for i, reason in errors:
        print(f"fastseq convert: skipped unreadable image {files[i]} ({reason})", file=sys.stderr)
    if errors and strict:
        i, reason = errors[0]
        raise ValueError(f"unreadable image {files[i]} ({reason}); {len(errors)} unreadable in all (--strict)")
    if len(errors) == n:
        raise ValueError(f"{root}: none of the {n} image files could be read")
    keep = np.ones(n, bool)
    keep[[i for i, _ in errors]] = False
    if errors:
        # Rare path: copy the good rows to a shorter file.
        idx = np.flatnonzero(keep)
        shape = (len(idx), *x.shape[1:])
        compact = np.lib.format.open_memmap(dest / "x.tmp.npy", mode="w+", dtype=np.uint8, shape=shape)
        for s in range(0, len(idx), 4096):
            compact[s : s + 4096] = x[idx[s : s + 4096]]
        compact.flush()
        del compact
        os.replace(dest / "x.tmp.npy", dest / "x.npy")
    x_shape = (int(keep.sum()), *x.shape[1:])
    x.flush()
    del x
    y = labels[keep].astype(np.uint8 if len(class_names) <= 256 else np.int32)
    np.save(dest / "y.npy", y)
    cache.write_manifest(dest, class_names=class_names, name=root.name, source=root.resolve())
    return x_shape, class_names, [(files[i], reason) for i, reason in errors]
