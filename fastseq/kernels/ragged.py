"""Images of different sizes -> one fixed-size batch: boxes, resampling, normalisation in one pass.

The images arrive as three arrays (the layout of :class:`fastseq.ragged.RaggedImages`,
which this layer does not import): a flat uint8 ``pixels`` buffer, int64
``offsets`` (N,) and int64 ``shapes`` (N, 3) = ``(H_i, W_i, C)``, one ``C``.

Geometry, per sample (all integers):

* a **box** ``(top, left, height, width)`` in source pixels: the part of the
  image that is resampled. With ``allow_padding`` it may reach outside the
  image (Keras' ``pad_to_aspect_ratio`` pads with zeros, then resizes):
  pixels outside the image read as 0.
* a **window** ``(top, left, height, width)`` in output pixels: the box is
  resized to ``height x width`` and placed with its corner at ``(top, left)``
  of the output; output pixels outside it are 0 (before normalisation).
  The default window is the plan's ``scaled_size`` centred on the output
  (``Resize(..., crop=)``: resize, then keep the centre ``size``); for
  ``scaled_size == size`` it is the whole output. ``tf.image.resize_with_pad``
  (Keras' ``pad_to_aspect_ratio`` with ``format="tf"``) is a window inside
  the output.

Resampling follows ``tf.image.resize`` (``antialias=False`` unless asked),
with TensorFlow's own float32 arithmetic for the coordinates and weights:

* ``"bilinear"``: half-pixel centres, ``p + (q - p) * f`` horizontally then
  vertically (TensorFlow's ``compute_lerp``); bit-exact against TensorFlow.
* ``"nearest"``: half-pixel centres, ``floor((i + 0.5) * scale)``; exact.
* ``"area"``: TensorFlow's ``ResizeArea`` (no half-pixel offset; each output
  the area-weighted mean of the source pixels it covers); exact.
* ``"bicubic"``: Keys' cubic (a = -0.5) from TensorFlow's 1024-entry table,
  weights outside the box dropped and renormalised, as ``ResizeBicubic``;
  TensorFlow sums vertically first, this kernel horizontally first: within
  about 1e-4 of TensorFlow.
* ``"lanczos3"``, ``"lanczos5"``, ``"gaussian"``, ``"mitchellcubic"``, and
  ``antialias=True`` for ``"bilinear"`` (triangle) and ``"bicubic"`` (Keys):
  TensorFlow's ``ScaleAndTranslate`` spans (the kernel widened by the
  downscale factor when antialiasing), horizontally then vertically as
  TensorFlow does; ``antialias`` is ignored for ``"nearest"`` and ``"area"``,
  as in TensorFlow.

The bilinear pass is its own loop (the common, speed-critical case); every
other filter goes through one span pass: per output column a start, a count
and float32 weights, per output row the same, a ring of horizontally
resampled source rows, then the vertical sum. The filter, the layout, the
flips and the padding are run-time flags: one compiled variant per output
element type (float32, float16/bfloat16 bits, uint8).

A prepared plan (``RaggedResizePlan.prepare()``) compiles that variant in a
separate process (or a thread: ``config.background_compile``) and makes the batches asked for meanwhile with NumPy
(:mod:`fastseq.kernels.quick_ragged`), bit for bit the same pixels.
"""

import math

import numba
import numpy as np
from numba import njit, prange, uint64

from fastseq.kernels import _validate as check
from fastseq.kernels import config, quick_ragged
from fastseq.kernels._intrinsics import fetch_add, lerp4
from fastseq.kernels.config import JIT, PARALLEL_JIT, RESAMPLE_COST, announced, launch, mark_warm
from fastseq.kernels.filters import (
    _AREA,
    _CUBIC_TABLE,
    _GAUSSIAN,
    _KEYS,
    _LANCZOS3,
    _LANCZOS5,
    _LERP,
    _MITCHELL,
    _NEAREST,
    _TRIANGLE,
    MAX_SIDE,
    _sat_kernel,
    _sat_radius,
)
from fastseq.kernels.images import ReadOrder
from fastseq.kernels.random import KeyedDraws, index_array
from fastseq.kernels.resize import _AFFINE, _BF16, _HALF, _RAW, _draw_bounds, _emit, _resized_crop_one

#: The interpolations ``tf.image.resize`` (and so Keras' ``image_dataset_from_directory``) offers.
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")

_u = uint64


def _cubic_table():
    """TensorFlow's ``InitCoeffsTable(-0.5)``: Keys' cubic at 1025 points, float32, as resize_bicubic_op.cc builds it."""
    a = -0.5
    table = np.empty(2 * 1025, np.float32)
    for i in range(1025):
        x = np.float32(i * 1.0 / 1024)  # float x = i * 1.0 / kTableSize
        xd = float(x)
        table[2 * i] = np.float32(((a + 2) * xd - (a + 3)) * xd * xd + 1)
        x = np.float32(xd + 1.0)  # x += 1.0 (float)
        xd = float(x)
        table[2 * i + 1] = np.float32(((a * xd - 5 * a) * xd + 8 * a) * xd - 4 * a)
    return table


_CUBIC = _cubic_table()
_CUBIC.flags.writeable = False


def _engine(interpolation, antialias):
    """The pass (-1: bilinear) or span filter for an interpolation name."""
    if not isinstance(interpolation, str) or interpolation.lower() not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
    if not isinstance(antialias, (bool, np.bool_)):
        raise TypeError(f"antialias must be True or False, got {antialias!r}.")
    name = interpolation.lower()
    return {
        "bilinear": _TRIANGLE if antialias else _LERP,
        "nearest": _NEAREST,
        "bicubic": _KEYS if antialias else _CUBIC_TABLE,
        "area": _AREA,
        "lanczos3": _LANCZOS3,
        "lanczos5": _LANCZOS5,
        "gaussian": _GAUSSIAN,
        "mitchellcubic": _MITCHELL,
    }[name]


# ---- per-axis tap tables ---------------------------------------------------


@njit(inline="always", **JIT)
def _position(t, n, pos0, flip):
    """Resized-box coordinate of table entry ``t`` (output pixel ``t`` after the flip)."""
    return pos0 + (n - 1 - t if flip else t)


@njit(**JIT)
def _valid_range(n, pos0, flip, resized):
    """The table entries ``[t0, t1)`` whose position lies inside the resized box (a contiguous range)."""
    t0 = n
    t1 = 0
    for t in range(n):
        p = _position(t, n, pos0, flip)
        if 0 <= p < resized:
            t0 = min(t0, t)
            t1 = max(t1, t + 1)
    if t1 <= t0:
        return 0, 0
    return t0, t1


@njit(**JIT)
def _lerp_axis(n, pos0, flip, resized, box, lo, hi, frac):
    """Bilinear taps along one axis, TensorFlow's ``compute_interpolation_weights`` (half-pixel) in float32.

    ``lo``/``hi`` are box-relative source indices, ``frac`` the weight of ``hi``.
    """
    scale = np.float32(box) / np.float32(resized)
    for t in range(n):
        p = _position(t, n, pos0, flip)
        x = (np.float32(p) + np.float32(0.5)) * scale - np.float32(0.5)
        xf = np.float32(math.floor(x))
        lo[t] = min(max(np.int64(xf), 0), box - 1)
        hi[t] = min(max(np.int64(math.ceil(x)), 0), box - 1)
        frac[t] = x - xf


@njit(**JIT)
def _span_capacity(filt, antialias, box, resized):
    """At most how many taps one output pixel of this axis reads."""
    if filt == _NEAREST:
        return 1
    if filt == _CUBIC_TABLE:
        return 4
    if filt == _AREA:
        return box // resized + 3
    inv_scale = np.float32(1.0 / np.float64(np.float32(resized) / np.float32(box)))
    kscale = max(inv_scale, np.float32(1.0)) if antialias else np.float32(1.0)
    return min(2 * np.int64(math.ceil(_sat_radius(filt) * kscale)) + 1, box)


@njit(**JIT)
def _span_axis(n, pos0, flip, resized, box, filt, antialias, table, index, weight, count):
    """Taps of one axis for the span pass: ``count[t]`` box-relative, clamped ``index[t, q]`` with float32 ``weight[t, q]``.

    Each filter computes its taps as the TensorFlow op does (see the module
    docstring). Entries outside the window get no taps (the pass writes 0).
    """
    cap = index.shape[1]
    scale = np.float32(box) / np.float32(resized)
    inv_scale = np.float32(1.0)
    one_over = np.float32(1.0)
    reach = np.float32(1.0)
    if filt != _NEAREST and filt != _CUBIC_TABLE and filt != _AREA:
        scale = np.float32(resized) / np.float32(box)
        inv_scale = np.float32(1.0 / np.float64(scale))
        kscale = max(inv_scale, np.float32(1.0)) if antialias else np.float32(1.0)
        one_over = np.float32(1.0) / kscale
        reach = _sat_radius(filt) * kscale
    for t in range(n):
        p = _position(t, n, pos0, flip)
        count[t] = 0
        if p < 0 or p >= resized:
            continue
        if filt == _NEAREST:
            i = np.int64(math.floor((np.float32(p) + np.float32(0.5)) * scale))
            index[t, 0] = max(min(i, box - 1), 0)
            weight[t, 0] = np.float32(1.0)
            count[t] = 1
        elif filt == _CUBIC_TABLE:
            x = (np.float32(p) + np.float32(0.5)) * scale - np.float32(0.5)
            loc = np.int64(math.floor(x))
            delta = x - np.float32(loc)
            off = np.int64(np.rint(delta * np.float32(1024.0)))
            w0 = table[off * 2 + 1] if loc - 1 >= 0 else np.float32(0.0)
            w1 = table[off * 2] if 0 <= loc <= box - 1 else np.float32(0.0)
            w2 = table[(1024 - off) * 2] if loc + 1 <= box - 1 else np.float32(0.0)
            w3 = table[(1024 - off) * 2 + 1] if loc + 2 <= box - 1 else np.float32(0.0)
            total = w0 + w1 + w2 + w3
            if abs(total) >= np.float32(1000.0) * np.float32(1.1754943508222875e-38):
                inv = np.float32(1.0) / total
                w0 *= inv
                w1 *= inv
                w2 *= inv
                w3 *= inv
            weight[t, 0] = w0
            weight[t, 1] = w1
            weight[t, 2] = w2
            weight[t, 3] = w3
            for q in range(4):
                index[t, q] = max(min(loc - 1 + q, box - 1), 0)
            count[t] = 4
        elif filt == _AREA:
            a = np.float32(p) * scale
            b = np.float32(p + 1) * scale
            start = np.int64(math.floor(a))
            end = np.int64(math.ceil(b))
            c = 0
            for v in range(start, end):
                if c >= cap:
                    break
                fv = np.float32(v)
                if fv < a:
                    wv = scale if fv + np.float32(1.0) > b else fv + np.float32(1.0) - a
                else:
                    wv = b - fv if fv + np.float32(1.0) > b else np.float32(1.0)
                index[t, c] = max(min(v, box - 1), 0)
                weight[t, c] = wv
                c += 1
            count[t] = c
        else:
            sample = (np.float32(p) + np.float32(0.5)) * inv_scale
            if sample < np.float32(0.0) or sample > np.float32(box):
                continue
            start = np.int64(math.ceil(sample - reach - np.float32(0.5)))
            end = np.int64(math.floor(sample + reach - np.float32(0.5)))
            start = min(max(start, 0), box - 1)
            end = min(max(end, 0), box - 1) + 1
            total = np.float32(0.0)
            c = 0
            for v in range(start, end):
                if c >= cap:
                    break
                wv = _sat_kernel(filt, (np.float32(v) + np.float32(0.5) - sample) * one_over)
                total += wv
                index[t, c] = v
                weight[t, c] = wv
                c += 1
            if abs(total) >= np.float32(1000.0) * np.float32(1.1754943508222875e-38):
                inv = np.float32(1.0) / total
                for q in range(c):
                    weight[t, q] = weight[t, q] * inv
            else:
                for q in range(c):
                    weight[t, q] = np.float32(0.0)
            count[t] = c


# ---- the passes ------------------------------------------------------------


@njit(**JIT)
def _widen(pixels, base, H, W, C, top, left, r, bw, srow):
    """Box row ``r`` as float32 into ``srow[:bw * C]``; pixels outside the image are 0."""
    ir = top + r
    bwc = bw * C
    if ir < 0 or ir >= H:
        for u in range(bwc):
            srow[u] = np.float32(0.0)
        return
    if left >= 0 and left + bw <= W:  # the common case: one contiguous, vectorised loop
        src = _u(base + (ir * W + left) * C)
        for u in range(bwc):
            srow[u] = np.float32(pixels[src + _u(u)])
        return
    c0 = max(left, 0)
    c1 = min(left + bw, W)
    if c1 <= c0:
        for u in range(bwc):
            srow[u] = np.float32(0.0)
        return
    for u in range((c0 - left) * C):
        srow[u] = np.float32(0.0)
    src = _u(base + (ir * W + c0) * C)
    dst = (c0 - left) * C
    for u in range((c1 - c0) * C):
        srow[dst + u] = np.float32(pixels[src + _u(u)])
    for u in range((c1 - left) * C, bwc):
        srow[u] = np.float32(0.0)


@njit(**JIT)
def _lerp_sample(pixels, base, H, W, C, top, left, bh, bw, oy, ox, rh, rw, hflip, vflip, jx0, jx1, iy0, iy1, h, w,
                 kind, channels_first, a, b, arow, brow, out, k, srow, rows, vals, xoff, xfrac, ylo, yhi, yf):
    """One sample of the bilinear pass, TensorFlow's ``compute_lerp`` order (horizontal, then vertical).

    Horizontal taps per output pixel: ``xoff[j]`` the offset of the left
    neighbour in the widened box row, the right one ``C`` further,
    ``xfrac[j]`` its weight. Where TensorFlow's two neighbours coincide (an
    edge, or an integer coordinate) the weight is 0, so ``p + (q - p) * 0``
    is ``p`` exactly for any finite ``q`` (``srow`` ends with ``2 * C``
    spare zeros, so ``q`` is always a pixel or one of them): one table, no
    per-pixel branch. Columns outside the window read two spare zeros.

    Speed (400 images 351x351x3 -> 224x224 float32, one thread, shared
    2-core VM, CPU time per image): 333 us with the taps laid out per
    output value (one straight loop; Numba's LLVM emits no gathers for
    AMD CPUs, so it stays scalar); 213 us per pixel with the literal 3;
    146-154 us (against 193-195 in the same run; 128x128: 86-95 against
    110) with one 4-lane :func:`lerp4` per RGB pixel, bit for bit the same.
    The box row is widened to float32 once per source row (a contiguous,
    vectorised loop) before the taps read it.
    """
    wc = w * C
    scale = np.float32(bw) / np.float32(rw)
    for j in range(w):
        p = _position(j, w, ox, hflip)
        x = (np.float32(p) + np.float32(0.5)) * scale - np.float32(0.5)
        fl = np.float32(math.floor(x))
        lo = min(max(np.int64(fl), 0), bw - 1)
        hi = min(max(np.int64(math.ceil(x)), 0), bw - 1)
        f = x - fl if hi == lo + 1 else np.float32(0.0)
        if j < jx0 or j >= jx1:
            lo = bw  # both neighbours in the spare zeros (0 * garbage could be NaN)
            f = np.float32(0.0)
        xoff[j] = lo * C
        xfrac[j] = f
    for u in range(bw * C, (bw + 3) * C):
        srow[u] = np.float32(0.0)
    stride = wc + 1  # one spare value after each row: the 4-lane store's 4th lane
    _lerp_axis(h, oy, vflip, rh, bh, ylo, yhi, yf)
    tag0 = -(1 << 62)
    tag1 = -(1 << 62)
    for i in range(iy0, iy1):
        r0 = ylo[i]
        r1 = yhi[i]
        fy = yf[i]
        for need in range(2):
            r = r0 if need == 0 else r1
            if tag0 == r or tag1 == r:
                continue
            slot = 1 if tag0 == (r1 if need == 0 else r0) else 0
            _widen(pixels, base, H, W, C, top, left, r, bw, srow)
            row0 = slot * stride
            if C == 3:  # one 4-lane lerp per pixel (the 4th lane is overwritten by the next pixel)
                for j in range(w):
                    lerp4(srow, xoff[j], rows, row0 + 3 * j, xfrac[j])
            else:
                for j in range(w):
                    o = _u(xoff[j])
                    f = xfrac[j]
                    d = _u(row0) + _u(C) * _u(j)
                    for c in range(C):
                        p = srow[o + _u(c)]
                        rows[d + _u(c)] = p + (srow[o + _u(C + c)] - p) * f
            if slot == 0:
                tag0 = r
            else:
                tag1 = r
        a0 = 0 if tag0 == r0 else stride
        a1 = 0 if tag0 == r1 else stride
        top_row = rows[a0 : a0 + wc]
        bottom_row = rows[a1 : a1 + wc]
        if kind == _AFFINE and not channels_first:
            for u in range(wc):
                p = top_row[u]
                out[k, _u(i), _u(u)] = (p + (bottom_row[u] - p) * fy) * arow[u] + brow[u]
        elif kind == _RAW and not channels_first:
            for u in range(wc):
                p = top_row[u]
                v = np.rint(p + (bottom_row[u] - p) * fy)
                out[k, _u(i), _u(u)] = np.uint8(min(max(v, np.float32(0.0)), np.float32(255.0)))
        else:
            for u in range(wc):
                p = top_row[u]
                vals[u] = p + (bottom_row[u] - p) * fy
            _emit(out, k, i, vals, h, w, C, kind, channels_first, a, b, arow, brow)


@njit(**JIT)
def _block(pixels, offsets, shapes, C, indices, order, boxes, windows, flips, h, w, filt, antialias, table, kind,
           channels_first, a, b, out, t0, t1):
    """Samples ``order[t0:t1]``, serially: see :class:`RaggedResizePlan`."""
    wc = w * C
    vals = np.empty(wc, np.float32)
    zeros = np.zeros(wc, np.float32)
    arow = np.empty(wc, np.float32)
    brow = np.empty(wc, np.float32)
    for u in range(wc):
        arow[u] = a[u % C]
        brow[u] = b[u % C]
    # bilinear tables
    xoff = np.empty(w, np.int64)
    xfrac = np.empty(w, np.float32)
    ylo = np.empty(h, np.int64)
    yhi = np.empty(h, np.int64)
    yf = np.empty(h, np.float32)
    rows = np.zeros(2 * (wc + 1), np.float32)
    # span tables, grown on demand
    xcap = 1
    ycap = 1
    xidx = np.empty((w, 1), np.int64)
    xw = np.empty((w, 1), np.float32)
    xcount = np.empty(w, np.int64)
    yidx = np.empty((h, 1), np.int64)
    yw = np.empty((h, 1), np.float32)
    ycount = np.empty(h, np.int64)
    ring = np.zeros((2, wc), np.float32)
    tags = np.full(2, -(1 << 62), np.int64)
    srow = np.empty(1, np.float32)
    for t in range(t0, t1):
        k = order[t]
        s = indices[k]
        base = offsets[s]
        H = shapes[s, 0]
        W = shapes[s, 1]
        top = boxes[k, 0]
        left = boxes[k, 1]
        bh = boxes[k, 2]
        bw = boxes[k, 3]
        oy = -windows[k, 0]
        ox = -windows[k, 1]
        rh = windows[k, 2]
        rw = windows[k, 3]
        hflip = (flips[k] & 1) != 0
        vflip = (flips[k] & 2) != 0
        if srow.shape[0] < bw * C:
            srow = np.empty(bw * C, np.float32)
        jx0, jx1 = _valid_range(w, ox, hflip, rw)
        iy0, iy1 = _valid_range(h, oy, vflip, rh)
        for i in range(0, iy0):
            _emit(out, k, i, zeros, h, w, C, kind, channels_first, a, b, arow, brow)
        for i in range(iy1, h):
            _emit(out, k, i, zeros, h, w, C, kind, channels_first, a, b, arow, brow)
        if filt == _LERP:
            if srow.shape[0] < (bw + 3) * C:
                srow = np.zeros((bw + 3) * C, np.float32)
            _lerp_sample(pixels, base, H, W, C, top, left, bh, bw, oy, ox, rh, rw, hflip, vflip, jx0, jx1, iy0, iy1,
                         h, w, kind, channels_first, a, b, arow, brow, out, k, srow, rows, vals, xoff, xfrac, ylo,
                         yhi, yf)
            continue
        # ---- the span pass ----
        need_x = _span_capacity(filt, antialias, bw, rw)
        need_y = _span_capacity(filt, antialias, bh, rh)
        if need_x > xcap:
            xcap = need_x
            xidx = np.empty((w, xcap), np.int64)
            xw = np.empty((w, xcap), np.float32)
        if need_y > ycap:
            ycap = need_y
            yidx = np.empty((h, ycap), np.int64)
            yw = np.empty((h, ycap), np.float32)
        if ring.shape[0] < ycap:
            ring = np.zeros((ycap, wc), np.float32)
            tags = np.full(ycap, -(1 << 62), np.int64)
        nring = ring.shape[0]
        for q in range(nring):
            tags[q] = -(1 << 62)
        _span_axis(w, ox, hflip, rw, bw, filt, antialias, table, xidx, xw, xcount)
        _span_axis(h, oy, vflip, rh, bh, filt, antialias, table, yidx, yw, ycount)
        final = np.float32(1.0)
        if filt == _AREA:
            hs = np.float32(bh) / np.float32(rh)
            ws = np.float32(bw) / np.float32(rw)
            final = np.float32(1.0 / np.float64(hs * ws))
        for i in range(iy0, iy1):
            for u in range(wc):
                vals[u] = np.float32(0.0)
            for q in range(ycount[i]):
                r = yidx[i, q]
                slot = r % nring
                if tags[slot] != r:
                    _widen(pixels, base, H, W, C, top, left, r, bw, srow)
                    for j in range(w):
                        d = j * C
                        for c in range(C):
                            ring[slot, d + c] = np.float32(0.0)
                        for e in range(xcount[j]):
                            wt = xw[j, e]
                            o = xidx[j, e] * C
                            for c in range(C):
                                ring[slot, d + c] += wt * srow[o + c]
                    tags[slot] = r
                wt = yw[i, q]
                for u in range(wc):
                    vals[u] += wt * ring[slot, u]
            if filt == _AREA:
                for u in range(wc):
                    vals[u] = vals[u] * final
            _emit(out, k, i, vals, h, w, C, kind, channels_first, a, b, arow, brow)


@njit(**PARALLEL_JIT)
def _resample(pixels, offsets, shapes, C, indices, order, boxes, windows, flips, h, w, filt, antialias, table, kind,
              channels_first, a, b, out, blocks):
    """Blocks of the batch to the threads from a shared counter. Numba-compiled; parallel over the batch."""
    n = indices.shape[0]
    taken = np.zeros(1, np.int64)
    for _ in prange(blocks):
        while True:
            blk = fetch_add(taken, 0, 1)
            if blk >= blocks:
                break
            _block(pixels, offsets, shapes, C, indices, order, boxes, windows, flips, h, w, filt, antialias, table,
                   kind, channels_first, a, b, out, blk * n // blocks, (blk + 1) * n // blocks)


@njit(**JIT)
def _resample_serial(pixels, offsets, shapes, C, indices, order, boxes, windows, flips, h, w, filt, antialias, table,
                     kind, channels_first, a, b, out, blocks):
    """The serial twin of :func:`_resample`, for processes forked after parallel use."""
    _block(pixels, offsets, shapes, C, indices, order, boxes, windows, flips, h, w, filt, antialias, table, kind,
           channels_first, a, b, out, 0, indices.shape[0])


_BLOCKS_PER_THREAD = 4
_MAX_BLOCKS = numba.config.NUMBA_NUM_THREADS * _BLOCKS_PER_THREAD


# ---- validation ------------------------------------------------------------


def ragged_arrays(pixels, offsets, shapes):
    """Check the three arrays of a ragged image list; return ``(pixels, offsets, shapes, C)``.

    ``pixels`` comes back as a read-only 1-D view (one compiled
    specialisation for RAM and memmaps), ``offsets``/``shapes`` as int64.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 1:
        raise TypeError(f"pixels must be a 1-D uint8 array (or np.memmap), got {check._describe(pixels)}.")
    if not pixels.flags.c_contiguous:
        raise ValueError("pixels must be C-contiguous; pass np.ascontiguousarray(pixels).")
    offsets = np.asarray(offsets)
    shapes = np.asarray(shapes)
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu":
        raise TypeError(f"offsets must be a 1-D integer array, got {check._describe(offsets)}.")
    if shapes.ndim != 2 or shapes.shape[1] != 3 or shapes.dtype.kind not in "iu":
        raise TypeError(f"shapes must be an integer (N, 3) array of (height, width, channels), got "
                        f"{check._describe(shapes)}.")
    if len(offsets) != len(shapes) or len(shapes) == 0:
        raise ValueError(f"offsets and shapes must have one row per image (at least one), got {len(offsets)} offsets "
                         f"and {len(shapes)} shapes.")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    shapes = np.ascontiguousarray(shapes, dtype=np.int64)
    if shapes[:, :2].min() < 1 or shapes[:, :2].max() > MAX_SIDE:
        bad = int(np.flatnonzero((shapes[:, :2].min(axis=1) < 1) | (shapes[:, :2].max(axis=1) > MAX_SIDE))[0])
        raise ValueError(f"shapes[{bad}] = {shapes[bad].tolist()}: heights and widths must lie in [1, {MAX_SIDE}].")
    channels = np.unique(shapes[:, 2])
    if len(channels) != 1 or int(channels[0]) not in (1, 3, 4):
        raise ValueError(f"every image must have the same channel count, 1, 3 or 4; got {channels.tolist()}.")
    ends = offsets + shapes.prod(axis=1)
    if offsets.min() < 0 or ends.max() > pixels.size:
        bad = int(np.flatnonzero((offsets < 0) | (ends > pixels.size))[0])
        raise ValueError(f"image {bad} (offset {int(offsets[bad])}, shape {shapes[bad].tolist()}) reaches outside "
                         f"pixels (size {pixels.size}).")
    view = pixels.view(np.ndarray)
    if view.flags.writeable:
        view = view.view()
        view.flags.writeable = False
    offsets.flags.writeable = False
    shapes.flags.writeable = False
    return view, offsets, shapes, int(channels[0])


def _int_rows(name, values, n, what):
    arr = np.asarray(values)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name} must be an integer array of {what} rows, got {check._describe(values)}.")
    if arr.shape != (n, 4):
        raise ValueError(f"{name} must have shape ({n}, 4) (one {what} per sample), got {arr.shape}.")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_boxes(boxes, image_shapes, *, allow_padding=False, name="boxes"):
    """Check ``(top, left, height, width)`` boxes against each sample's ``(H, W)``; None: whole images.

    Without ``allow_padding`` every box must be non-empty and inside its
    image; with it a box may reach outside (those pixels read as 0), up to
    :data:`MAX_SIDE` pixels away.
    """
    n = image_shapes.shape[0]
    if boxes is None:
        whole = np.zeros((n, 4), np.int64)
        whole[:, 2:] = image_shapes[:, :2]
        return whole
    arr = _int_rows(name, boxes, n, "(top, left, height, width)")
    if n == 0:
        return arr
    top, left, bh, bw = arr.T
    H, W = image_shapes[:, 0], image_shapes[:, 1]
    if allow_padding:
        bad = (bh < 1) | (bw < 1) | (bh > MAX_SIDE) | (bw > MAX_SIDE) | (np.abs(top) > MAX_SIDE) | (
            np.abs(left) > MAX_SIDE)
        need = f"height and width in [1, {MAX_SIDE}] and |top|, |left| <= {MAX_SIDE}"
    else:
        bad = (top < 0) | (left < 0) | (bh < 1) | (bw < 1) | (bh > H - top) | (bw > W - left)
        need = ("a non-empty box inside the image: top, left >= 0, height, width >= 1, top + height <= H and "
                "left + width <= W (boxes reaching outside need allow_padding=True)")
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{k}] = {tuple(int(v) for v in arr[k])} for an image of {int(H[k])}x{int(W[k])} "
                         f"is not {need}.")
    return arr


def check_windows(windows, n, name="windows"):
    """Check ``(top, left, height, width)`` output windows: sizes in [1, MAX_SIDE], corners within MAX_SIDE."""
    arr = _int_rows(name, windows, n, "(top, left, height, width)")
    if n:
        top, left, wh, ww = arr.T
        bad = (wh < 1) | (ww < 1) | (wh > MAX_SIDE) | (ww > MAX_SIDE) | (np.abs(top) > MAX_SIDE) | (
            np.abs(left) > MAX_SIDE)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}[{k}] = {tuple(int(v) for v in arr[k])} must have height and width in "
                             f"[1, {MAX_SIDE}] and |top|, |left| <= {MAX_SIDE}.")
    return arr


def _pair(name, value):
    try:
        h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (height, width) pair, got {check._describe(value)}.") from None
    return check.integer(f"{name} height", h, minimum=1), check.integer(f"{name} width", w, minimum=1)


# ---- the plan --------------------------------------------------------------


class RaggedResizePlan(config.Tiered):
    """Resample a batch of images of different sizes to one size, flip, normalise and lay out, in one pass.

    For each sample ``k``: take the box ``boxes[k]`` of image
    ``indices[k]``, resize it with ``interpolation`` to the window's size
    (default ``scaled_size``, itself defaulting to ``size``), place it at
    the window's corner (default: centred, so ``Resize(..., crop=)`` keeps
    the centre ``size`` of the resized box), 0 outside the window, flip the
    ``size`` output left-right if bit 0 of ``flips[k]`` is set and
    up-down if bit 1 is, then map each value ``v`` of channel ``c`` to
    ``v * a[c] + b[c]`` in float32 (from ``mean``/``std`` or
    ``scale``/``offset``, as :func:`fastseq.kernels.fused`) and round to
    ``dtype`` (uint8: nearest, half to even, clipped to 0..255). See the
    module docstring for each interpolation's arithmetic.

    Numba-compiled; parallel over the batch; releases the GIL. One compiled
    variant per output element type; interpolation, antialias, layout,
    flips and padding are run-time flags. Immutable apart from caches
    replaced whole; safe to share between threads.

    Args:
        pixels: 1-D uint8 buffer (RAM or read-only ``np.memmap``).
        offsets: int (N,): where image ``i`` starts in ``pixels``.
        shapes: int (N, 3): image ``i``'s ``(H, W, C)``, one ``C`` (1, 3 or 4).
        size: ``(height, width)`` of the output.
        scaled_size: ``(height, width)`` the box is resized to before the
            centre ``size`` is kept; at least ``size``; None means ``size``.
        interpolation: one of :data:`INTERPOLATIONS`.
        antialias: widen the filter when downscaling (``tf.image.resize(...,
            antialias=True)``); ignored for "nearest" and "area".
        allow_padding: let boxes reach outside their image (pixels there read as 0).
        mean, std, scale, offset: per-channel normalisation.
        dtype: "float32", "float16", "bfloat16" or "uint8".
        data_format: "channels_last" -> (n, h, w, C); "channels_first" -> (n, C, h, w).

    Raises:
        TypeError, ValueError: naming the argument and the value received.
    """

    def __init__(self, pixels, offsets, shapes, *, size, scaled_size=None, interpolation="bilinear", antialias=False,
                 allow_padding=False, mean=None, std=None, scale=None, offset=None, dtype="float32",
                 data_format="channels_last"):
        self._pixels, self._offsets, self._shapes, C = ragged_arrays(pixels, offsets, shapes)
        self.size = _pair("size", size)
        self.scaled_size = self.size if scaled_size is None else _pair("scaled_size", scaled_size)
        if self.size[0] > self.scaled_size[0] or self.size[1] > self.scaled_size[1]:
            raise ValueError(
                f"size={self.size} must fit inside scaled_size={self.scaled_size} (its centre window is the output); "
                f"use a size of at most {self.scaled_size} or a larger scaled_size.")
        self._filter = _engine(interpolation, antialias)
        self.interpolation = interpolation.lower()
        self.antialias = bool(antialias)
        if not isinstance(allow_padding, (bool, np.bool_)):
            raise TypeError(f"allow_padding must be True or False, got {allow_padding!r}.")
        self.allow_padding = bool(allow_padding)
        coeffs = check.affine(C, mean, std, scale, offset)
        self.dtype = check.output_dtype(dtype, coeffs is not None)
        self.channels_first = check.data_format(data_format)
        self.data_format = data_format
        self._a, self._b = coeffs if coeffs is not None else (np.ones(C, np.float32), np.zeros(C, np.float32))
        self._kind = {"uint8": _RAW, "float32": _AFFINE, "float16": _HALF, "bfloat16": _BF16}[self.dtype]
        self.channels = C
        self._read_order = ReadOrder(pixels, len(self._offsets))
        (h, w), (R, S) = self.size, self.scaled_size
        self._window = np.array([-((R - h) // 2), -((S - w) // 2), R, S], np.int64)
        self._variant_key = ("ragged-resize", self.variant)

    @property
    def variant(self):
        """What the compiled kernel is specialised for: the output's element type."""
        return {"float16": "float16/bfloat16", "bfloat16": "float16/bfloat16"}.get(self.dtype, self.dtype)

    def __len__(self):
        return len(self._offsets)

    @property
    def shapes(self):
        """int64 (N, 3): each image's ``(H, W, C)``."""
        return self._shapes

    def output_shape(self, n):
        """Shape of the output for a batch of ``n`` samples."""
        h, w = self.size
        return (n, self.channels, h, w) if self.channels_first else (n, h, w, self.channels)

    def compile(self, *, serial=False):
        """Compile (or load from the on-disk cache) this plan's kernel variant without a batch to make."""
        one = np.zeros(1, np.int64)
        boxes = np.array([[0, 0, 1, 1]], np.int64)
        out = np.empty(self.output_shape(1), check.numpy_dtype(self.dtype))
        args = self._kernel_args(one, boxes, self._windows(None, 1), np.zeros(1, np.uint8), out)
        launch(_resample, *args, serial=_resample_serial)
        mark_warm(self._variant_key)
        if serial:
            _resample_serial(*args)

    _tier_kernels = property(lambda self: (_resample, _resample_serial))
    _tier_what = property(lambda self: f"the ragged resize kernel for {self.variant} batches")

    def _tier_example(self):
        """Arguments of the types ``__call__`` passes: int64 indices, boxes and windows, uint8 flips, a fresh out."""
        one = np.zeros(1, np.int64)
        out = np.empty(self.output_shape(1), check.numpy_dtype(self.dtype))
        return self._kernel_args(one, np.array([[0, 0, 1, 1]], np.int64), self._windows(None, 1),
                                 np.zeros(1, np.uint8), out)

    def prepare(self):
        """Start compiling this plan's kernel in the background; batches come from NumPy meanwhile (see ``Tiered``).

        Lanczos and Gaussian weights in the NumPy tier come from a small
        compiled loop (:mod:`fastseq.kernels.quick_ragged`): compiled here,
        first, since the background compile then holds Numba's compiler lock.
        """
        if config.BACKGROUND_COMPILE and self._filter in (_LANCZOS3, _LANCZOS5, _GAUSSIAN):
            quick_ragged.compile_helpers()
        return super().prepare()

    def _windows(self, windows, n):
        if windows is None:
            # A fresh writable array for every n: a (1, 4) broadcast view counts as C-contiguous and
            # read-only, another compiled specialisation than the batches' (and compile()'s) own.
            return np.repeat(self._window[None], n, axis=0)
        return check_windows(windows, n)

    def __call__(self, indices, boxes=None, flips=None, out=None, *, windows=None):
        """Resample one batch.

        Args:
            indices: 1-D integers in ``[0, N)``.
            boxes: int (n, 4) ``(top, left, height, width)`` in source pixels; None: whole images.
            flips: int (n,) flip bits 0..3; None: no flips.
            out: optional preallocated C-contiguous output of :meth:`output_shape` and ``dtype``.
            windows: int (n, 4) ``(top, left, height, width)`` in output pixels where each
                resized box lands (0 outside); None: the plan's centred ``scaled_size``.

        Returns:
            The output batch (``out`` if given).
        """
        indices = check.index_array(indices, len(self._offsets))
        n = indices.shape[0]
        image_shapes = self._shapes[indices]
        boxes = check_boxes(boxes, image_shapes, allow_padding=self.allow_padding)
        windows = self._windows(windows, n)
        flips = check.flip_bits(flips, n)
        out = check.out_array(out, self.output_shape(n), self.dtype, self._pixels)
        if n:
            args = self._kernel_args(indices, boxes, windows, flips, out)
            if self._numpy_tier():
                if not quick_ragged.resample(*args):
                    raise AssertionError("NumPy tier refused arguments that passed every check")  # pragma: no cover
                return out
            announced(self._variant_key, f"the ragged resize kernel for {self.variant} batches", launch, _resample,
                      *args, serial=_resample_serial, work=out.nbytes * RESAMPLE_COST)
        return out

    def _kernel_args(self, indices, boxes, windows, flips, out):
        h, w = self.size
        C = self.channels
        n = indices.shape[0]
        target = out.view(np.uint16) if self._kind in (_HALF, _BF16) else out
        target = target.reshape((n, C, h * w) if self.channels_first else (n, h, w * C))
        return (self._pixels, self._offsets, self._shapes, C, indices, self._read_order(indices), boxes,
                np.ascontiguousarray(windows), flips, h, w, self._filter, self.antialias, _CUBIC, self._kind,
                self.channels_first, self._a, self._b, target, min(n, _MAX_BLOCKS))


# ---- Keras' geometry -------------------------------------------------------


def _shapes_hw(shapes):
    arr = np.asarray(shapes)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or arr.dtype.kind not in "iu":
        raise TypeError(f"shapes must be an integer (N, 3) or (N, 2) array, got {check._describe(shapes)}.")
    hw = arr[:, :2].astype(np.int64)
    if hw.size and hw.min() < 1:
        raise ValueError("shapes must have heights and widths >= 1.")
    return hw[:, 0], hw[:, 1]


def keras_boxes(shapes, image_size, *, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False):
    """The boxes that reproduce Keras 3.15's resize of each image in ``image_dataset_from_directory``.

    * neither: the whole image (``tf.image.resize`` of it);
    * ``crop_to_aspect_ratio``: ``keras.preprocessing.image.smart_resize``'s
      centred crop of the target's aspect ratio (its float32 arithmetic);
    * ``pad_to_aspect_ratio``: the image padded with zeros to the target's
      aspect ratio, equally on both sides, then resized, as
      ``keras.ops.image.resize(..., pad_to_aspect_ratio=True)`` does (Keras'
      ``format="grain"`` path). The boxes reach outside the image: use a plan
      with ``allow_padding=True``. Keras' ``format="tf"`` path
      (``tf.image.resize_with_pad``) resizes the image into a window
      instead: see :func:`keras_pad_windows`.

    Args:
        shapes: int (N, 3) or (N, 2): each image's height and width first.
        image_size: ``(height, width)`` of Keras' output.

    Returns:
        int64 (N, 4) ``(top, left, height, width)`` boxes.
    """
    th, tw = _pair("image_size", image_size)
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be `True`.")
    H, W = _shapes_hw(shapes)
    boxes = np.zeros((len(H), 4), np.int64)
    f32 = np.float32
    if crop_to_aspect_ratio:
        ch = (W * th).astype(f32) / f32(tw)
        ch = np.maximum(np.minimum(H, ch.astype(np.int64)), 1)
        cw = (H * tw).astype(f32) / f32(th)
        cw = np.maximum(np.minimum(W, cw.astype(np.int64)), 1)
        boxes[:, 0] = ((H - ch).astype(f32) / f32(2)).astype(np.int64)
        boxes[:, 1] = ((W - cw).astype(f32) / f32(2)).astype(np.int64)
        boxes[:, 2] = ch
        boxes[:, 3] = cw
    elif pad_to_aspect_ratio:
        ph = np.maximum(H, ((W * th).astype(f32) / f32(tw)).astype(np.int64))
        pw = np.maximum(W, ((H * tw).astype(f32) / f32(th)).astype(np.int64))
        hs = ((ph - H).astype(f32) / f32(2)).astype(np.int64)
        ws = ((pw - W).astype(f32) / f32(2)).astype(np.int64)
        # Keras concatenates `hstart` rows of zeros above and below (and
        # `wstart` columns left and right): the padded size is H + 2 * hstart.
        boxes[:, 0] = -hs
        boxes[:, 1] = -ws
        boxes[:, 2] = H + 2 * hs
        boxes[:, 3] = W + 2 * ws
    else:
        boxes[:, 2] = H
        boxes[:, 3] = W
    return boxes


def keras_pad_windows(shapes, image_size):
    """``tf.image.resize_with_pad``'s placement of each whole image (Keras' ``pad_to_aspect_ratio``, ``format="tf"``).

    The image is resized to ``floor(side / ratio)`` (``ratio`` the larger of
    the two side ratios, float32) and placed at ``floor((target -
    resized_float) / 2)``; the rest is 0. Use with whole-image boxes
    (``boxes=None``).

    Returns:
        int64 (N, 4) ``(top, left, height, width)`` output windows.
    """
    th, tw = _pair("image_size", image_size)
    H, W = _shapes_hw(shapes)
    f32 = np.float32
    fh, fw = H.astype(f32), W.astype(f32)
    ratio = np.maximum(fw / f32(tw), fh / f32(th))
    rh_f, rw_f = fh / ratio, fw / ratio
    windows = np.empty((len(H), 4), np.int64)
    windows[:, 0] = np.maximum(0, np.floor((f32(th) - rh_f) / f32(2)).astype(np.int64))
    windows[:, 1] = np.maximum(0, np.floor((f32(tw) - rw_f) / f32(2)).astype(np.int64))
    windows[:, 2] = np.maximum(1, np.floor(rh_f).astype(np.int64))
    windows[:, 3] = np.maximum(1, np.floor(rw_f).astype(np.int64))
    return windows


def centre_crop_windows(shapes, size, fraction=0.875):
    """Per image, ``Resize.for_crop``'s evaluation resize: keep the aspect ratio, then the centre ``size``.

    Image ``i`` (``H x W``) is scaled by ``s = max(h / H, w / W) / fraction``
    (exact rational arithmetic, as :meth:`fastseq.Resize.for_crop` with
    ``image_size=(H, W)``) to ``max(h, floor(H * s)) x max(w, floor(W * s))``,
    and its centred ``size`` window is kept (corner ``((R - h) // 2, (S - w) // 2)``),
    so each photo is resized once from the original. Use with whole-image
    boxes (``boxes=None``).

    Args:
        shapes: int (N, 3) or (N, 2): each image's height and width first.
        size: ``(height, width)`` of the output (the crop).
        fraction: the crop's share of the resized image along the tighter axis (7/8).

    Returns:
        int64 (N, 4) ``(top, left, height, width)`` output windows.
    """
    from fractions import Fraction

    h, w = _pair("size", size)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, Fraction)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}.")
    frac = Fraction(fraction)
    H, W = _shapes_hw(shapes)
    windows = np.empty((len(H), 4), np.int64)
    for i, (hi, wi) in enumerate(zip(H.tolist(), W.tolist())):
        s = max(Fraction(h, hi), Fraction(w, wi)) / frac
        R, S = max(h, int(hi * s)), max(w, int(wi * s))
        windows[i] = (-((R - h) // 2), -((S - w) // 2), R, S)
    return windows


# ---- RandomResizedCrop on the originals -----------------------------------


@njit(**JIT)
def _ragged_resized_crop_params(key, indices, shapes, s0, s1, logr0, logr1, rmin, rmax, cut_h, cut_v, boxes, flips):
    """:func:`fastseq.kernels.resize._resized_crop_one` per index, with that image's own height and width.

    Indices are proven in range by the wrapper.
    """
    for k in range(indices.shape[0]):
        s = indices[k]
        _resized_crop_one(key, s, shapes[s, 0], shapes[s, 1], s0, s1, logr0, logr1, rmin, rmax, cut_h, cut_v, boxes,
                          flips, k)


class RaggedResizedCropParams(KeyedDraws):
    """RandomResizedCrop boxes on images of different sizes: torchvision's draw with each image's own ``(H_i, W_i)``.

    ``RaggedResizedCropParams(shapes, scale=..., ratio=..., horizontal=...,
    vertical=...)(seed, epoch, indices) -> (boxes, flips)``. A sample whose
    image is ``H x W`` gets exactly the box and flips that
    :class:`fastseq.kernels.ResizedCropParams` with ``image_size=(H, W)``
    gives it (one compiled body), a pure function of ``(seed, epoch,
    index)``. Immutable apart from a key cache replaced whole; safe to share
    between threads.

    Args:
        shapes: int (N, 3) or (N, 2): each image's height and width first.
        scale: ``(low, high)`` area fraction, ``0 < low <= high <= 1``.
        ratio: ``(low, high)`` width / height, ``0 < low <= high``.
        horizontal, vertical: flip probabilities.
    """

    def __init__(self, shapes, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), horizontal=0.5, vertical=0.0):
        H, W = _shapes_hw(shapes)
        self._hw = np.ascontiguousarray(np.stack([H, W], axis=1))
        self._hw.flags.writeable = False
        self._bounds = _draw_bounds(scale, ratio, horizontal, vertical)

    def __len__(self):
        return len(self._hw)

    def __call__(self, seed, epoch, indices):
        """``(boxes, flips)``: int64 (n, 4) ``(top, left, height, width)`` inside each image, uint8 (n,) flip bits."""
        key = self._key(seed, epoch)
        idx = index_array(indices)
        n = len(self._hw)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
            raise ValueError(f"indices must lie in [0, {n}) (the number of images), got {bad}.")
        boxes = np.empty((idx.size, 4), dtype=np.int64)
        flips = np.empty(idx.size, dtype=np.uint8)
        _ragged_resized_crop_params(key, idx, self._hw, *self._bounds, boxes, flips)
        return boxes, flips
