"""The first tier: NumPy versions of compiled passes, for the batches asked for while those compile.

A new environment starts with an empty Numba cache, and the fused pass
takes 15-25 s to compile on a 2-core machine (LLVM vectorises a dozen
specialised row loops). A sequence therefore compiles its pass in a
background thread (:func:`fastseq.kernels.config.background_compile`) and
serves the batches asked for meanwhile from here: the same pixels, bit for
bit, from vectorised NumPy that compiles nothing.

Same pixels because the arithmetic is the same: ``float32(v) * a + b`` is
one IEEE float32 multiply and one add in both (NumPy does not fuse them,
and the kernels are compiled without ``fastmath``, so without FMA), half
precision is the same 256-entry table of correctly rounded bits, and raw
bytes are raw bytes. ``tests/test_quick.py`` holds the two tiers and the
NumPy twins to that on random shapes and parameters.

These functions take the compiled kernels' own arguments (the plans build
them once for both) and, like them, check every per-sample value before
writing anything.
"""

import numpy as np

# The fused pass's output kinds and pad modes (fastseq/kernels/images.py).
_RAW, _AFFINE, _TABLE = 0, 1, 2
_CONSTANT, _EDGE, _REFLECT = 0, 1, 2


def source(q, n, mode):
    """Padded-minus-pad coordinates ``q`` (any int array) -> image coordinates, -1 for the constant fill.

    ``np.pad``'s rules, as the compiled ``_source``: "edge" repeats the border
    pixel, "reflect" mirrors about it without repeating it.
    """
    inside = (q >= 0) & (q < n)
    if mode == _CONSTANT:
        return np.where(inside, q, -1)
    if mode == _EDGE:
        return np.clip(q, 0, n - 1)
    if n == 1:
        return np.zeros_like(q)
    period = 2 * (n - 1)
    s = np.remainder(q, period)
    return np.where(s >= n, period - s, s)


def fused(xf, H, W, indices, order, origins, flips, size, max_top, max_left, pad, mode, fill, h, w, kind,
          channels_first, a, b, table, eboxes, efill, out, blocks=None):
    """The NumPy tier of ``images._checked``: the same arguments, the same result in ``out``.

    Returns False, having written nothing, when an index, origin, flip or
    erase box is out of range (the caller then raises its usual error).
    ``order`` and ``blocks`` only schedule the compiled pass; they are ignored.
    """
    n = indices.shape[0]
    C = a.shape[0]
    if n and not (
        indices.min() >= 0 and indices.max() < size
        and origins[:, 0].min() >= 0 and origins[:, 0].max() <= max_top
        and origins[:, 1].min() >= 0 and origins[:, 1].max() <= max_left
        and flips.max() <= 3
    ):
        return False
    if eboxes.shape[0] and eboxes.shape[1]:
        y0, y1, x0, x1 = (eboxes[..., i] for i in range(4))
        if not ((y0 >= 0) & (y0 <= y1) & (y1 <= h) & (x0 >= 0) & (x0 <= x1) & (x1 <= w)).all():
            return False
    images = xf[: size * H * W * C].reshape(size, H, W, C)
    rows = np.arange(h)
    cols = np.arange(w)
    # Output pixel (i, j) shows padded pixel (top + i, left + j), or (top + h-1-i) / (left + w-1-j) when flipped.
    vflip = (flips & 2) != 0
    hflip = (flips & 1) != 0
    pr = origins[:, :1] + np.where(vflip[:, None], h - 1 - rows, rows)
    pc = origins[:, 1:] + np.where(hflip[:, None], w - 1 - cols, cols)
    sr = source(pr - pad, H, mode)
    sc = source(pc - pad, W, mode)
    values = images[indices[:, None, None], np.maximum(sr, 0)[:, :, None], np.maximum(sc, 0)[:, None, :]]
    if mode == _CONSTANT:
        outside = (sr < 0)[:, :, None] | (sc < 0)[:, None, :]
        values[outside] = fill
    if kind == _AFFINE:
        result = values.astype(np.float32)
        result *= a
        result += b
    elif kind == _TABLE:
        result = table[values.astype(np.intp) + np.arange(0, 256 * C, 256)]
    else:
        result = values
    for k, j in zip(*np.nonzero((eboxes[..., 1] > eboxes[..., 0]) & (eboxes[..., 3] > eboxes[..., 2]))):
        top, bottom, left, right = eboxes[k, j]
        result[k, top:bottom, left:right] = efill[0]
    if channels_first:
        out[...] = result.transpose(0, 3, 1, 2).reshape(out.shape)
    else:
        out[...] = result.reshape(out.shape)
    return True
