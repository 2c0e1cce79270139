"""The first tier: NumPy versions of compiled passes, for the batches asked for while those compile.

A new environment starts with an empty Numba cache, and the fused pass
takes 15-25 s to compile on a 2-core machine (LLVM vectorises a dozen
specialised row loops). A sequence therefore compiles its pass in a
separate process (:func:`fastseq.kernels.config.background_compile`) and
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


def _boxes_inside(eboxes, h, w):
    """Whether every erase box ``(top, bottom, left, right)`` lies inside ``h x w`` (none: True), as the kernels check."""
    if not (eboxes.shape[0] and eboxes.shape[1]):
        return True
    y0, y1, x0, x1 = (eboxes[..., i] for i in range(4))
    return bool(((y0 >= 0) & (y0 <= y1) & (y1 <= h) & (x0 >= 0) & (x0 <= x1) & (x1 <= w)).all())


def _erase(values, eboxes, efill):
    """Write ``efill[0]`` over every non-empty box of NHWC ``values`` (Cutout / RandomErasing, after the rest)."""
    for k, j in zip(*np.nonzero((eboxes[..., 1] > eboxes[..., 0]) & (eboxes[..., 3] > eboxes[..., 2]))):
        top, bottom, left, right = eboxes[k, j]
        values[k, top:bottom, left:right] = efill[0]


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
    if not _boxes_inside(eboxes, h, w):
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
    _erase(result, eboxes, efill)
    _lay_out(result, channels_first, out)
    return True


# The resampling pass's output kinds (fastseq/kernels/resize.py) and the mix kinds (fastseq/kernels/mix.py).
_R_RAW, _R_AFFINE, _R_HALF, _R_BF16 = 0, 1, 2, 3
_M_F32, _M_F16, _M_BF16, _M_U8 = 0, 1, 2, 3


def _half_bits(values, bfloat16):
    """float32 -> uint16 bits of float16 or bfloat16, round half to even (as ``fastseq.kernels.halfprec``)."""
    if bfloat16:
        import ml_dtypes

        return values.astype(ml_dtypes.bfloat16).view(np.uint16)
    return values.astype(np.float16).view(np.uint16)


def resize(xf, H, W, C, indices, order, boxes, flips, size, h, w, rh, rw, oy, ox, kind, channels_first, a, b, out,
           blocks=None):
    """The NumPy tier of ``resize._checked``: the same arguments, the same result in ``out``.

    Per sample, as the compiled pass: source column and row positions in
    float64, weights rounded once to float32, then ``p + (q - p) * f`` in
    float32 across and then down (TensorFlow's ``compute_lerp``), then
    ``v * a + b``, rounded to the output's type. False (nothing written) when
    an index, box or flip is out of range.
    """
    n = indices.shape[0]
    if n and not (
        indices.min() >= 0 and indices.max() < size
        and boxes[:, :2].min() >= 0 and boxes[:, 2:].min() >= 1
        and (boxes[:, 2] <= H - boxes[:, 0]).all() and (boxes[:, 3] <= W - boxes[:, 1]).all()
        and flips.max() <= 3
    ):
        return False
    images = xf[: size * H * W * C].reshape(size, H, W, C)
    result = np.empty((n, h, w, C), np.float32)
    cols = np.arange(w)
    rows = np.arange(h)
    for k in range(n):
        top, left, bh, bw = (int(v) for v in boxes[k])
        jj = w - 1 - cols if flips[k] & 1 else cols
        ii = h - 1 - rows if flips[k] & 2 else rows
        x = (np.float64(ox) + jj + 0.5) * (np.float64(bw) / np.float64(rw)) - 0.5
        xl = np.floor(x)
        x0 = np.clip(xl.astype(np.int64), 0, bw - 1)
        x1 = np.clip(xl.astype(np.int64) + 1, 0, bw - 1)
        fx = (x - xl).astype(np.float32)[:, None]
        y = (np.float64(oy) + ii + 0.5) * (np.float64(bh) / np.float64(rh)) - 0.5
        yl = np.floor(y)
        y0 = top + np.clip(yl.astype(np.int64), 0, bh - 1)
        y1 = top + np.clip(yl.astype(np.int64) + 1, 0, bh - 1)
        fy = (y - yl).astype(np.float32)[:, None, None]
        box = images[indices[k], :, left:left + bw].astype(np.float32)  # (H, bw, C): all rows, the box's columns
        p, q = box[:, x0], box[:, x1]
        across = p + (q - p) * fx  # (H, w, C)
        p, q = across[y0], across[y1]
        result[k] = p + (q - p) * fy
    if kind == _R_RAW:
        values = np.clip(np.rint(result), 0.0, 255.0).astype(np.uint8)
    else:
        values = result * a + b
        if kind != _R_AFFINE:
            values = _half_bits(values, kind == _R_BF16)
    _lay_out(values, channels_first, out)
    return True


def _lay_out(values, channels_first, out):
    """NHWC ``values`` into ``out``, (n, h, w*C) or (n, C, h*w)."""
    if channels_first:
        out[...] = values.transpose(0, 3, 1, 2).reshape(out.shape)
    else:
        out[...] = values.reshape(out.shape)


def fused_mix(xf, H, W, indices, order, origins, flips, size, max_top, max_left, pad, mode, fill, h, w,
              channels_first, a, b, weights, mboxes, eboxes, efill, okind, out, group=None, blocks=None):
    """The NumPy tier of ``mix._fused_mix``: MixUp/CutMix (then Cutout) in one call, the same bits in ``out``.

    Sample and partner are made as raw pixels by :func:`fused`, then as the
    compiled pass: ``x = float32(v) * a + b`` for both, ``wa * x + (1 - wa) *
    y`` in float32 (``x`` itself for float32 output where ``wa`` is 1), the
    partner inside the CutMix box, rounded to the output's kind; then the
    erase boxes. False (nothing written) when a value is out of range.
    """
    n = weights.shape[0]
    C = a.shape[0]
    if n and not (
        weights.min() >= 0 and weights.max() <= 1
        and mboxes[:, 0].min() >= 0 and (mboxes[:, 0] <= mboxes[:, 1]).all() and mboxes[:, 1].max() <= h
        and mboxes[:, 2].min() >= 0 and (mboxes[:, 2] <= mboxes[:, 3]).all() and mboxes[:, 3].max() <= w
    ):
        return False
    raw = np.empty((2 * n, h, w * C), np.uint8)
    no_boxes = np.zeros((0, 0, 4), np.int64)
    if not fused(xf, H, W, indices, None, origins, flips, size, max_top, max_left, pad, mode, fill, h, w, _RAW,
                 None, a, b, None, no_boxes, None, raw):
        return False
    if not _boxes_inside(eboxes, h, w):
        return False
    raw = raw.reshape(2 * n, h, w, C).astype(np.float32)
    raw *= a
    raw += b
    values = _blend(raw[:n, None], raw[n:, None], weights, mboxes, okind)[:, 0]  # (n, 1, h, w, C): P = 1, Q = C
    _erase(values, eboxes, efill)
    _lay_out(values, channels_first, out)
    return True


def _blend(xs, ys, weights, mboxes, okind):
    """MixUp/CutMix of float32 ``xs`` and ``ys``, (n, P, h, w, Q), rounded to ``okind``: the mix kernels' arithmetic.

    ``wa * x + (1 - wa) * y`` in float32 (``x`` itself for float32 output
    where ``wa`` is 1, as the float32 kernel copies it), ``y`` inside each
    CutMix box ``(top, bottom, left, right)`` (rows on axis 2, columns on
    axis 3), then to nearest even for float16/bfloat16 (uint16 bits) or
    ``min(floor(v + 0.5), 255)`` for uint8.
    """
    n = weights.shape[0]
    wa = weights.reshape(n, 1, 1, 1, 1)
    blended = wa * xs + (np.float32(1) - wa) * ys
    if okind == _M_F32:
        alone = weights == np.float32(1)
        blended[alone] = xs[alone]
    for k in range(n):
        top, bottom, left, right = mboxes[k]
        blended[k, :, top:bottom, left:right] = ys[k, :, top:bottom, left:right]
    if okind == _M_U8:
        return np.minimum(np.floor(blended + np.float32(0.5)), np.float32(255)).astype(np.uint8)
    if okind == _M_F32:
        return blended
    return _half_bits(blended, okind == _M_BF16)


def mix(a, b, weights, boxes, P, h, wq, Q, kind, out, blocks=None):
    """The NumPy tier of ``mix._mix_f32`` / ``mix._mix_rounded``: the same arguments (with the output kind), the same bits.

    ``a``, ``b``: flat made batches, float32 (or uint8 for uint8 output),
    each sample ``(P, h, wq)`` with ``wq = w * Q``; ``out``: flat float32,
    uint16 bits or uint8. The blend is :func:`_blend`'s, the arithmetic of
    :func:`fused_mix` too. The wrapper has checked every value; nothing is refused.
    """
    n = weights.shape[0]
    shape = (n, P, h, wq // Q, Q)
    xs = a.reshape(shape).astype(np.float32, copy=False)
    ys = b.reshape(shape).astype(np.float32, copy=False)
    out[...] = _blend(xs, ys, weights, boxes, kind).reshape(-1)
