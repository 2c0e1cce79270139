"""Building the ragged image store, per image, beside decoding alone (Pillow, simplejpeg).

One group, ``store-build-jpeg``, on the shared photo folder
(``fastseq.bench.photos.make_photo_folder``: textured JPEGs of 200-500 px
sides at quality 90, RGB). Rows, each timed over the whole folder and
reported as ms per image:

- ``pillow``: ``Image.open(f).convert("RGB")`` to an array, one thread: the
  decoder most hand-written loaders use, and the build's ceiling named by
  issue 20;
- ``simplejpeg``: ``simplejpeg.decode_jpeg(fastdct=True, fastupsample=False)``
  (Keras' pixels), one thread;
- ``simplejpeg-threads``: the same on the build's thread count (the true
  ceiling of a threaded build);
- ``store-build``: ``build_or_open`` into a fresh cache folder (header
  estimate, threaded decode, streamed write, manifest, atomic publish);
- ``store-open``: ``build_or_open`` of the built store (stat every file,
  nothing decoded).

The build's peak traced memory (``tracemalloc``, one untimed build) goes in
``extra_info`` beside the store's size: it stays a few images' worth,
whatever the folder's size. Timed runs use ``FASTSEQ_BENCH_PHOTOS`` images
(default 500); a plain ``pytest`` (timing disabled) uses 50. Every row
checks its pixels after timing.
"""

import os
import shutil
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastseq.bench.photos import make_photo_folder
from fastseq.photos import store as st

GROUP = "store-build-jpeg"
WORKERS = min(8, os.cpu_count() or 1)


@pytest.fixture(scope="module")
def photos(request, tmp_path_factory):
    disabled = request.config.getoption("benchmark_disable", False)
    n = 50 if disabled else int(os.environ.get("FASTSEQ_BENCH_PHOTOS", "500"))
    root = make_photo_folder(tmp_path_factory.mktemp("photos") / "folder", n_images=n, n_classes=5, seed=0)
    files = sorted(str(p) for p in root.rglob("*.jpg"))
    assert len(files) == n
    return root, files


def record(benchmark, row, n, threads, **extra):
    benchmark.group = GROUP
    benchmark.extra_info.update(row=row, images=n, threads=threads, **extra)
    if not benchmark.disabled and benchmark.stats is not None:
        seconds = benchmark.stats.stats.min
        benchmark.extra_info["ms_per_image"] = round(seconds / n * 1e3, 3)
        benchmark.extra_info["images_per_sec"] = round(n / seconds, 1)


def check_pixels(images, files, count=5):
    """The first ``count`` images are Keras' pixels (simplejpeg with TF's settings, checked in tests/test_decode.py)."""
    import simplejpeg

    for i in range(count):
        with open(files[i], "rb") as f:
            expected = simplejpeg.decode_jpeg(f.read(), fastdct=True, fastupsample=False)
        np.testing.assert_array_equal(images[i], expected)


def pillow_decode(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def simplejpeg_decode(path):
    import simplejpeg

    with open(path, "rb") as f:
        return simplejpeg.decode_jpeg(f.read(), fastdct=True, fastupsample=False)


def test_pillow(benchmark, photos):
    _, files = photos
    out = benchmark.pedantic(lambda: [pillow_decode(f) for f in files], rounds=3, iterations=1, warmup_rounds=1)
    record(benchmark, "pillow", len(files), 1)
    for i in range(5):  # Pillow's accurate DCT: within about one level of Keras' pixels
        expected = simplejpeg_decode(files[i])
        assert out[i].shape == expected.shape and np.abs(out[i].astype(int) - expected).mean() < 2


def test_simplejpeg(benchmark, photos):
    _, files = photos
    out = benchmark.pedantic(lambda: [simplejpeg_decode(f) for f in files], rounds=3, iterations=1, warmup_rounds=1)
    record(benchmark, "simplejpeg", len(files), 1)
    check_pixels(out, files)


def test_simplejpeg_threads(benchmark, photos):
    _, files = photos
    with ThreadPoolExecutor(WORKERS) as pool:
        out = benchmark.pedantic(lambda: list(pool.map(simplejpeg_decode, files, chunksize=16)), rounds=3,
                                 iterations=1, warmup_rounds=1)
    record(benchmark, "simplejpeg-threads", len(files), WORKERS)
    check_pixels(out, files)


def test_store_build(benchmark, photos, tmp_path):
    root, files = photos
    caches = iter(range(1000))

    def fresh():
        cache = tmp_path / f"cache-{next(caches)}"
        return (root, files), {"cache_dir": cache, "verbose": False, "workers": WORKERS}

    store = benchmark.pedantic(st.build_or_open, setup=fresh, rounds=3, iterations=1, warmup_rounds=0)
    assert store.decoded == len(files) and store.skipped == []
    check_pixels([store.images.image(i) for i in range(5)], files)
    # Peak memory of one more (untimed) build, traced: a few images in flight, not the folder.
    tracemalloc.start()
    traced = st.build_or_open(root, files, cache_dir=tmp_path / "traced", verbose=False, workers=WORKERS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    store_mb = traced.images.nbytes / 1e6
    record(benchmark, "store-build", len(files), WORKERS, peak_traced_MB=round(peak / 1e6, 2),
           store_MB=round(store_mb, 1), peak_over_store=round(peak / 1e6 / store_mb, 4))
    assert peak / 1e6 < max(64.0, store_mb / 4), f"building took {peak / 1e6:.1f} MB for a {store_mb:.1f} MB store"
    for d in tmp_path.iterdir():
        shutil.rmtree(d, ignore_errors=True)


def test_store_open(benchmark, photos, tmp_path):
    root, files = photos
    st.build_or_open(root, files, cache_dir=tmp_path / "cache", verbose=False)
    store = benchmark.pedantic(st.build_or_open, args=(root, files),
                               kwargs={"cache_dir": tmp_path / "cache", "verbose": False}, rounds=5, iterations=1,
                               warmup_rounds=1)
    record(benchmark, "store-open", len(files), 1)
    assert store.decoded == 0 and len(store.files) == len(files)
    check_pixels([store.images.image(i) for i in range(5)], files)
    assert Path(store.path).is_dir()
