"""The ``.npy`` memmap cache: ``x.npy``, ``y.npy`` and ``manifest.json`` in one folder.

A cache folder is written atomically: everything goes into a hidden temporary
folder beside the target, which is renamed into place only once complete, so a
crash or Ctrl-C never leaves a half-written cache under the target name.
Splits are separate cache folders: ``python -m fastseq convert`` writes
``OUT_DIR/train/`` and ``OUT_DIR/test/``; open each with ``open(OUT_DIR / "train")``.
"""

import builtins
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "fastseq.cache"
VERSION = 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 22


def sha256_file(path):
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with builtins.open(path, "rb") as f:
        while b := f.read(_CHUNK):
            h.update(b)
    return h.hexdigest()


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_cache_dir(path):
    """True for a cache folder, or a folder of split cache folders (what convert writes)."""
    p = Path(path)
    if (p / MANIFEST).is_file():
        return True
    subdirs = [c for c in p.iterdir() if not c.name.startswith(".")] if p.is_dir() else []
    return bool(subdirs) and all((c / MANIFEST).is_file() for c in subdirs)


class AtomicDir:
    """Build a folder under a temporary name beside ``target``; ``commit()`` renames it into place.

    Used as a context manager, an exception before ``commit()`` removes the
    temporary folder and leaves ``target`` untouched.

    Args:
        target: the folder to create.
        overwrite: replace an existing ``target`` if it is a fastseq cache (or
            a folder of split caches). Any other non-empty folder is never
            deleted.

    Raises:
        FileExistsError: ``target`` exists, is not empty, and ``overwrite`` is
            False or it is not a fastseq cache.
    """

    def __init__(self, target, *, overwrite=False):
        self.target = Path(target).expanduser()
        self.overwrite = overwrite
        self._check()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))

    def _check(self):
        t = self.target
        if not t.exists():
            return
        if not t.is_dir():
            raise FileExistsError(f"{t} exists and is not a folder; choose another output path")
        if not any(t.iterdir()):
            return
        if not self.overwrite:
            raise FileExistsError(f"{t} already exists; pass overwrite=True (--overwrite) to replace it")
        if not is_cache_dir(t):
            raise FileExistsError(
                f"refusing to replace {t}: it is not a fastseq cache (no {MANIFEST}); remove it yourself "
                "or choose another output path"
            )

    def commit(self):
        """Rename the temporary folder to ``target`` (replacing an old cache if allowed)."""
        t = self.target
        if t.exists() and any(t.iterdir()):
            self._check()
            old = Path(tempfile.mkdtemp(prefix=f".{t.name}.old-", dir=t.parent))
            os.rename(t, old / "x")
            os.rename(self.tmp, t)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if t.exists():
                t.rmdir()
            os.rename(self.tmp, t)
        _fsync(t.parent)
        return t

    def abort(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or self.tmp.exists():
            self.abort()
        return False


def write_manifest(folder, *, class_names=None, name=None, source=None):
    """Hash ``x.npy`` (and ``y.npy`` if present) in ``folder`` and write ``manifest.json``.

    Args:
        folder: a folder already holding ``x.npy`` and optionally ``y.npy``.
        class_names: sequence of str or None.
        name: a free-form dataset name, or None.
        source: where the data came from (recorded, not used), or None.

    Returns:
        The manifest dict written.
    """
    folder = Path(folder)
    arrays = {}
    count = None
    for key in ("x", "y"):
        f = folder / f"{key}.npy"
        if not f.exists():
            continue
        a = np.load(f, mmap_mode="r")
        count = len(a) if count is None else count
        _fsync(f)
        arrays[key] = {
            "file": f.name,
            "shape": list(a.shape),
            "dtype": a.dtype.str,
            "bytes": f.stat().st_size,
            "sha256": sha256_file(f),
        }
        if key == "y":
            y = np.asarray(a)
            del a
    class_counts = None
    if "y" in arrays and np.issubdtype(y.dtype, np.integer) and y.size and y.min() >= 0 and y.ndim <= 2:
        n = len(class_names) if class_names is not None else 0
        class_counts = np.bincount(y.ravel().astype(np.int64), minlength=n).tolist()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "count": count,
        "class_names": list(class_names) if class_names is not None else None,
        "class_counts": class_counts,
        "arrays": arrays,
        "source": None if source is None else str(source),
    }
    with builtins.open(folder / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return manifest


def _check_arrays(x, y, class_names):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise TypeError(f"x must be uint8 images, got dtype {x.dtype}; convert with x.astype(np.uint8) if in 0..255")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, ...) with at least 2 dimensions, got {x.shape}")
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y must be numeric labels, got dtype {y.dtype}")
        if y.ndim == 0 or len(y) != len(x):
            raise ValueError(f"y must have one label per image: x has {len(x)} images, y has shape {y.shape}")
        if class_names is not None and y.dtype.kind in "biu" and y.size:
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= len(class_names):
                raise ValueError(
                    f"labels span {lo}..{hi} but class_names has {len(class_names)} names (0..{len(class_names) - 1})"
                )
    if class_names is not None and not all(isinstance(c, str) for c in class_names):
        raise TypeError("class_names must be a sequence of str")
    return y


def save(dir, x, y=None, *, class_names=None, name=None, overwrite=False):
    """Write images (and labels) as a memmap-able cache folder, atomically.

    Writes ``dir/x.npy``, ``dir/y.npy`` (when ``y`` is given) and
    ``dir/manifest.json`` (format version, shapes, dtypes, byte sizes, sha256 of
    each ``.npy``, count, class names and per-class counts). For splits, save
    each one to its own folder, e.g. ``save(root / "train", ...)`` and
    ``save(root / "test", ...)``.

    Args:
        dir (str | os.PathLike): the cache folder to create.
        x (np.ndarray): uint8 array ``(N, ...)``, e.g. ``(N, H, W, C)``.
        y (np.ndarray | None): labels with ``len(y) == N`` (any numeric dtype and shape ``(N, ...)``),
            or None.
        class_names (Sequence[str] | None): names for labels ``0..len(class_names)-1``, or None.
        name (str | None): a dataset name recorded in the manifest, or None.
        overwrite (bool): replace ``dir`` if it already holds a fastseq cache.

    Returns:
        pathlib.Path: the written folder.

    Raises:
        TypeError: ``x`` not uint8, ``y`` not numeric.
        ValueError: label count or range does not match ``x``/``class_names``.
        FileExistsError: ``dir`` exists (see ``overwrite``).
    """
    y = _check_arrays(x, y, class_names)
    with AtomicDir(dir, overwrite=overwrite) as out:
        np.save(out.tmp / "x.npy", np.ascontiguousarray(x))
        if y is not None:
            np.save(out.tmp / "y.npy", np.ascontiguousarray(y))
        write_manifest(out.tmp, class_names=class_names, name=name)
        return out.commit()


@dataclasses.dataclass(frozen=True)
class CachedDataset:
    """An opened cache folder. ``x, y = fastseq.datasets.open(d)`` unpacks it.

    Attributes:
        path: the folder.
        x: read-only ``np.memmap`` of the images.
        y: read-only ``np.memmap`` of the labels, or None.
        class_names: tuple of str, or None.
        manifest: the parsed ``manifest.json``.
    """

    path: Path
    x: np.ndarray
    y: np.ndarray | None
    class_names: tuple | None
    manifest: dict

    @property
    def name(self):
        return self.manifest.get("name")

    def __len__(self):
        return len(self.x)

    def __iter__(self):
        return iter((self.x, self.y))

    def __repr__(self):
        y = None if self.y is None else f"{self.y.dtype}{tuple(self.y.shape)}"
        return f"CachedDataset({str(self.path)!r}, x={self.x.dtype}{tuple(self.x.shape)}, y={y})"


def open(dir, *, verify=False):
    """Memory-map a cache folder written by ``save`` or ``python -m fastseq convert``.

    Shapes, dtypes and file sizes are always checked against the manifest
    (cheap); sha256 checksums only with ``verify=True``, since that reads every
    byte.

    Args:
        dir (str | os.PathLike): a cache folder (for convert's output, one split: ``OUT_DIR/train``).
        verify (bool): also check the sha256 of every file.

    Returns:
        CachedDataset: ``.x`` and ``.y`` are read-only memmaps.

    Raises:
        FileNotFoundError: no such folder, no manifest, or a missing ``.npy``.
        ValueError: corrupt manifest, unknown format version, or a file that
            does not match the manifest (shape, dtype, size, checksum).
    """
    d = Path(dir).expanduser()
    mpath = d / MANIFEST
    if not mpath.is_file():
        splits = sorted(c.name for c in d.iterdir() if (c / MANIFEST).is_file()) if d.is_dir() else []
        if splits:
            raise FileNotFoundError(
                f"{d} holds the splits {', '.join(splits)}, not one cache; open one of them, "
                f"e.g. fastseq.datasets.open({str(d / splits[0])!r})"
            )
        what = "no such folder" if not d.exists() else f"no {MANIFEST}"
        raise FileNotFoundError(
            f"{d} is not a fastseq cache ({what}); create one with fastseq.datasets.save(...) "
            "or `python -m fastseq convert SOURCE OUT_DIR`"
        )
    try:
        with builtins.open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{mpath}: corrupt manifest ({e}); recreate the cache") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{mpath}: not a fastseq cache manifest (format should be {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise ValueError(
            f"{mpath}: cache format version {manifest.get('version')!r}, this fastseq reads version {VERSION}; "
            "recreate the cache"
        )
    arrays = manifest.get("arrays")
    if not isinstance(arrays, dict) or "x" not in arrays:
        raise ValueError(f"{mpath}: corrupt manifest: no 'arrays' entry for x")
    loaded = {}
    for key, info in arrays.items():
        try:
            f = d / info["file"]
            shape, dtype, size = tuple(info["shape"]), np.dtype(info["dtype"]), info["bytes"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{mpath}: corrupt manifest entry for {key!r} ({e})") from e
        if not f.is_file():
            raise FileNotFoundError(f"{f}: listed in {mpath} but missing; recreate the cache")
        actual = f.stat().st_size
        if actual != size:
            raise ValueError(f"{f}: {actual} bytes, the manifest says {size}; the file is truncated or was replaced")
        try:
            a = np.load(f, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{f}: not a readable .npy file ({e})") from e
        if a.shape != shape or a.dtype != dtype:
            raise ValueError(
                f"{f}: holds {a.dtype} {a.shape}, the manifest says {dtype} {shape}; recreate the cache"
            )
        if verify:
            digest = sha256_file(f)
            if digest != info.get("sha256"):
                raise ValueError(
                    f"{f}: checksum mismatch: sha256 {digest}, the manifest says {info.get('sha256')}; "
                    "the file is corrupt or was modified, recreate the cache"
                )
        loaded[key] = a
    x, y = loaded["x"], loaded.get("y")
    if y is not None and len(y) != len(x):
        raise ValueError(f"{d}: {len(y)} labels for {len(x)} images")
    names = manifest.get("class_names")
    return CachedDataset(d, x, y, tuple(names) if names is not None else None, manifest)
