"""Per-sample random augmentation parameters as a pure function of (seed, epoch, index).

No generator state: every draw is a counter-based hash (SplitMix64's
finaliser) of ``(seed, epoch, sample index, stream, attempt)``. So a sample
gets the same crop and flips in a given epoch whatever the batch size,
thread, process, shard or call order, and a resumed run needs only
``(seed, epoch)``. Vectorised NumPy (wrapping uint64 arithmetic); no Numba
and no ``np.random``.
"""

import numbers

import numpy as np

from fastseq.kernels import _validate as check

_M64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STREAM = np.uint64(0xD1B54A32D192ED03)
# Streams: which independent draw of a sample this is.
TOP, LEFT, HFLIP, VFLIP = 0, 1, 2, 3
_FLIP_BITS = 24  # flip probabilities are quantised to multiples of 2**-24


def _mix(z):
    """SplitMix64 finaliser on uint64 arrays (a bijection with full avalanche)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _key(seed, epoch):
    s = np.array([seed & _M64], dtype=np.uint64)
    e = np.array([epoch & _M64], dtype=np.uint64)
    return _mix(_mix(s + _GOLDEN) ^ (e * _STREAM))[0]


def hash_words(seed, epoch, indices, stream, attempt=0):
    """64-bit hash of (seed, epoch, index, stream, attempt) for each index (uint64 array)."""
    idx = np.asarray(indices).astype(np.uint64)
    base = _mix(_key(seed, epoch) ^ (idx * _GOLDEN))
    # Python ints wrap explicitly here; NumPy scalars would warn on overflow.
    counter = np.uint64(((((stream << 32) + attempt + 1) * int(_STREAM)) & _M64))
    return _mix(base + counter)


def uniform_ints(seed, epoch, indices, stream, bound):
    """Exactly uniform integers in ``[0, bound)`` per index (Lemire's method with rejection).

    The top 32 bits of the hash are scaled by ``bound``; the rare draws that
    would bias the result are redrawn from the next attempt counter.
    """
    idx = np.asarray(indices)
    out = np.zeros(idx.shape, dtype=np.int64)
    if bound == 1 or idx.size == 0:
        return out
    bound = np.uint64(bound)
    threshold = np.uint64(((1 << 32) - int(bound)) % int(bound))
    todo = np.arange(idx.size)
    attempt = 0
    while todo.size:
        m = (hash_words(seed, epoch, idx[todo], stream, attempt) >> np.uint64(32)) * bound
        ok = (m & np.uint64(0xFFFFFFFF)) >= threshold
        out[todo[ok]] = (m[ok] >> np.uint64(32)).astype(np.int64)
        todo = todo[~ok]
        attempt += 1
    return out


def bernoulli(seed, epoch, indices, stream, probability):
    """Booleans that are True with ``probability`` (quantised to 2**-24) per index."""
    cut = np.uint64(round(float(probability) * (1 << _FLIP_BITS)))
    return (hash_words(seed, epoch, indices, stream) >> np.uint64(64 - _FLIP_BITS)) < cut


def _probability(name, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}.")
    return float(p)


def random_params(seed, epoch, indices, *, image_size, crop_size, padding=0, horizontal=0.5, vertical=0.0):
    """Crop corners and flip bits for each sample index.

    Args:
        seed: non-negative integer seed of the run.
        epoch: non-negative integer epoch.
        indices: 1-D non-negative integer sample indices (into the dataset).
        image_size: ``(H, W)`` of the images.
        crop_size: ``(h, w)`` of the crop window, at most the padded size.
        padding: pixels of (virtual) padding on every side.
        horizontal: probability of a left-right flip.
        vertical: probability of an up-down flip.

    Returns:
        ``(origins, flips)``: int64 (n, 2) ``(top, left)`` corners, each
        uniform over every valid position ``[0, H + 2p - h] x [0, W + 2p - w]``,
        and uint8 (n,) flip bits (bit 0 horizontal, bit 1 vertical), each set
        independently with its probability.
    """
    seed = check.integer("seed", seed, minimum=0)
    epoch = check.integer("epoch", epoch, minimum=0)
    idx = np.asarray(indices)
    if idx.dtype == bool or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0) or idx.ndim != 1:
        raise ValueError(f"indices must be a 1-D integer array, got {idx.dtype} of shape {idx.shape}.")
    if idx.size and int(idx.min()) < 0:
        raise ValueError(f"indices must be >= 0, got {int(idx.min())}.")
    padding = check.integer("padding", padding, minimum=0)
    H, W = (check.integer("image_size", v, minimum=1) for v in image_size)
    h, w = check.crop_size(crop_size, (H + 2 * padding, W + 2 * padding), name="crop_size")
    horizontal = _probability("horizontal", horizontal)
    vertical = _probability("vertical", vertical)
    origins = np.empty((idx.size, 2), dtype=np.int64)
    origins[:, 0] = uniform_ints(seed, epoch, idx, TOP, H + 2 * padding - h + 1)
    origins[:, 1] = uniform_ints(seed, epoch, idx, LEFT, W + 2 * padding - w + 1)
    flips = bernoulli(seed, epoch, idx, HFLIP, horizontal).astype(np.uint8)
    flips |= bernoulli(seed, epoch, idx, VFLIP, vertical).astype(np.uint8) << 1
    return origins, flips
