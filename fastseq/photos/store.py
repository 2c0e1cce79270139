"""A photo folder decoded once into a ragged uint8 store on disk (NumPy, Pillow, simplejpeg).

Layout: a store is one folder holding four files that NumPy alone reads.

- ``pixels.u8``: every image's uint8 pixels, ``(H, W, C)`` row-major, one after
  the other (open with ``np.memmap(path, np.uint8, mode="r")``);
- ``offsets.npy``: int64 ``(N,)``, where image ``i`` starts in ``pixels.u8``;
- ``shapes.npy``: int64 ``(N, 3)``, image ``i``'s ``(H, W, C)``;
- ``manifest.json``: format and version, the source ``root``, the decode
  options (``color_mode``, ``exif_transpose``, ``max_side``), each image's path
  relative to ``root`` with its size and ``mtime_ns``, and the files that
  could not be decoded (with the reason).

``build_or_open`` keeps such stores in a cache folder:
``$FASTSEQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastseq``, else
``~/.cache/fastseq`` (or the ``cache_dir`` argument), under
``images/<folder name>-<hash>/`` where the hash is of the absolute source
folder and the decode options (another ``color_mode`` is another store).
That folder holds generations: ``current`` names the live one; a build
writes ``.tmp-*`` and renames it to a new generation only once complete, then
replaces ``current`` atomically. So a build killed half-way leaves nothing
that looks complete (the next build removes its leftovers), a reader never
sees a half-written store, and a generation is never modified once written
(a memory map or a worker process reopening it by name always sees the
bytes it expects). An exclusive lock file (``fcntl.flock``) serialises
builders: two processes asking at once end with one store, built once.
The store is a cache: safe against a killed process, but nothing is
``fsync``-ed (that doubled the build's time on a busy disk), so after a power
cut during or just after a build, delete the cache folder.

Never stale: every call compares each requested file's size and
``mtime_ns`` with the store's manifest. Changed and added files are decoded
again, the unchanged images' bytes are copied from the previous generation
(incremental, no decoding), and files gone from disk are dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fastseq.photos import decode as _decode
from fastseq.ragged import RaggedImages

FORMAT = "fastseq.image-store"
VERSION = 1
MANIFEST = "manifest.json"
PIXELS, OFFSETS, SHAPES, LABELS = "pixels.u8", "offsets.npy", "shapes.npy", "labels.npy"
CURRENT = "current"
ENV_VAR = "FASTSEQ_CACHE_DIR"
_RESERVE = 64 << 20  # bytes left free on the disk beyond the store itself


class SkippedImageWarning(UserWarning):
    """A file with an image extension could not be decoded and was left out."""


class StoreSpaceError(OSError):
    """The disk holding the cache folder cannot hold the store."""


@dataclasses.dataclass(frozen=True)
class Store:
    """An opened image store.

    Attributes:
        path: the store folder (``pixels.u8``, ``offsets.npy``, ``shapes.npy``,
            ``manifest.json``).
        root: the source folder the paths are relative to.
        images: ``RaggedImages`` over a read-only memmap; image ``i`` is
            ``files[i]``.
        files: the decoded images' paths, as the caller gave them, in the
            requested order (the requested files minus ``skipped``); absolute
            for a store opened with ``open_store``.
        skipped: requested paths that could not be decoded (zero-byte,
            truncated, not an image), in the requested order.
        reasons: ``{path: why}`` for each skipped path.
        decoded: how many files this call decoded (0 when the store was reused).
        options: the decode options: ``color_mode``, ``exif_transpose``,
            ``max_side``.
        labels: int labels per image when the store carries them (written by
            ``python -m fastseq convert``), else None.
        class_names: tuple of class names when the store carries them, else None.
    """

    path: Path
    root: Path
    images: RaggedImages
    files: list
    skipped: list
    reasons: dict
    decoded: int
    options: dict
    labels: np.ndarray | None = None
    class_names: tuple | None = None

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return (f"Store({str(self.path)!r}, {len(self.files)} images, {len(self.skipped)} skipped, "
                f"decoded {self.decoded}, {self.options})")


# --- where ----------------------------------------------------------------------------------------


def default_cache_dir():
    """Where stores live unless told: ``$FASTSEQ_CACHE_DIR``, ``$XDG_CACHE_HOME/fastseq`` or ``~/.cache/fastseq``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fastseq"
    return Path.home() / ".cache" / "fastseq"


def _options(color_mode, exif_transpose, max_side):
    _decode.channels_of(color_mode)
    if not isinstance(exif_transpose, (bool, np.bool_)):
        raise TypeError(f"exif_transpose must be True or False, got {exif_transpose!r}.")
    return {"color_mode": color_mode, "exif_transpose": bool(exif_transpose),
            "max_side": _decode.check_max_side(max_side)}


def store_dir(root, *, color_mode="rgb", exif_transpose=True, max_side=None, cache_dir=None):
    """The cache folder that holds the store of ``root`` for these decode options (not created)."""
    root = Path(os.path.abspath(root))
    options = _options(color_mode, exif_transpose, max_side)
    key = json.dumps({"root": str(root), "version": VERSION, **options}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in root.name)[:40] or "root"
    return Path(os.path.abspath(base)) / "images" / f"{name}-{digest}"


# --- reading ----------------------------------------------------------------------------------------


def _read_manifest(folder):
    path = Path(folder) / MANIFEST
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastseq image store manifest (format should be {FORMAT!r}).")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: image store version {manifest.get('version')!r}, this fastseq reads version "
                         f"{VERSION}; delete the folder to rebuild it.")
    return manifest


def _load_arrays(folder, manifest):
    folder = Path(folder)
    offsets = np.load(folder / OFFSETS, allow_pickle=False)
    shapes = np.load(folder / SHAPES, allow_pickle=False)
    size = (folder / PIXELS).stat().st_size
    if size != manifest["bytes"] or len(offsets) != len(manifest["paths"]):
        raise ValueError(f"{folder}: {PIXELS} has {size} bytes and {len(offsets)} offsets, the manifest says "
                         f"{manifest['bytes']} bytes and {len(manifest['paths'])} images; delete the folder to "
                         "rebuild it.")
    # np.memmap refuses an empty file; an empty store still opens.
    pixels = np.memmap(folder / PIXELS, np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    return RaggedImages(pixels, offsets, shapes)


def _generation(keydir):
    """The live generation folder of a cache entry, or None."""
    try:
        name = (keydir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    gen = keydir / name
    return gen if name and (gen / MANIFEST).is_file() else None


def _stat(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _select(folder, manifest, ragged, rels, files, stats):
    """The Store serving ``files`` (their paths relative to the root: ``rels``) from a generation, or None if any
    file is new or changed. The Store names the files as given."""
    index = {p: i for i, p in enumerate(manifest["paths"])}
    bad = {s["path"]: s for s in manifest["skipped"]}
    take, good, skipped, reasons = [], [], [], {}
    for path, rel, st in zip(files, rels, stats):
        if st is None:
            skipped.append(path)
            reasons[path] = "no such file"
            continue
        i = index.get(rel)
        if i is not None and (manifest["sizes"][i], manifest["mtime_ns"][i]) == st:
            take.append(i)
            good.append(path)
        elif rel in bad and (bad[rel]["size"], bad[rel]["mtime_ns"]) == st:
            skipped.append(path)
            reasons[path] = bad[rel]["reason"]
        else:
            return None
    images = ragged if take == list(range(len(ragged))) else ragged.take(np.asarray(take, np.int64))
    return Store(Path(folder), Path(manifest["root"]), images, good, skipped, reasons, 0, dict(manifest["options"]))


def _relative(root, files):
    out = []
    for f in files:
        rel = os.path.relpath(f, root)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
            raise ValueError(f"files must lie inside root {str(root)!r}, got {str(f)!r}.")
        out.append(Path(rel).as_posix())
    return out


def open_store(path):
    """Open a store folder (one ``python -m fastseq convert`` wrote, or a cache entry).

    Args:
        path (str | os.PathLike): a folder holding ``manifest.json``, ``pixels.u8``, ``offsets.npy``
            and ``shapes.npy``; or a cache entry folder (its ``current``
            generation is opened).

    Returns:
        Store: a ``Store`` with every image the store holds, ``decoded=0``;
        ``labels`` and ``class_names`` when the store carries them.

    Raises:
        FileNotFoundError: no store there.
        ValueError: an unknown format version or files that disagree with the manifest.
    """
    folder = Path(path).expanduser()
    if not (folder / MANIFEST).is_file():
        gen = _generation(folder)
        if gen is None:
            raise FileNotFoundError(f"{folder} is not a fastseq image store (no {MANIFEST}); build one with "
                                    "`python -m fastseq convert PHOTO_FOLDER OUT_DIR` (without --size).")
        folder = gen
    manifest = _read_manifest(folder)
    ragged = _load_arrays(folder, manifest)
    root = Path(manifest["root"])
    files = [str(root / p) for p in manifest["paths"]]
    skipped = [str(root / s["path"]) for s in manifest["skipped"]]
    reasons = {str(root / s["path"]): s["reason"] for s in manifest["skipped"]}
    labels = np.load(folder / LABELS, mmap_mode="r", allow_pickle=False) if (folder / LABELS).is_file() else None
    names = manifest.get("class_names")
    return Store(folder, root, ragged, files, skipped, reasons, 0, dict(manifest["options"]), labels,
                 tuple(names) if names is not None else None)


# --- writing ----------------------------------------------------------------------------------------


def _progress(quiet):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=quiet or not console.is_terminal, transient=True)


def _decode_file(path, options):
    """Decode one file with the store's options (one function, so that tests can count the calls)."""
    return _decode.decode_image(path, options["color_mode"], exif_transpose=options["exif_transpose"],
                                max_side=options["max_side"])


def _try_decode(path, options):
    try:
        return _decode_file(path, options), None
    except Exception as e:  # any decoder failure means "unreadable image": warned, skipped, recorded
        return None, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _estimate(paths, options, workers):
    """Bytes the decoded images will take, from headers; unreadable headers count 0."""
    def one(path):
        try:
            h, w, c = _decode.stored_shape(path, options["color_mode"], max_side=options["max_side"])
            return h * w * c
        except Exception:
            return 0

    if not paths:
        return 0
    with ThreadPoolExecutor(workers) as pool:
        return int(sum(pool.map(one, paths, chunksize=64)))


def _check_space(needed, where, root, cache_dir_given):
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + _RESERVE > free:
        how = ("pass another cache_dir=" if cache_dir_given else
               f"pass cache_dir= or set {ENV_VAR} to a folder on a disk with room")
        raise StoreSpaceError(
            f"the image store of {root} needs {needed / 1e9:.2f} GB on disk but {probe} has only {free / 1e9:.2f} GB "
            f"free. Free some space, {how}, or pass max_side= (e.g. max_side=512) to store smaller images.")


def _write(dest, root, plan, options, workers, verbose, what):
    """Stream the images of ``plan`` into ``dest`` (created): decode or copy each, in order.

    ``plan`` is a list of ``(rel, path, stat, source)``, source None (decode)
    or ``(ragged, i)`` (copy image ``i``'s bytes) or ``("skip", reason)``.
    Returns ``(manifest, how many files were decoded)``.
    """
    dest.mkdir(parents=True)
    paths, sizes, mtimes, offsets, shapes, skipped = [], [], [], [], [], []
    channels = _decode.channels_of(options["color_mode"])
    position = 0
    todo = sum(source is None for *_, source in plan)

    def consume(rel, path, st, image, reason):
        nonlocal position
        if image is None:
            skipped.append({"path": rel, "size": st[0], "mtime_ns": st[1], "reason": reason})
            return
        out.write(memoryview(np.ascontiguousarray(image)).cast("B"))
        paths.append(rel)
        sizes.append(st[0])
        mtimes.append(st[1])
        offsets.append(position)
        shapes.append(image.shape)
        position += image.size

    with open(dest / PIXELS, "wb") as out, _progress(not verbose) as progress, ThreadPoolExecutor(workers) as pool:
        task = progress.add_task(what, total=todo)
        pending = collections.deque()
        try:
            for rel, path, st, source in plan:
                # A bounded window of decodes in flight, written in file order: memory stays flat.
                pending.append((rel, path, st, source, pool.submit(_try_decode, path, options) if source is None
                                else None))
                while len(pending) > 4 * workers or (pending and pending[0][4] is None):
                    _drain_one(pending, consume, progress, task)
            while pending:
                _drain_one(pending, consume, progress, task)
        except BaseException:
            for *_, fut in pending:
                if fut is not None:
                    fut.cancel()
            raise
    np.save(dest / OFFSETS, np.asarray(offsets, np.int64).reshape(-1))
    np.save(dest / SHAPES, np.asarray(shapes, np.int64).reshape(-1, 3))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "root": str(root),
        "options": options,
        "channels": channels,
        "count": len(paths),
        "bytes": position,
        "paths": paths,
        "sizes": sizes,
        "mtime_ns": mtimes,
        "skipped": skipped,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return manifest, todo


def _drain_one(pending, consume, progress, task):
    rel, path, st, source, fut = pending.popleft()
    if fut is not None:
        image, reason = fut.result()
        progress.advance(task)
    elif source[0] == "skip":
        image, reason = None, source[1]
    else:
        ragged, i = source
        image, reason = ragged.image(i), None
    consume(rel, path, st, image, reason)


def _save_manifest(dest, manifest):
    with open(dest / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
        f.write("\n")


class _Lock:
    """An exclusive ``fcntl.flock`` on ``path``.

    Without one (no fcntl, or a file system that refuses locks) builders are
    not serialised, but each generation still publishes atomically.
    """

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network mounts): generations still publish atomically
            os.close(self.fd)
            self.fd = None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None
        return False


def _publish(keydir, tmp):
    gen_name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    gen = keydir / gen_name
    os.rename(tmp, gen)
    pointer = keydir / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    with open(pointer, "w") as f:
        f.write(gen_name + "\n")
    os.replace(pointer, keydir / CURRENT)
    return gen


def _clean(keydir, keep):
    """Remove old generations and what killed builds left (called with the lock held)."""
    for child in keydir.iterdir():
        if child.name in (keep, CURRENT, ".lock"):
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith(f".{CURRENT}."):
            child.unlink(missing_ok=True)


def _warn_and_check(store, strict, stacklevel):
    if strict and store.skipped:
        shown = "; ".join(f"{p} ({store.reasons[p]})" for p in store.skipped[:5])
        more = f" and {len(store.skipped) - 5} more" if len(store.skipped) > 5 else ""
        raise ValueError(f"{len(store.skipped)} image file(s) could not be decoded: {shown}{more}. "
                         "Remove or fix them, or pass strict=False to skip them with a warning.")
    for path in store.skipped:
        warnings.warn(f"fastseq: skipped {path}: it could not be decoded ({store.reasons[path]}).",
                      SkippedImageWarning, stacklevel=stacklevel)


def _workers(workers):
    if workers is None:
        return min(8, os.cpu_count() or 1)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int or None, got {workers!r}.")
    return workers


def build_or_open(root, files, *, color_mode="rgb", exif_transpose=True, max_side=None, cache_dir=None,
                  strict=False, verbose=True, workers=None):
    """Open the store of ``files`` (decoding only what is new or changed), building it the first time.

    The first call decodes every file once, in parallel threads, streaming
    each image into the store's pixel file in order (memory stays flat), with
    a progress bar. Later calls compare each file's size and ``mtime_ns`` with
    the store's manifest and decode nothing when all match; a changed or
    added file is decoded (the others' bytes are copied) into a new
    generation of the store; a removed file is dropped. See the module
    docstring for where stores live and their layout.

    Args:
        root (str | os.PathLike): the source folder; every file lies under it.
        files (list[str | os.PathLike]): image paths (absolute, or relative to the working directory)
            in the order the images should come out (Keras' listing order).
        color_mode (str): "grayscale", "rgb" or "rgba": 1, 3 or 4 channels, decoded
            as ``tf.io.decode_image`` does.
        exif_transpose (bool): turn photos upright per their EXIF orientation (Keras
            does not: False gives Keras' pixels).
        max_side (int | None): shrink larger images (Pillow's Lanczos) so their longer side
            is at most this; None (the default) keeps the originals.
        cache_dir (str | os.PathLike | None): where stores live; default ``$FASTSEQ_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/fastseq``, else ``~/.cache/fastseq``.
        strict (bool): a file that cannot be decoded is an error instead of a warning.
        verbose (bool): print the store's size and location before building, and
            show a progress bar (when stderr is a terminal).
        workers (int | None): decode threads; None means ``min(8, os.cpu_count())``.

    Returns:
        Store: a ``Store``: ``.images`` (``RaggedImages``; image ``i`` is
        ``.files[i]``), ``.files``, ``.skipped``, ``.reasons``, ``.path``,
        ``.decoded``.

    Raises:
        ValueError: a bad option, a file outside ``root``, or (``strict``) a
            file that cannot be decoded, naming it.
        StoreSpaceError: the disk cannot hold the store (says how much is
            needed and free, and how to move the cache).

    Warns:
        SkippedImageWarning: one per file that cannot be decoded (zero-byte,
            truncated, not an image); the store serves the rest.
    """
    options = _options(color_mode, exif_transpose, max_side)
    workers = _workers(workers)
    root = Path(os.path.abspath(root))
    given = [os.fspath(f) for f in files]  # the Store names files as the caller did (Keras' file_paths)
    files = [os.path.abspath(f) for f in given]
    rels = _relative(root, files)
    stats = [_stat(f) for f in files]
    keydir = store_dir(root, cache_dir=cache_dir, **options)
    store = _open_current(keydir, root, rels, given, stats)
    if store is None:
        try:
            keydir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create the image store folder {keydir} ({e}); pass cache_dir= or set "
                          f"{ENV_VAR} to a writable folder.") from e
        with _Lock(keydir / ".lock"):
            store = _open_current(keydir, root, rels, given, stats)  # another process may have built it meanwhile
            if store is None:
                store = _build(keydir, root, files, given, rels, stats, options, workers, verbose,
                               cache_dir is not None)
    _warn_and_check(store, strict, stacklevel=3)
    return store


def _open_current(keydir, root, rels, given, stats):
    gen = _generation(keydir)
    if gen is None:
        return None
    try:
        manifest = _read_manifest(gen)
        if manifest["root"] != str(root):
            return None
        return _select(gen, manifest, _load_arrays(gen, manifest), rels, given, stats)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or damaged: rebuilt


def _build(keydir, root, files, given, rels, stats, options, workers, verbose, cache_dir_given):
    old_gen = _generation(keydir)
    old, old_ragged = None, None
    if old_gen is not None:
        try:
            old = _read_manifest(old_gen)
            old_ragged = _load_arrays(old_gen, old)
        except (OSError, ValueError, KeyError, TypeError):
            old, old_ragged = None, None
    known = {}
    if old is not None and old["root"] == str(root):
        for i, p in enumerate(old["paths"]):
            known[p] = ((old["sizes"][i], old["mtime_ns"][i]), (old_ragged, i))
        for s in old["skipped"]:
            known[s["path"]] = ((s["size"], s["mtime_ns"]), ("skip", s["reason"]))
    plan, seen = [], set()
    for rel, path, st in zip(rels, files, stats):
        if st is None or rel in seen:
            continue
        seen.add(rel)
        prior = known.get(rel)
        plan.append((rel, path, st, prior[1] if prior is not None and prior[0] == st else None))
    # Images of the old store that were not asked for this time but are still current on disk are kept,
    # so that listing a subset (other class_names) never throws the rest away.
    for rel, (st_old, source) in known.items():
        if rel not in seen:
            path = str(root / rel)
            if _stat(path) == st_old:
                plan.append((rel, path, st_old, source))
    to_decode = [path for _, path, _, source in plan if source is None]
    reused = sum(int(source[0].shapes[source[1]].prod()) for *_, source in plan
                 if source is not None and source[0] != "skip")
    needed = reused + _estimate(to_decode, options, workers)
    _check_space(needed, keydir, root, cache_dir_given)
    for child in keydir.iterdir():  # leftovers of killed builds (only lock holders write there)
        if child.name.startswith(".tmp-"):
            shutil.rmtree(child, ignore_errors=True)
    tmp = keydir / f".tmp-{uuid.uuid4().hex[:8]}"
    if verbose:
        print(f"fastseq: decoding {len(to_decode)} of {len(plan)} images of {root} into an image store of "
              f"{needed / 1e6:.1f} MB in {keydir}", file=sys.stderr)
    try:
        manifest, decoded = _write(tmp, root, plan, options, workers, verbose, f"decoding {root.name}")
        _save_manifest(tmp, manifest)
        gen = _publish(keydir, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _clean(keydir, gen.name)
    ragged = _load_arrays(gen, manifest)
    store = _select(gen, manifest, ragged, rels, given, stats)
    return dataclasses.replace(store, decoded=decoded)


def write_store(dest, root, files, *, color_mode="rgb", exif_transpose=True, max_side=None, labels=None,
                class_names=None, strict=False, verbose=True, workers=None):
    """Decode ``files`` into a store at ``dest`` (a new folder, written by whoever owns it: ``convert``).

    The same layout as the cache's stores, plus ``labels.npy`` (one int per
    stored image) and ``class_names`` in the manifest when ``labels`` is given.
    The caller makes ``dest`` atomic (``convert`` writes under a temporary
    name and renames).

    Returns:
        The opened ``Store`` (``labels`` those of the stored images).

    Raises:
        ValueError: as ``build_or_open``, and when no file could be decoded.
    """
    options = _options(color_mode, exif_transpose, max_side)
    workers = _workers(workers)
    root = Path(os.path.abspath(root))
    files = [os.path.abspath(f) for f in files]
    rels = _relative(root, files)
    stats = [_stat(f) for f in files]
    plan = [(rel, path, st if st is not None else (0, 0), None) for rel, path, st in zip(rels, files, stats)]
    dest = Path(dest)
    needed = _estimate([p for _, p, _, _ in plan], options, workers)
    _check_space(needed, dest.parent, root, True)
    if verbose:
        print(f"fastseq: decoding {len(plan)} images of {root} into an image store of {needed / 1e6:.1f} MB "
              f"at {dest}", file=sys.stderr)
    manifest, decoded = _write(dest, root, plan, options, workers, verbose, f"decoding {root.name}")
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(files):
            raise ValueError(f"labels must have one entry per file: {len(files)} files, {len(labels)} labels.")
        kept = set(manifest["paths"])
        keep = np.array([rel in kept for rel in rels], bool)
        np.save(dest / LABELS, labels[keep])
        manifest["class_names"] = list(class_names) if class_names is not None else None
    _save_manifest(dest, manifest)
    store = open_store(dest)
    store = dataclasses.replace(store, decoded=decoded)
    _warn_and_check(store, strict, stacklevel=3)
    if not len(store.files):
        raise ValueError(f"{root}: none of the {len(files)} image files could be decoded.")
    return store
