"""Data larger than RAM: batches from a memory-mapped ``.npy`` whose pages are not in the page cache (issue 34, item 4).

One group, ``memmap-cold``. A CIFAR-shaped file (20,000x32x32x3, 61 MB),
batch 512, crop + flip + normalise to float32. Each row times
:data:`BATCHES` batches, each after a :data:`STEP` seconds' sleep that
stands for the model's training step (the time a read-ahead has to work
in). The page cache is emptied before every batch, so no batch finds its
rows in RAM unless they were read ahead: that is data much larger than RAM,
on a disk as fast as this machine's. Timed from the third batch: the steady
state of a long epoch (the first batch that faults turns the read-ahead on). Rows:

- ``ram``: the array in RAM (the target's reference);
- ``memmap-warm``: the file mapped, its pages in the page cache;
- ``memmap-cold-faults``: every batch read by page faults (read-ahead off);
- ``memmap-cold-readahead``: the sequence's read-ahead (``fastseq.sequence.readahead``),
  one batch deep; the page cache is emptied just before each hint, so
  nothing but the one batch asked for is in RAM.

Target: ``memmap-cold-readahead`` takes at most 1/0.9 of ``ram``'s time.
Each row checks that its batches are the in-RAM sequence's pixels.
"""

import mmap
import os
import shutil

import numpy as np
import pytest

from benchmarks import summary
from fastseq.augment import Normalize, RandomCrop, RandomFlip
from fastseq.sequence import readahead
from fastseq.sequence.array_sequence import ArraySequence

GROUP = "memmap-cold"
BATCH = 512
#: Seconds of "training step" before each batch: a GPU step of a small model on 512 CIFAR images.
STEP = 0.01
BATCHES = 12
ROWS = ["ram", "memmap-warm", "memmap-cold-faults", "memmap-cold-readahead"]

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise") or readahead._madvise is None,
                                reason="evicts the page cache with posix_fadvise and reads ahead with madvise: Linux")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20_000, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, len(x))
    path = tmp_path_factory.mktemp("memmap") / "x.npy"
    np.save(path, x)
    os.sync()  # clean pages: the page cache can drop them
    return x, y, path


def sequence(x, y):
    aug = dict(crop=RandomCrop(32, 32, padding=4), flip=RandomFlip("horizontal"),
               normalize=Normalize([125.3, 123.0, 113.9], [63.0, 62.1, 66.7]))
    return ArraySequence(x, y, batch_size=BATCH, seed=0, **aug)


class Evictor:
    """Empties the page cache of one file mapped by this process (its mapping's pages, then the cache's)."""

    def __init__(self, path, xm):
        self.path, self.xm = path, xm

    def __call__(self):
        self.xm._mmap.madvise(mmap.MADV_DONTNEED)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@pytest.mark.parametrize("row", ROWS)
def test_memmap_cold(benchmark, data, row, tmp_path):
    import time

    x, y, shared = data
    # A file of the row's own: pages another row's mapping still holds could not be evicted.
    path = tmp_path / f"{row}.npy"
    shutil.copyfile(shared, path)
    os.sync()
    xm = np.load(path, mmap_mode="r")
    evict = Evictor(path, xm)
    ram = sequence(x, y)
    made = {}

    def setup():
        # A new sequence each round: nothing asked for yet, the read-ahead off until a batch faults.
        seq = sequence(x if row == "ram" else xm, y)
        assert (seq._readahead is None) == (row == "ram")
        if row == "memmap-cold-faults":
            seq._readahead = None
        if row == "memmap-cold-readahead":
            seq._readahead.depth = 1
            seq._readahead.before_advise = evict
        seq[0]  # compiled (or the NumPy tier's first batch) before timing
        if row == "memmap-warm":
            int(xm.reshape(-1)[::4096].sum())  # every page in the page cache and mapped
        elif row.startswith("memmap-cold"):
            evict()
            seq[1]  # read by faults: this turns the read-ahead on (it asks for batch 2); the rows time the steady state
        made["seq"] = seq
        return (seq,), {}

    def epoch(seq):
        for i in range(2, BATCHES + 2):
            if row == "memmap-cold-faults":
                evict()
            time.sleep(STEP)
            seq[i]

    benchmark.group = GROUP
    benchmark.extra_info.update(row=row, batch=BATCH, batches=BATCHES, step_seconds=STEP)
    benchmark.pedantic(epoch, setup=setup, rounds=3, iterations=1)
    if not benchmark.disabled and benchmark.stats is not None:
        benchmark.extra_info["images_per_sec"] = round(BATCHES * BATCH / benchmark.stats.stats.median, 1)
        summary.MEMMAP[row] = benchmark.extra_info["images_per_sec"]
    seq = made["seq"]
    if row == "memmap-cold-readahead":
        ra = seq._readahead
        assert ra.cold and ra.batches_asked >= BATCHES  # the faults of batch 1 turned it on
        benchmark.extra_info["hint_cpu_ms_per_batch"] = round(ra.hint_seconds / ra.batches_hinted * 1e3, 2)
    for i in (2, BATCHES + 1):
        np.testing.assert_array_equal(seq[i][0], ram[i][0])
