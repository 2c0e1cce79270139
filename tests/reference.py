"""Plain-NumPy twins of every kernel: slow, obvious, loop-based.

Each function takes the same arguments as its kernel in ``fastseq.kernels``
and does the work the way one would write it by hand: ``np.pad``, slicing,
``[:, ::-1]``, float64 arithmetic, Python-integer hashing. Tests compare
the kernels against these.
"""

import ml_dtypes
import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
STREAM = 0xD1B54A32D192ED03


def as_nhwc(x):
    x = np.asarray(x)
    return x[..., None] if x.ndim == 3 else x


def gather(x, indices):
    return np.stack([np.asarray(x)[i] for i in indices]) if len(indices) else np.asarray(x)[:0].copy()


def crop_flip_one(img, top, left, flip, crop, padding, pad_mode, fill):
    """One HWC image: np.pad, slice the window, then flip."""
    kw = {"constant_values": fill} if pad_mode == "constant" else {}
    padded = np.pad(img, ((padding, padding), (padding, padding), (0, 0)), mode=pad_mode, **kw)
    h, w = crop
    window = padded[top : top + h, left : left + w]
    if flip & 1:
        window = window[:, ::-1]
    if flip & 2:
        window = window[::-1]
    return window


def crop_flip(x, origins, flips, crop, *, padding=0, pad_mode="constant", fill=0):
    x = as_nhwc(x)
    n = len(x)
    origins = np.zeros((n, 2), int) if origins is None else origins
    flips = np.zeros(n, int) if flips is None else flips
    crop = (x.shape[1] + 2 * padding, x.shape[2] + 2 * padding) if crop is None else crop
    out = np.empty((n, crop[0], crop[1], x.shape[3]), dtype=np.uint8)
    for k in range(n):
        out[k] = crop_flip_one(x[k], origins[k][0], origins[k][1], flips[k], crop, padding, pad_mode, fill)
    return out


def coefficients(channels, mean=None, std=None, scale=None, offset=None):
    """Per-channel float64 (a, b) of ``v * a + b`` in exact arithmetic."""
    if mean is not None:
        mean = np.broadcast_to(np.asarray(mean, np.float64).reshape(-1), (channels,))
        std = np.broadcast_to(np.asarray(std, np.float64).reshape(-1), (channels,))
        return 1.0 / std, -mean / std
    scale = np.broadcast_to(np.asarray(1.0 if scale is None else scale, np.float64).reshape(-1), (channels,))
    offset = np.broadcast_to(np.asarray(0.0 if offset is None else offset, np.float64).reshape(-1), (channels,))
    return scale, offset


def normalize_exact(x, *, mean=None, std=None, scale=None, offset=None):
    """float64 ``(v - mean) / std`` or ``v * scale + offset``, NHWC; no rounding at all."""
    x = as_nhwc(x).astype(np.float64)
    if mean is not None:
        m = np.broadcast_to(np.asarray(mean, np.float64).reshape(-1), (x.shape[-1],))
        s = np.broadcast_to(np.asarray(std, np.float64).reshape(-1), (x.shape[-1],))
        return (x - m) / s
    a, b = coefficients(x.shape[-1], scale=scale, offset=offset)
    return x * a + b


def normalize_float32(x, *, mean=None, std=None, scale=None, offset=None):
    """The documented float32 formula, one element at a time: ``float32(v) * a32 + b32``.

    ``a32``/``b32`` are the float64 coefficients rounded once to float32.
    """
    x = as_nhwc(x)
    a, b = coefficients(x.shape[-1], mean, std, scale, offset)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    out = np.empty(x.shape, dtype=np.float32)
    for c in range(x.shape[-1]):
        out[..., c] = x[..., c].astype(np.float32) * a32[c] + b32[c]
    return out


def normalize(x, *, mean=None, std=None, scale=None, offset=None, dtype="float32", data_format="channels_last"):
    """Twin of ``kernels.normalize``: float32 formula, then NumPy's rounding, then layout."""
    x = as_nhwc(x)
    if dtype == "uint8":
        result = x.copy()
    else:
        result = normalize_float32(x, mean=mean, std=std, scale=scale, offset=offset)
        if dtype == "float16":
            result = result.astype(np.float16)
        elif dtype == "bfloat16":
            result = result.astype(ml_dtypes.bfloat16)
    if data_format == "channels_first":
        result = np.ascontiguousarray(result.transpose(0, 3, 1, 2))
    return result


def fused(
    x,
    indices,
    *,
    crop=None,
    origins=None,
    flips=None,
    padding=0,
    pad_mode="constant",
    fill=0,
    mean=None,
    std=None,
    scale=None,
    offset=None,
    dtype="float32",
    data_format="channels_last",
):
    """The composition of the twins: gather, then crop_flip, then normalize."""
    batch = gather(as_nhwc(x), list(indices))
    cropped = crop_flip(batch, origins, flips, crop, padding=padding, pad_mode=pad_mode, fill=fill)
    return normalize(
        cropped, mean=mean, std=std, scale=scale, offset=offset, dtype=dtype, data_format=data_format
    )


# ---- random parameters: the same hash in plain Python integers -------------


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def hash_word(seed, epoch, index, stream, attempt=0):
    key = mix(mix((seed + GOLDEN) & MASK64) ^ ((epoch * STREAM) & MASK64))
    base = mix(key ^ ((index * GOLDEN) & MASK64))
    return mix((base + ((stream << 32) + attempt + 1) * STREAM) & MASK64)


def uniform_int(seed, epoch, index, stream, bound):
    """Lemire's unbiased bounded integer, redrawing on rejection."""
    if bound == 1:
        return 0
    threshold = ((1 << 32) - bound) % bound
    attempt = 0
    while True:
        m = (hash_word(seed, epoch, index, stream, attempt) >> 32) * bound
        if (m & 0xFFFFFFFF) >= threshold:
            return m >> 32
        attempt += 1


def random_params(seed, epoch, indices, *, image_size, crop_size, padding=0, horizontal=0.5, vertical=0.0):
    H, W = image_size
    h, w = crop_size
    origins = np.zeros((len(indices), 2), dtype=np.int64)
    flips = np.zeros(len(indices), dtype=np.uint8)
    for k, i in enumerate(indices):
        i = int(i)
        origins[k, 0] = uniform_int(seed, epoch, i, 0, H + 2 * padding - h + 1)
        origins[k, 1] = uniform_int(seed, epoch, i, 1, W + 2 * padding - w + 1)
        hbit = (hash_word(seed, epoch, i, 2) >> 40) < round(horizontal * (1 << 24))
        vbit = (hash_word(seed, epoch, i, 3) >> 40) < round(vertical * (1 << 24))
        flips[k] = int(hbit) | (int(vbit) << 1)
    return origins, flips
