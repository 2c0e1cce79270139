"""``python -m fastseq bench --photos [DIR]``: a photo folder through Keras' function and fastseq's.

Rows, each on the same folder (DIR, or a generated one of 2,000 JPEGs of
200-500 px, 5 classes, from :mod:`fastseq.bench.photos`), batch 32,
float32, shuffled with a seed:

- ``keras epoch``: ``keras.utils.image_dataset_from_directory`` and one whole
  epoch pulled from it (it decodes every file every epoch);
- ``fastseq first call``: ``fastseq.image_dataset_from_directory`` into an
  empty cache folder (every file decoded once into the store) and one epoch;
- ``fastseq second size``: the call at a second ``image_size`` on the built
  store (no decoding, no batch);
- ``fastseq epoch``: one more epoch of the first call's sequence.

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


def photo_rows(directory=None, *, n_images=2000, seed=0, repeat=1):
    """Time the rows; return ``(description, [(row, seconds, images), ...])``."""
    import keras

    from fastseq.bench.photos import make_photo_folder
    from fastseq.photos.folder_sequence import image_dataset_from_directory

    work = tempfile.mkdtemp(prefix="fastseq-bench-photos-")
    try:
        if directory is None:
            directory = str(make_photo_folder(os.path.join(work, "photos"), n_images=n_images, n_classes=5,
                                              seed=seed))
            what = f"a generated folder of {n_images} JPEGs (200-500 px, 5 classes)"
        else:
            what = f"{directory}"
        kw = dict(image_size=SIZES[0], batch_size=BATCH, seed=seed, verbose=False)
        rows = []

        def best(fn):
            times = []
            for _ in range(max(1, repeat)):
                t = time.perf_counter()
                result = fn()
                times.append(time.perf_counter() - t)
            return min(times), result

        seconds, n = best(lambda: _epoch(keras.utils.image_dataset_from_directory(directory, **kw)))
        rows.append(("keras epoch", seconds, n))
        caches = iter(os.path.join(work, f"cache{k}") for k in range(1000))

        def first_call():
            seq = image_dataset_from_directory(directory, cache_dir=next(caches), **kw)
            return seq, _epoch(seq[i] for i in range(len(seq)))

        seconds, (seq, n) = best(first_call)
        rows.append(("fastseq first call", seconds, n))
        cache = seq.store.path.parents[2]
        seconds, _ = best(lambda: image_dataset_from_directory(
            directory, cache_dir=str(cache), **{**kw, "image_size": SIZES[1]}))
        rows.append((f"fastseq second size {SIZES[1][0]}", seconds, 0))
        seconds, n = best(lambda: _epoch(seq[i] for i in range(len(seq))))
        rows.append(("fastseq epoch", seconds, n))
        return what, rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(what, rows, out):
    """Print the rows with each one's time against Keras' epoch."""
    keras_s = dict((r[0], r[1]) for r in rows).get("keras epoch")
    print(f"\nphoto folder: {what}; image_size {SIZES[0]}, batch {BATCH}, float32", file=out)
    print(f"  {'row':<26} {'seconds':>9} {'images/s':>10} {'time / keras epoch':>19}", file=out)
    for name, seconds, images in rows:
        ips = f"{images / seconds:,.0f}" if images else "-"
        ratio = f"{seconds / keras_s:.2f}x" if keras_s else ""
        print(f"  {name:<26} {seconds:9.3f} {ips:>10} {ratio:>19}", file=out)
    print("  targets: first call <= 1.5x keras epoch; second size < 1 s for 2,000 files", file=out)
