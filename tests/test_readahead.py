"""Read-ahead of memory-mapped data (issue 34, item 4): which pages are asked for, when, and that pixels never change."""

import mmap
import os
import signal
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastseq.augment import Normalize, RandomCrop, RandomFlip
from fastseq.ragged import RaggedImages
from fastseq.sequence import readahead
from fastseq.sequence.array_sequence import ArraySequence
from fastseq.sequence.readahead import ReadAhead, page_runs

PAGE = mmap.PAGESIZE


def pages_of(address, starts, lengths):
    """The set of page numbers that bytes ``[address + s, address + s + n)`` of each row touch (the plain twin)."""
    pages = set()
    for s, n in zip(starts.tolist(), lengths.tolist()):
        pages.update(range((address + s) // PAGE, (address + s + n - 1) // PAGE + 1))
    return pages


@settings(max_examples=200, deadline=None)
@given(
    address=st.integers(0, 3 * PAGE),
    rows=st.lists(st.tuples(st.integers(0, 40 * PAGE), st.integers(1, 3 * PAGE)), min_size=0, max_size=30),
)
def test_page_runs_cover_exactly_the_pages_of_the_rows(address, rows):
    starts = np.array([r[0] for r in rows], np.int64)
    lengths = np.array([r[1] for r in rows], np.int64)
    firsts, stops = page_runs(address, starts, lengths)
    assert firsts.dtype == np.int64 and stops.dtype == np.int64
    assert np.all(firsts % PAGE == 0) and np.all(stops % PAGE == 0) and np.all(stops > firsts)
    assert np.all(firsts[1:] > stops[:-1])  # sorted, disjoint, not touching: one madvise per run
    covered = set()
    for a, b in zip(firsts.tolist(), stops.tolist()):
        covered.update(range(a // PAGE, b // PAGE))
    assert covered == pages_of(address, starts, lengths)


@pytest.fixture
def npy(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (300, 9, 11, 3), dtype=np.uint8)  # 297-byte rows: some share a page, some cross one
    path = tmp_path / "x.npy"
    np.save(path, x)
    return x, np.load(path, mmap_mode="r")


def test_only_file_backed_images_get_a_read_ahead(npy, tmp_path):
    x, xm = npy
    batches = lambda j, epoch: np.arange(4)  # noqa: E731
    assert ReadAhead.for_images(x, batches, 3) is None
    assert ReadAhead.for_images(xm, batches, 3) is not None
    assert ReadAhead.for_images(xm[:, ::2], batches, 3) is None  # rows not contiguous: no spans to ask for
    pixels = np.memmap(tmp_path / "p.bin", np.uint8, "w+", shape=(1000,))
    ragged = RaggedImages(pixels, [0, 300, 600], [[10, 10, 3], [10, 10, 3], [10, 10, 3]])
    assert ReadAhead.for_images(ragged, batches, 3) is not None
    assert ReadAhead.for_images(RaggedImages.from_images([x[0], x[1]]), batches, 3) is None


class Recorder:
    """A fault counter the test drives and an ``madvise`` that records its calls."""

    def __init__(self):
        self.count = 0
        self.calls = []

    def faults(self):
        return self.count

    def advise(self, address, length, advice):
        self.calls.append((address, length, advice))
        return 0


def sequence_and_readahead(xm, recorder, batch_size=32, **kwargs):
    seq = ArraySequence(xm, np.zeros(len(xm), np.int64), batch_size=batch_size, seed=5, **kwargs)
    ra = ReadAhead.for_images(xm, seq._batch_indices, len(seq), advise=recorder.advise, faults=recorder.faults)
    return seq, ra


def test_asks_nothing_while_the_batches_make_no_major_fault(npy):
    _, xm = npy
    rec = Recorder()
    seq, ra = sequence_and_readahead(xm, rec)
    for j in range(len(seq)):
        ra.after(0, j, ra.faults())
    assert not ra.cold and ra.batches_asked == 0 and rec.calls == []


def test_a_faulting_batch_asks_for_the_pages_of_the_next_batches_of_its_epoch(npy):
    _, xm = npy
    rec = Recorder()
    seq, ra = sequence_and_readahead(xm, rec)
    before = ra.faults()
    rec.count += 7  # batch 2 read from disk
    ra.after(0, 2, before)
    assert ra.cold and ra.wait_idle()
    want = set()
    for k in (3, 4):  # DEPTH = 2 batches ahead
        idx = seq._batch_indices(k, 0)
        want |= pages_of(xm.ctypes.data, idx * xm.strides[0], np.full(idx.size, xm[0].nbytes))
    got = set()
    for address, length, advice in rec.calls:
        assert advice == mmap.MADV_WILLNEED and address % PAGE == 0 and length % PAGE == 0
        got.update(range(address // PAGE, (address + length) // PAGE))
    assert got == want
    assert ra.batches_asked == 2
    # The next batch, made from the pages asked for: asks only for the one batch not asked for yet.
    calls = len(rec.calls)
    ra.after(0, 3, ra.faults())
    assert ra.wait_idle() and ra.batches_asked == 3 and len(rec.calls) > calls
    # The last batches of the epoch ask for nothing past its end.
    ra.after(0, len(seq) - 1, ra.faults())
    assert ra.wait_idle() and ra.batches_asked == 3


def test_a_probe_batch_made_without_a_fault_turns_it_off_and_with_one_keeps_it_on(npy):
    _, xm = npy
    rec = Recorder()
    seq, ra = sequence_and_readahead(xm, rec, batch_size=4)  # 75 batches an epoch
    rec.count += 1
    ra.after(0, 0, 0)
    j = 0
    while not ra._probes:  # every PROBE_EVERY-th batch asked for is left out: a probe
        j += 1
        ra.after(0, j, ra.faults())
    assert ra.batches_asked == readahead.PROBE_EVERY
    (probe,) = ra._probes
    before = ra.faults()
    rec.count += 3  # the probe batch, not asked for, read from disk: still cold
    ra.after(*probe, before)
    assert ra.cold and not ra._probes
    while not ra._probes:
        j += 1
        ra.after(0, j, ra.faults())
    (probe,) = ra._probes
    ra.after(*probe, ra.faults())  # made from RAM though nobody asked: the data is in RAM now
    assert not ra.cold
    asked = ra.batches_asked
    ra.after(0, probe[1] + 1, ra.faults())
    assert ra.batches_asked == asked  # off: asks nothing more
    assert ra.wait_idle()


def test_off_by_environment(npy, monkeypatch):
    _, xm = npy
    monkeypatch.setattr(readahead, "ENABLED", False)
    seq = ArraySequence(xm, np.zeros(len(xm), np.int64), batch_size=32)
    assert seq._readahead is None


def evict(path, xm):
    """Drop ``path``'s pages from this process's mapping and from the page cache (clean pages: no root needed)."""
    xm._mmap.madvise(mmap.MADV_DONTNEED)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident(xm, idx):
    """Whether every page of rows ``idx`` of ``xm`` is in the page cache (``mincore``)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    firsts, stops = page_runs(xm.ctypes.data, idx * xm.strides[0], np.full(idx.size, xm[0].nbytes))
    for a, b in zip(firsts.tolist(), stops.tolist()):
        vec = (ctypes.c_ubyte * ((b - a) // PAGE))()
        if libc.mincore(a, b - a, vec) != 0 or not all(v & 1 for v in vec):
            return False
    return True


@pytest.mark.skipif(not hasattr(os, "posix_fadvise") or readahead._madvise is None, reason="needs Linux")
def test_cold_file_same_pixels_and_the_next_batch_is_read_ahead(tmp_path):
    """A file evicted from the page cache: the sequence turns the read-ahead on, and every pixel is as from RAM."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4000, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "x.npy"
    np.save(path, x)
    xm = np.load(path, mmap_mode="r")
    xm._mmap.madvise(mmap.MADV_RANDOM)  # no read-around of faults: only the read-ahead reads batch 1's pages
    y = np.arange(len(x))
    aug = dict(crop=RandomCrop(32, 32, padding=4), flip=RandomFlip("horizontal"), normalize=Normalize(127.0, 64.0))
    ram = ArraySequence(x, y, batch_size=64, seed=1, **aug)
    seq = ArraySequence(xm, y, batch_size=64, seed=1, **aug)
    assert seq._readahead is not None
    os.sync()
    evict(path, xm)
    first = seq[0]
    if not seq._readahead.cold:
        pytest.skip("evicting the file did not make a major fault here (a filesystem the page cache does not drop)")
    assert seq._readahead.wait_idle()
    deadline = time.monotonic() + 10
    while not resident(xm, seq.indices(1)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert resident(xm, seq.indices(1))  # read before it was asked for
    np.testing.assert_array_equal(first[0], ram[0][0])
    for i in range(1, len(seq)):
        got, want = seq[i], ram[i]
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_fresh_lock_and_thread(npy):
    """Forked while the read-ahead thread holds its lock: the child's read-ahead still works (no deadlock)."""
    _, xm = npy
    rec = Recorder()
    seq, ra = sequence_and_readahead(xm, rec)
    rec.count += 1
    ra.after(0, 0, 0)
    assert ra.wait_idle()
    with ra._lock:  # as if the thread were inside its lock at the fork
        pid = os.fork()
        if pid == 0:  # the child: must not block on the parent's held lock
            code = 1
            signal.alarm(10)  # a child stuck on the lock dies of SIGALRM: the test fails, it does not hang
            try:
                rec.count += 1
                ra.after(0, 5, 0)
                code = 0 if ra.wait_idle(5) and ra.batches_asked > 2 else 2
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_ragged_images_ask_for_each_images_own_bytes(tmp_path):
    """A photo store's RaggedImages: the pages asked for are those of each image's bytes (offset, h * w * c)."""
    rng = np.random.default_rng(7)
    shapes = np.column_stack([rng.integers(5, 90, 40), rng.integers(5, 90, 40), np.full(40, 3)]).astype(np.int64)
    sizes = shapes.prod(axis=1)
    gaps = rng.integers(0, 3 * PAGE, 40)  # a store may leave room between images
    offsets = np.cumsum(gaps + np.r_[0, sizes[:-1]]).astype(np.int64)  # image k starts gaps[k] after image k-1 ends
    pixels = np.memmap(tmp_path / "pixels.bin", np.uint8, "w+", shape=(int(offsets[-1] + sizes[-1]),))
    ragged = RaggedImages(np.memmap(tmp_path / "pixels.bin", np.uint8, "r"), offsets, shapes)
    del pixels
    rec = Recorder()
    order = rng.permutation(40)
    ra = ReadAhead.for_images(ragged, lambda j, epoch: order[8 * j : 8 * j + 8], 5, advise=rec.advise,
                              faults=rec.faults)
    rec.count += 1
    ra.after(0, 1, 0)
    assert ra.wait_idle()
    idx = order[16:32]  # batches 2 and 3
    want = pages_of(ragged.pixels.ctypes.data, offsets[idx], sizes[idx])
    got = set()
    for address, length, _ in rec.calls:
        got.update(range(address // PAGE, (address + length) // PAGE))
    assert got == want
