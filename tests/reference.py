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


# ---- RandomResizedCrop / Resize (fastseq/kernels/resize.py) -----------------
#
# The boxes: torchvision's RandomResizedCrop.get_params written out with
# Python floats and the hash above (streams 8..11). The resampling: a loop
# per output value over the documented half-pixel formula. Its blends are
# float32 ``p + (q - p) * f`` like the kernel's (and TensorFlow's), so the
# kernel must agree exactly; resize_exact is the same in float64, without
# any rounding, for a tolerance check of the float32 arithmetic itself.

RRC_AREA, RRC_RATIO, RRC_TOP, RRC_LEFT = 8, 9, 10, 11


def unit(seed, epoch, index, stream, attempt):
    return (hash_word(seed, epoch, index, stream, attempt) >> 11) / 2.0**53


def resized_crop_box(seed, epoch, index, image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """One sample's ``(top, left, height, width)``, torchvision's rule."""
    import math

    H, W = image_size
    area = H * W
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for attempt in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * unit(seed, epoch, index, RRC_AREA, attempt))
        aspect = math.exp(log_lo + (log_hi - log_lo) * unit(seed, epoch, index, RRC_RATIO, attempt))
        w = round(math.sqrt(target * aspect))  # Python's round: half to even, as torchvision's
        h = round(math.sqrt(target / aspect))
        if 0 < w <= W and 0 < h <= H:
            top = uniform_int(seed, epoch, index, RRC_TOP, H - h + 1)
            left = uniform_int(seed, epoch, index, RRC_LEFT, W - w + 1)
            return top, left, h, w
    in_ratio = W / H
    if in_ratio < min(ratio):
        w, h = W, max(round(W / min(ratio)), 1)
    elif in_ratio > max(ratio):
        h, w = H, max(round(H * max(ratio)), 1)
    else:
        h, w = H, W
    return (H - h) // 2, (W - w) // 2, h, w


def resized_crop_params(seed, epoch, indices, *, image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        horizontal=0.5, vertical=0.0):
    boxes = np.array([resized_crop_box(seed, epoch, int(i), image_size, scale, ratio) for i in indices],
                     dtype=np.int64).reshape(-1, 4)
    _, flips = random_params(seed, epoch, indices, image_size=image_size, crop_size=image_size,
                             horizontal=horizontal, vertical=vertical)
    return boxes, flips


def _taps(i, origin, box, scaled, offset):
    """Source neighbours (clamped to the box) and weight of output pixel ``i`` of one axis."""
    import math

    s = (offset + i + 0.5) * box / scaled - 0.5
    lo = math.floor(s)
    return origin + min(max(lo, 0), box - 1), origin + min(max(lo + 1, 0), box - 1), s - lo


def resize_one(img, box, size, scaled_size, float_type=np.float32):
    """One HWC uint8 image -> the (h, w, C) centre window of its box resized bilinearly, unrounded."""
    top, left, bh, bw = box
    h, w = size
    rh, rw = scaled_size
    oy, ox = (rh - h) // 2, (rw - w) // 2
    out = np.empty((h, w, img.shape[2]), float_type)
    for i in range(h):
        r0, r1, fy = _taps(i, top, bh, rh, oy)
        for j in range(w):
            c0, c1, fx = _taps(j, left, bw, rw, ox)
            fx, fy_ = float_type(fx), float_type(fy)
            for c in range(img.shape[2]):
                p00, p01 = float_type(img[r0, c0, c]), float_type(img[r0, c1, c])
                p10, p11 = float_type(img[r1, c0, c]), float_type(img[r1, c1, c])
                upper = p00 + (p01 - p00) * fx
                lower = p10 + (p11 - p10) * fx
                out[i, j, c] = upper + (lower - upper) * fy_
    return out


def resized_crop(x, indices, *, size, boxes=None, flips=None, scaled_size=None, mean=None, std=None, scale=None,
                 offset=None, dtype="float32", data_format="channels_last", exact=False):
    """Twin of ``kernels.resized_crop``: resize each box, take the centre window, flip, normalise, round, lay out.

    ``exact=True`` does it all in float64 and returns float64 unrounded
    (channels_last), for tolerance checks.
    """
    x = as_nhwc(x)
    n, C = len(indices), x.shape[3]
    H, W = x.shape[1:3]
    scaled_size = size if scaled_size is None else scaled_size
    float_type = np.float64 if exact else np.float32
    values = np.empty((n, size[0], size[1], C), float_type)
    for k, i in enumerate(indices):
        box = (0, 0, H, W) if boxes is None else tuple(int(v) for v in boxes[k])
        v = resize_one(x[int(i)], box, size, scaled_size, float_type)
        f = 0 if flips is None else int(flips[k])
        if f & 1:
            v = v[:, ::-1]
        if f & 2:
            v = v[::-1]
        values[k] = v
    if dtype == "uint8":
        result = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    else:
        a, b = coefficients(C, mean, std, scale, offset)
        if exact:
            return values * a + b
        result = values * a.astype(np.float32) + b.astype(np.float32)
        if dtype == "float16":
            result = result.astype(np.float16)
        elif dtype == "bfloat16":
            result = result.astype(ml_dtypes.bfloat16)
    if data_format == "channels_first":
        result = np.ascontiguousarray(result.transpose(0, 3, 1, 2))
    return result


# ---- Cutout, MixUp, CutMix (fastseq/kernels/mix.py) ----------------------------
# Streams 16..22 of the same hash; the squares, partners and Beta draws in
# plain Python integers and math-module floats; the passes with boolean masks
# and whole-array float32 arithmetic.

import math  # noqa: E402

CUTOUT_TOP, CUTOUT_LEFT, MIX_PARTNER, MIX_GAMMA_A, MIX_GAMMA_B, CUTMIX_TOP, CUTMIX_LEFT = range(16, 23)


def uniform_int_from(seed, epoch, index, stream, bound, first_attempt):
    """``uniform_int`` with the attempts numbered from ``first_attempt``."""
    if bound == 1:
        return 0
    threshold = ((1 << 32) - bound) % bound
    attempt = first_attempt
    while True:
        m = (hash_word(seed, epoch, index, stream, attempt) >> 32) * bound
        if (m & 0xFFFFFFFF) >= threshold:
            return m >> 32
        attempt += 1


def unit_from_word(word):
    """Open-interval (0, 1) float from the top 53 bits of a hash word."""
    return ((word >> 11) + 0.5) / 2.0**53


def log_gamma(seed, epoch, index, stream, alpha):
    """log of a Gamma(alpha) variate by Marsaglia and Tsang (boost for alpha < 1)."""
    a = alpha + 1.0 if alpha < 1.0 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    t = 0
    while True:
        u1, u2, u3 = (unit_from_word(hash_word(seed, epoch, index, stream, 3 * t + j)) for j in (1, 2, 3))
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        v = 1.0 + c * z
        if v > 0.0:
            v = v**3
            if math.log(u3) < 0.5 * z * z + d - d * v + d * math.log(v):
                result = math.log(d) + math.log(v)
                break
        t += 1
    if alpha < 1.0:
        result += math.log(unit_from_word(hash_word(seed, epoch, index, stream, 0))) / alpha
    return result


def beta(seed, epoch, index, alpha):
    """Beta(alpha, alpha) as X / (X + Y) of two Gamma(alpha) variates."""
    la = log_gamma(seed, epoch, index, MIX_GAMMA_A, alpha)
    lb = log_gamma(seed, epoch, index, MIX_GAMMA_B, alpha)
    return 1.0 / (1.0 + math.exp(lb - la))


def cutout_params(seed, epoch, indices, *, image_size, size, count=1):
    h, w = image_size
    boxes = np.zeros((len(indices), count, 4), np.int64)
    for k, i in enumerate(indices):
        for j in range(count):
            cy = uniform_int_from(seed, epoch, int(i), CUTOUT_TOP, h, j << 16)
            cx = uniform_int_from(seed, epoch, int(i), CUTOUT_LEFT, w, j << 16)
            top, left = cy - size // 2, cx - size // 2
            boxes[k, j] = (max(top, 0), min(top + size, h), max(left, 0), min(left + size, w))
    return boxes


def cutout_centres(seed, epoch, indices, *, image_size, count=1):
    """The unclipped square centres ``(cy, cx)``, (n, count, 2)."""
    h, w = image_size
    return np.array(
        [
            [
                (uniform_int_from(seed, epoch, int(i), CUTOUT_TOP, h, j << 16),
                 uniform_int_from(seed, epoch, int(i), CUTOUT_LEFT, w, j << 16))
                for j in range(count)
            ]
            for i in indices
        ],
        dtype=np.int64,
    ).reshape(len(indices), count, 2)


def mix_params(seed, epoch, indices, *, num_items, image_size, alpha, mode="mixup"):
    """(partners, lam, weights, boxes) as ``fastseq.kernels.MixParams``."""
    h, w = image_size
    n = len(indices)
    partners, lam = np.zeros(n, np.int64), np.zeros(n, np.float32)
    weights, boxes = np.zeros(n, np.float32), np.zeros((n, 4), np.int64)
    for k, i in enumerate(indices):
        i = int(i)
        partners[k] = uniform_int_from(seed, epoch, i, MIX_PARTNER, num_items, 0)
        b = beta(seed, epoch, i, alpha)
        if mode == "cutmix":
            r = math.sqrt(1.0 - b)
            ch, cw = int(h * r), int(w * r)
            top = uniform_int_from(seed, epoch, i, CUTMIX_TOP, h, 0) - ch // 2
            left = uniform_int_from(seed, epoch, i, CUTMIX_LEFT, w, 0) - cw // 2
            y0, y1 = min(max(top, 0), h), min(max(top + ch, 0), h)
            x0, x1 = min(max(left, 0), w), min(max(left + cw, 0), w)
            boxes[k] = (y0, y1, x0, x1)
            lam[k] = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
            weights[k] = 1.0
        else:
            lam[k] = b
            weights[k] = lam[k]
    return partners, lam, weights, boxes


def box_mask(boxes, image_size):
    """bool (n, h, w): True inside any of each sample's boxes; ``boxes`` (n, 4) or (n, count, 4)."""
    boxes = np.asarray(boxes)
    boxes = boxes.reshape(len(boxes), -1, 4) if boxes.ndim == 2 else boxes
    h, w = image_size
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    mask = np.zeros((len(boxes), h, w), bool)
    for k in range(len(boxes)):
        for y0, y1, x0, x1 in boxes[k]:
            mask[k] |= (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return mask


def _to_nhwc(batch, data_format):
    return batch if data_format == "channels_last" else batch.transpose(0, 2, 3, 1)


def cutout(batch, boxes, *, fill=0, data_format="channels_last"):
    """A copy of ``batch`` with ``fill`` (rounded to its dtype) wherever the mask is set."""
    out = np.array(batch, copy=True)
    view = _to_nhwc(out, data_format)
    mask = box_mask(boxes, view.shape[1:3])
    view[mask] = np.array(fill, dtype=np.float32).astype(out.dtype) if out.dtype != np.uint8 else fill
    return out


def mix_images(a, b, weights, boxes, *, dtype="float32", data_format="channels_last"):
    """Twin of ``kernels.mix`` (``mix`` here is the hash finaliser): ``w * a + (1 - w) * b`` in float32, ``b`` inside the box, then rounded to ``dtype``."""
    af, bf = np.asarray(a, np.float32), np.asarray(b, np.float32)
    wa = np.asarray(weights, np.float32).reshape(-1, 1, 1, 1)
    blended = wa * af + (np.float32(1) - wa) * bf
    nhwc, src = _to_nhwc(blended, data_format), _to_nhwc(bf, data_format)
    mask = box_mask(boxes, nhwc.shape[1:3])
    nhwc[mask] = src[mask]
    if dtype == "uint8":
        return np.minimum(np.floor(blended + np.float32(0.5)), 255).astype(np.uint8)
    if dtype == "bfloat16":
        return blended.astype(ml_dtypes.bfloat16)
    return blended.astype(dtype)


def mix_labels(onehot_a, onehot_b, lam):
    """Labels mixed as the pixels: ``lam * a + (1 - lam) * b`` in float32 (``lam`` float32)."""
    lam = np.asarray(lam, np.float32)[:, None]
    return lam * np.asarray(onehot_a, np.float32) + (np.float32(1) - lam) * np.asarray(onehot_b, np.float32)


ERASE_APPLY, ERASE_AREA, ERASE_RATIO, ERASE_TOP, ERASE_LEFT = range(23, 28)


def erasing_params(seed, epoch, indices, *, image_size, probability=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3)):
    """torchvision's RandomErasing box rule on the hash's streams; (n, 1, 4), empty when not erased."""
    h, w = image_size
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    boxes = np.zeros((len(indices), 1, 4), np.int64)
    for k, i in enumerate(indices):
        i = int(i)
        if not unit_from_word(hash_word(seed, epoch, i, ERASE_APPLY, 0)) < probability:
            continue
        for t in range(10):
            area = h * w * (scale[0] + (scale[1] - scale[0]) * unit_from_word(hash_word(seed, epoch, i, ERASE_AREA, t)))
            r = math.exp(log_lo + (log_hi - log_lo) * unit_from_word(hash_word(seed, epoch, i, ERASE_RATIO, t)))
            eh, ew = math.floor(math.sqrt(area * r) + 0.5), math.floor(math.sqrt(area / r) + 0.5)
            if eh < h and ew < w:
                top = uniform_int_from(seed, epoch, i, ERASE_TOP, h - eh + 1, t << 16)
                left = uniform_int_from(seed, epoch, i, ERASE_LEFT, w - ew + 1, t << 16)
                boxes[k, 0] = (top, top + eh, left, left + ew)
                break
    return boxes
