"""The photo-folder rows of ``python -m fastseq bench``: a photo folder through Keras' function and fastseq's.

Rows, each on the same folder (a generated one of 200-500 px JPEGs in 5
classes, from :mod:`fastseq.bench.photos`: 200 by default, 100 with
``--quick``, 2,000 with ``--photos``; or ``--photos DIR``), batch 32,
float32, shuffled with a seed:

- ``keras epoch``: ``keras.utils.image_dataset_from_directory`` and one whole
  epoch pulled from it (it decodes every file every epoch);
- ``fastseq first call``: ``fastseq.image_dataset_from_directory`` into an
  empty cache folder (every file decoded once into the store) and one epoch;
- ``fastseq second size``: the call at a second ``image_size`` on the built
  store (no decoding, no batch);
- ``fastseq epoch``: one more epoch of the first call's sequence.

Their verdicts (photos at 224) are :func:`fastseq.bench.verdicts.photo_verdicts`.
Keras is imported only when these rows run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

SIZES = ((224, 224), (128, 128))
BATCH = 32


def _epoch(batches):
    n = 0
    for x, _ in batches:
        n += len(x)
    return n


def generated_folder(n_images, seed=0):
    """A generated folder of ``n_images`` JPEGs, made once per machine and kept in the temporary folder.

    The files depend only on ``(n_images, seed)``, so a later run reuses them
    (generating 200 takes about 4 s on 2 cores); each run still builds its
    own fastseq store from them.
    """
    from fastseq.bench.photos import make_photo_folder

    root = os.path.join(tempfile.gettempdir(), f"fastseq-bench-photos-n{n_images}-s{seed}-v1")
    if os.path.isfile(os.path.join(root, ".complete")):
        return root
    part = tempfile.mkdtemp(prefix="fastseq-bench-photos-part-")
    make_photo_folder(part, n_images=n_images, n_classes=5, seed=seed)
    open(os.path.join(part, ".complete"), "w").close()
    try:
        os.rename(part, root)
    except OSError:  # another run made it meanwhile, or a partial one is in the way
        if os.path.isfile(os.path.join(root, ".complete")):
            shutil.rmtree(part, ignore_errors=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
            os.rename(part, root)
    return root


def photo_timings(directory=None, *, n_images=2000, seed=0, repeat=1, first_repeat=None):
    """Time the rows; return ``(description, files, {row: (seconds of each repeat, images)})``.

    ``repeat`` calls of the epoch rows and of the second size (their spread
    shows a busy machine), ``first_repeat`` (default ``repeat``) first calls,
    each into a new, empty cache folder.
    """
    import keras

    from fastseq.photos.folder_sequence import image_dataset_from_directory

    work = tempfile.mkdtemp(prefix="fastseq-bench-photos-")
    try:
        if directory is None:
            directory = generated_folder(n_images, seed)
            what = f"a generated folder of {n_images} JPEGs (200-500 px, 5 classes)"
        else:
            what = f"{directory}"
        kw = dict(image_size=SIZES[0], batch_size=BATCH, seed=seed, verbose=False)
        rows = {}

        def times(fn, count):
            out = []
            for _ in range(max(1, count)):
                t = time.perf_counter()
                result = fn()
                out.append(time.perf_counter() - t)
            return out, result

        seconds, n = times(lambda: _epoch(keras.utils.image_dataset_from_directory(directory, **kw)), repeat)
        rows["keras epoch"] = (seconds, n)
        caches = iter(os.path.join(work, f"cache{k}") for k in range(1000))

        def first_call():
            seq = image_dataset_from_directory(directory, cache_dir=next(caches), **kw)
            return seq, _epoch(seq[i] for i in range(len(seq)))

        seconds, (seq, n) = times(first_call, repeat if first_repeat is None else first_repeat)
        rows["fastseq first call"] = (seconds, n)
        files = len(seq.store)
        cache = seq.store.path.parents[2]
        seconds, _ = times(lambda: image_dataset_from_directory(
            directory, cache_dir=str(cache), **{**kw, "image_size": SIZES[1]}), repeat)
        rows[f"fastseq second size {SIZES[1][0]}"] = (seconds, 0)
        seconds, n = times(lambda: _epoch(seq[i] for i in range(len(seq))), repeat)
        rows["fastseq epoch"] = (seconds, n)
        return what, files, rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def photo_rows(directory=None, *, n_images=2000, seed=0, repeat=1):
    """Time the rows; return ``(description, [(row, best seconds, images), ...])``."""
    what, _, rows = photo_timings(directory, n_images=n_images, seed=seed, repeat=repeat)
    return what, [(name, min(seconds), n) for name, (seconds, n) in rows.items()]


def timings(rows):
    """``{row: verdicts.Timing}`` of :func:`photo_timings`' rows (the second size as calls per second)."""
    from fastseq.bench.verdicts import Timing, spread

    out = {}
    for name, (seconds, n) in rows.items():
        key = "fastseq second size" if name.startswith("fastseq second size") else name
        out[key] = Timing((n or 1) / min(seconds), spread(seconds), resample_threads() if key != "keras epoch" else 0)
    return out


def resample_threads():
    """The threads a 224 float32 batch's resample launch gets by the work rule (``RESAMPLE_COST`` x output bytes)."""
    from fastseq.bench.kernel_rows import rule_threads
    from fastseq.kernels.config import RESAMPLE_COST

    return rule_threads(BATCH * SIZES[0][0] * SIZES[0][1] * 3 * 4 * RESAMPLE_COST)


def render(what, rows, out, *, files=None):
    """Print the rows with each one's time against Keras' epoch, and the verdicts; return the verdicts.

    ``rows``: ``[(row, seconds, images)]`` (:func:`photo_rows`) or ``{row: (seconds of each repeat, images)}``
    (:func:`photo_timings`); ``files``: the folder's file count (default: the images of an epoch).
    """
    from fastseq.bench import verdicts

    if not isinstance(rows, dict):
        rows = {name: ([seconds], n) for name, seconds, n in rows}
    keras_s = min(rows["keras epoch"][0]) if "keras epoch" in rows else None
    threads = resample_threads()
    print(f"\nphoto folder: {what}; image_size {SIZES[0]}, batch {BATCH}, float32; fastseq's resample launches: "
          f"{threads} thread{'s' if threads != 1 else ''} (work rule)", file=out)
    print(f"  {'row':<26} {'seconds':>9} {'images/s':>10} {'time / keras epoch':>19} {'median/min':>11}", file=out)
    for name, (seconds, images) in rows.items():
        best = min(seconds)
        ips = f"{images / best:,.0f}" if images else "-"
        ratio = f"{best / keras_s:.2f}x" if keras_s else ""
        print(f"  {name:<26} {best:9.3f} {ips:>10} {ratio:>19} {verdicts.spread(seconds):>10.2f}x", file=out)
    if files is None:
        files = max((n for _, n in rows.values()), default=0)
    found = verdicts.photo_verdicts(timings(rows), files)
    if found:
        print(f"  targets ({verdicts.SHAPES['photos-224']}):", file=out)
        print("\n".join(verdicts.verdict_lines(found, indent="    ")), file=out)
    return found
