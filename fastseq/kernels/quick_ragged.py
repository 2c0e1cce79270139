"""The first tier of the photo resample: NumPy batches, bit for bit the compiled pass's, while that compiles.

The photo resample (:class:`fastseq.kernels.ragged.RaggedResizePlan`) takes
about 17 s to compile on a 2-core machine, and the first batch of
``image_dataset_from_directory`` waited for it. A prepared plan compiles
it in a separate process (or a thread) and serves the batches asked for meanwhile from
:func:`resample` (see :class:`fastseq.kernels.config.Tiered`).

Same pixels because the same float32 operations run in the same order, and
NumPy, like the kernel (compiled without ``fastmath``), fuses none of them:

* tap tables: each filter's coordinates, taps and weights as
  ``ragged._lerp_axis`` / ``ragged._span_axis`` compute them, vectorised
  over output pixels (the per-tap sums in tap order; the weights outside a
  pixel's tap count are 0, and adding ``0 * v`` to a sum that is never
  ``-0.0`` leaves it unchanged). Lanczos and Gaussian weights call sin/exp,
  whose last bit NumPy's vector versions need not share with the libm calls
  of the compiled pass: those weights come from :func:`fastseq.kernels.filters.sat_weights`, a
  small compiled loop over ``filters._sat_kernel`` itself (about 1-2 s to
  compile, once, cached on disk), compiled by the plan's ``prepare()``
  before the background compile takes Numba's compiler lock;
* bilinear: ``p + (q - p) * f`` across, then down (the kernel's
  ``lerp4`` is that per lane), the two spare zero columns included;
* the span pass: per source row ``sum_e w[j, e] * row[idx[j, e]]`` from
  ``0.0`` in tap order, then per output row ``sum_q w[i, q] * ring[q]``,
  area's final ``* (1 / (hs * ws))``;
* the output: ``v * a + b``, half precision by ``astype`` (round half to
  even, as ``fastseq.kernels.halfprec``), uint8 ``clip(rint(v), 0, 255)``.

Python loops over the samples (and over taps); everything else is whole-array
NumPy. ``tests/test_quick_ragged.py`` holds it to the twin and the kernel.
"""

import numpy as np

from fastseq.kernels import filters as _rg
from fastseq.kernels import resize as _kinds
from fastseq.kernels.quick import _half_bits, _lay_out

_F32 = np.float32
_TINY = np.float32(1000.0) * np.float32(1.1754943508222875e-38)  # the kernel's "total is not ~0" threshold
_RADIUS = {_rg._TRIANGLE: 1.0, _rg._GAUSSIAN: 1.5, _rg._LANCZOS3: 3.0, _rg._LANCZOS5: 5.0}  # else 2 (Keys, Mitchell)
#: The filters whose weights call sin/exp: computed by the compiled :func:`fastseq.kernels.filters.sat_weights`.
TRANSCENDENTAL = (_rg._LANCZOS3, _rg._LANCZOS5, _rg._GAUSSIAN)


def compile_helpers():
    """Compile (or load from Numba's cache) :func:`fastseq.kernels.filters.sat_weights` for the types :func:`resample` passes."""
    x = np.zeros(1, np.float32)
    _rg.sat_weights(_rg._GAUSSIAN, x, np.empty(1, np.float32))


def _kernel_values(filt, x):
    """``_sat_kernel(filt, x)`` elementwise for float32 ``x``, in float32."""
    if filt in TRANSCENDENTAL:
        flat = np.ascontiguousarray(x, np.float32).reshape(-1)
        out = np.empty_like(flat)
        _rg.sat_weights(filt, flat, out)
        return out.reshape(x.shape)
    x = np.abs(x)
    one, two, zero = _F32(1.0), _F32(2.0), _F32(0.0)
    if filt == _rg._TRIANGLE:
        return np.where(x < one, one - x, zero)
    if filt == _rg._KEYS:
        far = ((_F32(-0.5) * x + _F32(2.5)) * x - _F32(4.0)) * x + _F32(2.0)
        near = ((_F32(1.5) * x - _F32(2.5)) * x) * x + one
    else:  # Mitchell
        far = ((_F32(-7.0 / 18.0) * x + _F32(2.0)) * x - _F32(10.0 / 3.0)) * x + _F32(16.0 / 9.0)
        near = ((_F32(7.0 / 6.0) * x - _F32(2.0)) * x) * x + _F32(8.0 / 9.0)
    return np.where(x >= two, zero, np.where(x >= one, far, near))


def _positions(n, pos0, flip):
    """Resized-box coordinate of each output pixel (``ragged._position``)."""
    t = np.arange(n, dtype=np.int64)
    return pos0 + (n - 1 - t if flip else t)


def _lerp_taps(p, resized, box):
    """``ragged._lerp_axis``: clamped neighbours ``lo``, ``hi`` and the float32 fraction ``x - floor(x)``."""
    scale = _F32(box) / _F32(resized)
    x = (p.astype(np.float32) + _F32(0.5)) * scale - _F32(0.5)
    xf = np.floor(x)
    lo = np.clip(xf.astype(np.int64), 0, box - 1)
    hi = np.clip(np.ceil(x).astype(np.int64), 0, box - 1)
    return lo, hi, x - xf


def _span_taps(p, resized, box, filt, antialias, table):
    """``ragged._span_axis`` for all entries: ``(index (n, cap), weight (n, cap), count (n,))``.

    Weights past an entry's count are 0 and their indices 0 (the kernel
    leaves them unset and never reads them); entries outside the window
    have count 0.
    """
    n = p.shape[0]
    valid = (p >= 0) & (p < resized)
    pf = p.astype(np.float32)
    if filt == _rg._NEAREST:
        scale = _F32(box) / _F32(resized)
        i = np.floor((pf + _F32(0.5)) * scale).astype(np.int64)
        index = np.clip(i, 0, box - 1)[:, None]
        return index, valid.astype(np.float32)[:, None], valid.astype(np.int64)
    if filt == _rg._CUBIC_TABLE:
        scale = _F32(box) / _F32(resized)
        x = (pf + _F32(0.5)) * scale - _F32(0.5)
        loc = np.floor(x).astype(np.int64)
        delta = x - loc.astype(np.float32)
        off = np.clip(np.rint(delta * _F32(1024.0)).astype(np.int64), 0, 1024)
        zero = _F32(0.0)
        w0 = np.where(loc - 1 >= 0, table[off * 2 + 1], zero)
        w1 = np.where((loc >= 0) & (loc <= box - 1), table[off * 2], zero)
        w2 = np.where(loc + 1 <= box - 1, table[(1024 - off) * 2], zero)
        w3 = np.where(loc + 2 <= box - 1, table[(1024 - off) * 2 + 1], zero)
        total = ((w0 + w1) + w2) + w3
        norm = np.abs(total) >= _TINY
        inv = _F32(1.0) / np.where(norm, total, _F32(1.0))
        weight = np.stack([np.where(valid, np.where(norm, wq * inv, wq), _F32(0.0)) for wq in (w0, w1, w2, w3)],
                          axis=1)
        index = np.clip(loc[:, None] - 1 + np.arange(4), 0, box - 1)
        return index, weight, np.where(valid, 4, 0).astype(np.int64)
    if filt == _rg._AREA:
        scale = _F32(box) / _F32(resized)
        cap = box // resized + 3
        a = pf * scale
        b = (p + 1).astype(np.float32) * scale
        start = np.floor(a).astype(np.int64)
        end = np.ceil(b).astype(np.int64)
        count = np.where(valid, np.clip(end - start, 0, cap), 0)
        index = np.zeros((n, cap), np.int64)
        weight = np.zeros((n, cap), np.float32)
        one = _F32(1.0)
        for q in range(cap):
            v = start + q
            fv = v.astype(np.float32)
            wv = np.where(fv < a, np.where(fv + one > b, scale, fv + one - a),
                          np.where(fv + one > b, b - fv, one))
            on = q < count
            weight[:, q] = np.where(on, wv, _F32(0.0))
            index[:, q] = np.where(on, np.clip(v, 0, box - 1), 0)
        return index, weight, count
    # TensorFlow's ScaleAndTranslate spans (sampling kernels)
    scale = _F32(resized) / _F32(box)
    inv_scale = _F32(1.0 / np.float64(scale))
    kscale = max(inv_scale, _F32(1.0)) if antialias else _F32(1.0)
    one_over = _F32(1.0) / kscale
    reach = _F32(_RADIUS.get(filt, 2.0)) * kscale
    cap = int(min(2 * int(np.ceil(reach)) + 1, box))  # ragged._span_capacity
    sample = (pf + _F32(0.5)) * inv_scale
    valid &= ~((sample < _F32(0.0)) | (sample > _F32(box)))
    start = np.ceil(sample - reach - _F32(0.5)).astype(np.int64)
    end = np.floor(sample + reach - _F32(0.5)).astype(np.int64)
    start = np.clip(start, 0, box - 1)
    end = np.clip(end, 0, box - 1) + 1
    count = np.where(valid, np.clip(end - start, 0, cap), 0)
    index = np.zeros((n, cap), np.int64)
    weight = np.zeros((n, cap), np.float32)
    total = np.zeros(n, np.float32)
    for q in range(cap):
        v = start + q
        on = q < count
        wv = np.where(on, _kernel_values(filt, (v.astype(np.float32) + _F32(0.5) - sample) * one_over), _F32(0.0))
        total = total + wv
        weight[:, q] = wv
        index[:, q] = np.where(on, v, 0)
    norm = np.abs(total) >= _TINY
    inv = _F32(1.0) / np.where(norm, total, _F32(1.0))
    weight = np.where(norm[:, None], weight * inv[:, None], _F32(0.0))
    return index, weight, count


class _Box:
    """The box's pixels, rows ``rows`` (box-relative, sorted unique) as float32 on demand; 0 outside the image."""

    def __init__(self, img, top, left, bw, rows):
        H, W, C = img.shape
        ir = top + rows
        self._rows_ok = (ir >= 0) & (ir < H)
        self._all_rows = bool(self._rows_ok.all())
        self._data = img[np.clip(ir, 0, H - 1)].reshape(rows.size, W * C)  # uint8, a row of values per box row
        self._left, self._bw, self._W, self._C = left, bw, W, C

    def columns(self, cols):
        """(R, len(cols), C) float32: box columns ``cols``; 0 outside the image or at ``cols >= bw`` (spare zeros)."""
        C = self._C
        ic = self._left + cols
        ok = (cols < self._bw) & (ic >= 0) & (ic < self._W)
        flat = (np.clip(ic, 0, self._W - 1) * C)[:, None] + np.arange(C)  # gathering bytes, not C-byte items: 8x faster
        values = self._data[:, flat.reshape(-1)].astype(np.float32).reshape(self._data.shape[0], cols.size, C)
        if not ok.all():
            values[:, ~ok] = 0
        if not self._all_rows:
            values[~self._rows_ok] = 0
        return values


def _lerp_sample(vals, img, top, left, bh, bw, oy, ox, rh, rw, hflip, vflip, h, w):
    """One sample of the bilinear pass (``ragged._lerp_sample``) into float32 ``vals`` (h, w, C).

    ``p + (q - p) * f`` as ``q -= p; q *= f; q += p``: the same three
    roundings (an IEEE sum does not depend on the order of its two terms).
    """
    py = _positions(h, oy, vflip)
    valid = (py >= 0) & (py < rh)
    vi = np.flatnonzero(valid)
    if vi.size < h:
        vals[~valid] = 0
    if vi.size == 0:
        return
    px = _positions(w, ox, hflip)
    lo, hi, frac = _lerp_taps(px, rw, bw)
    f = np.where(hi == lo + 1, frac, _F32(0.0))
    outside = (px < 0) | (px >= rw)
    lo = np.where(outside, bw, lo)  # both neighbours in the spare zeros
    f = np.where(outside, _F32(0.0), f)
    ylo, yhi, fy = _lerp_taps(py[vi], rh, bh)
    rows = np.unique(np.concatenate([ylo, yhi]))
    box = _Box(img, top, left, bw, rows)
    p = box.columns(lo)
    across = box.columns(lo + 1)
    across -= p
    across *= f[None, :, None]
    across += p  # (R, w, C)
    p = across[np.searchsorted(rows, ylo)]
    q = across[np.searchsorted(rows, yhi)]
    q -= p
    q *= fy[:, None, None]
    q += p
    vals[vi] = q


def _span_sample(vals, img, top, left, bh, bw, oy, ox, rh, rw, hflip, vflip, h, w, filt, antialias, table):
    """One sample of the span pass (``ragged._block``'s second half) into float32 ``vals`` (h, w, C)."""
    vals[...] = 0
    xidx, xw, _ = _span_taps(_positions(w, ox, hflip), rw, bw, filt, antialias, table)
    yidx, yw, ycount = _span_taps(_positions(h, oy, vflip), rh, bh, filt, antialias, table)
    used = np.arange(yidx.shape[1]) < ycount[:, None]
    rows = np.unique(yidx[used])
    if rows.size == 0:
        return
    box = _Box(img, top, left, bw, rows)
    ring = np.zeros((rows.size, w, vals.shape[2]), np.float32)
    for e in range(xidx.shape[1]):
        tap = box.columns(xidx[:, e])
        tap *= xw[None, :, e, None]
        ring += tap
    slot = np.searchsorted(rows, np.where(used, yidx, rows[0]))
    for q in range(yidx.shape[1]):
        tap = ring[slot[:, q]]
        tap *= yw[:, q, None, None]
        vals += tap
    if filt == _rg._AREA:
        hs = _F32(bh) / _F32(rh)
        ws = _F32(bw) / _F32(rw)
        vals *= _F32(1.0 / np.float64(hs * ws))


def resample(pixels, offsets, shapes, C, indices, order, boxes, windows, flips, h, w, filt, antialias, table, kind,
             channels_first, a, b, out, blocks=None):
    """The NumPy tier of ``ragged._resample``: its arguments, the same bits in ``out``.

    Returns False, having written nothing, when an index, box, window or
    flip is outside what the plan's checks let through (the caller then
    raises); True otherwise. ``order`` and ``blocks`` only schedule the
    compiled pass; they are ignored.
    """
    n = indices.shape[0]
    big = _rg.MAX_SIDE
    if n and not (
        indices.min() >= 0 and indices.max() < offsets.shape[0] and flips.max() <= 3
        and boxes[:, 2:].min() >= 1 and boxes[:, 2:].max() <= big and np.abs(boxes[:, :2]).max() <= big
        and windows[:, 2:].min() >= 1 and windows[:, 2:].max() <= big and np.abs(windows[:, :2]).max() <= big
    ):
        return False
    result = np.empty((n, h, w, C), np.float32)
    for k in range(n):
        s = int(indices[k])
        H, W = int(shapes[s, 0]), int(shapes[s, 1])
        base = int(offsets[s])
        img = pixels[base:base + H * W * C].reshape(H, W, C)
        top, left, bh, bw = (int(v) for v in boxes[k])
        oy, ox, rh, rw = -int(windows[k, 0]), -int(windows[k, 1]), int(windows[k, 2]), int(windows[k, 3])
        hflip, vflip = bool(flips[k] & 1), bool(flips[k] & 2)
        if filt == _rg._LERP:
            _lerp_sample(result[k], img, top, left, bh, bw, oy, ox, rh, rw, hflip, vflip, h, w)
        else:
            _span_sample(result[k], img, top, left, bh, bw, oy, ox, rh, rw, hflip, vflip, h, w, filt, antialias,
                         table)
    if kind == _kinds._RAW:
        values = np.clip(np.rint(result), _F32(0.0), _F32(255.0)).astype(np.uint8)
    else:
        values = result
        values *= a
        values += b
        if kind != _kinds._AFFINE:
            values = _half_bits(values, kind == _kinds._BF16)
    _lay_out(values, channels_first, out)
    return True
