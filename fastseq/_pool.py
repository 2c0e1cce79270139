"""Reuse of batch output buffers, guarded by reference counts.

A fresh 6 MB array per CIFAR batch costs ``model.fit`` more than the
fused kernel does: the pages of a new allocation are faulted in and zeroed
by the OS on first write, and freeing them unmaps them again. Measured in
``fit`` with a trivial model (CIFAR, batch 512, 2 cores): 10.7 ms a step
with a fresh array per batch, 8.6 ms with reused ones, against 6.9 ms for
the no-op dataset that returns one precomputed batch.

:class:`BufferPool` hands out an array again only when nothing but the pool
refers to it, so a batch is never overwritten while any caller, queue or
view still holds it: every NumPy view keeps its base array alive, and so do
buffer exports (``memoryview``, ``torch.from_numpy``, zero-copy tensors).
TensorFlow's ``from_generator`` (Keras' path) copies the batch, but Keras'
thread queue, prefetching and user code hold batches for a while, and they
are safe too. What the pool cannot see is memory kept alive without a
reference, e.g. a raw pointer taken from ``arr.ctypes.data``.
"""

from __future__ import annotations

import sys
import threading

import numpy as np


def _refs(slots, i):
    """References to ``slots[i]``, counted the same way for a pooled array and for the calibration."""
    return sys.getrefcount(slots[i])


#: What :func:`_refs` reports for an array held by nothing but its slot.
_ALONE = _refs([np.empty(1)], 0)


class BufferPool:
    """At most ``capacity`` reusable arrays of one shape and dtype.

    :meth:`take` returns a pooled array that nothing else holds, or a new one
    (kept in the pool while there is room, or in place of a slot whose array
    is held elsewhere, which is then left to its holder). Thread-safe.
    """

    def __init__(self, shape, dtype, capacity):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.capacity = int(capacity)
        self._slots = []
        self._next = 0  # round-robin victim when every slot is held elsewhere
        self._lock = threading.Lock()

    def take(self):
        """An array of ``shape`` and ``dtype`` that no one else references; contents undefined."""
        if self.capacity <= 0:
            return np.empty(self.shape, self.dtype)
        with self._lock:
            slots = self._slots
            for i in range(len(slots)):
                if _refs(slots, i) <= _ALONE:
                    # Bound to a local before the lock is released, so another
                    # thread's scan sees it as held.
                    buf = slots[i]
                    return buf
            buf = np.empty(self.shape, self.dtype)
            if len(slots) < self.capacity:
                slots.append(buf)
            else:
                # Every slot is held by a caller that keeps its batches: stop
                # tracking one of them (its holder keeps it alive) and track the
                # new array instead, so the pool follows the caller's recent batches.
                slots[self._next] = buf
                self._next = (self._next + 1) % self.capacity
            return buf

    def __len__(self):
        with self._lock:
            return len(self._slots)

    def clear(self):
        """Drop every pooled array (arrays held elsewhere stay valid)."""
        with self._lock:
            self._slots = []
            self._next = 0
