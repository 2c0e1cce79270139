"""Read-ahead for images memory-mapped from a file: the next batch's rows are asked of the disk while this one trains.

Data larger than RAM (``np.load(path, mmap_mode="r")``, or a photo folder's
store) is read by page faults as a batch's kernel touches its rows: one
synchronous read per fault, one after another, each with the kernel's
read-around of the pages beside it (about 128 KB), which random rows do not
use. Measured on this project's 2-core VM (CIFAR-shaped 50,000x32x32x3
``.npy``, batch 512, the file evicted from the page cache before every
batch, a 5 ms step between batches): 237 ms per batch through faults, 56 ms
with ``MADV_RANDOM`` (no read-around), 1.5 ms from RAM; with the batch's
pages asked for ahead (``madvise(MADV_WILLNEED)``), 3-4 ms
(``benchmarks/test_memmap.py``).

So a sequence over a file-backed ``x`` asks, from a background thread, for
the pages of the rows of the next :data:`DEPTH` batches of the epoch
whenever it has made one: the disk reads them, many at once, while the
model trains on this one. The hint changes no pixel: it only moves reads
earlier. It runs only while the data is not in RAM: the gate is the
process's major page faults (a read from disk) while the batch was made,
which costs two ``getrusage`` calls a batch. A warm page cache shows none,
and asks nothing. Once on, every :data:`PROBE_EVERY`-th batch is left
unasked; made without a major fault, it turns the read-ahead off again.

``FASTSEQ_READAHEAD=0`` turns it off. Linux and macOS (``madvise`` and
``getrusage``); elsewhere there is none, and batches read by faults as before.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import mmap
import os
import threading
import time
import weakref

import numpy as np

#: Batches of the epoch asked for ahead of the one just made.
DEPTH = 2
#: While on, one batch in this many is not asked for: it shows whether the data is still outside RAM.
PROBE_EVERY = 16
#: Seconds an idle read-ahead thread waits for work before it exits (a new one starts on demand).
IDLE_SECONDS = 5.0
#: ``FASTSEQ_READAHEAD=0`` turns read-ahead off for every sequence.
ENABLED = os.environ.get("FASTSEQ_READAHEAD", "1").strip().lower() not in ("0", "false", "no", "off")

_PAGE = mmap.PAGESIZE


def _load_madvise():
    """libc's ``madvise``, or None where there is none (or no ``MADV_WILLNEED``)."""
    if not hasattr(mmap, "MADV_WILLNEED"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _load_major_faults():
    """A function returning this process's major page faults so far, or None where ``getrusage`` is missing."""
    try:
        import resource
    except ImportError:
        return None

    def major_faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_majflt

    return major_faults


_madvise = _load_madvise()
_major_faults = _load_major_faults()


_live = weakref.WeakSet()  # every ReadAhead of this process, for the fork handler


def _reset_in_child():
    for ra in list(_live):
        ra._after_fork()


os.register_at_fork(after_in_child=_reset_in_child)


def page_runs(address, starts, lengths):
    """The page-aligned ``(start, stop)`` address runs that cover bytes ``[address + s, address + s + n)`` of each row.

    Args:
        address: int, the address of byte 0 of the data.
        starts: int64 array, each row's first byte (from ``address``).
        lengths: int64 array, each row's byte count (> 0).

    Returns:
        Two int64 arrays ``(run_starts, run_stops)``: sorted, disjoint and
        not touching (a run ends before the next one's page), page-aligned,
        together exactly the pages the rows touch.
    """
    first = (address + starts) // _PAGE * _PAGE
    stop = -(-(address + starts + lengths) // _PAGE) * _PAGE
    if first.size == 0:
        return first, stop
    order = np.argsort(first, kind="stable")
    first, stop = first[order], np.maximum.accumulate(stop[order])
    breaks = np.flatnonzero(first[1:] > stop[:-1]) + 1
    return first[np.r_[0, breaks]], stop[np.r_[breaks - 1, first.size - 1]]


def _spans(x):
    """``(address, spans(indices) -> (starts, lengths))`` of a file-backed, row-contiguous ``x``, else None."""
    from fastseq.kernels.images import _file_backed
    from fastseq.ragged import RaggedImages

    if isinstance(x, RaggedImages):
        pixels = x.pixels
        if not _file_backed(x._pixels) or pixels.size == 0:
            return None
        sizes = x.shapes.prod(axis=1)
        offsets = x.offsets
        return pixels.ctypes.data, lambda idx: (offsets[idx], sizes[idx])
    if not isinstance(x, np.ndarray) or x.ndim < 2 or x.size == 0 or not _file_backed(x):
        return None
    row = x[0].nbytes
    if not x[0].flags.c_contiguous or x.strides[0] < row:
        return None
    stride = x.strides[0]
    lengths = {}

    def spans(idx):
        n = idx.shape[0]
        if n not in lengths:
            lengths[n] = np.full(n, row, np.int64)
        return idx * stride, lengths[n]

    return x.ctypes.data, spans


class ReadAhead:
    """Asks the OS for the pages of the next batches' rows of a file-backed ``x``, while its data is outside RAM.

    Built by :meth:`for_images`; a sequence calls :meth:`faults` before it
    makes batch ``j`` of ``epoch`` and :meth:`after` once it is made. Safe
    from any number of threads. Holds ``x``, so its mapping outlives every
    hint given for it.
    """

    def __init__(self, x, address, spans, batch_indices, num_batches, *, depth=DEPTH, advise=None, faults=None):
        self._x = x  # keeps the mapping alive while hints for it are pending
        self._address = address
        self._spans = spans
        self._batch_indices = batch_indices
        self._num_batches = num_batches
        self.depth = depth
        self._advise = advise or _madvise
        self._count_faults = faults or _major_faults
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending = collections.deque()
        self._asked = collections.deque(maxlen=4 * (depth + 1))
        self._probes = set()
        self._thread = None
        self._busy = False
        self.cold = False
        #: batches asked for and page runs advised so far (for tests and benchmarks)
        self.batches_asked = 0
        self.batches_hinted = 0
        self.runs_advised = 0
        #: CPU seconds the read-ahead thread spent hinting (its cost to the machine)
        self.hint_seconds = 0.0
        #: called in the read-ahead thread before each batch's hint (benchmarks: evict the page cache)
        self.before_advise = None
        _live.add(self)

    def _after_fork(self):
        # The child has none of the parent's threads: a lock the read-ahead thread held at the fork
        # would stay held, and a thread object would look alive. A fresh lock, no thread, no hints pending.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending.clear()
        self._thread = None
        self._busy = False

    @classmethod
    def for_images(cls, x, batch_indices, num_batches, **kwargs):
        """A read-ahead for ``x`` (an array or a ``RaggedImages``) when it is memory-mapped from a file, else None.

        ``batch_indices(j, epoch)`` gives batch ``j``'s sample indices;
        ``num_batches`` the batches in an epoch.
        """
        if not ENABLED or (kwargs.get("advise") or _madvise) is None or (kwargs.get("faults") or _major_faults) is None:
            return None
        found = _spans(x)
        if found is None:
            return None
        return cls(x, *found, batch_indices, num_batches, **kwargs)

    def faults(self):
        """The process's major page faults so far: pass it to :meth:`after`."""
        return self._count_faults()

    def after(self, epoch, j, faults_before):
        """Batch ``j`` of ``epoch`` is made: update the gate from its major faults, ask for the next batches if on."""
        faulted = self._count_faults() > faults_before
        key = (epoch, j)
        with self._lock:
            if key in self._probes:
                self._probes.discard(key)
                self.cold = faulted
            elif faulted:
                self.cold = True
            if not self.cold:
                return
            for k in range(j + 1, min(j + 1 + self.depth, self._num_batches)):
                ahead = (epoch, k)
                if ahead in self._asked:
                    continue
                self._asked.append(ahead)
                self.batches_asked += 1
                if self.batches_asked % PROBE_EVERY == 0:
                    self._probes.add(ahead)
                    continue
                self._pending.append(ahead)
            if self._pending:
                self._start()
                self._wake.notify()

    def _start(self):
        # One thread, started on demand, gone when idle (the caller holds the lock).
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="fastseq read-ahead", daemon=True)
            self._thread.start()

    def _run(self):
        me = threading.current_thread()
        while True:
            with self._lock:
                if not self._pending and not self._wake.wait_for(lambda: self._pending, IDLE_SECONDS):
                    if self._thread is me:
                        self._thread = None
                    return
                epoch, j = self._pending.popleft()
                self._busy = True
            try:
                self._hint(epoch, j)
            finally:
                with self._lock:
                    self._busy = False

    def _hint(self, epoch, j):
        hook = self.before_advise
        if hook is not None:
            hook()
        t0 = time.thread_time()
        starts, lengths = self._spans(self._batch_indices(j, epoch))
        firsts, stops = page_runs(self._address, starts, lengths)
        advise = self._advise
        for a, b in zip(firsts.tolist(), stops.tolist()):
            advise(a, b - a, mmap.MADV_WILLNEED)  # a hint: its result (ENOMEM, EINVAL) changes nothing
        self.runs_advised += len(firsts)
        self.batches_hinted += 1
        self.hint_seconds += time.thread_time() - t0

    def wait_idle(self, timeout=10.0):
        """Block until every batch asked for has been hinted (tests and benchmarks); True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending and not self._busy:
                    return True
            time.sleep(0.001)
        return False
