"""Keras' color and filter layers, compiled: each changes one sample's float32 HWC values in place.

Values are in pixel units (0..255) whatever the op's ``value_range``: the
spec (``fastseq.augment.color``) has already turned its parameters into
those units, so nothing here knows the range. Arithmetic is float32, as in
Keras; statistics (contrast's mean, auto-contrast's min and max, the
equalization histogram) come from the sample itself; filters read
neighbours from a padded scratch copy of the sample.

``_color_op(buf, code, p)`` is the one entry the batch pass calls per
sample; ``color(images, ops, ...)`` is the validated batch wrapper.
"""

import numpy as np
from numba import njit

from fastseq.kernels.config import JIT

BRIGHTNESS, CONTRAST, SATURATION, HUE, JITTER, GRAYSCALE, INVERT, SOLARIZATION, POSTERIZATION, AUTO_CONTRAST, \
    EQUALIZATION, SHARPNESS, DEGENERATION, GAUSSIAN_BLUR = range(1, 15)

_Z = np.float32(0.0)
_ONE = np.float32(1.0)
_MAX = np.float32(255.0)
_W_R, _W_G, _W_B = np.float32(0.2989), np.float32(0.5870), np.float32(0.1140)
_SIXTH, _THIRD, _TWO_THIRDS = np.float32(1.0 / 6.0), np.float32(2.0 / 6.0), np.float32(4.0 / 6.0)


_INF = np.float32(np.inf)
_LANES = 8  # pixels per block of the per-channel loops: 8 * C values, a whole number of AVX vectors for C = 1, 3, 4


@njit(**JIT)
def _clip(v, lo, hi):
    return min(max(v, lo), hi)  # min/max (not a chain of selects): LLVM vectorises it, 1.7x faster measured


# Per-value ops run over the sample as one flat contiguous run (buf.reshape(-1)): one loop LLVM vectorises.
# Per-channel ones run over blocks of 8 pixels against a block-long pattern of the channel's constants.


@njit(**JIT)
def _shift_clip(x, delta, lo, hi):
    for i in range(x.size):
        x[i] = _clip(x[i] + delta, lo, hi)


@njit(**JIT)
def _brightness(buf, delta):
    _shift_clip(buf.reshape(-1), delta, _Z, _MAX)


@njit(**JIT)
def _channel_means(x, C):
    """float32 per-channel means of flat HWC values x (sums in float64)."""
    L = _LANES * C
    acc = np.zeros(L, np.float64)
    n = x.size
    nb = n - n % L
    for b in range(0, nb, L):
        xb = x[b:b + L]  # a view per block: indices are the loop's own, so no negative-index fix-ups (vectorises)
        for k in range(L):
            acc[k] += xb[k]
    for i in range(nb, n):
        acc[i - nb] += x[i]
    m = np.empty(C, np.float32)
    for c in range(C):
        s = 0.0
        for k in range(c, L, C):
            s += acc[k]
        m[c] = np.float32(s / (n // C))
    return m


@njit(**JIT)
def _affine_clip(x, C, coef):
    """Flat x[i] = clip(x[i] * scale + offset, low, high) with channel c = i % C's coef[c], [C + c], [2C + c], [3C + c]."""
    L = _LANES * C
    ps = np.empty(4 * L, np.float32)
    for j in range(4):
        for k in range(L):
            ps[j * L + k] = coef[j * C + k % C]
    n = x.size
    nb = n - n % L
    sc, of, cl, ch = ps[:L], ps[L:2 * L], ps[2 * L:3 * L], ps[3 * L:]
    for b in range(0, nb, L):
        xb = x[b:b + L]
        for k in range(L):
            xb[k] = _clip(xb[k] * sc[k] + of[k], cl[k], ch[k])
    for i in range(nb, n):
        k = i - nb
        x[i] = _clip(x[i] * ps[k] + ps[L + k], ps[2 * L + k], ps[3 * L + k])


@njit(**JIT)
def _contrast_apply(x, C, m, factor):
    L = _LANES * C
    mm = np.empty(L, np.float32)
    for k in range(L):
        mm[k] = m[k % C]
    n = x.size
    nb = n - n % L
    for b in range(0, nb, L):
        xb = x[b:b + L]
        for k in range(L):
            xb[k] = _clip((xb[k] - mm[k]) * factor + mm[k], _Z, _MAX)
    for i in range(nb, n):
        k = i - nb
        x[i] = _clip((x[i] - mm[k]) * factor + mm[k], _Z, _MAX)


@njit(**JIT)
def _contrast(buf, factor):
    C = buf.shape[2]
    x = buf.reshape(-1)
    _contrast_apply(x, C, _channel_means(x, C), factor)


@njit(**JIT)
def _hsv_pass(x, cf, m0, m1, m2, clo, chi, lo, step, sf, s_lo, s_hi, delta, olo, ohi):
    """One pass per RGB pixel of flat x: contrast, then (in lo + v * step units) saturation and hue, then clip.

    Each step is TensorFlow's arithmetic (RGBToHSV / HSVToRGB of colorspace_op.h, float32) without branches,
    so LLVM vectorises the pixels; neutral parameters (cf 1, m 0, lo 0, step 1, sf 1, delta 0, infinite
    clips) leave a step out exactly.
    """
    if step == _ONE and lo == _Z:  # unscaled (hue, jitter without saturation): no divisions by step
        _hsv_loop(x, cf, m0, m1, m2, clo, chi, _Z, _ONE, sf, s_lo, s_hi, delta, olo, ohi, False)
    else:
        _hsv_loop(x, cf, m0, m1, m2, clo, chi, lo, step, sf, s_lo, s_hi, delta, olo, ohi, True)


@njit(inline="always", **JIT)
def _hsv_loop(x, cf, m0, m1, m2, clo, chi, lo, step, sf, s_lo, s_hi, delta, olo, ohi, scaled):
    sixth, third, two_thirds = _SIXTH, _THIRD, _TWO_THIRDS
    f2, f3, f4, f6 = np.float32(2.0), np.float32(3.0), np.float32(4.0), np.float32(6.0)
    for q in range(x.size // 3):
        i = 3 * q
        r = lo + _clip((x[i] - m0) * cf + m0, clo, chi) * step
        g = lo + _clip((x[i + 1] - m1) * cf + m1, clo, chi) * step
        b = lo + _clip((x[i + 2] - m2) * cf + m2, clo, chi) * step
        v = max(r, max(g, b))
        rng = v - min(r, min(g, b))
        s = rng / v
        s = s if v > _Z else _Z
        norm = (_ONE / rng) * sixth
        hr = norm * (g - b)
        hg = norm * (b - r) + third
        hb = norm * (r - g) + two_thirds
        hue = hr if r == v else (hg if g == v else hb)
        hue = hue + _ONE if hue < _Z else hue
        hue = hue if rng > _Z else _Z
        s = _clip(s * sf, s_lo, s_hi)
        hue = hue + delta
        hue = hue - _ONE if hue > _ONE else hue
        hue = hue + _ONE if hue < _Z else hue
        dh = hue * f6
        dr = _clip(abs(dh - f3) - _ONE, _Z, _ONE)
        dg = _clip(f2 - abs(dh - f2), _Z, _ONE)
        db = _clip(f2 - abs(dh - f4), _Z, _ONE)
        one_s = _ONE - s
        if scaled:
            x[i] = _clip(((one_s + s * dr) * v - lo) / step, olo, ohi)
            x[i + 1] = _clip(((one_s + s * dg) * v - lo) / step, olo, ohi)
            x[i + 2] = _clip(((one_s + s * db) * v - lo) / step, olo, ohi)
        else:
            x[i] = _clip((one_s + s * dr) * v, olo, ohi)
            x[i + 1] = _clip((one_s + s * dg) * v, olo, ohi)
            x[i + 2] = _clip((one_s + s * db) * v, olo, ohi)


@njit(**JIT)
def _saturation(buf, factor, s_lo, s_hi, lo, step):
    # Keras converts the values as it sees them (lo + v * step), not rescaled, and does not clip.
    _hsv_pass(buf.reshape(-1), _ONE, _Z, _Z, _Z, -_INF, _INF, lo, step, factor, s_lo, s_hi, _Z, -_INF, _INF)


@njit(**JIT)
def _hue(buf, delta):
    # Keras works on [0, 1]; H and S do not depend on the scale, so pixel units give the same, clipped to 0..255.
    _hsv_pass(buf.reshape(-1), _ONE, _Z, _Z, _Z, -_INF, _INF, _Z, _ONE, _ONE, -_INF, _INF, delta, _Z, _MAX)


@njit(**JIT)
def _jitter(buf, p):
    """Brightness, contrast, saturation, hue (each where its flag is on), in two passes where they allow."""
    f32 = np.float32
    C = buf.shape[2]
    x = buf.reshape(-1)
    on_b, on_c, on_s, on_h = p[0] > 0.5, p[2] > 0.5, p[4] > 0.5, p[10] > 0.5
    if on_b:
        _shift_clip(x, f32(p[1]), _Z, _MAX)
    if not (on_s or on_h):
        if on_c:
            _contrast(buf, f32(p[3]))
        return
    cf, m0, m1, m2, clo, chi = _ONE, _Z, _Z, _Z, -_INF, _INF
    if on_c:
        m = _channel_means(x, C)
        cf, m0, m1, m2, clo, chi = f32(p[3]), m[0], m[1], m[2], _Z, _MAX
    sf, s_lo, s_hi, lo, step = _ONE, -_INF, _INF, _Z, _ONE
    if on_s:
        sf, s_lo, s_hi, lo, step = f32(p[5]), f32(p[6]), f32(p[7]), f32(p[8]), f32(p[9])
    if on_h and lo != _Z:  # hue sees saturation's output in pixel units: not the same H, S, V units, two passes
        _hsv_pass(x, cf, m0, m1, m2, clo, chi, lo, step, sf, s_lo, s_hi, _Z, -_INF, _INF)
        _hue(buf, f32(p[11]))
        return
    delta, olo, ohi = _Z, -_INF, _INF
    if on_h:
        delta, olo, ohi = f32(p[11]), _Z, _MAX
    _hsv_pass(x, cf, m0, m1, m2, clo, chi, lo, step, sf, s_lo, s_hi, delta, olo, ohi)


@njit(**JIT)
def _gray(r, g, b):
    return r * _W_R + g * _W_G + b * _W_B


@njit(**JIT)
def _grayscale(buf):
    if buf.shape[2] != 3:
        return
    x = buf.reshape(-1)
    for q in range(x.size // 3):
        i = 3 * q
        y = _gray(x[i], x[i + 1], x[i + 2])
        x[i] = y
        x[i + 1] = y
        x[i + 2] = y


@njit(**JIT)
def _degeneration(buf, factor):
    x = buf.reshape(-1)
    if buf.shape[2] != 3:
        _shift_clip(x, _Z, _Z, _MAX)
        return
    for q in range(x.size // 3):
        i = 3 * q
        r, g, b = x[i], x[i + 1], x[i + 2]
        y = _gray(r, g, b)
        x[i] = _clip(r + factor * (y - r), _Z, _MAX)
        x[i + 1] = _clip(g + factor * (y - g), _Z, _MAX)
        x[i + 2] = _clip(b + factor * (y - b), _Z, _MAX)


@njit(**JIT)
def _invert(buf, top):
    x = buf.reshape(-1)
    for i in range(x.size):
        x[i] = top - x[i]


@njit(**JIT)
def _solarization(buf, add, threshold):
    x = buf.reshape(-1)
    for i in range(x.size):
        y = _clip(x[i] + add, _Z, _MAX)
        x[i] = y if y < threshold else _MAX - y


@njit(**JIT)
def _posterization(buf, shift):
    # Keras' cast to uint8 truncates, then (q >> shift) << shift: the same as floor(floor(v) / 2**shift) * 2**shift,
    # exact in float32 (powers of two), and vectorised (no int conversion of each value).
    x = buf.reshape(-1)
    pw = np.float32(1 << shift)
    inv = _ONE / pw
    for i in range(x.size):
        x[i] = np.floor(np.floor(_clip(x[i], _Z, _MAX)) * inv) * pw


@njit(**JIT)
def _auto_contrast(buf):
    C = buf.shape[2]
    x = buf.reshape(-1)
    L = _LANES * C
    n = x.size
    lo = np.empty(2 * L, np.float32)  # per lane: low, then high
    for k in range(L):
        lo[k] = x[k % C]
        lo[L + k] = x[k % C]
    nb = n - n % L
    low, high = lo[:L], lo[L:]
    for b in range(0, nb, L):
        xb = x[b:b + L]
        for k in range(L):
            v = xb[k]
            low[k] = min(low[k], v)
            high[k] = max(high[k], v)
    for i in range(nb, n):
        k = i - nb
        lo[k] = min(lo[k], x[i])
        lo[L + k] = max(lo[L + k], x[i])
    scale = np.empty(4 * C, np.float32)  # scale, offset, clip low, clip high per channel
    for c in range(C):
        low = lo[c]
        high = lo[L + c]
        for k in range(c + C, L, C):
            low = min(low, lo[k])
            high = max(high, lo[L + k])
        if high > low:
            s = _MAX / (high - low)
            scale[c], scale[C + c], scale[2 * C + c], scale[3 * C + c] = s, -low * s, _Z, _MAX
        else:  # Keras' 0 * inf = NaN guard: a constant channel stays as it is (x * 1 + 0, unclipped)
            scale[c], scale[C + c], scale[2 * C + c], scale[3 * C + c] = _ONE, _Z, -_INF, _INF
    _affine_clip(x, C, scale)


@njit(**JIT)
def _equalization(buf, bins):
    # Both of Keras' indices (the histogram's and the lookup's, rounded differently) in one vectorised pass
    # (its divisions 8 at a time), with each channel's offset into one table; then the counts, then the lookup.
    h, w, C = buf.shape
    x = buf.reshape(-1)
    n = x.size
    top = bins - 1
    ftop = np.float32(top)
    L = _LANES * C
    off = np.empty(L, np.int32)
    for k in range(L):
        off[k] = (k % C) * bins
    hi = np.empty(n, np.int32)
    li = np.empty(n, np.int32)
    for b in range(0, n, L):
        e = min(L, n - b)
        xb, hb, lb = x[b:b + e], hi[b:b + e], li[b:b + e]
        for k in range(e):
            v = xb[k]
            hb[k] = np.int32(_clip(v * ftop / _MAX, _Z, ftop)) + off[k]  # Keras: truncated, then clipped
            lb[k] = np.int32(_clip(v / _MAX * ftop, _Z, ftop)) + off[k]  # Keras' lookup index
    hist = np.zeros(C * bins, np.int32)
    for i in range(n):
        hist[hi[i]] += 1
    lut = np.zeros(C * bins, np.float32)
    live = np.zeros(L, np.bool_)
    for c in range(C):
        o = c * bins
        nonzero = 0
        first = -1
        for k in range(bins):
            if hist[o + k] > 0:
                nonzero += 1
                if first < 0:
                    first = k
        if nonzero <= 1:
            continue
        for k in range(c, L, C):
            live[k] = True
        cdf_min = hist[o + first]
        denominator = h * w - cdf_min
        if denominator == 0:
            denominator = 1
        cdf = 0
        for k in range(bins):
            cdf += hist[o + k]
            lut[o + k] = np.float32(min(max(np.rint((cdf - cdf_min) * 255.0 / denominator), 0.0), 255.0))
    for b in range(0, n, L):
        e = min(L, n - b)
        xb, lb = x[b:b + e], li[b:b + e]
        for k in range(e):
            v = lut[lb[k]]
            xb[k] = v if live[k] else xb[k]  # a channel with one value stays as it is


@njit(**JIT)
def _padded(x, h, w, C, r, pad):
    """Flat copy of flat HWC x with r pixels of pad around it: ((h + 2r) * (w + 2r) * C,)."""
    Wp = (w + 2 * r) * C
    W = w * C
    p = np.empty((h + 2 * r) * Wp, np.float32)
    for q in range(p.size):
        p[q] = pad
    for i in range(h):
        row = p[(i + r) * Wp + r * C:]
        xr = x[i * W:]
        for q in range(W):
            row[q] = xr[q]
    return p


@njit(**JIT)
def _sharpness(buf, factor, pad):
    h, w, C = buf.shape
    x = buf.reshape(-1)
    p = _padded(x, h, w, C, 1, pad)
    a = np.float32(1.0 / 13.0)
    b = np.float32(5.0 / 13.0)
    keep = _ONE - factor
    W = w * C
    Wp = W + 2 * C
    for i in range(h):
        # Row views: every index below is the loop's own (no negative-index fix-ups), so the row vectorises.
        u0, m0, d0 = p[i * Wp:], p[(i + 1) * Wp:], p[(i + 2) * Wp:]
        u1, m1, d1 = u0[C:], m0[C:], d0[C:]
        u2, m2, d2 = u0[2 * C:], m0[2 * C:], d0[2 * C:]
        xr = x[i * W:]
        for q in range(W):
            ring = u0[q] + u1[q] + u2[q] + m0[q] + m2[q] + d0[q] + d1[q] + d2[q]
            v = m1[q]
            xr[q] = _clip(v + keep * ((a * ring + b * v) - v), _Z, _MAX)


@njit(**JIT)
def _gaussian_blur(buf, k, pad, p):
    # Separable: rows, then columns, each a sum over taps in tap order (the padded 2-D sum's order), vectorised
    # over a row's values.
    h, w, C = buf.shape
    r = k // 2
    W = w * C
    wx = np.empty(k, np.float32)
    wy = np.empty(k, np.float32)
    for t in range(k):
        wx[t] = np.float32(p[5 + t])
        wy[t] = np.float32(p[5 + k + t])
    x = buf.reshape(-1)
    rows = np.zeros((h + 2 * r) * W, np.float32)
    prow = np.empty((w + 2 * r) * C, np.float32)
    edge = _Z
    for t in range(k):
        edge += wx[t] * pad
    top, bottom = rows[:r * W], rows[(h + r) * W:]
    for q in range(r * W):
        top[q] = edge
        bottom[q] = edge
    left, right, mid = prow[:r * C], prow[(r + w) * C:], prow[r * C:]
    for q in range(r * C):
        left[q] = pad
        right[q] = pad
    # Row views throughout: indices are the loops' own (no negative-index fix-ups), so each row vectorises.
    for i in range(h):
        xr = x[i * W:]
        for q in range(W):
            mid[q] = xr[q]
        out = rows[(i + r) * W:]
        for t in range(k):
            wt = wx[t]
            src = prow[t * C:]
            for q in range(W):
                out[q] += wt * src[q]
    for i in range(h):
        out = x[i * W:]
        for q in range(W):
            out[q] = _Z
        for t in range(k):
            wt = wy[t]
            src = rows[(i + t) * W:]
            for q in range(W):
                out[q] += wt * src[q]
        for q in range(W):
            out[q] = _clip(out[q], _Z, _MAX)


@njit(**JIT)
def _color_op(buf, code, p):
    """Apply one color op to one sample, in place.

    Args:
        buf: float32 (h, w, C) values in pixel units 0..255, changed in place.
        code: the op's int code (the spec's ``code``).
        p: float64 1-D, the op's per-sample params (a row of the spec's ``params(u)``).

    Numba-compiled, serial: the pass calls it per sample inside its own prange loop.
    """
    f32 = np.float32
    if code == BRIGHTNESS:
        _brightness(buf, f32(p[0]))
    elif code == CONTRAST:
        _contrast(buf, f32(p[0]))
    elif code == SATURATION:
        _saturation(buf, f32(p[0]), f32(p[1]), f32(p[2]), f32(p[3]), f32(p[4]))
    elif code == HUE:
        _hue(buf, f32(p[0]))
    elif code == JITTER:
        _jitter(buf, p)
    elif code == GRAYSCALE:
        if p[0] > 0.5:
            _grayscale(buf)
    elif code == INVERT:
        if p[0] > 0.5:
            _invert(buf, f32(p[1]))
    elif code == SOLARIZATION:
        _solarization(buf, f32(p[0]), f32(p[1]))
    elif code == POSTERIZATION:
        _posterization(buf, np.int32(p[0]))
    elif code == AUTO_CONTRAST:
        _auto_contrast(buf)
    elif code == EQUALIZATION:
        _equalization(buf, int(p[0]))
    elif code == SHARPNESS:
        _sharpness(buf, f32(p[0]), f32(p[1]))
    elif code == DEGENERATION:
        _degeneration(buf, f32(p[0]))
    elif code == GAUSSIAN_BLUR:
        if p[0] > 0.5:
            _gaussian_blur(buf, int(p[1]), f32(p[2]), p)
        else:  # Keras clips whether or not it blurred
            _shift_clip(buf.reshape(-1), _Z, _Z, _MAX)


def color(images, ops, u=None, params=None, out=None, seed=None):
    """Apply color ops (``fastseq.augment.color`` specs), in order, to a batch.

    Args:
        images: uint8 or float32 (N, H, W, C) or (N, H, W) images, values in pixel units 0..255.
        ops: one color spec or a sequence of them (each has ``code``, ``n_draws``, ``params(u)``).
        u: per op, float64 (N, op.n_draws) uniforms in [0, 1); None draws them from ``seed``.
        params: per op, float64 (N, op.n_params) parameters (overrides ``u``): pins the ops' draws.
        out: float32 (N, H, W, C) C-contiguous output (may be ``images`` itself), or None to allocate.
        seed: the NumPy seed of the uniforms when neither ``u`` nor ``params`` is given.

    Returns:
        ``out``: float32 (N, H, W, C), in pixel units.

    Raises:
        TypeError, ValueError: naming the argument and the value received.

    The ops are the compiled ones the augmentation pass runs, called once per sample from here (serial: this
    wrapper is for tests and one-off use; ``augment=[...]`` is the fast path).
    """
    if not isinstance(images, np.ndarray) or images.dtype not in (np.uint8, np.float32):
        got = f"dtype {images.dtype}" if isinstance(images, np.ndarray) else type(images).__name__
        raise TypeError(f"images must be a uint8 or float32 numpy array (values 0..255), got {got}.")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or min(images.shape[1:]) < 1:
        raise ValueError(f"images must be (N, H, W, C) or (N, H, W) with H, W, C >= 1, got shape {images.shape}.")
    ops = list(ops) if isinstance(ops, (list, tuple)) else [ops]
    N, H, W, C = images.shape
    for op in ops:
        if getattr(op, "family", None) != "color" or not hasattr(op, "code"):
            raise TypeError(f"ops must be color specs of fastseq.augment.color, got {op!r}.")
        op.check_channels(C)
    for name, given in (("u", u), ("params", params)):
        if given is not None and len(given) != len(ops):
            raise ValueError(f"{name} must hold one array per op ({len(ops)}), got {len(given)}.")
    rows = []
    rng = np.random.default_rng(seed)
    for k, op in enumerate(ops):
        if params is not None:
            p = np.asarray(params[k], np.float64)
        else:
            uk = rng.random((N, op.n_draws)) if u is None else np.asarray(u[k], np.float64)
            if uk.shape != (N, op.n_draws):
                raise ValueError(f"u[{k}] must have shape {(N, op.n_draws)} for {type(op).__name__}, got {uk.shape}.")
            p = op.params(uk)
        if p.shape != (N, op.n_params):
            raise ValueError(f"params[{k}] must have shape {(N, op.n_params)} for {type(op).__name__}, got {p.shape}.")
        if not np.isfinite(p).all():
            raise ValueError(f"params[{k}] must be finite numbers for {type(op).__name__}.")
        rows.append(p)
    P = max([op.n_params for op in ops] + [1])
    table = np.zeros((len(ops), N, P), np.float64)
    for k, p in enumerate(rows):
        table[k, :, :p.shape[1]] = p
    codes = np.array([op.code for op in ops], np.int64)
    if out is None:
        out = np.empty((N, H, W, C), np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (N, H, W, C) \
            or not out.flags.c_contiguous or not out.flags.writeable:
        got = f"shape {out.shape}, dtype {out.dtype}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out must be a writeable C-contiguous float32 array of shape {(N, H, W, C)}, got {got}.")
    if out is not images:
        np.copyto(out, images, casting="unsafe")
    # One call of the compiled op per sample and op: the specialisation the augmentation pass compiled (and cached)
    # serves this wrapper too, with no compiled batch loop of its own (a second compile of every color op).
    for i in range(N):
        for k in range(len(ops)):
            _color_op(out[i], codes[k], table[k, i])
    return out
