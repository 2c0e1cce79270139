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

import numba
import numpy as np
from numba import njit

from fastseq.kernels.config import JIT, run_split, threads_for

BRIGHTNESS, CONTRAST, SATURATION, HUE, JITTER, GRAYSCALE, INVERT, SOLARIZATION, POSTERIZATION, AUTO_CONTRAST, \
    EQUALIZATION, SHARPNESS, DEGENERATION, GAUSSIAN_BLUR = range(1, 15)

_Z = np.float32(0.0)
_ONE = np.float32(1.0)
_MAX = np.float32(255.0)
_W_R, _W_G, _W_B = np.float32(0.2989), np.float32(0.5870), np.float32(0.1140)
_SIXTH, _THIRD, _TWO_THIRDS = np.float32(1.0 / 6.0), np.float32(2.0 / 6.0), np.float32(4.0 / 6.0)


@njit(**JIT)
def _clip(v, lo, hi):
    return min(max(v, lo), hi)  # min/max (not a chain of selects): LLVM vectorises it, 1.7x faster measured


@njit(**JIT)
def _brightness(buf, delta):
    h, w, C = buf.shape
    for i in range(h):
        for j in range(w):
            for c in range(C):
                buf[i, j, c] = _clip(buf[i, j, c] + delta, _Z, _MAX)


@njit(**JIT)
def _contrast(buf, factor):
    h, w, C = buf.shape
    mean = np.zeros(C, np.float64)
    for i in range(h):
        for j in range(w):
            for c in range(C):
                mean[c] += buf[i, j, c]
    m = np.empty(C, np.float32)
    for c in range(C):
        m[c] = np.float32(mean[c] / (h * w))
    for i in range(h):
        for j in range(w):
            for c in range(C):
                buf[i, j, c] = _clip((buf[i, j, c] - m[c]) * factor + m[c], _Z, _MAX)


@njit(**JIT)
def _rgb_to_hsv(r, g, b):
    """TensorFlow's RGBToHSV (colorspace_op.h), float32; H in [0, 1)."""
    v = max(r, max(g, b))
    rng = v - min(r, min(g, b))
    s = rng / v if v > _Z else _Z
    if not rng > _Z:
        return _Z, s, v
    norm = (_ONE / rng) * _SIXTH
    if r == v:
        hue = norm * (g - b)
    elif g == v:
        hue = norm * (b - r) + _THIRD
    else:
        hue = norm * (r - g) + _TWO_THIRDS
    if hue < _Z:
        hue += _ONE
    return hue, s, v


@njit(**JIT)
def _hsv_to_rgb(hue, s, v):
    """TensorFlow's HSVToRGB, float32."""
    dh = hue * np.float32(6.0)
    dr = _clip(abs(dh - np.float32(3.0)) - _ONE, _Z, _ONE)
    dg = _clip(np.float32(2.0) - abs(dh - np.float32(2.0)), _Z, _ONE)
    db = _clip(np.float32(2.0) - abs(dh - np.float32(4.0)), _Z, _ONE)
    one_s = _ONE - s
    return (one_s + s * dr) * v, (one_s + s * dg) * v, (one_s + s * db) * v


@njit(**JIT)
def _saturation(buf, factor, s_lo, s_hi, lo, step):
    # Keras converts the values as it sees them (lo + v * step), not rescaled.
    h, w, _ = buf.shape
    for i in range(h):
        for j in range(w):
            hue, s, v = _rgb_to_hsv(lo + buf[i, j, 0] * step, lo + buf[i, j, 1] * step, lo + buf[i, j, 2] * step)
            r, g, b = _hsv_to_rgb(hue, _clip(s * factor, s_lo, s_hi), v)
            buf[i, j, 0] = (r - lo) / step
            buf[i, j, 1] = (g - lo) / step
            buf[i, j, 2] = (b - lo) / step


@njit(**JIT)
def _hue(buf, delta):
    # Keras works on [0, 1]; H and S do not depend on the scale, so pixel units give the same, clipped to 0..255.
    h, w, _ = buf.shape
    for i in range(h):
        for j in range(w):
            hue, s, v = _rgb_to_hsv(buf[i, j, 0], buf[i, j, 1], buf[i, j, 2])
            hue = hue + delta
            if hue > _ONE:
                hue -= _ONE
            if hue < _Z:
                hue += _ONE
            r, g, b = _hsv_to_rgb(hue, s, v)
            buf[i, j, 0] = _clip(r, _Z, _MAX)
            buf[i, j, 1] = _clip(g, _Z, _MAX)
            buf[i, j, 2] = _clip(b, _Z, _MAX)


@njit(**JIT)
def _gray(r, g, b):
    return r * _W_R + g * _W_G + b * _W_B


@njit(**JIT)
def _grayscale(buf):
    h, w, C = buf.shape
    if C != 3:
        return
    for i in range(h):
        for j in range(w):
            y = _gray(buf[i, j, 0], buf[i, j, 1], buf[i, j, 2])
            buf[i, j, 0] = y
            buf[i, j, 1] = y
            buf[i, j, 2] = y


@njit(**JIT)
def _degeneration(buf, factor):
    h, w, C = buf.shape
    for i in range(h):
        for j in range(w):
            if C == 3:
                y = _gray(buf[i, j, 0], buf[i, j, 1], buf[i, j, 2])
                for c in range(3):
                    x = buf[i, j, c]
                    buf[i, j, c] = _clip(x + factor * (y - x), _Z, _MAX)
            else:
                for c in range(C):
                    buf[i, j, c] = _clip(buf[i, j, c], _Z, _MAX)


@njit(**JIT)
def _invert(buf, top):
    h, w, C = buf.shape
    for i in range(h):
        for j in range(w):
            for c in range(C):
                buf[i, j, c] = top - buf[i, j, c]


@njit(**JIT)
def _solarization(buf, add, threshold):
    h, w, C = buf.shape
    for i in range(h):
        for j in range(w):
            for c in range(C):
                y = _clip(buf[i, j, c] + add, _Z, _MAX)
                buf[i, j, c] = y if y < threshold else _MAX - y


@njit(**JIT)
def _posterization(buf, shift):
    h, w, C = buf.shape
    for i in range(h):
        for j in range(w):
            for c in range(C):
                q = np.int32(_clip(buf[i, j, c], _Z, _MAX))  # Keras' cast to uint8 truncates
                buf[i, j, c] = np.float32((q >> shift) << shift)


@njit(**JIT)
def _auto_contrast(buf):
    h, w, C = buf.shape
    low = np.empty(C, np.float32)
    high = np.empty(C, np.float32)
    for c in range(C):
        low[c] = buf[0, 0, c]
        high[c] = buf[0, 0, c]
    for i in range(h):
        for j in range(w):
            for c in range(C):
                x = buf[i, j, c]
                low[c] = min(low[c], x)
                high[c] = max(high[c], x)
    scale = np.empty(C, np.float32)
    offset = np.empty(C, np.float32)
    for c in range(C):
        if high[c] > low[c]:
            scale[c] = _MAX / (high[c] - low[c])
            offset[c] = -low[c] * scale[c]
        else:  # Keras' 0 * inf = NaN guard: a constant channel stays as it is
            scale[c] = _ONE
            offset[c] = _Z
    for i in range(h):
        for j in range(w):
            for c in range(C):
                if high[c] > low[c]:
                    buf[i, j, c] = _clip(buf[i, j, c] * scale[c] + offset[c], _Z, _MAX)


@njit(**JIT)
def _equalization(buf, bins):
    h, w, C = buf.shape
    top = bins - 1
    ftop = np.float32(top)
    hist = np.empty(bins, np.int64)
    lut = np.empty(bins, np.float32)
    for c in range(C):
        hist[:] = 0
        for i in range(h):
            for j in range(w):
                k = int(buf[i, j, c] * ftop / _MAX)  # Keras' histogram index: truncated, then clipped
                hist[min(max(k, 0), top)] += 1
        nonzero = 0
        first = -1
        for k in range(bins):
            if hist[k] > 0:
                nonzero += 1
                if first < 0:
                    first = k
        if nonzero <= 1:
            continue
        cdf_min = hist[first]
        denominator = h * w - cdf_min
        if denominator == 0:
            denominator = 1
        cdf = 0
        for k in range(bins):
            cdf += hist[k]
            lut[k] = np.float32(min(max(np.rint((cdf - cdf_min) * 255.0 / denominator), 0.0), 255.0))
        for i in range(h):
            for j in range(w):
                x = _clip(buf[i, j, c] / _MAX * ftop, _Z, ftop)  # Keras' lookup index: another rounding
                buf[i, j, c] = lut[int(x)]


@njit(**JIT)
def _padded(buf, r, pad):
    h, w, C = buf.shape
    p = np.empty((h + 2 * r, w + 2 * r, C), np.float32)
    p[:] = pad
    p[r:r + h, r:r + w, :] = buf
    return p


@njit(**JIT)
def _sharpness(buf, factor, pad):
    h, w, C = buf.shape
    p = _padded(buf, 1, pad)
    a = np.float32(1.0 / 13.0)
    b = np.float32(5.0 / 13.0)
    keep = _ONE - factor
    for i in range(h):
        for j in range(w):
            for c in range(C):
                ring = (p[i, j, c] + p[i, j + 1, c] + p[i, j + 2, c] + p[i + 1, j, c] + p[i + 1, j + 2, c]
                        + p[i + 2, j, c] + p[i + 2, j + 1, c] + p[i + 2, j + 2, c])
                x = p[i + 1, j + 1, c]
                smooth = a * ring + b * x
                buf[i, j, c] = _clip(x + keep * (smooth - x), _Z, _MAX)


@njit(**JIT)
def _clip_all(buf):
    h, w, C = buf.shape
    for i in range(h):
        for j in range(w):
            for c in range(C):
                buf[i, j, c] = _clip(buf[i, j, c], _Z, _MAX)


@njit(**JIT)
def _gaussian_blur(buf, k, pad, p):
    h, w, C = buf.shape
    r = k // 2
    wx = np.empty(k, np.float32)
    wy = np.empty(k, np.float32)
    for t in range(k):
        wx[t] = np.float32(p[5 + t])
        wy[t] = np.float32(p[5 + k + t])
    src = _padded(buf, r, pad)
    rows = np.empty((h + 2 * r, w, C), np.float32)
    for i in range(h + 2 * r):
        for j in range(w):
            for c in range(C):
                acc = _Z
                for t in range(k):
                    acc += wx[t] * src[i, j + t, c]
                rows[i, j, c] = acc
    for i in range(h):
        for j in range(w):
            for c in range(C):
                acc = _Z
                for t in range(k):
                    acc += wy[t] * rows[i + t, j, c]
                buf[i, j, c] = _clip(acc, _Z, _MAX)


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
        if p[0] > 0.5:
            _brightness(buf, f32(p[1]))
        if p[2] > 0.5:
            _contrast(buf, f32(p[3]))
        if p[4] > 0.5:
            _saturation(buf, f32(p[5]), f32(p[6]), f32(p[7]), f32(p[8]), f32(p[9]))
        if p[10] > 0.5:
            _hue(buf, f32(p[11]))
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
            _clip_all(buf)


@njit(**JIT)
def _color_batch(start, stop, out, codes, params):
    """Samples ``start:stop`` of out: float32 (N, H, W, C), changed in place; codes: int64 (K,); params: float64 (K, N, P).

    Numba-compiled; run over the batch in chunks on threads (``config.run_split``).
    """
    for i in range(start, stop):
        for k in range(codes.shape[0]):
            _color_op(out[i], codes[k], params[k, i])


#: Work of a color pass per output byte, in ``launch``'s units (a copy-like pass's bytes).
COLOR_COST = 4


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

    Numba-compiled; parallel over the batch.
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
    run_split(_color_batch, N, threads_for(out.nbytes * COLOR_COST, numba.get_num_threads()), out, codes, table)
    return out
