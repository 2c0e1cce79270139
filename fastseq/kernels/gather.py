"""Batched gather: ``out[k] = x[indices[k]]`` for images and labels of any dtype."""

import numba
import numpy as np
from numba import njit, prange

from fastseq.kernels import _validate as check
from fastseq.kernels.config import JIT, PARALLEL_JIT, launch, threads_for


@njit(**PARALLEL_JIT)
def _gather_parallel(src, indices, out):
    """src (N, R) uint8, out (n, R) uint8: row k of out <- row indices[k] of src. Parallel over the batch."""
    for k in prange(indices.shape[0]):
        out[k, :] = src[indices[k], :]


# A separate function, not njit(**JIT)(_gather_parallel.py_func): Numba's
# on-disk cache keys on the function's name and bytecode but not on
# ``parallel``, so two compilations of one Python function would overwrite
# each other's cache entries.
@njit(**JIT)
def _gather_serial(src, indices, out):
    """The serial twin of :func:`_gather_parallel`, for small batches and forked workers."""
    for k in range(indices.shape[0]):
        out[k, :] = src[indices[k], :]


def gather(x, indices, out=None):
    """Return ``x[indices]`` along the first axis, for any trailing shape and dtype.

    Images, integer or one-hot labels, sample weights, fixed-width strings and
    structured records all work: rows are copied as raw bytes. Object arrays
    are refused (they hold pointers, not data).

    Numba-compiled; parallel over the batch for large batches; releases the GIL.

    Args:
        x: array with ndim >= 1 (in RAM or a read-only ``np.memmap``).
        indices: 1-D integers in ``[0, len(x)]``; may repeat; may be empty.
        out: optional C-contiguous array of shape ``(len(indices),) + x.shape[1:]``
            and ``x.dtype``.

    Returns:
        The gathered array (``out`` if given).

    Raises:
        TypeError, ValueError: naming the argument and the value received.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array or np.memmap, got {type(x).__name__}; use np.asarray(x).")
    if x.ndim < 1:
        raise ValueError(f"x must have at least one axis to gather along, got a {x.ndim}-D array.")
    if x.dtype.hasobject:
        raise TypeError(f"x must hold plain data, got dtype {x.dtype} (object arrays hold pointers); use np.take.")
    indices = check.index_array(indices, x.shape[0])
    shape = (indices.shape[0],) + x.shape[1:]
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array or None, got {type(out).__name__}.")
        if out.shape != shape or out.dtype != x.dtype:
            raise ValueError(f"out must have shape {shape} and dtype {x.dtype}, got {out.shape} and {out.dtype}.")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be C-contiguous and writeable.")
        if np.may_share_memory(out, x):
            raise ValueError("out must not overlap x.")
    if indices.shape[0] == 0 or out.nbytes == 0:
        return out
    if not x.flags.c_contiguous:
        # Labels are small; images are checked C-contiguous by the image kernels.
        x = np.ascontiguousarray(x)
    row = x.dtype.itemsize * int(np.prod(x.shape[1:], dtype=np.int64))
    src = x.view(np.ndarray).reshape(x.shape[0], -1).view(np.uint8).reshape(x.shape[0], row)
    src.flags.writeable = False
    dst = out.reshape(indices.shape[0], -1).view(np.uint8).reshape(indices.shape[0], row)
    # One thread by config's rule: the serial kernel, without a parallel launch.
    if threads_for(out.nbytes, numba.get_num_threads()) > 1:
        launch(_gather_parallel, src, indices, dst, serial=_gather_serial, work=out.nbytes)
    else:
        _gather_serial(src, indices, dst)
    return out
