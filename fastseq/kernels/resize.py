"""Bilinear resized crops: RandomResizedCrop's boxes and the resampling pass.

Two compiled pieces, each behind a validating wrapper:

* :func:`resized_crop_params` draws each sample's crop box (torchvision's
  ``RandomResizedCrop.get_params``) and flip bits as a pure function of
  ``(seed, epoch, sample index)``, from the counter hash of
  :mod:`fastseq.kernels.random` (streams 8..11; the flip bits use the same
  streams as :func:`fastseq.kernels.random_params`, so a sample flips the
  same way under either crop).
* :func:`resized_crop` gathers, resamples bilinearly, flips, normalises and
  lays out a batch in one pass, parallel over the batch, without the GIL.

Pixel centres. Pixel ``i`` of an axis covers ``[i, i + 1)`` and its centre
is ``i + 0.5`` (the half-pixel convention of ``tf.image.resize``,
``keras.layers.Resizing`` and torchvision's bilinear ``resize`` with
``antialias=False``). Output pixel ``i`` of an axis of a box of ``b``
source pixels starting at ``origin``, resized to ``r`` pixels, reads the
source at ``(i + 0.5) * b / r - 0.5`` (box coordinates), blends its two
neighbours linearly, and clamps at the box's edges (a neighbour outside
the box is replaced by the edge pixel). No antialiasing: shrinking by more
than 2x skips source pixels, as ``tf.image.resize(antialias=False)`` does.
"""

import math
import numbers

import numba
import numpy as np
from numba import njit, prange, uint64

from fastseq.kernels import _validate as check
from fastseq.kernels import config, quick
from fastseq.kernels._intrinsics import fetch_add, prefetch
from fastseq.kernels.config import JIT, PARALLEL_JIT, RESAMPLE_COST, announced, launch, mark_warm
from fastseq.kernels.halfprec import f32_to_bf16_bits, f32_to_f16_bits
from fastseq.kernels.images import ReadOrder
from fastseq.kernels.random import (
    _FLIP_BITS,
    HFLIP,
    RRC_AREA,
    RRC_LEFT,
    RRC_RATIO,
    RRC_TOP,
    VFLIP,
    KeyedDraws,
    _mix_scalar,
    _probability,
    _seed_epoch_key,
    _uniform,
    _word,
    index_array,
)

#: torchvision's number of tries before the centre-crop fallback.
ATTEMPTS = 10

# Output kinds.
_RAW, _AFFINE, _HALF, _BF16 = 0, 1, 2, 3
_u = uint64
_PREFETCH_BYTES = 16384


# ---- the boxes -------------------------------------------------------------


@njit(inline="always", **JIT)
def _unit(base, stream, attempt):
    """A float64 uniform in [0, 1): the top 53 bits of one hash word."""
    return np.float64(_word(base, stream, attempt) >> _u(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always", **JIT)
def _resized_crop_one(key, index, H, W, s0, s1, logr0, logr1, rmin, rmax, cut_h, cut_v, boxes, flips, k):
    """Sample ``index``'s box in an ``H`` x ``W`` image and its flip bits, into row ``k``.

    Attempt ``a`` draws the area fraction from stream RRC_AREA and the
    log-aspect-ratio from stream RRC_RATIO (both at counter ``a``); the
    first box that fits is placed uniformly (streams RRC_TOP, RRC_LEFT).
    After ATTEMPTS misses: the centre crop of the whole image, clamped to
    the ratio range. One body for fixed-size images and for images of
    different sizes (:mod:`fastseq.kernels.ragged`), so a sample of a given
    size draws the same box under both.
    """
    area = np.float64(H) * np.float64(W)
    base = _mix_scalar(key ^ (uint64(index) * uint64(0x9E3779B97F4A7C15)))
    found = False
    for attempt in range(ATTEMPTS):
        target = area * (s0 + (s1 - s0) * _unit(base, RRC_AREA, attempt))
        aspect = np.exp(logr0 + (logr1 - logr0) * _unit(base, RRC_RATIO, attempt))
        w = np.int64(np.rint(np.sqrt(target * aspect)))
        h = np.int64(np.rint(np.sqrt(target / aspect)))
        if 0 < w <= W and 0 < h <= H:
            boxes[k, 0] = _uniform(base, RRC_TOP, H - h + 1)
            boxes[k, 1] = _uniform(base, RRC_LEFT, W - w + 1)
            boxes[k, 2] = h
            boxes[k, 3] = w
            found = True
            break
    if not found:
        in_ratio = np.float64(W) / np.float64(H)
        if in_ratio < rmin:
            w = W
            h = max(np.int64(np.rint(W / rmin)), 1)
        elif in_ratio > rmax:
            h = H
            w = max(np.int64(np.rint(H * rmax)), 1)
        else:
            w = W
            h = H
        boxes[k, 0] = (H - h) // 2
        boxes[k, 1] = (W - w) // 2
        boxes[k, 2] = h
        boxes[k, 3] = w
    hbit = (_word(base, HFLIP, 0) >> uint64(64 - _FLIP_BITS)) < cut_h
    vbit = (_word(base, VFLIP, 0) >> uint64(64 - _FLIP_BITS)) < cut_v
    flips[k] = np.uint8(1 if hbit else 0) | np.uint8(2 if vbit else 0)


@njit(**JIT)
def _resized_crop_params(key, indices, H, W, s0, s1, logr0, logr1, rmin, rmax, cut_h, cut_v, boxes, flips):
    """torchvision's ``RandomResizedCrop.get_params`` per index (:func:`_resized_crop_one`), then the flip bits.

    Returns the smallest index (for the wrapper's check).
    """
    smallest = 0
    for k in range(indices.shape[0]):
        smallest = min(smallest, indices[k])
        _resized_crop_one(key, indices[k], H, W, s0, s1, logr0, logr1, rmin, rmax, cut_h, cut_v, boxes, flips, k)
    return smallest


def _range_pair(name, value, *, upper=None):
    """A ``(low, high)`` pair of finite numbers with ``0 < low <= high`` (``<= upper`` if given)."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {check._describe(value)}.") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must be a (low, high) pair of finite numbers, got {check._describe(value)}.")
    lo, hi = float(lo), float(hi)
    if lo <= 0:
        raise ValueError(f"{name} must have low > 0, got {value!r}; e.g. {name}=(0.08, 1.0).")
    if lo > hi:
        raise ValueError(f"{name} must be in order (low <= high), got {value!r}; swap them: ({hi!r}, {lo!r}).")
    if upper is not None and hi > upper:
        raise ValueError(f"{name} must have high <= {upper:g}, got {value!r}.")
    return lo, hi


def _draw_bounds(scale, ratio, horizontal, vertical):
    """The checked draw parameters the box kernels take: scale, log-ratio and ratio ranges, flip thresholds."""
    s0, s1 = _range_pair("scale", scale, upper=1.0)
    r0, r1 = _range_pair("ratio", ratio)
    return (
        s0,
        s1,
        math.log(r0),
        math.log(r1),
        r0,
        r1,
        np.uint64(round(_probability("horizontal", horizontal) * (1 << _FLIP_BITS))),
        np.uint64(round(_probability("vertical", vertical) * (1 << _FLIP_BITS))),
    )


class ResizedCropParams(KeyedDraws):
    """:func:`resized_crop_params` with the per-dataset arguments validated once.

    ``ResizedCropParams(image_size=..., scale=..., ratio=..., horizontal=...,
    vertical=...)(seed, epoch, indices)`` equals ``resized_crop_params(seed,
    epoch, indices, ...)``. Immutable apart from a key cache replaced whole;
    safe to share between threads.
    """

    def __init__(self, *, image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), horizontal=0.5, vertical=0.0):
        H, W = (check.integer("image_size", v, minimum=1) for v in image_size)
        self.image_size = (H, W)
        self._bounds = (H, W, *_draw_bounds(scale, ratio, horizontal, vertical))

    def __call__(self, seed, epoch, indices):
        """``(boxes, flips)`` for ``indices``; see :func:`resized_crop_params`."""
        key = self._key(seed, epoch)
        idx = index_array(indices)
        boxes = np.empty((idx.size, 4), dtype=np.int64)
        flips = np.empty(idx.size, dtype=np.uint8)
        smallest = _resized_crop_params(key, idx, *self._bounds, boxes, flips)
        if smallest < 0:
            raise ValueError(f"indices must be >= 0, got {smallest}.")
        return boxes, flips


def resized_crop_params(
    seed, epoch, indices, *, image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), horizontal=0.5, vertical=0.0
):
    """RandomResizedCrop boxes and flip bits for each sample index.

    Per sample, torchvision's rule: up to 10 times, draw an area fraction
    uniform in ``scale`` and a log-aspect-ratio uniform in ``log(ratio)``,
    round ``w = sqrt(area * ratio)`` and ``h = sqrt(area / ratio)`` to
    integers (half to even) and, if the box fits the image, place it
    uniformly; after 10 misses take the centre crop of the whole image,
    narrowed to the nearest ratio in range. Every draw is a pure function
    of ``(seed, epoch, index)``.

    Args:
        seed, epoch: non-negative integers.
        indices: 1-D non-negative integer sample indices.
        image_size: ``(H, W)`` of the images.
        scale: ``(low, high)`` area fraction, ``0 < low <= high <= 1``.
        ratio: ``(low, high)`` width / height, ``0 < low <= high``.
        horizontal, vertical: flip probabilities.

    Returns:
        ``(boxes, flips)``: int64 (n, 4) ``(top, left, height, width)`` boxes
        inside the image, and uint8 (n,) flip bits (bit 0 horizontal, bit 1
        vertical), equal to :func:`fastseq.kernels.random_params`' bits.
    """
    _seed_epoch_key(seed, epoch)
    plan = ResizedCropParams(image_size=image_size, scale=scale, ratio=ratio, horizontal=horizontal, vertical=vertical)
    return plan(seed, epoch, indices)


# ---- the resampling pass ---------------------------------------------------


@njit(**JIT)
def _resize_block(xf, H, W, C, indices, order, boxes, flips, h, w, rh, rw, oy, ox, kind, channels_first, a, b,
                  out, t0, t1):
    """Samples ``order[t0:t1]`` of :func:`_resize`, serially.

    Separable, as ``tf.image.resize``: each source row the output needs is
    interpolated horizontally once into a float32 row of ``w * C`` values
    (two rows are cached, so a row shared by consecutive output rows is
    done once), then each output row is the vertical blend of two such rows,
    converted in one straight loop. Both blends are ``p + (q - p) * f`` in
    float32, the form and order of TensorFlow's ``compute_lerp``.

    Speed (ImageNet-style batch, 256 crops of 64x64x3 to 56x56, float32, one
    thread, best of 200 on the shared 2-core VM): 1.50 ms with the
    horizontal blend written per output value reading the uint8 bytes;
    1.15 ms with each source row first widened to float32 (one contiguous,
    vectorised loop) and the blend written per pixel with the literal 3
    (offsets and weight read once per pixel); 1.05-1.08 ms with the
    vertical blend and the float32 normalisation in one loop.
    """
    wc = w * C
    WC = W * C
    image = H * WC
    ahead = min(image, _PREFETCH_BYTES)
    px0 = np.empty(w, np.int64)  # offset in the box row of output pixel j's left neighbour
    px1 = np.empty(w, np.int64)  # ... and of its right one
    fxp = np.empty(w, np.float32)  # the weight of the right one
    rows = np.empty((2, wc), np.float32)  # cached horizontally interpolated source rows
    vals = np.empty(wc, np.float32)
    srow = np.empty(WC, np.float32)  # one source row of the box, widened to float32
    arow = np.empty(wc, np.float32)
    brow = np.empty(wc, np.float32)
    for u in range(wc):
        arow[u] = a[u % C]
        brow[u] = b[u % C]
    for t in range(t0, t1):
        if t + 2 < t1:
            later = _u(indices[order[t + 2]]) * _u(image)
            for byte in range(0, ahead, 64):
                prefetch(xf, later + _u(byte))
        k = order[t]
        first = indices[k] * image
        top = boxes[k, 0]
        left = boxes[k, 1]
        bh = boxes[k, 2]
        bw = boxes[k, 3]
        hflip = (flips[k] & 1) != 0
        vflip = (flips[k] & 2) != 0
        bwc = bw * C
        sx = np.float64(bw) / np.float64(rw)
        sy = np.float64(bh) / np.float64(rh)
        for j in range(w):
            jj = w - 1 - j if hflip else j
            x = (np.float64(ox + jj) + 0.5) * sx - 0.5
            xl = math.floor(x)
            lo = min(max(np.int64(xl), 0), bw - 1)
            hi = min(max(np.int64(xl) + 1, 0), bw - 1)
            f = np.float32(x - xl)
            px0[j] = lo * C
            px1[j] = hi * C
            fxp[j] = f
        tag0 = -1
        tag1 = -1
        for i in range(h):
            ii = h - 1 - i if vflip else i
            y = (np.float64(oy + ii) + 0.5) * sy - 0.5
            yl = math.floor(y)
            r0 = top + min(max(np.int64(yl), 0), bh - 1)
            r1 = top + min(max(np.int64(yl) + 1, 0), bh - 1)
            fy = np.float32(y - yl)
            # Horizontally interpolate source rows r0 and r1 unless cached,
            # each into the slot that does not hold the other.
            for need in range(2):
                r = r0 if need == 0 else r1
                if tag0 == r or tag1 == r:
                    continue
                slot = 1 if tag0 == (r1 if need == 0 else r0) else 0
                src = _u(first + r * WC + left * C)
                for u in range(bwc):  # widen once, contiguous (vectorised)
                    srow[u] = np.float32(xf[src + _u(u)])
                if C == 3:
                    # Offsets and weight read once per pixel, with the literal 3.
                    for j in range(w):
                        o0 = _u(px0[j])
                        o1 = _u(px1[j])
                        f = fxp[j]
                        d = _u(3) * _u(j)
                        p = srow[o0]
                        rows[slot, d] = p + (srow[o1] - p) * f
                        p = srow[o0 + _u(1)]
                        rows[slot, d + _u(1)] = p + (srow[o1 + _u(1)] - p) * f
                        p = srow[o0 + _u(2)]
                        rows[slot, d + _u(2)] = p + (srow[o1 + _u(2)] - p) * f
                else:
                    for j in range(w):
                        o0 = _u(px0[j])
                        o1 = _u(px1[j])
                        f = fxp[j]
                        d = _u(C) * _u(j)
                        for c in range(C):
                            p = srow[o0 + _u(c)]
                            rows[slot, d + _u(c)] = p + (srow[o1 + _u(c)] - p) * f
                if slot == 0:
                    tag0 = r
                else:
                    tag1 = r
            s0 = 0 if tag0 == r0 else 1
            s1 = 0 if tag0 == r1 else 1
            if kind == _AFFINE and not channels_first:
                # The common case in one loop: blend, normalise, store.
                for u in range(wc):
                    p = rows[s0, u]
                    out[k, _u(i), _u(u)] = (p + (rows[s1, u] - p) * fy) * arow[u] + brow[u]
                continue
            for u in range(wc):
                p = rows[s0, u]
                vals[u] = p + (rows[s1, u] - p) * fy
            _emit(out, k, i, vals, h, w, C, kind, channels_first, a, b, arow, brow)


@njit(**JIT)
def _emit(out, k, i, vals, h, w, C, kind, channels_first, a, b, arow, brow):
    """Row ``i`` of sample ``k`` from float32 ``vals`` (w * C): normalise, round to the output type, lay out."""
    wc = w * C
    if channels_first:
        for c in range(C):
            row_start = _u(i) * _u(w)
            for j in range(w):
                v = vals[j * C + c]
                if kind == _AFFINE:
                    out[k, c, row_start + _u(j)] = v * a[c] + b[c]
                elif kind == _HALF:
                    out[k, c, row_start + _u(j)] = f32_to_f16_bits(v * a[c] + b[c])
                elif kind == _BF16:
                    out[k, c, row_start + _u(j)] = f32_to_bf16_bits(v * a[c] + b[c])
                else:
                    out[k, c, row_start + _u(j)] = np.uint8(min(max(np.rint(v), 0.0), 255.0))
    elif kind == _AFFINE:
        for u in range(wc):
            out[k, _u(i), _u(u)] = vals[u] * arow[u] + brow[u]
    elif kind == _HALF:
        for u in range(wc):
            out[k, _u(i), _u(u)] = f32_to_f16_bits(vals[u] * arow[u] + brow[u])
    elif kind == _BF16:
        for u in range(wc):
            out[k, _u(i), _u(u)] = f32_to_bf16_bits(vals[u] * arow[u] + brow[u])
    else:
        for u in range(wc):
            out[k, _u(i), _u(u)] = np.uint8(min(max(np.rint(vals[u]), 0.0), 255.0))



@njit(**PARALLEL_JIT)
def _resize(xf, H, W, C, indices, order, boxes, flips, h, w, rh, rw, oy, ox, kind, channels_first, a, b, out,
            blocks):
    """Blocks of the batch to the threads, taken from a shared counter (as :func:`fastseq.kernels.images._fused`).

    Numba-compiled; parallel over the batch.
    """
    n = indices.shape[0]
    taken = np.zeros(1, np.int64)
    for _ in prange(blocks):
        while True:
            blk = fetch_add(taken, 0, 1)
            if blk >= blocks:
                break
            _resize_block(xf, H, W, C, indices, order, boxes, flips, h, w, rh, rw, oy, ox, kind, channels_first,
                          a, b, out, blk * n // blocks, (blk + 1) * n // blocks)


@njit(inline="always", **JIT)
def _in_range(indices, boxes, flips, size, H, W):
    ok = True
    for k in range(indices.shape[0]):
        v = indices[k]
        top = boxes[k, 0]
        left = boxes[k, 1]
        bh = boxes[k, 2]
        bw = boxes[k, 3]
        ok &= (v >= 0) & (v < size) & (top >= 0) & (left >= 0) & (bh >= 1) & (bw >= 1)
        ok &= (bh <= H - top) & (bw <= W - left) & (flips[k] <= 3)
    return ok


@njit(**JIT)
def _checked(xf, H, W, C, indices, order, boxes, flips, size, h, w, rh, rw, oy, ox, kind, channels_first, a, b,
             out, blocks):
    """Prove every index, box and flip in range, then run :func:`_resize`; False (nothing run) if not."""
    if not _in_range(indices, boxes, flips, size, H, W):
        return False
    _resize(xf, H, W, C, indices, order, boxes, flips, h, w, rh, rw, oy, ox, kind, channels_first, a, b, out, blocks)
    return True


@njit(**JIT)
def _checked_serial(xf, H, W, C, indices, order, boxes, flips, size, h, w, rh, rw, oy, ox, kind, channels_first, a,
                    b, out, blocks):
    """The serial twin of :func:`_checked`, for processes forked after parallel use."""
    if not _in_range(indices, boxes, flips, size, H, W):
        return False
    _resize_block(xf, H, W, C, indices, order, boxes, flips, h, w, rh, rw, oy, ox, kind, channels_first, a, b, out,
                  0, indices.shape[0])
    return True


_BLOCKS_PER_THREAD = 4
_MAX_BLOCKS = numba.config.NUMBA_NUM_THREADS * _BLOCKS_PER_THREAD


def _boxes(values, n, image_size, name="boxes"):
    """Check per-sample ``(top, left, height, width)`` boxes inside the image; None means the whole image."""
    H, W = image_size
    if values is None:
        whole = np.empty((n, 4), np.int64)
        whole[:] = (0, 0, H, W)
        return whole
    arr = np.asarray(values)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(
            f"{name} must be an integer array of (top, left, height, width) rows, got {check._describe(values)}."
        )
    if arr.shape != (n, 4):
        raise ValueError(
            f"{name} must have shape ({n}, 4) (one (top, left, height, width) per sample), got {arr.shape}."
        )
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    top, left, bh, bw = arr.T
    bad = np.flatnonzero((top < 0) | (left < 0) | (bh < 1) | (bw < 1) | (bh > H - top) | (bw > W - left))
    if bad.size:
        k = int(bad[0])
        top, left, bh, bw = (int(v) for v in arr[k])
        raise ValueError(
            f"{name}[{k}] = ({top}, {left}, {bh}, {bw}) is not a non-empty box inside the {H}x{W} image; "
            f"need top, left >= 0, height, width >= 1, top + height <= {H} and left + width <= {W}."
        )
    return arr


class ResizePlan(config.Tiered):
    """A validated, reusable configuration of :func:`resized_crop` for one image array.

    What stays the same from batch to batch (images, output size, resize
    size, normalisation, dtype, layout) is checked once here; each call
    checks only its ``indices``, ``boxes``, ``flips`` and ``out``.
    Immutable apart from caches replaced whole; safe to share between threads.
    """

    def __init__(
        self,
        x,
        *,
        size,
        scaled_size=None,
        mean=None,
        std=None,
        scale=None,
        offset=None,
        dtype="float32",
        data_format="channels_last",
    ):
        x4 = check.images(x)
        N, H, W, C = x4.shape
        self.size = _pair("size", size)
        self.scaled_size = self.size if scaled_size is None else _pair("scaled_size", scaled_size)
        if self.size[0] > self.scaled_size[0] or self.size[1] > self.scaled_size[1]:
            raise ValueError(
                f"size={self.size} must fit inside scaled_size={self.scaled_size} (its centre window is the output); "
                f"use a size of at most {self.scaled_size} or a larger scaled_size."
            )
        coeffs = check.affine(C, mean, std, scale, offset)
        self.dtype = check.output_dtype(dtype, coeffs is not None)
        self.channels_first = check.data_format(data_format)
        self.data_format = data_format
        a, b = coeffs if coeffs is not None else (np.ones(C, np.float32), np.zeros(C, np.float32))
        self._a, self._b = a, b
        self._kind = {"uint8": _RAW, "float32": _AFFINE, "float16": _HALF, "bfloat16": _BF16}[self.dtype]
        self._x = x4
        self._xf = x4.reshape(-1)
        self._read_order = ReadOrder(x, N)
        self.image_shape = (H, W, C)
        self._offset = ((self.scaled_size[0] - self.size[0]) // 2, (self.scaled_size[1] - self.size[1]) // 2)
        self._variant_key = ("resized-crop", self.variant)

    @property
    def variant(self):
        """What the compiled kernel is specialised for: the output's element type.

        float16 and bfloat16 share one variant (uint16 bits); the layout is a
        run-time flag, so both layouts share it too.
        """
        return {"float32": "float32", "float16": "float16/bfloat16", "bfloat16": "float16/bfloat16"}.get(
            self.dtype, self.dtype
        )

    def compile(self, *, serial=False):
        """Compile (or load from the on-disk cache) this plan's kernel variant without a batch to make.

        With ``serial``, also the serial twin that processes forked after
        parallel use run (``use_multiprocessing=True``).
        """
        one = np.zeros(1, np.int64)
        boxes, flips = np.array([[0, 0, 1, 1]], np.int64), np.zeros(1, np.uint8)
        out = np.empty(self.output_shape(1), check.numpy_dtype(self.dtype))
        self._launch_warm(one, boxes, flips, out)  # no compile notice: the caller asked for this
        mark_warm(self._variant_key)
        if serial:
            _checked_serial(*self._kernel_args(one, boxes, flips, out))

    def __len__(self):
        return self._x.shape[0]

    def output_shape(self, n):
        """Shape of the output for a batch of ``n`` samples."""
        h, w = self.size
        C = self.image_shape[2]
        return (n, C, h, w) if self.channels_first else (n, h, w, C)

    def __call__(self, indices, boxes=None, flips=None, out=None):
        """Run the pass for one batch; see :func:`resized_crop`."""
        if (
            type(indices) is np.ndarray
            and type(boxes) is np.ndarray
            and type(flips) is np.ndarray
            and indices.dtype == np.int64
            and boxes.dtype == np.int64
            and flips.dtype == np.uint8
            and indices.ndim == 1
            and boxes.shape == (indices.shape[0], 4)
            and flips.shape == (indices.shape[0],)
            and indices.flags.c_contiguous
            and boxes.flags.c_contiguous
            and flips.flags.c_contiguous
            and indices.shape[0] > 0
        ):
            # The common case (resized_crop_params' own arrays): the compiled
            # launch proves every value in range first; if one is not, nothing
            # runs and the full checks below raise the usual error.
            out = check.out_array(out, self.output_shape(indices.shape[0]), self.dtype, self._x)
            if self._launch(indices, boxes, flips, out):
                return out
        indices = check.index_array(indices, self._x.shape[0])
        n = indices.shape[0]
        boxes = _boxes(boxes, n, self.image_shape[:2])
        flips = check.flip_bits(flips, n)
        out = check.out_array(out, self.output_shape(n), self.dtype, self._x)
        if n > 0 and not self._launch(indices, boxes, flips, out):
            raise AssertionError("resize kernel refused arguments that passed every check")  # pragma: no cover
        return out

    _tier_kernels = property(lambda self: (_checked, _checked_serial))
    _tier_what = property(lambda self: f"the resized-crop kernel for {self.variant} batches")

    def _tier_example(self):
        one = np.zeros(1, np.int64)
        out = np.empty(self.output_shape(1), check.numpy_dtype(self.dtype))
        return self._kernel_args(one, np.array([[0, 0, 1, 1]], np.int64), np.zeros(1, np.uint8), out)

    def _launch(self, indices, boxes, flips, out):
        if self._numpy_tier():
            return quick.resize(*self._kernel_args(indices, boxes, flips, out))
        return announced(self._variant_key, f"the resized-crop kernel for {self.variant} batches", self._launch_warm,
                         indices, boxes, flips, out)

    def _launch_warm(self, indices, boxes, flips, out):
        return launch(_checked, *self._kernel_args(indices, boxes, flips, out), serial=_checked_serial,
                      work=out.nbytes * RESAMPLE_COST)

    def _kernel_args(self, indices, boxes, flips, out):
        """The arguments of :func:`_checked` (and :func:`_checked_serial`) for one batch."""
        h, w = self.size
        H, W, C = self.image_shape
        n = indices.shape[0]
        target = out.view(np.uint16) if self._kind in (_HALF, _BF16) else out
        target = target.reshape((n, C, h * w) if self.channels_first else (n, h, w * C))
        return (
            self._xf,
            H,
            W,
            C,
            indices,
            self._read_order(indices),
            boxes,
            flips,
            self._x.shape[0],
            h,
            w,
            self.scaled_size[0],
            self.scaled_size[1],
            self._offset[0],
            self._offset[1],
            self._kind,
            self.channels_first,
            self._a,
            self._b,
            target,
            min(n, _MAX_BLOCKS),
        )


def _pair(name, value):
    try:
        h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (height, width) pair, got {check._describe(value)}.") from None
    return check.integer(f"{name} height", h, minimum=1), check.integer(f"{name} width", w, minimum=1)


def resized_crop(
    x,
    indices,
    *,
    size,
    boxes=None,
    flips=None,
    scaled_size=None,
    mean=None,
    std=None,
    scale=None,
    offset=None,
    dtype="float32",
    data_format="channels_last",
    out=None,
):
    """Gather, crop a box, resize it bilinearly, flip, normalise and lay out a batch in one pass.

    For each ``k``: take the box ``boxes[k] = (top, left, height, width)``
    of image ``x[indices[k]]``, resize it bilinearly to ``scaled_size``
    (default ``size``) with half-pixel centres, keep the centred ``size``
    window of that (corner ``((R_h - h) // 2, (R_w - w) // 2)``, as
    :class:`fastseq.CenterCrop`), flip it left-right if bit 0 of
    ``flips[k]`` is set and up-down if bit 1 is, then map each value ``v``
    of channel ``c`` to ``v * a[c] + b[c]`` in float32 (``a``, ``b`` from
    ``mean``/``std`` or ``scale``/``offset`` as in :func:`fastseq.kernels.fused`),
    rounded to ``dtype`` (uint8: to the nearest integer, half to even; no
    normalisation then).

    Coordinates: output pixel ``i`` of the resized box reads the box at
    ``(i + 0.5) * box_size / scaled_size - 0.5``, blending its two
    neighbours with ``p + (q - p) * f`` in float32 (horizontally first,
    then vertically), a neighbour outside the box replaced by the box's
    edge pixel. This equals ``tf.image.resize(box, scaled_size,
    "bilinear", antialias=False)`` then slicing the centre window, up to
    float32 rounding of the coordinates. No antialiasing.

    Numba-compiled; parallel over the batch; releases the GIL. For repeated
    calls build a :class:`ResizePlan` once.

    Args:
        x: uint8 images, (N, H, W, C) or (N, H, W); C-contiguous; in RAM or a
            read-only ``np.memmap``.
        indices: 1-D integers in ``[0, N)``.
        size: ``(height, width)`` of the output.
        boxes: int (n, 4) ``(top, left, height, width)`` per sample, each a
            non-empty box inside the image; None means the whole image.
        flips: int (n,) flip bits 0..3; None means no flips.
        scaled_size: ``(height, width)`` the box is resized to before the
            centre ``size`` window is kept; at least ``size``; None means ``size``.
        mean, std, scale, offset: per-channel normalisation (as :func:`fastseq.kernels.fused`).
        dtype: "float32", "float16", "bfloat16" or "uint8".
        data_format: "channels_last" -> (n, h, w, C); "channels_first" -> (n, C, h, w).
        out: optional preallocated C-contiguous output of that shape and dtype.

    Returns:
        The output batch (``out`` if given), always 4-D.

    Raises:
        TypeError, ValueError: naming the argument and the value received.
    """
    plan = ResizePlan(
        x,
        size=size,
        scaled_size=scaled_size,
        mean=mean,
        std=std,
        scale=scale,
        offset=offset,
        dtype=dtype,
        data_format=data_format,
    )
    return plan(indices, boxes, flips, out)
