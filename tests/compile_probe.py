"""A small cached kernel for the compile-process tests (tests/test_compile_process.py): compiles in about a second.

Imported by the compile child too. ``FASTSEQ_TEST_CHILD_DELAY`` (seconds) makes that child, and only it, sleep
after the import: a compile still running when its parent script ends.
"""

import os
import sys
import time

import numba
import numpy as np

if "_compile_child" in (sys.argv[0] if sys.argv else ""):
    time.sleep(float(os.environ.get("FASTSEQ_TEST_CHILD_DELAY", "0")))


@numba.njit(cache=True, nogil=True)
def scaled_sum(x, a):
    """``sum(x * a)`` over a float32 or uint8 array (two loops, so there is something to compile)."""
    s = np.float32(0)
    for i in range(x.shape[0]):
        s += np.float32(x[i]) * a
    t = np.float32(0)
    for i in range(x.shape[0] - 1, -1, -1):
        t += np.float32(x[i])
    return s + t * np.float32(0)


def example():
    """Arguments of the types the tests compile ``scaled_sum`` for."""
    return np.arange(5, dtype=np.float32), np.float32(2)
