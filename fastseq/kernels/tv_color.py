"""Torchvision's color ops that Keras has no layer for, on one sample inside the augmentation pass.

``TrivialAugmentWide`` (``fastseq.augment.policies``) uses torchvision's
``adjust_brightness``, ``adjust_contrast``, ``adjust_sharpness`` and
``equalize``; each differs from the Keras layer of the same idea (Keras'
brightness adds, its contrast takes each channel's own mean, its
sharpness blurs the border too, its equalization maps the histogram with
another rounding), so they get kernels of their own. Only the pass's
``extended`` variant compiles them (stage kind ``STAGE_EXTRA``): a
sequence without a torchvision op or AugMix compiles none of this.

Values are float32 HWC in pixel units 0..255, changed in place. Torchvision
on a uint8 tensor rounds or truncates to uint8 inside some ops (the
grayscale of the contrast's mean: truncated; the sharpness blur: rounded)
and again after each op; here the in-op roundings are kept where they
decide a value (on integer inputs the pixels then equal torchvision's
before its final cast), and nothing is rounded between ops.
"""

import numpy as np
from numba import njit

from fastseq.kernels.config import JIT

TV_BRIGHTNESS, TV_CONTRAST, TV_SHARPNESS, TV_EQUALIZE = 1, 2, 3, 4
#: The largest code; the pass's program check reads it.
TV_LAST = TV_EQUALIZE
_Z = np.float32(0.0)
_MAX = np.float32(255.0)


@njit(**JIT)
def _clip(v):
    return min(max(v, _Z), _MAX)


@njit(**JIT)
def _tv_brightness(buf, factor):
    """``clamp(factor * x, 0, 255)``: torchvision's blend with black."""
    h, w, C = buf.shape
    for i in range(h):
        for j in range(w):
            for c in range(C):
                buf[i, j, c] = _clip(factor * buf[i, j, c])


@njit(**JIT)
def _tv_contrast(buf, factor):
    """Blend with the mean of the (uint8-truncated) grayscale image: one mean for every channel."""
    h, w, C = buf.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            if C == 3:
                g = np.float32(0.2989) * buf[i, j, 0] + np.float32(0.587) * buf[i, j, 1] \
                    + np.float32(0.114) * buf[i, j, 2]
                total += np.floor(_clip(g))
            else:
                total += buf[i, j, 0]
    mean = np.float32(total / (h * w))
    one_minus = np.float32(1.0) - factor
    for i in range(h):
        for j in range(w):
            for c in range(C):
                buf[i, j, c] = _clip(factor * buf[i, j, c] + one_minus * mean)


@njit(**JIT)
def _tv_sharpness(buf, factor):
    """Blend with the 3x3 ``[[1,1,1],[1,5,1],[1,1,1]] / 13`` blur (rounded) inside the border; the border keeps x."""
    h, w, C = buf.shape
    if h <= 2 or w <= 2:
        return
    src = buf.copy()
    one_minus = np.float32(1.0) - factor
    k = np.float32(1.0 / 13.0)
    for i in range(h):
        for j in range(w):
            for c in range(C):
                x = src[i, j, c]
                if 0 < i < h - 1 and 0 < j < w - 1:
                    s = np.float32(0.0)
                    for di in range(-1, 2):
                        for dj in range(-1, 2):
                            s += src[i + di, j + dj, c]
                    s += np.float32(4.0) * x
                    d = np.float32(np.rint(s * k))
                else:
                    d = x
                buf[i, j, c] = _clip(factor * x + one_minus * d)


@njit(**JIT)
def _tv_equalize(buf):
    """Torchvision's (PIL's) ``equalize`` per channel on the uint8-truncated values."""
    h, w, C = buf.shape
    hist = np.zeros(256, np.int64)
    lut = np.zeros(256, np.float32)
    for c in range(C):
        hist[:] = 0
        for i in range(h):
            for j in range(w):
                hist[int(_clip(buf[i, j, c]))] += 1
        last = 0
        total = 0
        for v in range(256):
            if hist[v] != 0:
                last = hist[v]
                total += hist[v]
        step = (total - last) // 255
        if step == 0:
            continue
        cum = 0
        lut[0] = 0.0
        for v in range(255):
            cum += hist[v]
            lut[v + 1] = min((cum + step // 2) // step, 255)
        for i in range(h):
            for j in range(w):
                buf[i, j, c] = lut[int(_clip(buf[i, j, c]))]


@njit(**JIT)
def _tv_op(buf, code, p):
    """Apply torchvision op ``code`` with its parameters ``p`` (float64 1-D) to one sample in place. Serial."""
    if code == TV_BRIGHTNESS:
        _tv_brightness(buf, np.float32(p[0]))
    elif code == TV_CONTRAST:
        _tv_contrast(buf, np.float32(p[0]))
    elif code == TV_SHARPNESS:
        _tv_sharpness(buf, np.float32(p[0]))
    elif code == TV_EQUALIZE:
        _tv_equalize(buf)
