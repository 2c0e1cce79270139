"""Pickling a read-only memmap by reference: a worker process reopens the file instead of copying it."""

from __future__ import annotations

import mmap

import numpy as np


class MemmapRef:
    """A picklable reference to a read-only memmap: reopened, not copied, in a worker process."""

    def __init__(self, filename, dtype, shape, offset):
        self.filename, self.dtype, self.shape, self.offset = filename, dtype, shape, offset

    @classmethod
    def wrap(cls, x):
        """Return a reference for a whole-file-region memmap, else ``x`` itself (pickled by value)."""
        if not isinstance(x, np.memmap) or x.filename is None or not isinstance(getattr(x, "_mmap", None), mmap.mmap):
            return x
        start = x.offset - x.offset % mmap.ALLOCATIONGRANULARITY
        base = np.frombuffer(x._mmap, np.uint8).ctypes.data
        if x.ctypes.data - base != x.offset - start or not x.flags.c_contiguous:
            return x  # a view into the mapping: its own offset is unknown, so copy the data
        return cls(x.filename, x.dtype, x.shape, x.offset)

    def open(self):
        return np.memmap(self.filename, dtype=self.dtype, mode="r", shape=self.shape, offset=self.offset)
