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
        return to_layout(x.copy(), data_format)
    return half_and_layout(normalize_float32(x, mean=mean, std=std, scale=scale, offset=offset), dtype, data_format)


def half_and_layout(result, dtype, data_format):
    """float32 NHWC ``result`` in ``dtype`` (NumPy's rounding to float16 and bfloat16), then in ``data_format``."""
    if dtype == "float16":
        result = result.astype(np.float16)
    elif dtype == "bfloat16":
        result = result.astype(ml_dtypes.bfloat16)
    return to_layout(result, data_format)


def to_layout(result, data_format):
    """NHWC ``result`` as NCHW (contiguous) for ``channels_first``, else as it is."""
    if data_format == "channels_first":
        return np.ascontiguousarray(result.transpose(0, 3, 1, 2))
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


def resampled_batch(values, C, *, mean=None, std=None, scale=None, offset=None, dtype="float32",
                    data_format="channels_last"):
    """Float32 NHWC values, unrounded, into a batch as the resampling passes write it: uint8 rounded half to even
    and clipped; else ``v * a + b`` in float32, then the half type; then the layout."""
    if dtype == "uint8":
        return to_layout(np.clip(np.rint(values), 0, 255).astype(np.uint8), data_format)
    a, b = coefficients(C, mean, std, scale, offset)
    return half_and_layout(values * a.astype(np.float32) + b.astype(np.float32), dtype, data_format)


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
    if exact and dtype != "uint8":
        a, b = coefficients(C, mean, std, scale, offset)
        return values * a + b
    return resampled_batch(values, C, mean=mean, std=std, scale=scale, offset=offset, dtype=dtype,
                           data_format=data_format)


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
    """Twin of ``kernels.mix`` (``mix`` here is the hash finaliser).

    ``w * a + (1 - w) * b`` in float32, ``b`` inside the box, then rounded to ``dtype``.
    """
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


# ---- Images of different sizes (fastseq/kernels/ragged.py) --------------------
# tf.image.resize's arithmetic, written out: float32 NumPy scalars for every
# coordinate and weight (as TensorFlow computes them), float32 arrays for the
# blends and sums in the kernel's order (horizontal, then vertical).

F32_MIN_NORMAL = np.float32(1.1754943508222875e-38)


def cubic_table():
    """TensorFlow's resize_bicubic table (Keys, a = -0.5): entries 2i and 2i+1 at x = i/1024 and 1 + i/1024."""
    a, table = -0.5, []
    for i in range(1025):
        x = float(np.float32(i / 1024))
        near = np.float32(((a + 2) * x - (a + 3)) * x * x + 1)
        x = float(np.float32(x + 1.0))
        far = np.float32(((a * x - 5 * a) * x + 8 * a) * x - 4 * a)
        table += [near, far]
    return np.array(table, np.float32)


def sampling_kernel(name, x):
    """TensorFlow's sampling_kernels.h, float32."""
    f = np.float32
    x = abs(f(x))
    if name == "triangle":
        return f(1) - x if x < 1 else f(0)
    if name == "keyscubic":
        if x >= 2:
            return f(0)
        return ((f(-0.5) * x + f(2.5)) * x - f(4)) * x + f(2) if x >= 1 else ((f(1.5) * x - f(2.5)) * x) * x + f(1)
    if name == "mitchellcubic":
        if x >= 2:
            return f(0)
        if x >= 1:
            return ((f(-7 / 18) * x + f(2)) * x - f(10 / 3)) * x + f(16 / 9)
        return ((f(7 / 6) * x - f(2)) * x) * x + f(8 / 9)
    if name == "gaussian":
        sigma = f(1.5) / f(3)
        return f(0) if x >= f(1.5) else f(np.exp(-float(x) * float(x) / (2.0 * float(sigma) * float(sigma))))
    radius = f(3) if name == "lanczos3" else f(5)
    if x > radius:
        return f(0)
    if x <= f(1e-3):
        return f(1)
    pi = f(3.14159265359)
    return radius * f(np.sin(pi * x)) * f(np.sin(pi * x / radius)) / (pi * pi * x * x)


RADIUS = {"triangle": 1.0, "keyscubic": 2.0, "mitchellcubic": 2.0, "gaussian": 1.5, "lanczos3": 3.0, "lanczos5": 5.0}


def span_taps(method, p, box, resized, antialias=False):
    """Box-relative source indices and float32 weights of resized-box pixel ``p`` along one axis."""
    f = np.float32
    if method == "nearest":
        scale = f(box) / f(resized)
        return [min(max(math.floor((f(p) + f(0.5)) * scale), 0), box - 1)], [f(1)]
    if method == "area":  # ResizeArea: no half-pixel offset
        scale = f(box) / f(resized)
        a, b = f(p) * scale, f(p + 1) * scale
        idx, wts = [], []
        for v in range(math.floor(a), math.ceil(b)):
            fv = f(v)
            if fv < a:
                wv = scale if fv + 1 > b else fv + f(1) - a
            else:
                wv = b - fv if fv + 1 > b else f(1)
            idx.append(min(max(v, 0), box - 1))
            wts.append(f(wv))
        return idx, wts
    if method == "bicubic" and not antialias:  # ResizeBicubic's table, out-of-box taps dropped, renormalised
        table = cubic_table()
        scale = f(box) / f(resized)
        x = (f(p) + f(0.5)) * scale - f(0.5)
        loc = math.floor(x)
        off = int(np.rint((x - f(loc)) * f(1024)))
        raw = [table[off * 2 + 1], table[off * 2], table[(1024 - off) * 2], table[(1024 - off) * 2 + 1]]
        wts = [w if 0 <= loc - 1 + q <= box - 1 else f(0) for q, w in enumerate(raw)]
        total = wts[0] + wts[1] + wts[2] + wts[3]
        if abs(total) >= 1000 * F32_MIN_NORMAL:
            inv = f(1) / total
            wts = [w * inv for w in wts]
        return [min(max(loc - 1 + q, 0), box - 1) for q in range(4)], wts
    # ScaleAndTranslate (translation 0)
    name = {"bilinear": "triangle", "bicubic": "keyscubic"}.get(method, method)
    inv_scale = f(1.0 / float(f(resized) / f(box)))
    kscale = max(inv_scale, f(1)) if antialias else f(1)
    sample = (f(p) + f(0.5)) * inv_scale
    if sample < 0 or sample > box:
        return [], []
    reach = f(RADIUS[name]) * kscale
    start = min(max(math.ceil(sample - reach - f(0.5)), 0), box - 1)
    end = min(max(math.floor(sample + reach - f(0.5)), 0), box - 1) + 1
    wts = [sampling_kernel(name, (f(v) + f(0.5) - sample) * (f(1) / kscale)) for v in range(start, end)]
    total = f(0)
    for w in wts:
        total = total + w
    if abs(total) >= 1000 * F32_MIN_NORMAL:
        inv = f(1) / total
        wts = [w * inv for w in wts]
    else:
        wts = [f(0) for _ in wts]
    return list(range(start, end)), wts


def lerp_taps(p, box, resized):
    """TensorFlow's compute_interpolation_weights (half-pixel) for resized-box pixel ``p``: (lower, upper, lerp)."""
    f = np.float32
    x = (f(p) + f(0.5)) * (f(box) / f(resized)) - f(0.5)
    lo = math.floor(x)
    return min(max(lo, 0), box - 1), min(max(math.ceil(x), 0), box - 1), x - f(lo)


def box_pixels(img, box):
    """The box of an (H, W, C) image as float32, zeros where it reaches outside the image."""
    top, left, bh, bw = box
    H, W, C = img.shape
    out = np.zeros((bh, bw, C), np.float32)
    r0, r1, c0, c1 = max(top, 0), min(top + bh, H), max(left, 0), min(left + bw, W)
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = img[r0:r1, c0:c1]
    return out


def resample_box(img, box, window, size, interpolation="bilinear", antialias=False):
    """One image: its box resized to the window's size, placed in a ``size`` canvas of zeros; float32 (h, w, C)."""
    src = box_pixels(img, box)
    bh, bw = box[2], box[3]
    wt, wl, rh, rw = window
    h, w = size
    C = img.shape[2]
    out = np.zeros((h, w, C), np.float32)
    ys = [i for i in range(h) if 0 <= i - wt < rh]
    xs = [j for j in range(w) if 0 <= j - wl < rw]
    if not ys or not xs:
        return out
    if interpolation == "bilinear" and not antialias:
        for i in ys:
            y0, y1, fy = lerp_taps(i - wt, bh, rh)
            for j in xs:
                x0, x1, fx = lerp_taps(j - wl, bw, rw)
                top = src[y0, x0] + (src[y0, x1] - src[y0, x0]) * fx
                bottom = src[y1, x0] + (src[y1, x1] - src[y1, x0]) * fx
                out[i, j] = top + (bottom - top) * fy
        return out
    xt = {j: span_taps(interpolation, j - wl, bw, rw, antialias) for j in xs}
    rows = {}  # source row -> its horizontal pass

    def horizontal(r):
        if r not in rows:
            row = np.zeros((w, C), np.float32)
            for j in xs:
                for c_, wx in zip(*xt[j]):
                    row[j] = row[j] + wx * src[r, c_]
            rows[r] = row
        return rows[r]

    for i in ys:
        yidx, yw = span_taps(interpolation, i - wt, bh, rh, antialias)
        acc = np.zeros((w, C), np.float32)
        for r, wy in zip(yidx, yw):
            acc = acc + wy * horizontal(r)
        if interpolation == "area":
            scale = np.float32(1.0 / float((np.float32(bh) / np.float32(rh)) * (np.float32(bw) / np.float32(rw))))
            acc = acc * scale
        out[i] = acc
    return out


def ragged_resize(pixels, offsets, shapes, indices, *, size, boxes=None, windows=None, flips=None, scaled_size=None,
                  interpolation="bilinear", antialias=False, mean=None, std=None, scale=None, offset=None,
                  dtype="float32", data_format="channels_last"):
    """Twin of ``kernels.ragged.RaggedResizePlan(...)(indices, boxes, flips, windows=windows)``."""
    n = len(indices)
    C = int(shapes[0][2])
    h, w = size
    R, S = size if scaled_size is None else scaled_size
    values = np.empty((n, h, w, C), np.float32)
    for k, s in enumerate(indices):
        H, W, _ = (int(v) for v in shapes[s])
        img = np.asarray(pixels[int(offsets[s]) : int(offsets[s]) + H * W * C]).reshape(H, W, C)
        box = (0, 0, H, W) if boxes is None else tuple(int(v) for v in boxes[k])
        window = (-((R - h) // 2), -((S - w) // 2), R, S) if windows is None else tuple(int(v) for v in windows[k])
        v = resample_box(img, box, window, size, interpolation.lower(), antialias)
        f = 0 if flips is None else int(flips[k])
        if f & 1:
            v = v[:, ::-1]
        if f & 2:
            v = v[::-1]
        values[k] = v
    return resampled_batch(values, C, mean=mean, std=std, scale=scale, offset=offset, dtype=dtype,
                           data_format=data_format)


def ragged_resized_crop_params(seed, epoch, indices, shapes, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                               horizontal=0.5, vertical=0.0):
    """Twin of ``RaggedResizedCropParams``: torchvision's box with each image's own size, then the flip bits."""
    boxes = np.array([resized_crop_box(seed, epoch, int(i), tuple(int(v) for v in shapes[int(i)][:2]), scale, ratio)
                      for i in indices], dtype=np.int64).reshape(-1, 4)
    _, flips = random_params(seed, epoch, indices, image_size=(1, 1), crop_size=(1, 1), horizontal=horizontal,
                             vertical=vertical)
    return boxes, flips


def keras_boxes(shapes, image_size, *, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False):
    """Keras 3.15's smart_resize crop / ops.image.resize pad box per image, in its float32 arithmetic, one by one."""
    th, tw = image_size
    f = np.float32
    rows = []
    for H, W in ((int(s[0]), int(s[1])) for s in shapes):
        if crop_to_aspect_ratio:
            ch = max(min(H, int(f(W * th) / f(tw))), 1)
            cw = max(min(W, int(f(H * tw) / f(th))), 1)
            rows.append((int(f(H - ch) / f(2)), int(f(W - cw) / f(2)), ch, cw))
        elif pad_to_aspect_ratio:
            ph = max(H, int(f(W * th) / f(tw)))
            pw = max(W, int(f(H * tw) / f(th)))
            hs, ws = int(f(ph - H) / f(2)), int(f(pw - W) / f(2))
            rows.append((-hs, -ws, H + 2 * hs, W + 2 * ws))
        else:
            rows.append((0, 0, H, W))
    return np.array(rows, np.int64).reshape(-1, 4)


def keras_pad_windows(shapes, image_size):
    """tf.image.resize_with_pad's window per image, float32 arithmetic, one by one."""
    th, tw = image_size
    f = np.float32
    rows = []
    for H, W in ((int(s[0]), int(s[1])) for s in shapes):
        ratio = max(f(W) / f(tw), f(H) / f(th))
        rh, rw = f(H) / ratio, f(W) / ratio
        rows.append((max(0, math.floor((f(th) - rh) / f(2))), max(0, math.floor((f(tw) - rw) / f(2))),
                     max(1, math.floor(rh)), max(1, math.floor(rw))))
    return np.array(rows, np.int64).reshape(-1, 4)


# ---- Geometry: warp (fastseq/kernels/warp.py) --------------------------------
# TensorFlow's ImageProjectiveTransformV3 without a field, Keras' map_coordinates with one, one pixel at a time.


def _tf_map(c, n, mode):
    """TensorFlow's MapCoordinate for one coordinate, then its clamp (constant: unchanged)."""
    if mode == "constant":
        return c
    if n <= 1:
        return 0.0
    if mode == "reflect":
        if c < 0:
            c = 2 * n * math.floor(-c / (2 * n)) + c
            c = c + 2 * n if c < -n else -c - 1
        elif c > n - 1:
            c -= 2 * n * math.floor(c / (2 * n))
            if c >= n:
                c = 2 * n - c - 1
    elif mode == "wrap":
        if c < 0:
            c += n * (math.floor(-c / (n - 1)) + 1)
        elif c > n - 1:
            c -= n * math.floor(c / (n - 1))
    elif mode == "mirror":
        c = abs(c) % (2 * (n - 1))
        if c > n - 1:
            c = 2 * (n - 1) - c
    return min(max(c, 0.0), n - 1.0)


def _index(i, n, mode):
    """map_coordinates' index for one neighbour: (index or None for fill)."""
    if mode == "constant":
        return i if 0 <= i < n else None
    if mode == "nearest":
        return min(max(i, 0), n - 1)
    if mode == "wrap":
        return i % n
    if mode == "reflect":
        i %= 2 * n
        return 2 * n - 1 - i if i >= n else i
    if n == 1:  # mirror
        return 0
    i = abs(i) % (2 * (n - 1))
    return 2 * (n - 1) - i if i >= n else i


def warp_pixel(img, px, py, interpolation, mode, fill):
    """TensorFlow's ImageProjectiveTransformV3 at input point (px, py): a (C,) float64 vector."""
    H, W, C = img.shape
    img = img.astype(np.float64)

    def read(yy, xx):
        return img[yy, xx] if 0 <= yy < H and 0 <= xx < W else np.full(C, fill)

    px, py = _tf_map(px, W, mode), _tf_map(py, H, mode)
    if interpolation == "nearest":
        def rnd(v):  # std::round
            return int(math.copysign(math.floor(abs(v) + 0.5), v))
        return read(rnd(py), rnd(px))
    x0, y0 = math.floor(px), math.floor(py)
    x1, y1 = x0 + 1, y0 + 1
    top = (x1 - px) * read(y0, x0) + (px - x0) * read(y0, x1)
    bottom = (x1 - px) * read(y1, x0) + (px - x0) * read(y1, x1)
    return (y1 - py) * top + (py - y0) * bottom


def map_coordinates_pixel(img, px, py, interpolation, mode, fill):
    """Keras' map_coordinates (order 0 or 1) at (px, py), with reflect = d c b a | a b c d on both sides."""
    H, W, C = img.shape
    img = img.astype(np.float64)
    if interpolation == "nearest":
        nodes_x, nodes_y = [(round(px), 1.0)], [(round(py), 1.0)]  # Python's round: half to even, as tf.round
    else:
        x0, y0 = math.floor(px), math.floor(py)
        nodes_x = [(x0, 1 - (px - x0)), (x0 + 1, px - x0)]
        nodes_y = [(y0, 1 - (py - y0)), (y0 + 1, py - y0)]
    total = np.zeros(C)
    for iy, wy in nodes_y:
        for ix, wx in nodes_x:
            jy, jx = _index(iy, H, mode), _index(ix, W, mode)
            value = np.full(C, fill) if jy is None or jx is None else img[jy, jx]
            total += wy * wx * value
    return total


def warp(images, matrices, *, interpolation="bilinear", fill_mode="reflect", fill_value=0.0, fields=None, output_size=None):
    """Twin of fastseq.kernels.warp.warp: float32 (N, h, w, C)."""
    N, H, W, C = images.shape
    h, w = (H, W) if output_size is None else output_size
    matrices = np.broadcast_to(np.asarray(matrices, np.float64), (N, 3, 3))
    out = np.empty((N, h, w, C), np.float32)
    for i in range(N):
        m = matrices[i]
        for y in range(h):
            for x in range(w):
                xo, yo = float(x), float(y)
                if fields is not None:
                    yo += float(fields[i, y, x, 0])
                    xo += float(fields[i, y, x, 1])
                px, py, pz = m @ np.array([xo, yo, 1.0])
                if pz == 0:
                    out[i, y, x] = fill_value
                    continue
                px, py = px / pz, py / pz
                sample = warp_pixel if fields is None else map_coordinates_pixel
                out[i, y, x] = sample(images[i], px, py, interpolation, fill_mode, fill_value)
    return out

# ---- color ops (fastseq.kernels.color): one HWC float32 sample in pixel units, the op's params row ----


def _rgb_to_hsv(img):
    r, g, b = (img[..., k].astype(np.float64) for k in range(3))
    v = img.max(axis=-1).astype(np.float64)
    rng = v - img.min(axis=-1)
    s = np.where(v > 0, rng / np.where(v > 0, v, 1), 0.0)
    safe = np.where(rng > 0, rng, 1)
    h = np.where(r == v, (g - b) / safe, np.where(g == v, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    h = np.where(rng > 0, h, 0.0)
    return np.where(h < 0, h + 1, h), s, v


def _hsv_to_rgb(h, s, v):
    dh = h * 6
    d = [np.clip(np.abs(dh - 3) - 1, 0, 1), np.clip(2 - np.abs(dh - 2), 0, 1), np.clip(2 - np.abs(dh - 4), 0, 1)]
    return np.stack([(1 - s + s * dk) * v for dk in d], axis=-1)


def _conv_same(img, kernel2d, pad):
    kh, kw = kernel2d.shape
    padded = np.pad(img.astype(np.float64), ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)), constant_values=pad)
    out = np.zeros(img.shape, np.float64)
    for di in range(kh):
        for dj in range(kw):
            out += kernel2d[di, dj] * padded[di:di + img.shape[0], dj:dj + img.shape[1]]
    return out


def _gray(img):
    return img[..., 0:1] * 0.2989 + img[..., 1:2] * 0.5870 + img[..., 2:3] * 0.1140


def color_op(img, code, p):
    """One sample (HWC, pixel units) through the op ``code`` with params row ``p``: float64 where it does not matter."""
    x = img.astype(np.float64)
    C = x.shape[-1]
    if code == 1:
        return np.clip(x + p[0], 0, 255)
    if code == 2:
        m = x.mean(axis=(0, 1))
        return np.clip((x - m) * p[0] + m, 0, 255)
    if code == 3:
        h, s, v = _rgb_to_hsv(p[3] + x * p[4])
        return (_hsv_to_rgb(h, np.clip(s * p[0], p[1], p[2]), v) - p[3]) / p[4]
    if code == 4:
        h, s, v = _rgb_to_hsv(x)
        h = h + p[0]
        h = np.where(h > 1, h - 1, h)
        h = np.where(h < 0, h + 1, h)
        return np.clip(_hsv_to_rgb(h, s, v), 0, 255)
    if code == 5:
        for on, code_k, cols in ((0, 1, slice(1, 2)), (2, 2, slice(3, 4)), (4, 3, slice(5, 10)), (10, 4, slice(11, 12))):
            if p[on] > 0.5:
                x = color_op(x, code_k, p[cols])
        return x
    if code == 6:
        return np.repeat(_gray(x), 3, axis=-1) if p[0] > 0.5 and C == 3 else x
    if code == 7:
        return p[1] - x if p[0] > 0.5 else x
    if code == 8:
        y = np.clip(x + p[0], 0, 255)
        return np.where(y < p[1], y, 255 - y)
    if code == 9:
        q = np.clip(img, 0, 255).astype(np.uint8)
        s = int(p[0])
        return ((q >> s) << s).astype(np.float64)
    if code == 10:
        out = x.copy()
        for c in range(C):
            lo, hi = x[..., c].min(), x[..., c].max()
            if hi > lo:
                out[..., c] = np.clip((x[..., c] - lo) * 255 / (hi - lo), 0, 255)
        return out
    if code == 11:
        bins = int(p[0])
        f = np.float32
        out = x.copy()
        for c in range(C):
            ch = img[..., c].astype(np.float32)
            idx = np.clip(np.trunc(ch * f(bins - 1) / f(255)).astype(np.int64), 0, bins - 1)
            hist = np.bincount(idx.ravel(), minlength=bins)
            if np.count_nonzero(hist) <= 1:
                continue
            cdf = np.cumsum(hist)
            cdf_min = cdf[np.nonzero(cdf)[0][0]]
            den = max(cdf[-1] - cdf_min, 1)
            lut = np.clip(np.round((cdf - cdf_min) * 255 / den), 0, 255)
            out[..., c] = lut[np.clip(ch / f(255) * f(bins - 1), 0, bins - 1).astype(np.int64)]
        return out
    if code == 12:
        kernel = np.full((3, 3), 1 / 13)
        kernel[1, 1] = 5 / 13
        return np.clip(x + (1 - p[0]) * (_conv_same(x, kernel, p[1]) - x), 0, 255)
    if code == 13:
        return np.clip(x + p[0] * (_gray(x) - x), 0, 255) if C == 3 else np.clip(x, 0, 255)
    if code == 14:
        if p[0] < 0.5:
            return np.clip(x, 0, 255)
        k = int(p[1])
        wx, wy = np.asarray(p[5:5 + k]), np.asarray(p[5 + k:5 + 2 * k])
        return np.clip(_conv_same(x, np.outer(wy, wx), p[2]), 0, 255)
    raise ValueError(f"unknown color code {code}")


# ---- the augmentation pass (fastseq/kernels/augment_pass.py): the program, one sample at a time ----

FILL_NAMES = {0: "constant", 1: "nearest", 2: "reflect", 3: "wrap", 4: "mirror"}


def augment_pass(images, mats, cparams, fields, prog, run_interp, run_mode, run_fill, out_size, *, mean=None, std=None,
                 scale=None, offset=None, dtype="float32", data_format="channels_last"):
    """Twin of ``AugmentPass``: each sample's stages (warp twin, color twin), then normalise, convert, lay out.

    ``images``: the samples' uint8 HWC source images (a list: they may differ in size).
    """
    n = len(images)
    C = images[0].shape[2] if n else 1
    h, w = out_size
    values = np.empty((n, h, w, C), np.float32)
    for k, img in enumerate(images):
        buf = None
        for s, (kind, a, b, c, gate) in enumerate(np.asarray(prog).tolist()):
            if gate >= 0 and cparams[k, gate] == 0:
                continue
            if kind == 0:
                src = img if s == 0 else buf
                field = None if b < 0 else fields[k, b][None]
                buf = warp(src[None], mats[k, a][None], interpolation=("nearest", "bilinear")[run_interp[a]],
                           fill_mode=FILL_NAMES[run_mode[a]], fill_value=float(run_fill[a]), fields=field,
                           output_size=(h, w))[0]
            else:
                buf = color_op(buf, a, cparams[k, b:c]).astype(np.float32)
        values[k] = buf
    return resampled_batch(values, C, mean=mean, std=std, scale=scale, offset=offset, dtype=dtype,
                           data_format=data_format)

# ---- policies (fastseq.augment.policies) and torchvision's color ops (fastseq.kernels.tv_color) ----


def tv_color_op(img, code, p):
    """Torchvision's brightness (1), contrast (2), sharpness (3), equalize (4) on one HWC sample in pixel units."""
    x = img.astype(np.float64)
    C = x.shape[-1]
    if code == 1:
        return np.clip(p[0] * x, 0, 255)
    if code == 2:
        gray = np.floor(np.clip(_gray(x), 0, 255)) if C == 3 else x[..., :1]
        return np.clip(p[0] * x + (1 - p[0]) * gray.mean(), 0, 255)
    if code == 3:
        if x.shape[0] <= 2 or x.shape[1] <= 2:
            return x
        kernel = np.ones((3, 3)) / 13
        kernel[1, 1] = 5 / 13
        blur = x.copy()
        blur[1:-1, 1:-1] = np.rint(_conv_same(x, kernel, 0.0)[1:-1, 1:-1])
        return np.clip(p[0] * x + (1 - p[0]) * blur, 0, 255)
    if code == 4:
        out = x.copy()
        for c in range(C):
            q = np.clip(x[..., c], 0, 255).astype(np.int64)
            hist = np.bincount(q.ravel(), minlength=256)
            nonzero = hist[hist != 0]
            step = (nonzero[:-1].sum()) // 255
            if step == 0:
                continue
            lut = (np.cumsum(hist) + step // 2) // step
            lut = np.clip(np.concatenate([[0], lut[:-1]]), 0, 255)
            out[..., c] = lut[q]
        return out
    raise ValueError(f"unknown torchvision color code {code}")


def apply_op(img, op, u):
    """One candidate op of a policy (a fastseq geometry or color spec) on one HWC sample, with its uniforms ``u`` (1-D)."""
    u = np.asarray(u, np.float64)[None, :]
    H, W = img.shape[:2]
    if op.family == "geometry":
        m = op.matrices(u, H, W)
        return warp(img[None].astype(np.float32), m, interpolation=op.interpolation, fill_mode=op.fill_mode,
                    fill_value=op.pixel_fill)[0].astype(np.float64)
    p = op.params(u)[0]
    if getattr(op, "stage", "color") == "extra":
        return tv_color_op(img, op.code, p)
    return color_op(img, op.code, p)


def policy_sample(img, policy, u):
    """A policy on one HWC sample with the policy's uniforms ``u`` (1-D): the chosen ops in slot order (and AugMix's blend)."""
    from fastseq.augment.policies import AugMix

    x = img.astype(np.float64)
    gates = policy.gates(u[None])[0]
    L = len(policy.candidates)
    if not isinstance(policy, AugMix):
        for s, (_, cols) in enumerate(policy._cols):
            for c, cand in enumerate(policy.candidates):
                if cand is not None and gates[s * L + c]:
                    x = apply_op(x, cand, u[cols[c]])
        return x
    weights = policy.weights(u[None])[0]
    acc = np.zeros_like(x)
    S = policy._slots
    for ch, (_, slots) in enumerate(policy._chains):
        y = x.copy()
        for s, (_, cols) in enumerate(slots):
            for c, cand in enumerate(policy.candidates):
                if gates[(ch * S + s) * L + c]:
                    y = apply_op(y, cand, u[cols[c]])
        acc += weights[ch] * y
    m = weights[-1]
    return np.clip(m * x + (1 - m) * acc, 0, 255)
