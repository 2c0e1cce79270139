"""End-to-end feed: model.fit on a trivial model, fed by each loader (the ArraySequence issue's suite).

Group ``feed-cifar-b512``: the no-op PyDataset (Keras' own ceiling), the
no-op returning a plain, copied NumPy batch, the bandwidth ceiling's
conversion of a new contiguous slice each step, ArraySequence in RAM and
memory-mapped from .npy (page cache warm), the hand-written NumPy Sequence
and tf.data. images/s is the steady state of a real ``fit`` (timed by a
callback after warm-up steps), the median of five windows per row, the
rows interleaved round by round, so one test times them all. Group
``getitem-cifar-b512``: ``seq[i]`` alone against the memory-bandwidth
ceiling, as two rows, and the target ratio from the two called
alternately. With timing disabled (plain ``pytest``) every row runs a few
small steps once, as a test that it works.
"""

import numpy as np
import pytest

from benchmarks import summary
from fastseq import ArraySequence, Normalize, RandomCrop, RandomFlip
from fastseq.bench import feed as bench_feed
from fastseq.bench import kernel_rows, timing

pytestmark = pytest.mark.slow
FEED = "feed-cifar-b512"
GETITEM = "getitem-cifar-b512"
ROWS = ["noop", "noop-copied", "convert", "fastseq", "fastseq-memmap", "fastseq-uint8", "numpy", "tf.data", "grain"]


def _timed(benchmark):
    return not benchmark.disabled


# seq[i] first, before any model.fit has started TensorFlow's threads in this process.
@pytest.mark.parametrize("name", ["ceiling", "seq[i]"])
def test_getitem_against_ceiling(benchmark, name, cifar):
    from conftest import CIFAR_MEAN, CIFAR_STD

    x, y = cifar
    job = kernel_rows.cifar_job(x, y)  # the kernel suite's job: batch 512, pad 4, crop 32, flip, normalise
    benchmark.group = GETITEM
    if name == "ceiling":
        row = kernel_rows.ceiling_row(job)  # the very ceiling of the kernel suite
        out = benchmark(row.fn)
        np.testing.assert_array_equal(out.reshape(-1), row.check_data())
        threads = 1
    else:
        seq = ArraySequence(x, y, batch_size=job.batch_size, crop=RandomCrop(32, 32, padding=4),
                            flip=RandomFlip("horizontal"), normalize=Normalize(CIFAR_MEAN, CIFAR_STD))
        batches = kernel_rows._Cycle(range(0, len(seq) - 1, 3))
        seq[0]  # warm the JIT
        bx, by = benchmark(lambda: seq[batches()])
        assert bx.shape == (job.batch_size, 32, 32, 3) and bx.dtype == np.float32
        np.testing.assert_array_equal(by, y[seq.indices(batches.last)])
        threads = kernel_rows.all_threads()
    if _timed(benchmark):
        best = benchmark.stats.stats.min
        info = {"images_per_sec": job.batch_size / best, "GB_per_sec": job.out_bytes / best / 1e9, "threads": threads}
        if name == "seq[i]":
            # The target ratio, from the two called alternately.
            info.update(timing.alternating_ratio(lambda: seq[batches()], kernel_rows.ceiling_row(job).fn))
        benchmark.extra_info.update(info)
        summary.RESULTS.setdefault(GETITEM, {})[name] = info


def test_feed(benchmark, cifar, cifar_npy):
    """Every feed row, interleaved round by round (see ``bench_feed.run_feeds``): one pytest-benchmark entry."""
    from conftest import CIFAR_MEAN, CIFAR_STD

    x, y = cifar
    timed = _timed(benchmark)
    batch_size, steps, rounds = (512, 50, 5) if timed else (64, 3, 1)
    factories = bench_feed.loaders(x, y, batch_size=batch_size, mean=CIFAR_MEAN, std=CIFAR_STD, x_memmap=cifar_npy)
    factories = {name: factories[name] for name in ROWS}
    # "Page cache warm": the file was just written, so its pages are cached; touch
    # one byte per page so the mapping itself is populated before timing too.
    int(cifar_npy.reshape(-1)[::4096].sum())
    results = {}
    benchmark.group = FEED
    benchmark.pedantic(
        lambda: results.update(
            bench_feed.run_feeds(factories, image_shape=x.shape[1:], batch_size=batch_size, steps=steps, rounds=rounds)
        ),
        rounds=1,
        iterations=1,
    )
    assert sorted(results) == sorted(ROWS)
    rows = {}
    for name, r in results.items():
        assert np.isfinite(r.images_per_sec) and r.images_per_sec > 0, name
        rows[name] = {
            "images_per_sec": r.images_per_sec,
            "GB_per_sec": r.images_per_sec * int(np.prod(x.shape[1:])) * 4 / 1e9,
            "threads": "keras",
            "step_ms": r.step_ms,
            "windows_images_per_sec": r.windows,
        }
    benchmark.extra_info.update({"rows": rows, "batch_size": batch_size, "steps": steps, "rounds": rounds})
    if timed:
        summary.RESULTS[FEED] = rows
