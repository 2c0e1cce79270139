"""One resample of a sample through a 3x3 output->input map (and a displacement field): the geometric ops' kernel.

Without a field, the sampling is TensorFlow's ``ImageProjectiveTransformV3``
(what Keras' TensorFlow backend runs for ``affine_transform`` and
``perspective_transform``, hence for ``RandomRotation``, ``RandomZoom``,
``RandomTranslation``, ``RandomShear`` and ``RandomPerspective``): output
pixel ``(x, y)`` (column, row; pixel centres at integers) reads the input at
``m @ (x, y, 1)`` divided by its third coordinate (a zero third coordinate
reads ``fill``); the point is mapped into the image per ``mode`` and clamped
to ``[0, size - 1]`` as TensorFlow does (constant mode maps nothing: each
neighbour outside the image reads ``fill``, as TensorFlow 2.21's
``read_with_fill_value``); nearest rounds half away from zero; bilinear
weighs the four neighbours in TensorFlow's order. The
coordinates are computed in float64 (TensorFlow: float32), so a nearest
sample within about 1e-5 of a half-pixel may round the other way.

With a field (Keras' ``RandomElasticTransform``: ``elastic_transform``, whose
sampling is ``keras.ops.image.map_coordinates``), the displaced point is
sampled as ``map_coordinates`` does: each neighbour's index is mapped into
the image on its own (constant mode: a neighbour outside reads ``fill``,
blended with the others), nearest rounds half to even. Its ``"reflect"`` is
``d c b a | a b c d`` on both sides, as Keras documents and its NumPy and JAX
backends do (its TensorFlow backend mirrors ``c b | a b`` on the low side).

``FILL_MIRROR`` is ``np.pad``'s ``"reflect"`` (``d c b | a b c d``), for
``RandomCrop(pad_mode="reflect")``; TensorFlow has no such mode.

NumPy + Numba only.
"""

import math
import numbers

import numpy as np
from numba import njit

from fastseq.kernels.config import JIT

FILL_CONSTANT, FILL_NEAREST, FILL_REFLECT, FILL_WRAP, FILL_MIRROR = 0, 1, 2, 3, 4
INTERP_NEAREST, INTERP_BILINEAR = 0, 1

#: Keras' names (and ``"mirror"``) -> the codes above.
FILL_CODES = {"constant": FILL_CONSTANT, "nearest": FILL_NEAREST, "reflect": FILL_REFLECT, "wrap": FILL_WRAP,
              "mirror": FILL_MIRROR}
INTERP_CODES = {"nearest": INTERP_NEAREST, "bilinear": INTERP_BILINEAR}

# A coordinate beyond this (or NaN) reads the fill value: far outside any image, and safe to convert to an integer.
_FAR = 1e15


@njit(**JIT)
def _map_point(c, n, mode):
    """TensorFlow's ``MapCoordinate`` for one continuous coordinate of an axis of ``n`` pixels, then its clamp.

    Constant mode returns ``c`` unchanged (the caller tests the range).
    """
    if mode == FILL_CONSTANT:
        return c
    top = n - 1.0
    if mode == FILL_REFLECT:
        if c < 0.0:
            if n <= 1:
                c = 0.0
            else:
                sz2 = 2.0 * n
                c = sz2 * math.floor(-c / sz2) + c  # in (-sz2, 0]
                c = c + sz2 if c < -n else -c - 1.0
        elif c > top:
            if n <= 1:
                c = 0.0
            else:
                sz2 = 2.0 * n
                c -= sz2 * math.floor(c / sz2)
                if c >= n:
                    c = sz2 - c - 1.0
    elif mode == FILL_WRAP:
        # TensorFlow's wrap, divisor n - 1 included: beyond about two periods it no longer wraps.
        if c < 0.0:
            if n <= 1:
                c = 0.0
            else:
                c += n * (math.floor(-c / top) + 1.0)
        elif c > top:
            if n <= 1:
                c = 0.0
            else:
                c -= n * math.floor(c / top)
    elif mode == FILL_MIRROR:
        if n <= 1:
            c = 0.0
        else:
            period = 2.0 * top
            c = abs(c)
            c -= period * math.floor(c / period)
            if c > top:
                c = period - c
    if c < 0.0:
        return 0.0
    if c > top:
        return top
    return c


@njit(**JIT)
def _map_index(i, n, mode):
    """``map_coordinates``' index mapping for one neighbour: ``(index in [0, n), inside)``."""
    if mode == FILL_CONSTANT or mode == FILL_NEAREST:
        if i < 0:
            return 0, False
        if i >= n:
            return n - 1, False
        return i, True
    if mode == FILL_WRAP:
        return i % n, True
    if mode == FILL_REFLECT:  # d c b a | a b c d
        i = i % (2 * n)
        if i >= n:
            i = 2 * n - 1 - i
        return i, True
    # FILL_MIRROR: d c b | a b c d
    if n == 1:
        return 0, True
    period = 2 * (n - 1)
    i = abs(i) % period
    if i >= n:
        i = period - i
    return i, True


@njit(**JIT)
def _round_half_even(c):
    f = math.floor(c)
    d = c - f
    if d > 0.5 or (d == 0.5 and f % 2.0 == 1.0):
        f += 1.0
    return f


@njit(**JIT)
def _round_half_away(c):
    """``std::round``: halves away from zero."""
    r = math.floor(abs(c))
    if abs(c) - r >= 0.5:
        r += 1.0
    return r if c >= 0.0 else -r


@njit(**JIT)
def _fill_pixel(dst, y, x, C, fill):
    for ch in range(C):
        dst[y, x, ch] = fill


@njit(**JIT)
def _span(a, r, lim, w):
    """The columns ``[lo, hi)`` of ``range(w)`` whose coordinate ``a * x + r`` lies in ``[0, lim)``.

    Estimated on the real line, then each end tested with the very expression the caller samples at (monotonic in
    ``x``, so the columns between two that pass pass too): every column returned passes; one next to the span may be
    left out (the caller's general code takes it).
    """
    if not (lim > 0.0):
        return 0, 0
    if a == 0.0:
        if 0.0 <= r < lim:
            return 0, w
        return 0, 0
    t0 = -r / a
    t1 = (lim - r) / a
    if a < 0.0:
        t0, t1 = t1, t0
    top = w + 1.0
    t0 = -1.0 if not (t0 > -1.0) else (top if not (t0 < top) else t0)  # NaN: an empty span
    t1 = -1.0 if not (t1 > -1.0) else (top if not (t1 < top) else t1)
    lo = max(int(math.ceil(t0)), 0)
    hi = min(int(math.floor(t1)) + 1, w)
    while lo < hi and not (0.0 <= a * lo + r < lim):
        lo += 1
    while hi > lo and not (0.0 <= a * (hi - 1) + r < lim):
        hi -= 1
    if lo >= hi:
        return 0, 0
    while lo > 0 and 0.0 <= a * (lo - 1) + r < lim:
        lo -= 1
    while hi < w and 0.0 <= a * hi + r < lim:
        hi += 1
    return lo, hi


@njit(**JIT)
def _warp_sample(src, off, H, W, C, m, field, interp, mode, fill, dst):
    """Resample one HWC image through ``m`` (and ``field``) into ``dst``.

    src: 1-D uint8 or float32 array holding an HWC image at ``src[off : off + H*W*C]``;
    m: float64 (3, 3) output->input map; field: float32 (h, w, 2) displacement (dy, dx)
    added to the output coordinates before m, or shape (0, 0, 2) for none;
    interp/mode: the ``INTERP_*``/``FILL_*`` codes; fill: float64 value for FILL_CONSTANT;
    dst: float32 (h, w, C) written with the resampled values (no rounding, no clipping).

    Without a field: TensorFlow's ``ImageProjectiveTransformV3``; with one:
    ``map_coordinates``' sampling (see the module's docstring). Every index is
    proven in range here, so it runs without bounds checks; the caller
    guarantees the shapes (the wrapper :func:`warp` checks them).
    Numba-compiled; one sample, serial.
    """
    h = dst.shape[0]
    w = dst.shape[1]
    has_field = field.shape[0] > 0
    m00, m01, m02 = m[0, 0], m[0, 1], m[0, 2]
    m10, m11, m12 = m[1, 0], m[1, 1], m[1, 2]
    m20, m21, m22 = m[2, 0], m[2, 1], m[2, 2]
    projective = m20 != 0.0 or m21 != 0.0 or m22 != 1.0
    fill32 = np.float32(fill)
    row = W * C
    fast = not has_field and not projective
    urow = np.uint64(row)
    for y in range(h):
        # per-row terms of the map
        rx = m01 * y + m02
        ry = m11 * y + m12
        rz = m21 * y + m22
        lo = 0
        hi = 0
        if fast:
            # Affine, no field: the columns [lo, hi) whose source point lies in [0, W - 1) x [0, H - 1) (every
            # neighbour inside the image, no border rule to apply) take a tight loop; the others the general code.
            lo, hi = _span(m00, rx, W - 1.0, w)
            lo2, hi2 = _span(m10, ry, H - 1.0, w)
            lo = max(lo, lo2)
            hi = max(min(hi, hi2), lo)
            if interp == INTERP_BILINEAR:
                # Indices unsigned: no negative-index wraparound code in the loop.
                yu = np.uint64(y)
                cu = np.uint64(C)
                for x in range(lo, hi):
                    px = m00 * x + rx
                    py = m10 * x + ry
                    x0 = int(px)  # px >= 0: floor
                    y0 = int(py)
                    fx = np.float64(x0)
                    fy = np.float64(y0)
                    ax = (fx + 1.0) - px
                    bx = px - fx
                    ay = (fy + 1.0) - py
                    by = py - fy
                    b0 = np.uint64(off + y0 * row + x0 * C)
                    b1 = b0 + urow
                    xu = np.uint64(x)
                    for c in range(C):
                        ch = np.uint64(c)
                        top = ax * np.float64(src[b0 + ch]) + bx * np.float64(src[b0 + cu + ch])
                        bottom = ax * np.float64(src[b1 + ch]) + bx * np.float64(src[b1 + cu + ch])
                        dst[yu, xu, ch] = np.float32(ay * top + by * bottom)
            else:
                for x in range(lo, hi):
                    px = m00 * x + rx
                    py = m10 * x + ry
                    x0 = int(px)
                    y0 = int(py)
                    ix = x0 + (1 if px - x0 >= 0.5 else 0)  # std::round: half away from zero (px >= 0)
                    iy = y0 + (1 if py - y0 >= 0.5 else 0)
                    base = off + iy * row + ix * C
                    for ch in range(C):
                        dst[y, x, ch] = np.float32(src[base + ch])
        for x in range(w):
            if lo <= x < hi:
                continue
            if has_field:
                yo = y + np.float64(field[y, x, 0])
                xo = x + np.float64(field[y, x, 1])
                px = m00 * xo + m01 * yo + m02
                py = m10 * xo + m11 * yo + m12
                if projective:
                    pz = m20 * xo + m21 * yo + m22
                    if pz == 0.0:
                        _fill_pixel(dst, y, x, C, fill32)
                        continue
                    px /= pz
                    py /= pz
            else:
                px = m00 * x + rx
                py = m10 * x + ry
                if projective:
                    pz = m20 * x + rz
                    if pz == 0.0:
                        _fill_pixel(dst, y, x, C, fill32)
                        continue
                    px /= pz
                    py /= pz
            if not (abs(px) < _FAR and abs(py) < _FAR):
                _fill_pixel(dst, y, x, C, fill32)
                continue
            if not has_field:
                # ---- TensorFlow's ImageProjectiveTransformV3 ----
                if mode == FILL_CONSTANT:
                    # No mapping: each neighbour outside the image reads fill (TF's read_with_fill_value).
                    if interp == INTERP_NEAREST:
                        ix = int(_round_half_away(px))
                        iy = int(_round_half_away(py))
                        if ix < 0 or ix >= W or iy < 0 or iy >= H:
                            _fill_pixel(dst, y, x, C, fill32)
                            continue
                        base = off + iy * row + ix * C
                        for ch in range(C):
                            dst[y, x, ch] = np.float32(src[base + ch])
                    else:
                        fx = math.floor(px)
                        fy = math.floor(py)
                        x0 = int(fx)
                        y0 = int(fy)
                        okx0 = 0 <= x0 < W
                        okx1 = 0 <= x0 + 1 < W
                        oky0 = 0 <= y0 < H
                        oky1 = 0 <= y0 + 1 < H
                        if not ((okx0 or okx1) and (oky0 or oky1)):
                            _fill_pixel(dst, y, x, C, fill32)
                            continue
                        ax = (fx + 1.0) - px
                        bx = px - fx
                        ay = (fy + 1.0) - py
                        by = py - fy
                        c0 = min(max(x0, 0), W - 1)
                        c1 = min(max(x0 + 1, 0), W - 1)
                        r0 = min(max(y0, 0), H - 1)
                        r1 = min(max(y0 + 1, 0), H - 1)
                        i00 = oky0 and okx0
                        i01 = oky0 and okx1
                        i10 = oky1 and okx0
                        i11 = oky1 and okx1
                        b00 = off + r0 * row + c0 * C
                        b01 = off + r0 * row + c1 * C
                        b10 = off + r1 * row + c0 * C
                        b11 = off + r1 * row + c1 * C
                        for ch in range(C):
                            g00 = np.float64(src[b00 + ch]) if i00 else fill
                            g01 = np.float64(src[b01 + ch]) if i01 else fill
                            g10 = np.float64(src[b10 + ch]) if i10 else fill
                            g11 = np.float64(src[b11 + ch]) if i11 else fill
                            dst[y, x, ch] = np.float32(ay * (ax * g00 + bx * g01) + by * (ax * g10 + bx * g11))
                    continue
                px = _map_point(px, W, mode)
                py = _map_point(py, H, mode)
                # px, py are now in [0, W - 1] x [0, H - 1]
                if interp == INTERP_NEAREST:
                    fx = math.floor(px)
                    fy = math.floor(py)
                    ix = int(fx) + (1 if px - fx >= 0.5 else 0)  # std::round: half away from zero (px >= 0)
                    iy = int(fy) + (1 if py - fy >= 0.5 else 0)
                    base = off + iy * row + ix * C
                    for ch in range(C):
                        dst[y, x, ch] = np.float32(src[base + ch])
                else:
                    fx = math.floor(px)
                    fy = math.floor(py)
                    x0 = int(fx)
                    y0 = int(fy)
                    # The far neighbour of the last column/row has weight 0: read the pixel itself, not past the end.
                    x1 = x0 + 1 if x0 + 1 < W else x0
                    y1 = y0 + 1 if y0 + 1 < H else y0
                    ax = (fx + 1.0) - px
                    bx = px - fx
                    ay = (fy + 1.0) - py
                    by = py - fy
                    b00 = off + y0 * row + x0 * C
                    b01 = off + y0 * row + x1 * C
                    b10 = off + y1 * row + x0 * C
                    b11 = off + y1 * row + x1 * C
                    for ch in range(C):
                        top = ax * np.float64(src[b00 + ch]) + bx * np.float64(src[b01 + ch])
                        bottom = ax * np.float64(src[b10 + ch]) + bx * np.float64(src[b11 + ch])
                        dst[y, x, ch] = np.float32(ay * top + by * bottom)
            else:
                # ---- map_coordinates (Keras' elastic_transform) ----
                if interp == INTERP_NEAREST:
                    ix, okx = _map_index(int(_round_half_even(px)), W, mode)
                    iy, oky = _map_index(int(_round_half_even(py)), H, mode)
                    if mode == FILL_CONSTANT and not (okx and oky):
                        _fill_pixel(dst, y, x, C, fill32)
                        continue
                    base = off + iy * row + ix * C
                    for ch in range(C):
                        dst[y, x, ch] = np.float32(src[base + ch])
                else:
                    fx = math.floor(px)
                    fy = math.floor(py)
                    bx = px - fx
                    ax = 1.0 - bx
                    by = py - fy
                    ay = 1.0 - by
                    x0, okx0 = _map_index(int(fx), W, mode)
                    x1, okx1 = _map_index(int(fx) + 1, W, mode)
                    y0, oky0 = _map_index(int(fy), H, mode)
                    y1, oky1 = _map_index(int(fy) + 1, H, mode)
                    constant = mode == FILL_CONSTANT
                    v00 = constant and not (oky0 and okx0)
                    v01 = constant and not (oky0 and okx1)
                    v10 = constant and not (oky1 and okx0)
                    v11 = constant and not (oky1 and okx1)
                    b00 = off + y0 * row + x0 * C
                    b01 = off + y0 * row + x1 * C
                    b10 = off + y1 * row + x0 * C
                    b11 = off + y1 * row + x1 * C
                    for ch in range(C):
                        g00 = fill if v00 else np.float64(src[b00 + ch])
                        g01 = fill if v01 else np.float64(src[b01 + ch])
                        g10 = fill if v10 else np.float64(src[b10 + ch])
                        g11 = fill if v11 else np.float64(src[b11 + ch])
                        s = (ay * ax) * g00 + (ay * bx) * g01 + (by * ax) * g10 + (by * bx) * g11
                        dst[y, x, ch] = np.float32(s)


def _shape_pair(name, value):
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"warp: {name} must be a (height, width) pair of positive integers, got {value!r}.") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"warp: {name} must be a (height, width) pair of positive integers, got {value!r}.")
    return int(h), int(w)


def warp(images, matrices, *, interpolation="bilinear", fill_mode="reflect", fill_value=0.0, fields=None,
         output_size=None, out=None):
    """Resample each image through its 3x3 output->input matrix (and displacement field).

    Output pixel ``(x, y)`` of image ``i`` reads its input at
    ``matrices[i] @ (x + dx, y + dy, 1)`` (projective), where ``(dy, dx) =
    fields[i, y, x]`` (zero without fields). See the module's docstring for
    the sampling: TensorFlow's ``ImageProjectiveTransformV3`` without fields
    (Keras' ``affine_transform``), ``map_coordinates`` with them (Keras'
    ``elastic_transform``).

    Args:
        images: uint8 or float32 ``(N, H, W, C)`` array.
        matrices: ``(N, 3, 3)`` or one ``(3, 3)`` for all, finite numbers.
        interpolation: ``"nearest"`` or ``"bilinear"``.
        fill_mode: ``"constant"``, ``"nearest"``, ``"reflect"`` (``d c b a | a b c d``),
            ``"wrap"`` or ``"mirror"`` (``d c b | a b c d``, ``np.pad``'s ``"reflect"``).
        fill_value: the value read outside the image with ``fill_mode="constant"``.
        fields: None, or finite ``(N, h, w, 2)`` displacements ``(dy, dx)`` in pixels.
        output_size: ``(h, w)`` of the output; default the input's ``(H, W)``.
        out: None, or a C-contiguous writeable float32 ``(N, h, w, C)`` array to write into.

    Returns:
        float32 ``(N, h, w, C)``: the resampled values, neither rounded nor clipped.

    Raises:
        TypeError, ValueError: naming the argument and the value received.

    Numba-compiled; serial over the batch.
    """
    if not isinstance(images, np.ndarray):
        raise TypeError(f"warp: images must be a numpy array, got {type(images).__name__}.")
    if images.dtype not in (np.uint8, np.float32):
        raise TypeError(f"warp: images must be uint8 or float32, got dtype {images.dtype}; convert with .astype(np.float32).")
    if images.ndim != 4 or min(images.shape[1:]) < 1:
        raise ValueError(f"warp: images must be (N, H, W, C) with H, W, C >= 1, got shape {images.shape}.")
    N, H, W, C = images.shape
    if interpolation not in INTERP_CODES:
        raise ValueError(f"warp: interpolation must be one of {tuple(INTERP_CODES)}, got {interpolation!r}.")
    if fill_mode not in FILL_CODES:
        raise ValueError(f"warp: fill_mode must be one of {tuple(FILL_CODES)}, got {fill_mode!r}.")
    if isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real) or not np.isfinite(float(fill_value)):
        raise ValueError(f"warp: fill_value must be a finite number, got {fill_value!r}.")
    m = np.asarray(matrices, dtype=np.float64)
    if m.shape == (3, 3):
        m = np.broadcast_to(m, (N, 3, 3))
    if m.shape != (N, 3, 3):
        raise ValueError(f"warp: matrices must be (3, 3) or ({N}, 3, 3) for {N} images, got shape {m.shape}.")
    if not np.isfinite(m).all():
        raise ValueError("warp: matrices must be finite; got NaN or infinity.")
    m = np.ascontiguousarray(m)
    h, w = (H, W) if output_size is None else _shape_pair("output_size", output_size)
    if fields is None:
        f = np.zeros((0, 0, 0, 2), np.float32)
    else:
        f = np.ascontiguousarray(fields, dtype=np.float32)
        if f.shape != (N, h, w, 2):
            raise ValueError(f"warp: fields must be ({N}, {h}, {w}, 2) displacements (dy, dx), got shape {f.shape}.")
        if not np.isfinite(f).all():
            raise ValueError("warp: fields must be finite; got NaN or infinity.")
    if out is None:
        out = np.empty((N, h, w, C), np.float32)
    elif (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (N, h, w, C)
          or not out.flags.c_contiguous or not out.flags.writeable):
        got = f"shape {out.shape}, dtype {out.dtype}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"warp: out must be a C-contiguous writeable float32 array of shape {(N, h, w, C)}, got {got}.")
    if N == 0:
        return out
    # Read-only, as the augmentation pass passes its source: the very specialisation the pass compiled (and cached)
    # serves this wrapper too, with no compiled batch loop of its own (a second compile of the whole warp).
    src = np.ascontiguousarray(images).reshape(-1).view()
    src.flags.writeable = False
    no_field = np.zeros((0, 0, 2), np.float32)
    interp, mode, per = INTERP_CODES[interpolation], FILL_CODES[fill_mode], H * W * C
    for i in range(N):
        _warp_sample(src, i * per, H, W, C, m[i], f[i] if f.shape[0] > 0 else no_field, interp, mode,
                     float(fill_value), out[i])
    return out
