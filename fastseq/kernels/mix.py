"""Cutout, RandomErasing, MixUp and CutMix: their per-sample draws, the fused MixUp/CutMix pass, and the separate passes.

NumPy and Numba only.

* :class:`FusedMix` makes MixUp/CutMix batches inside the fused pass: for
  each output sample, its own and its partner's raw pixels (each with its
  own crop and flip, by :mod:`fastseq.kernels.images`' block code) into a
  small per-thread scratch, then one loop per output row normalises both,
  blends them in float32 and writes the row once (Cutout/erasing boxes
  after). What :class:`fastseq.ArraySequence` runs for mixing over a
  :class:`fastseq.kernels.FusedPlan`. (Cutout and erasing alone run inside
  :class:`FusedPlan` itself: its ``erase=`` argument.)
* :func:`cutout` writes a fill value into per-sample boxes of a finished
  batch, in place, serially. It touches only the erased values. Used after
  the resampling pass (``RandomResizedCrop``) and as the fused paths' twin.
* :func:`mix` makes each output sample from two made samples ``a[k]`` and
  ``b[k]`` (the sample and its partner, both out of one fused call on the
  concatenated indices): ``weights[k] * a + (1 - weights[k]) * b`` in
  float32 (MixUp), with ``b``'s pixels inside ``boxes[k]`` (CutMix), then
  rounded to the output dtype. Used after the resampling pass, and as
  :class:`FusedMix`'s twin (same bits).

The draws (:class:`CutoutParams`, :class:`ErasingParams`, :class:`MixParams`)
are a pure function of ``(seed, epoch, sample index)`` through the counter
hash of :mod:`fastseq.kernels.random`, on their own streams (16..27), so
adding them changes no crop or flip. MixUp's weight is Beta(alpha, alpha): the ratio
``X / (X + Y)`` of two Gamma(alpha) variates, each by Marsaglia and Tsang's
method on hash uniforms (with the ``U ** (1 / alpha)`` boost for alpha < 1,
done in logarithms so that tiny alphas do not underflow to 0 / 0).
"""

from collections import namedtuple

import numpy as np
from numba import njit, prange, uint64

from fastseq.kernels import _validate as check
from fastseq.kernels import config, quick
from fastseq.kernels._intrinsics import fetch_add
from fastseq.kernels.config import JIT, PARALLEL_JIT, announced, launch, mark_warm
from fastseq.kernels.halfprec import bf16_bits_from_f32_bits, f16_bits_from_f32_bits
from fastseq.kernels.images import _MAX_BLOCKS, _NO_BOXES, _NO_TABLE, _RAW, _boxes_inside, _fused_block, _in_range
from fastseq.kernels.random import (
    CUTMIX_LEFT,
    CUTMIX_TOP,
    CUTOUT_LEFT,
    CUTOUT_TOP,
    ERASE_APPLY,
    ERASE_AREA,
    ERASE_LEFT,
    ERASE_RATIO,
    ERASE_TOP,
    MIX_GAMMA_A,
    MIX_GAMMA_B,
    MIX_PARTNER,
    KeyedDraws,
    _mix_scalar,
    _word,
    index_array,
)

# Output kinds of mix(): float32, float16 bits, bfloat16 bits, uint8.
_F32, _F16, _BF16, _U8 = 0, 1, 2, 3
_KINDS = {"float32": _F32, "float16": _F16, "bfloat16": _BF16, "uint8": _U8}
# The j-th Cutout square of a sample numbers its hash attempts from j << 16
# (a rejected bounded draw takes the next attempt; 65536 rejections in a
# row have probability below 2 ** -65536).
_SQUARE_SHIFT = 16
MAX_CUTOUT_COUNT = 1 << 15
_TWO_PI = 2.0 * np.pi

MixDraw = namedtuple("MixDraw", "partners lam weights boxes")
MixDraw.__doc__ = """Per-sample MixUp/CutMix draws.

partners: int64 (n,) the partner's sample index, uniform over the data set.
lam: float32 (n,) the weight of the sample's own label (MixUp: lambda;
    CutMix: 1 - the box's share of the image, after clipping).
weights: float32 (n,) the weight of the sample's own pixels outside the box
    (MixUp: lambda; CutMix: 1).
boxes: int64 (n, 4) ``(top, bottom, left, right)``, half-open, clipped to
    the image: the pixels taken from the partner (empty for MixUp).
"""


# ---- draws ------------------------------------------------------------------


@njit(inline="always", **JIT)
def _sample_base(key, index):
    return _mix_scalar(key ^ (uint64(index) * uint64(0x9E3779B97F4A7C15)))


@njit(inline="always", **JIT)
def _bounded(base, stream, bound, first_attempt):
    """Lemire's unbiased integer in [0, bound) (bound <= 2**32), attempts from ``first_attempt``."""
    if bound == 1:
        return np.int64(0)
    b = uint64(bound)
    threshold = (uint64(1 << 32) - b) % b
    attempt = uint64(first_attempt)
    while True:
        m = (_word(base, stream, attempt) >> uint64(32)) * b
        if (m & uint64(0xFFFFFFFF)) >= threshold:
            return np.int64(m >> uint64(32))
        attempt += uint64(1)  # uint64 + int64 would be float64 in Numba


@njit(inline="always", **JIT)
def _unit(word):
    """A uniform float64 in the open interval (0, 1) from the top 53 bits."""
    return (np.float64(word >> uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(inline="always", **JIT)
def _log_gamma(base, stream, alpha):
    """log of a Gamma(alpha, 1) variate: Marsaglia-Tsang, attempts 3t+1..3t+3; attempt 0 is the boost."""
    a = alpha + 1.0 if alpha < 1.0 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    t = 0
    while True:
        u1 = _unit(_word(base, stream, 3 * t + 1))
        u2 = _unit(_word(base, stream, 3 * t + 2))
        u3 = _unit(_word(base, stream, 3 * t + 3))
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)
        v = 1.0 + c * z
        if v > 0.0:
            v = v * v * v
            logv = np.log(v)
            if np.log(u3) < 0.5 * z * z + d - d * v + d * logv:
                result = np.log(d) + logv
                break
        t += 1
    if alpha < 1.0:
        result += np.log(_unit(_word(base, stream, 0))) / alpha
    return result


@njit(**JIT)
def _cutout_boxes(key, indices, h, w, size, boxes):
    """Per index and square: a centre uniform over the h x w image, the size x size square around it, clipped.

    Returns the smallest index (0 when there are none), for the wrapper's check.
    """
    smallest = 0
    half = size // 2
    for k in range(indices.shape[0]):
        smallest = min(smallest, indices[k])
        base = _sample_base(key, indices[k])
        for j in range(boxes.shape[1]):
            first = uint64(j) << uint64(_SQUARE_SHIFT)
            top = _bounded(base, CUTOUT_TOP, h, first) - half
            left = _bounded(base, CUTOUT_LEFT, w, first) - half
            boxes[k, j, 0] = max(top, 0)
            boxes[k, j, 1] = min(top + size, h)
            boxes[k, j, 2] = max(left, 0)
            boxes[k, j, 3] = min(left + size, w)
    return smallest


@njit(**JIT)
def _mix_draws(key, indices, num_items, alpha, cutmix, h, w, partners, lam, weights, boxes):
    """Per index: a partner, lambda ~ Beta(alpha, alpha) and, for CutMix, the box. Returns the smallest index."""
    smallest = 0
    for k in range(indices.shape[0]):
        smallest = min(smallest, indices[k])
        base = _sample_base(key, indices[k])
        partners[k] = _bounded(base, MIX_PARTNER, num_items, 0)
        la = _log_gamma(base, MIX_GAMMA_A, alpha)
        lb = _log_gamma(base, MIX_GAMMA_B, alpha)
        beta = 1.0 / (1.0 + np.exp(lb - la))  # X / (X + Y), from the logarithms
        if cutmix:
            r = np.sqrt(1.0 - beta)
            ch = np.int64(h * r)
            cw = np.int64(w * r)
            top = _bounded(base, CUTMIX_TOP, h, 0) - ch // 2
            left = _bounded(base, CUTMIX_LEFT, w, 0) - cw // 2
            y0, y1 = min(max(top, 0), h), min(max(top + ch, 0), h)
            x0, x1 = min(max(left, 0), w), min(max(left + cw, 0), w)
            boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3] = y0, y1, x0, x1
            lam[k] = np.float32(1.0 - ((y1 - y0) * (x1 - x0)) / (h * w))
            weights[k] = np.float32(1.0)
        else:
            boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3] = 0, 0, 0, 0
            lam[k] = np.float32(beta)
            weights[k] = lam[k]
    return smallest


# torchvision's RandomErasing gives up after this many draws whose box does not fit.
_ERASE_ATTEMPTS = 10


@njit(**JIT)
def _erasing_boxes(key, indices, h, w, probability, scale_lo, scale_hi, log_lo, log_hi, boxes):
    """Per index, torchvision's RandomErasing box: with ``probability``, up to 10 draws of an area
    fraction uniform in [scale_lo, scale_hi) and a log aspect ratio (height / width) uniform in
    [log_lo, log_hi); the first box of ``floor(sqrt(area * ratio) + 0.5)`` x ``floor(sqrt(area /
    ratio) + 0.5)`` smaller than the image in both sides is placed uniformly. No box (empty) if not
    applied or none fits. Returns the smallest index."""
    smallest = 0
    for k in range(indices.shape[0]):
        smallest = min(smallest, indices[k])
        base = _sample_base(key, indices[k])
        boxes[k, 0, 0], boxes[k, 0, 1], boxes[k, 0, 2], boxes[k, 0, 3] = 0, 0, 0, 0
        if not _unit(_word(base, ERASE_APPLY, 0)) < probability:
            continue
        for t in range(_ERASE_ATTEMPTS):
            area = h * w * (scale_lo + (scale_hi - scale_lo) * _unit(_word(base, ERASE_AREA, t)))
            ratio = np.exp(log_lo + (log_hi - log_lo) * _unit(_word(base, ERASE_RATIO, t)))
            eh = np.int64(np.floor(np.sqrt(area * ratio) + 0.5))
            ew = np.int64(np.floor(np.sqrt(area / ratio) + 0.5))
            if eh < h and ew < w:
                top = _bounded(base, ERASE_TOP, h - eh + 1, t << 16)
                left = _bounded(base, ERASE_LEFT, w - ew + 1, t << 16)
                boxes[k, 0, 0], boxes[k, 0, 1], boxes[k, 0, 2], boxes[k, 0, 3] = top, top + eh, left, left + ew
                break
    return smallest


def _image_size(image_size):
    try:
        h, w = image_size
    except (TypeError, ValueError):
        raise TypeError(f"image_size must be a (height, width) pair, got {check._describe(image_size)}.") from None
    return check.integer("image_size height", h, minimum=1), check.integer("image_size width", w, minimum=1)


class CutoutParams(KeyedDraws):
    """Cutout squares per sample, a pure function of ``(seed, epoch, index)``.

    ``CutoutParams(image_size=(h, w), size=s, count=c)(seed, epoch, indices)``
    returns int64 ``(n, c, 4)`` boxes ``(top, bottom, left, right)``,
    half-open: square ``j`` of sample ``k`` has its centre ``(cy, cx)``
    uniform over the ``h x w`` output image and covers rows
    ``[cy - s // 2, cy - s // 2 + s)`` and the same columns around ``cx``,
    clipped to the image (so a square near the border is partly outside it,
    as in DeVries and Taylor's Cutout). Immutable; safe to share between threads.
    """

    def __init__(self, *, image_size, size, count=1):
        self.image_size = _image_size(image_size)
        self.size = check.integer("size", size, minimum=1)
        self.count = check.integer("count", count, minimum=1, maximum=MAX_CUTOUT_COUNT)

    def __call__(self, seed, epoch, indices):
        key = self._key(seed, epoch)
        idx = index_array(indices)
        boxes = np.empty((idx.size, self.count, 4), np.int64)
        if _cutout_boxes(key, idx, *self.image_size, self.size, boxes) < 0:
            raise ValueError(f"indices must be >= 0, got {int(idx.min())}.")
        return boxes


class ErasingParams(KeyedDraws):
    """RandomErasing boxes per sample (torchvision's rule), a pure function of ``(seed, epoch, index)``.

    ``ErasingParams(image_size=(h, w), probability=p, scale=(lo, hi),
    ratio=(rlo, rhi))(seed, epoch, indices)`` returns int64 ``(n, 1, 4)``
    boxes ``(top, bottom, left, right)``, for :func:`cutout`: with
    probability ``p`` a box whose area is a fraction of the image uniform in
    ``scale`` and whose aspect ratio (height / width) is log-uniform in
    ``ratio``, sides rounded half up, placed uniformly; up to 10 tries for
    one smaller than the image in both sides, else (and when not applied)
    an empty box. Immutable; safe to share between threads.
    """

    def __init__(self, *, image_size, probability=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3)):
        self.image_size = _image_size(image_size)
        p = float(probability)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability must lie in [0, 1], got {probability!r}.")
        lo, hi = (float(v) for v in scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale!r}.")
        rlo, rhi = (float(v) for v in ratio)
        if not 0.0 < rlo <= rhi or not np.isfinite(rhi):
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, finite, got {ratio!r}.")
        self._args = (p, lo, hi, np.log(rlo), np.log(rhi))

    def __call__(self, seed, epoch, indices):
        key = self._key(seed, epoch)
        idx = index_array(indices)
        boxes = np.empty((idx.size, 1, 4), np.int64)
        if _erasing_boxes(key, idx, *self.image_size, *self._args, boxes) < 0:
            raise ValueError(f"indices must be >= 0, got {int(idx.min())}.")
        return boxes


class MixParams(KeyedDraws):
    """MixUp/CutMix partners, weights and boxes per sample, a pure function of ``(seed, epoch, index)``.

    ``MixParams(num_items=N, image_size=(h, w), alpha=a, mode="mixup" or
    "cutmix")(seed, epoch, indices)`` returns a :data:`MixDraw`. The partner
    is uniform over ``[0, N)`` (it may be the sample itself); lambda is
    Beta(alpha, alpha). CutMix cuts a box of ``int(h * sqrt(1 - lambda))`` x
    ``int(w * sqrt(1 - lambda))`` whose centre is uniform over the image
    (the box's top-left is the centre minus half its size), clips it to the
    image and sets the label weight to ``1 - box area / (h * w)``.
    Immutable; safe to share between threads.
    """

    def __init__(self, *, num_items, image_size, alpha, mode="mixup"):
        self.num_items = check.integer("num_items", num_items, minimum=1, maximum=1 << 32)
        self.image_size = _image_size(image_size)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
            raise TypeError(f"alpha must be a number > 0, got {check._describe(alpha)}.")
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}.")
        self.alpha = float(alpha)
        if mode not in ("mixup", "cutmix"):
            raise ValueError(f"mode must be 'mixup' or 'cutmix', got {mode!r}.")
        self.mode = mode

    def __call__(self, seed, epoch, indices):
        key = self._key(seed, epoch)
        idx = index_array(indices)
        n = idx.size
        draw = MixDraw(np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.float32), np.empty((n, 4), np.int64))
        h, w = self.image_size
        if _mix_draws(key, idx, self.num_items, self.alpha, self.mode == "cutmix", h, w, *draw) < 0:
            raise ValueError(f"indices must be >= 0, got {int(idx.min())}.")
        return draw


# ---- passes -------------------------------------------------------------------


# Index arithmetic in uint64 over flat arrays, as in images.py: with signed
# indices Numba's negative-index wrap-around test kept LLVM from vectorising
# the row loops (measured for the erase: 92 us against 25 us on a CIFAR batch).
_u = uint64


@njit(inline="always", **JIT)
def _mix_sample_f32(a, b, weights, boxes, P, h, wq, Q, out, k):
    """Sample ``k`` of :func:`_mix_f32`: float32 in and out, written straight to ``out``."""
    wa = weights[k]
    wb = np.float32(1.0) - wa
    y0, y1 = boxes[k, 0], boxes[k, 1]
    x0, x1 = boxes[k, 2] * Q, boxes[k, 3] * Q
    for p in range(P):
        for i in range(h):
            base = _u(((k * P + p) * h + i) * wq)
            if wa == np.float32(1.0):  # CutMix: the sample itself outside the box
                for u in range(wq):
                    out[base + _u(u)] = a[base + _u(u)]
            else:
                for u in range(wq):
                    out[base + _u(u)] = wa * a[base + _u(u)] + wb * b[base + _u(u)]
            if i >= y0 and i < y1:
                for u in range(x1 - x0):
                    out[base + _u(x0) + _u(u)] = b[base + _u(x0) + _u(u)]


@njit(inline="always", **JIT)
def _mix_sample_rounded(a, b, weights, boxes, P, h, wq, Q, kind, out, row, k):
    """Sample ``k`` of :func:`_mix_rounded`: a blended float32 row at a time, then rounded to ``out``'s kind."""
    wa = weights[k]
    wb = np.float32(1.0) - wa
    y0, y1 = boxes[k, 0], boxes[k, 1]
    x0, x1 = boxes[k, 2] * Q, boxes[k, 3] * Q
    bits = row.view(np.uint32)
    for p in range(P):
        for i in range(h):
            base = _u(((k * P + p) * h + i) * wq)
            for u in range(wq):
                row[_u(u)] = wa * np.float32(a[base + _u(u)]) + wb * np.float32(b[base + _u(u)])
            if i >= y0 and i < y1:
                for u in range(x1 - x0):
                    row[_u(x0) + _u(u)] = np.float32(b[base + _u(x0) + _u(u)])
            if kind == _F16:
                for u in range(wq):
                    out[base + _u(u)] = f16_bits_from_f32_bits(bits[_u(u)])
            elif kind == _BF16:
                for u in range(wq):
                    out[base + _u(u)] = bf16_bits_from_f32_bits(bits[_u(u)])
            else:
                for u in range(wq):
                    out[base + _u(u)] = np.uint8(min(np.floor(row[_u(u)] + np.float32(0.5)), np.float32(255.0)))


# Two kernels, not one with a run-time output kind: a sequence compiles only
# the one its dtype needs, and the float32 one (the common case) is small.
# The single kernel with all four kinds took 6.8 s to compile on a busy
# machine; the float32 one alone 5.6 s parallel, 1.3 s serial.
#
# Both are scheduled as the fused pass is: ``blocks`` runs of samples
# handed out one at a time from a shared counter, so a thread descheduled by
# another process does not hold up the batch (with prange's even split the
# median batch took twice the fastest on a busy 2-core machine).


@njit(**PARALLEL_JIT)
def _mix_f32(a, b, weights, boxes, P, h, wq, Q, out, blocks):
    """a, b, out: flat (n * P * h * wq,) float32. Numba-compiled; parallel over the batch."""
    n = weights.shape[0]
    taken = np.zeros(1, np.int64)
    for _ in prange(blocks):
        while True:
            blk = fetch_add(taken, 0, 1)
            if blk >= blocks:
                break
            for k in range(blk * n // blocks, (blk + 1) * n // blocks):
                _mix_sample_f32(a, b, weights, boxes, P, h, wq, Q, out, k)


@njit(**JIT)
def _mix_f32_serial(a, b, weights, boxes, P, h, wq, Q, out, blocks):
    """The serial twin of :func:`_mix_f32`, for processes forked after parallel use."""
    for k in range(weights.shape[0]):
        _mix_sample_f32(a, b, weights, boxes, P, h, wq, Q, out, k)


@njit(**PARALLEL_JIT)
def _mix_rounded(a, b, weights, boxes, P, h, wq, Q, kind, out, blocks):
    """a, b: flat float32 (out: uint16 float16/bfloat16 bits) or uint8 (out: uint8).

    Numba-compiled; parallel over the batch.
    """
    n = weights.shape[0]
    taken = np.zeros(1, np.int64)
    for _ in prange(blocks):
        row = np.empty(wq, np.float32)
        while True:
            blk = fetch_add(taken, 0, 1)
            if blk >= blocks:
                break
            for k in range(blk * n // blocks, (blk + 1) * n // blocks):
                _mix_sample_rounded(a, b, weights, boxes, P, h, wq, Q, kind, out, row, k)


@njit(**JIT)
def _mix_rounded_serial(a, b, weights, boxes, P, h, wq, Q, kind, out, blocks):
    """The serial twin of :func:`_mix_rounded`."""
    row = np.empty(wq, np.float32)
    for k in range(weights.shape[0]):
        _mix_sample_rounded(a, b, weights, boxes, P, h, wq, Q, kind, out, row, k)


@njit(**JIT)
def _erase(out, boxes, P, h, wq, Q, fill):
    """out: flat (n * P * h * wq,): write ``fill`` over every box. Numba-compiled; serial.

    Proves every box inside the image first and returns False (nothing
    written) if one is not; the wrapper then raises the full error. Serial on
    purpose: it writes only the erased values (about 25 us for Cutout(16) on
    a 512-image CIFAR batch), less than a parallel launch's thread wake-ups
    cost on a busy machine.
    """
    w = wq // Q
    for k in range(boxes.shape[0]):
        for j in range(boxes.shape[1]):
            y0, y1, x0, x1 = boxes[k, j, 0], boxes[k, j, 1], boxes[k, j, 2], boxes[k, j, 3]
            if not (0 <= y0 and y0 <= y1 and y1 <= h and 0 <= x0 and x0 <= x1 and x1 <= w):
                return False
    for k in range(boxes.shape[0]):
        for j in range(boxes.shape[1]):
            y0, y1 = boxes[k, j, 0], boxes[k, j, 1]
            x0, x1 = boxes[k, j, 2] * Q, boxes[k, j, 3] * Q
            for p in range(P):
                for i in range(y0, y1):
                    base = _u(((k * P + p) * h + i) * wq + x0)
                    for u in range(x1 - x0):
                        out[base + _u(u)] = fill
    return True


def _batch(batch, name, dtypes):
    if not isinstance(batch, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(batch).__name__}.")
    dtype = batch.dtype.name if batch.dtype.name in dtypes else None
    if dtype is None:
        raise TypeError(f"{name} must have dtype {' or '.join(dtypes)}, got {batch.dtype}.")
    if batch.ndim != 4:
        raise ValueError(f"{name} must be a 4-D batch (n, h, w, C) or (n, C, h, w), got shape {batch.shape}.")
    if not batch.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name}).")
    return dtype


def _layout(batch, channels_first):
    """``(P, h, w*Q, Q)``: the batch seen as (n, P, h, w*Q), P*Q = C with one of them 1."""
    if channels_first:
        n, C, h, w = batch.shape
        return C, h, w, 1
    n, h, w, C = batch.shape
    return 1, h, w * C, C


def cutout(batch, boxes, *, fill=0, data_format="channels_last"):
    """Write ``fill`` over boxes of each sample of a finished batch, in place.

    Args:
        batch: C-contiguous, writeable (n, h, w, C) or (n, C, h, w) batch of
            float32, float16, bfloat16 or uint8.
        boxes: int (n, count, 4) ``(top, bottom, left, right)`` per sample,
            half-open, within the ``h x w`` image (see :class:`CutoutParams`).
        fill: the value written, in the batch's own units (after any
            normalisation); an integer 0..255 for uint8 batches.
        data_format: "channels_last" or "channels_first".

    Returns:
        ``batch``. Numba-compiled; serial (it touches only the erased
        values, less work than a parallel launch's thread wake-ups); releases the GIL.

    Raises:
        TypeError, ValueError: naming the argument and the value received.
    """
    dtype = _batch(batch, "batch", tuple(_KINDS))
    if not batch.flags.writeable:
        raise ValueError("batch must be writeable; cutout erases in place.")
    P, h, wq, Q = _layout(batch, check.data_format(data_format))
    value = check.fill_value(fill, dtype)
    flat = batch.reshape(-1)
    if dtype in ("float16", "bfloat16"):
        flat = flat.view(np.uint16)
    n = batch.shape[0]
    if not (
        type(boxes) is np.ndarray
        and boxes.dtype == np.int64
        and boxes.ndim == 3
        and boxes.shape[0] == n
        and boxes.shape[2] == 4
        and boxes.flags.c_contiguous
        and _erase(flat, boxes, P, h, wq, Q, value)
    ):
        # Not CutoutParams' own kind of array, or a box outside the image
        # (nothing written then): the full checks raise or convert.
        arr = np.asarray(boxes)
        boxes = check.half_open_boxes(arr, (n, arr.shape[1] if arr.ndim == 3 else 1, 4), (h, wq // Q))
        if not _erase(flat, boxes, P, h, wq, Q, value):
            raise AssertionError("cutout refused boxes that passed every check")  # pragma: no cover
    return batch


def mix_variant(dtype):
    """The compiled variant :func:`mix` runs for ``dtype``: the float32 kernel or the rounding one."""
    return ("mix", "float32" if dtype == "float32" else "rounded")


def mix(a, b, weights, boxes, *, dtype="float32", data_format="channels_last", out=None):
    """MixUp / CutMix two made batches: ``out[k] = w[k] * a[k] + (1 - w[k]) * b[k]``, ``b[k]`` inside ``boxes[k]``.

    Computed in float32 (``w`` and ``1 - w`` both float32, no fused
    multiply-add), then rounded to ``dtype``: to nearest even for float16 and
    bfloat16 (as ``astype``), and to nearest with halves up for uint8
    (``floor(v + 0.5)``, so mixing raw pixels stays in 0..255).

    Args:
        a, b: the samples and their partners, same shape, float32 (for a float
            ``dtype``) or uint8 (for ``dtype="uint8"``), (n, h, w, C) or
            (n, C, h, w), C-contiguous.
        weights: float (n,) in [0, 1], the weight of ``a`` outside the box.
        boxes: int (n, 4) ``(top, bottom, left, right)``, half-open, within
            the image; where ``b`` replaces the blend (empty for MixUp).
        dtype: output dtype: "float32", "float16", "bfloat16" or "uint8".
        data_format: "channels_last" or "channels_first".
        out: optional C-contiguous output of ``a``'s shape and ``dtype``,
            not overlapping ``a`` or ``b``.

    Returns:
        ``out``. Numba-compiled; parallel over the batch.

    Raises:
        TypeError, ValueError: naming the argument and the value received.
    """
    return MixPass(dtype, data_format)(a, b, weights, boxes, out=out)


def _mix_weights(weights, n):
    """``weights`` checked as ``n`` floats in [0, 1]: a contiguous float32 copy (or view), or a ValueError."""
    w = np.asarray(weights)
    if w.shape != (n,) or not (np.issubdtype(w.dtype, np.floating) or w.size == 0):
        raise ValueError(f"weights must be a float array of shape ({n},), got {check._describe(weights)}.")
    w = np.ascontiguousarray(w, dtype=np.float32)
    if n and not (np.all(w >= 0) and np.all(w <= 1)):
        raise ValueError(f"weights must lie in [0, 1], got values in [{w.min()}, {w.max()}].")
    return w


class MixPass(config.Tiered):
    """:func:`mix` for one output ``dtype`` and ``data_format``, reusable: what a sequence that mixes after a
    resample holds. ``prepare()`` starts its kernel's compile; its batches come from the NumPy tier
    (``quick.mix``, the same bits) until the kernel is there. Immutable; safe to share between threads."""

    def __init__(self, dtype="float32", data_format="channels_last"):
        if dtype not in _KINDS:
            raise ValueError(f"dtype must be one of {tuple(_KINDS)}, got {dtype!r}.")
        self.dtype, self.data_format = dtype, data_format
        self.channels_first = check.data_format(data_format)
        self._source = ("uint8",) if dtype == "uint8" else ("float32",)

    def __call__(self, a, b, weights, boxes, out=None):
        """``mix(a, b, weights, boxes, dtype=self.dtype, data_format=self.data_format, out=out)``."""
        dtype = self.dtype
        _batch(a, "a", self._source)
        _batch(b, "b", self._source)
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}.")
        n = a.shape[0]
        w = _mix_weights(weights, n)
        out = check.out_array(out, a.shape, dtype, None)
        for name, src in (("a", a), ("b", b)):
            if np.may_share_memory(out, src):
                raise ValueError(f"out must not overlap {name}.")
        P, h, wq, Q = _layout(a, self.channels_first)
        boxes = check.half_open_boxes(boxes, (n, 4), (h, wq // Q))
        if n:
            self._launch(a, b, w, boxes, out)
        return out

    def _args(self, a, b, w, boxes, out):
        """The kernel's arguments: ``(a, b, weights, boxes, P, h, wq, Q, kind, flat out, blocks)``."""
        flat = out.reshape(-1)
        if self.dtype in ("float16", "bfloat16"):
            flat = flat.view(np.uint16)
        P, h, wq, Q = _layout(a, self.channels_first)
        return (a.reshape(-1), b.reshape(-1), w, boxes, P, h, wq, Q, _KINDS[self.dtype], flat,
                min(w.shape[0], _MAX_BLOCKS))

    def _launch(self, a, b, w, boxes, out):
        args = self._args(a, b, w, boxes, out)
        if self._numpy_tier():
            return quick.mix(*args)
        what = f"the MixUp/CutMix kernel for {self.dtype} batches"
        if self.dtype == "float32":
            args = args[:8] + args[9:]  # the float32 kernel has no output kind
        kernel, serial = self._tier_kernels
        return announced(mix_variant(self.dtype), what, launch, kernel, *args, serial=serial, work=args[-2].nbytes)

    _tier_what = property(lambda self: f"the MixUp/CutMix kernel for {self.dtype} batches")

    @property
    def _tier_kernels(self):
        return (_mix_f32, _mix_f32_serial) if self.dtype == "float32" else (_mix_rounded, _mix_rounded_serial)

    def _tier_example(self):
        a = np.zeros((1, 1, 1, 1), np.uint8 if self.dtype == "uint8" else np.float32)
        out = np.empty(a.shape, check.numpy_dtype(self.dtype))
        args = self._args(a, a.copy(), np.ones(1, np.float32), np.zeros((1, 4), np.int64), out)
        return args if self.dtype != "float32" else args[:8] + args[9:]


# ---- MixUp / CutMix inside the fused pass ---------------------------------------


# The sample and its partner of each output sample are made as raw uint8
# pixels (by the fused pass's own block code, with all its fast paths), a
# group of a few pairs at a time, into a per-thread scratch of at most this
# many bytes (or one pair, if a pair is larger); then one loop per output
# row normalises both, blends them and writes the row once. Measured on
# CIFAR (one thread): making each pair's rows afresh per output row, or
# blending made float32 samples, ran at 2.5-5x the plain pass (the loop
# overheads of short rows); raw pairs keep the scratch small and the fast
# paths whole-sample.
_MIX_SCRATCH_BYTES = 1 << 17


@njit(**JIT)
def _mix_block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, channels_first, a, b, weights,
               mboxes, eboxes, efill, okind, out, group, t0, t1):
    """Output samples ``order[t0:t1]`` of :func:`_fused_mix_parallel`, serially.

    Per output row: ``x = float32(v) * a[c] + b[c]`` for the sample and ``y``
    likewise for the partner (the fused pass's own expression; exact for
    raw pixels, a = 1 and b = 0), then ``wa * x + (1 - wa) * y`` in float32
    (``x`` alone when ``wa`` is 1, ``y`` inside the CutMix box), rounded to
    the output's type as :func:`mix` does and written once.
    """
    n = weights.shape[0]
    C = a.shape[0]
    R = out.shape[1]
    S = out.shape[2]
    size = R * S
    # The per-value coefficients of a row of the block layout: (h, w*C) rows
    # repeat the channels; (C, h*w) planes take one channel each.
    P = C if channels_first else 1
    wq = w if channels_first else w * C
    Q = 1 if channels_first else C
    ca = np.empty((P, wq), np.float32)
    cb = np.empty((P, wq), np.float32)
    for p in range(P):
        for u in range(wq):
            c = p if channels_first else u % C
            ca[p, u] = a[c]
            cb[p, u] = b[c]
    ones = np.ones(C, np.float32)
    zeros = np.zeros(C, np.float32)
    scratch = np.empty((2 * group, R, S), np.uint8)
    sflat = scratch.reshape(2 * group * size)
    bidx = np.empty(2 * group, np.int64)
    bord = np.arange(2 * group)
    borig = np.empty((2 * group, 2), np.int64)
    bflip = np.empty(2 * group, np.uint8)
    nobox = np.zeros((0, 0, 4), np.int64)
    nofill = np.zeros(1, np.uint8)
    row = np.empty(wq, np.float32)
    bits = row.view(np.uint32)
    oflat = out.reshape(out.shape[0] * size)
    for g0 in range(t0, t1, group):
        m = min(group, t1 - g0)
        for j in range(m):
            k = order[g0 + j]
            for half in range(2):
                q = k + half * n
                bidx[2 * j + half] = indices[q]
                borig[2 * j + half, 0] = origins[q, 0]
                borig[2 * j + half, 1] = origins[q, 1]
                bflip[2 * j + half] = flips[q]
        _fused_block(xf, H, W, bidx, bord, borig, bflip, pad, mode, fill, h, w, _RAW, channels_first, ones, zeros,
                     _NO_TABLE, nobox, nofill, scratch, 0, 2 * m)
        for j in range(m):
            ks = order[g0 + j]
            wa = weights[ks]
            wb = np.float32(1.0) - wa
            alone = wa == np.float32(1.0)
            y0, y1 = mboxes[ks, 0], mboxes[ks, 1]
            x0, x1 = mboxes[ks, 2] * Q, mboxes[ks, 3] * Q
            for p in range(P):
                ap = ca[p]  # 1-D rows of coefficients, indexed as images.py's arow
                bp = cb[p]
                for i in range(h):
                    off = _u((p * h + i) * wq)
                    pa = _u(2 * j * size) + off
                    pb = _u((2 * j + 1) * size) + off
                    po = _u(ks * size) + off
                    inside = i >= y0 and i < y1
                    if okind == _F32:
                        if alone:
                            for u in range(wq):
                                oflat[po + _u(u)] = np.float32(sflat[pa + _u(u)]) * ap[_u(u)] + bp[_u(u)]
                        else:
                            for u in range(wq):
                                x = np.float32(sflat[pa + _u(u)]) * ap[_u(u)] + bp[_u(u)]
                                y = np.float32(sflat[pb + _u(u)]) * ap[_u(u)] + bp[_u(u)]
                                oflat[po + _u(u)] = wa * x + wb * y
                        if inside:  # unsigned offsets from 0: with range(x0, x1) this loop took 0.6x the pass
                            for v in range(x1 - x0):
                                u = _u(x0) + _u(v)
                                oflat[po + u] = np.float32(sflat[pb + u]) * ap[_u(u)] + bp[_u(u)]
                        continue
                    for u in range(wq):
                        x = np.float32(sflat[pa + _u(u)]) * ap[_u(u)] + bp[_u(u)]
                        y = np.float32(sflat[pb + _u(u)]) * ap[_u(u)] + bp[_u(u)]
                        row[u] = wa * x + wb * y
                    if inside:
                        for v in range(x1 - x0):
                            u = _u(x0) + _u(v)
                            row[u] = np.float32(sflat[pb + u]) * ap[_u(u)] + bp[_u(u)]
                    if okind == _F16:
                        for u in range(wq):
                            oflat[po + _u(u)] = f16_bits_from_f32_bits(bits[u])
                    elif okind == _BF16:
                        for u in range(wq):
                            oflat[po + _u(u)] = bf16_bits_from_f32_bits(bits[u])
                    else:
                        for u in range(wq):
                            oflat[po + _u(u)] = np.uint8(min(np.floor(row[u] + np.float32(0.5)), np.float32(255.0)))
            if eboxes.shape[0] > 0:  # Cutout / erasing after the mix, as the separate passes did
                ev = efill[0]
                for e in range(eboxes.shape[1]):
                    ey0, ey1 = eboxes[ks, e, 0], eboxes[ks, e, 1]
                    ex0, ex1 = eboxes[ks, e, 2] * Q, eboxes[ks, e, 3] * Q
                    for p in range(P):
                        for i in range(ey0, ey1):
                            start = _u(ks * size + (p * h + i) * wq + ex0)
                            for v in range(ex1 - ex0):
                                oflat[start + _u(v)] = ev


@njit(inline="always", **JIT)
def _mix_in_range(indices, origins, flips, size, max_top, max_left, weights, mboxes, eboxes, h, w):
    ok = _in_range(indices, origins, flips, size, max_top, max_left) & _boxes_inside(eboxes, h, w)
    for k in range(weights.shape[0]):
        ok &= (weights[k] >= 0) & (weights[k] <= 1)
        y0, y1, x0, x1 = mboxes[k, 0], mboxes[k, 1], mboxes[k, 2], mboxes[k, 3]
        ok &= (y0 >= 0) & (y0 <= y1) & (y1 <= h) & (x0 >= 0) & (x0 <= x1) & (x1 <= w)
    return ok


@njit(**PARALLEL_JIT)
def _fused_mix_parallel(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, channels_first, a, b,
                        weights, mboxes, eboxes, efill, okind, out, group, blocks):
    """Blocks of output samples to the threads, as :func:`fastseq.kernels.images._fused` hands them out."""
    n = weights.shape[0]
    taken = np.zeros(1, np.int64)
    for _ in prange(blocks):
        while True:
            blk = fetch_add(taken, 0, 1)
            if blk >= blocks:
                break
            _mix_block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, channels_first, a, b, weights,
                       mboxes, eboxes, efill, okind, out, group, blk * n // blocks, (blk + 1) * n // blocks)


@njit(**JIT)
def _fused_mix(xf, H, W, indices, order, origins, flips, size, max_top, max_left, pad, mode, fill, h, w,
               channels_first, a, b, weights, mboxes, eboxes, efill, okind, out, group, blocks):
    """MixUp/CutMix (and Cutout after it) in the fused pass: each output value written once.

    ``indices``, ``origins``, ``flips``: (2n,) samples then partners; ``out``
    (n, h, w * C) or (n, C, h * w) in the output's storage type. Proves every
    value in range first and returns False (nothing run) if one is not. (A
    parallel function with an early return wrote nothing: the check is out
    here, as in :func:`fastseq.kernels.images._checked`.)
    Numba-compiled; parallel over the batch.
    """
    if not _mix_in_range(indices, origins, flips, size, max_top, max_left, weights, mboxes, eboxes, h, w):
        return False
    _fused_mix_parallel(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, channels_first, a, b,
                        weights, mboxes, eboxes, efill, okind, out, group, blocks)
    return True


@njit(**JIT)
def _fused_mix_serial(xf, H, W, indices, order, origins, flips, size, max_top, max_left, pad, mode, fill, h, w,
                      channels_first, a, b, weights, mboxes, eboxes, efill, okind, out, group, blocks):
    """The serial twin of :func:`_fused_mix`, for processes forked after parallel use."""
    if not _mix_in_range(indices, origins, flips, size, max_top, max_left, weights, mboxes, eboxes, h, w):
        return False
    _mix_block(xf, H, W, indices, order, origins, flips, pad, mode, fill, h, w, channels_first, a, b, weights,
               mboxes, eboxes, efill, okind, out, group, 0, weights.shape[0])
    return True


class FusedMix(config.Tiered):
    """MixUp/CutMix (and Cutout or erasing after them) inside the fused pass of a :class:`FusedPlan`.

    ``FusedMix(plan, dtype)`` with ``plan`` a :class:`fastseq.kernels.FusedPlan`
    making float32 (for a float ``dtype``) or uint8 (for ``dtype="uint8"``)
    batches. Each call makes, for every output sample, its own and its
    partner's raw pixels (each with its own crop and flip) into a small
    per-thread uint8 scratch and writes the blend once: the same bits as
    ``mix(plan(both)[:n], plan(both)[n:], ...)`` then :func:`cutout`, with no
    intermediate batch. Immutable; safe to share between threads.
    """

    def __init__(self, plan, dtype):
        if dtype not in _KINDS:
            raise ValueError(f"dtype must be one of {tuple(_KINDS)}, got {dtype!r}.")
        need = "uint8" if dtype == "uint8" else "float32"
        if plan.dtype != need:
            raise ValueError(f"plan must make {need} batches for a {dtype} output, got a {plan.dtype} plan.")
        self.plan = plan
        self.dtype = dtype
        self.data_format = plan.data_format
        self._okind = _KINDS[dtype]
        storage = np.uint16 if dtype in ("float16", "bfloat16") else check.numpy_dtype(dtype)
        self._no_fill = np.zeros(1, storage)
        h, w = plan.crop
        C = plan.image_shape[2]
        self._shape = (C, h * w) if plan.channels_first else (h, w * C)  # a sample, as the kernel sees it
        self._group = max(1, _MIX_SCRATCH_BYTES // (2 * h * w * C))  # pairs made at a time (raw uint8)
        self._variant_key = ("fused-mix", plan._kind, plan.channels_first, self._okind)

    def output_shape(self, n):
        """Shape of the output for a batch of ``n`` samples."""
        return self.plan.output_shape(n)

    def compile(self, *, serial=False):
        """Compile (or load from the on-disk cache) this variant on one sample; with ``serial``, its serial twin too."""
        both = np.zeros(2, np.int64)
        args = self._kernel_args(both, np.zeros((2, 2), np.int64), np.zeros(2, np.uint8), np.ones(1, np.float32),
                                 np.zeros((1, 4), np.int64), _NO_BOXES, self._no_fill,
                                 np.empty((1, *self._shape), self._no_fill.dtype))
        launch(_fused_mix, *args, serial=_fused_mix_serial, work=0)
        mark_warm(self._variant_key)
        if serial:
            _fused_mix_serial(*args)

    def __call__(self, indices, origins, flips, weights, boxes, out=None, *, erase=None, erase_fill=0):
        """One mixed batch.

        Args:
            indices: int (2n,): the n samples, then their n partners.
            origins, flips: (2n, 2) and (2n,), the crops and flips of both.
            weights: float (n,) in [0, 1]; boxes: int (n, 4) (top, bottom,
                left, right) within the crop: as :func:`mix` (a
                :data:`MixDraw`'s ``weights`` and ``boxes``).
            out: optional output of ``output_shape(n)`` and ``dtype``.
            erase, erase_fill: Cutout/erasing boxes (n, count, 4) and value,
                applied after the blend (see ``FusedPlan.__call__``).

        Returns:
            ``out``. Numba-compiled; parallel over the batch.
        """
        plan = self.plan
        if erase is None:
            eboxes, efill = _NO_BOXES, self._no_fill
        else:
            value = check.fill_value(erase_fill, self.dtype)
            eboxes, efill = erase, np.full(1, value, value.dtype)
        n = indices.shape[0] // 2 if type(indices) is np.ndarray and indices.ndim == 1 else -1
        if (
            n > 0
            and indices.shape[0] == 2 * n
            and type(origins) is np.ndarray and type(flips) is np.ndarray and type(weights) is np.ndarray
            and type(boxes) is np.ndarray and type(eboxes) is np.ndarray
            and indices.dtype == np.int64 and origins.dtype == np.int64 and flips.dtype == np.uint8
            and weights.dtype == np.float32 and boxes.dtype == np.int64 and eboxes.dtype == np.int64
            and origins.shape == (2 * n, 2) and flips.shape == (2 * n,) and weights.shape == (n,)
            and boxes.shape == (n, 4) and eboxes.ndim == 3 and eboxes.shape[2] == 4
            and (eboxes.shape[0] == n or erase is None)
            and all(v.flags.c_contiguous for v in (indices, origins, flips, weights, boxes, eboxes))
        ):
            # The sequence's own arrays: the compiled launch proves every value
            # in range first; if one is not, nothing runs and the full checks
            # below raise the usual error.
            out = check.out_array(out, self.output_shape(n), self.dtype, plan._x)
            if self._launch(indices, origins, flips, weights, boxes, eboxes, efill, out):
                return out
        indices = check.index_array(indices, len(plan))
        if indices.shape[0] % 2:
            raise ValueError(f"indices must hold the samples then their partners (an even count), got {indices.shape[0]}.")
        n = indices.shape[0] // 2
        origins = check.origins(origins, 2 * n, *plan.max_origin)
        flips = check.flip_bits(flips, 2 * n)
        w = _mix_weights(weights, n)
        mboxes = check.half_open_boxes(boxes, (n, 4), plan.crop)
        if erase is not None:
            eboxes = check.erase_boxes(erase, n, plan.crop)
        out = check.out_array(out, self.output_shape(n), self.dtype, plan._x)
        if n > 0 and not self._launch(indices, origins, flips, w, mboxes, eboxes, efill, out):
            raise AssertionError("fused mix kernel refused arguments that passed every check")  # pragma: no cover
        return out

    _tier_kernels = property(lambda self: (_fused_mix, _fused_mix_serial))
    _tier_what = property(lambda self: f"the fused MixUp/CutMix kernel for {self.dtype} {self.data_format} batches")

    def _tier_example(self):
        return self._kernel_args(np.zeros(2, np.int64), np.zeros((2, 2), np.int64), np.zeros(2, np.uint8),
                                 np.ones(1, np.float32), np.zeros((1, 4), np.int64), _NO_BOXES, self._no_fill,
                                 np.empty((1, *self._shape), self._no_fill.dtype))

    def _launch(self, indices, origins, flips, weights, mboxes, eboxes, efill, out):
        n = weights.shape[0]
        target = out.view(np.uint16) if self.dtype in ("float16", "bfloat16") else out
        args = self._kernel_args(indices, origins, flips, weights, mboxes, eboxes, efill,
                                 target.reshape((n, *self._shape)))
        if self._numpy_tier():
            return quick.fused_mix(*args)
        what = f"the fused MixUp/CutMix kernel for {self.dtype} {self.data_format} batches"
        return announced(self._variant_key, what, launch, _fused_mix, *args, serial=_fused_mix_serial,
                         work=out.nbytes)

    def _kernel_args(self, indices, origins, flips, weights, mboxes, eboxes, efill, target):
        plan = self.plan
        n = weights.shape[0]
        h, w = plan.crop
        return (
            plan._xf, plan.image_shape[0], plan.image_shape[1], indices, plan._read_order(indices[:n]), origins,
            flips, len(plan), plan.max_origin[0], plan.max_origin[1], plan.padding, plan._mode, plan.fill, h, w,
            True if plan.channels_first else None, plan._a, plan._b, weights, mboxes, eboxes, efill, self._okind,
            target, self._group, min(n, _MAX_BLOCKS),
        )
