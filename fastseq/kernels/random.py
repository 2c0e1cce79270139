"""Per-sample random augmentation parameters as a pure function of (seed, epoch, index).

No generator state: every draw is a counter-based hash (SplitMix64's
finaliser) of ``(seed, epoch, sample index, stream, attempt)``. So a sample
gets the same crop and flips in a given epoch whatever the batch size,
thread, process, shard or call order, and a resumed run needs only
``(seed, epoch)``. A compiled loop over the batch's indices (a NumPy-vectorised
version cost about 0.3 ms a batch in small-array overhead; this costs
microseconds), tested against the plain-Python twin in ``tests/reference.py``.
No ``np.random`` anywhere.
"""

import numbers

import numpy as np
from numba import njit, uint64

from fastseq.kernels import _validate as check
from fastseq.kernels.config import JIT

_M64 = (1 << 64) - 1
# Streams: which independent draw of a sample this is.
TOP, LEFT, HFLIP, VFLIP = 0, 1, 2, 3
# RandomResizedCrop's draws (fastseq/kernels/resize.py); 12..15 are free for it.
RRC_AREA, RRC_RATIO, RRC_TOP, RRC_LEFT = 8, 9, 10, 11
# 16..31: Cutout, MixUp, CutMix and RandomErasing (drawn in fastseq/kernels/mix.py).
CUTOUT_TOP, CUTOUT_LEFT, MIX_PARTNER, MIX_GAMMA_A, MIX_GAMMA_B, CUTMIX_TOP, CUTMIX_LEFT = range(16, 23)
ERASE_APPLY, ERASE_AREA, ERASE_RATIO, ERASE_TOP, ERASE_LEFT = range(23, 28)
_FLIP_BITS = 24  # flip probabilities are quantised to multiples of 2**-24


@njit(inline="always", **JIT)
def _mix_scalar(z):
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint64(31))


@njit(inline="always", **JIT)
def _word(base, stream, attempt):
    counter = ((uint64(stream) << uint64(32)) + uint64(attempt) + uint64(1)) * uint64(0xD1B54A32D192ED03)
    return _mix_scalar(base + counter)


@njit(inline="always", **JIT)
def _uniform(base, stream, bound):
    if bound == 1:
        return 0
    b = uint64(bound)
    threshold = (uint64(1 << 32) - b) % b
    attempt = 0
    while True:
        m = (_word(base, stream, attempt) >> uint64(32)) * b
        if (m & uint64(0xFFFFFFFF)) >= threshold:
            return np.int64(m >> uint64(32))
        attempt += 1


@njit(**JIT)
def _key(seed, epoch):
    """The per-(seed, epoch) key every draw of that epoch starts from."""
    return _mix_scalar(_mix_scalar(seed + uint64(0x9E3779B97F4A7C15)) ^ (epoch * uint64(0xD1B54A32D192ED03)))


@njit(**JIT)
def _random_params(key, indices, bound_top, bound_left, cut_h, cut_v, origins, flips):
    """Per index: two exactly uniform corners (Lemire's bounded integers, redrawn on the
    rare biased draw) and two flip bits, each from its own stream of the hash.
    Returns the smallest index (0 when there are none), for the wrapper's check."""
    smallest = 0
    for k in range(indices.shape[0]):
        smallest = min(smallest, indices[k])
        base = _mix_scalar(key ^ (uint64(indices[k]) * uint64(0x9E3779B97F4A7C15)))
        origins[k, 0] = _uniform(base, TOP, bound_top)
        origins[k, 1] = _uniform(base, LEFT, bound_left)
        h = (_word(base, HFLIP, 0) >> uint64(64 - _FLIP_BITS)) < cut_h
        v = (_word(base, VFLIP, 0) >> uint64(64 - _FLIP_BITS)) < cut_v
        flips[k] = np.uint8(1 if h else 0) | np.uint8(2 if v else 0)
    return smallest


def _probability(name, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}.")
    return float(p)


def _seed_epoch_key(seed, epoch):
    seed = check.integer("seed", seed, minimum=0)
    epoch = check.integer("epoch", epoch, minimum=0)
    # np.uint64: a returned uint64 comes back as a Python int, which Numba
    # would type as int64 (and then mix signed and unsigned) when < 2**63.
    return np.uint64(_key(np.uint64(seed & _M64), np.uint64(epoch & _M64)))


def index_array(indices):
    """``indices`` as a C-contiguous 1-D int64 array (itself in the common case), or ValueError.

    Negative values are not checked here: the compiled draws report the
    smallest index, and the callers raise for it.
    """
    if type(indices) is np.ndarray and indices.dtype == np.int64 and indices.ndim == 1 and indices.flags.c_contiguous:
        return indices  # the common case: a slice of an int64 epoch order
    idx = np.asarray(indices)
    if idx.dtype == bool or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0) or idx.ndim != 1:
        raise ValueError(f"indices must be a 1-D integer array, got {idx.dtype} of shape {idx.shape}.")
    return np.ascontiguousarray(idx, dtype=np.int64)


class KeyedDraws:
    """Base of the per-dataset draw objects: the per-(seed, epoch) key, cached for the last pair asked for.

    The cache is one tuple replaced whole, so concurrent readers see a
    consistent (seed, epoch, key).
    """

    _last_key = (None, None, None)

    def _key(self, seed, epoch):
        last_seed, last_epoch, key = self._last_key
        if seed != last_seed or epoch != last_epoch or type(seed) is not int or type(epoch) is not int:
            key = _seed_epoch_key(seed, epoch)
            self._last_key = (seed, epoch, key)
        return key


class RandomParams(KeyedDraws):
    """:func:`random_params` with the per-dataset arguments validated once.

    ``RandomParams(image_size=..., crop_size=..., padding=..., horizontal=...,
    vertical=...)(seed, epoch, indices)`` equals ``random_params(seed, epoch,
    indices, ...)`` with the same arguments. A sequence holds one, so each
    batch pays only for its own indices (microseconds, where the full
    argument checks cost tens). Immutable; safe to share between threads.
    """

    def __init__(self, *, image_size, crop_size, padding=0, horizontal=0.5, vertical=0.0):
        padding = check.integer("padding", padding, minimum=0)
        H, W = (check.integer("image_size", v, minimum=1) for v in image_size)
        h, w = check.crop_size(crop_size, (H + 2 * padding, W + 2 * padding), name="crop_size")
        self._bounds = (
            H + 2 * padding - h + 1,
            W + 2 * padding - w + 1,
            np.uint64(round(_probability("horizontal", horizontal) * (1 << _FLIP_BITS))),
            np.uint64(round(_probability("vertical", vertical) * (1 << _FLIP_BITS))),
        )

    def __call__(self, seed, epoch, indices):
        """``(origins, flips)`` for ``indices``; see :func:`random_params`."""
        key = self._key(seed, epoch)
        idx = index_array(indices)
        origins = np.empty((idx.size, 2), dtype=np.int64)
        flips = np.empty(idx.size, dtype=np.uint8)
        smallest = _random_params(key, idx, *self._bounds, origins, flips)
        if smallest < 0:
            raise ValueError(f"indices must be >= 0, got {smallest}.")
        return origins, flips


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
    _seed_epoch_key(seed, epoch)  # argument errors in the order of the signature
    plan = RandomParams(
        image_size=image_size, crop_size=crop_size, padding=padding, horizontal=horizontal, vertical=vertical
    )
    return plan(seed, epoch, indices)


# ---- uniforms for the ops of augment=[...] (fastseq/augment/chain.py) ----
#: The ops' streams start here, far above the fixed streams of the crop, flips, Cutout and mix above.
OP_STREAM_BASE = 1 << 16


@njit(**JIT)
def _uniforms(key, indices, streams, out):
    """``out[k, j]``: a uniform float64 in [0, 1) from stream ``streams[j]`` of sample ``indices[k]``.

    53 bits of the hash per value (``(word >> 11) * 2**-53``), so every value
    is a multiple of 2**-53 and strictly below 1. Returns the smallest index.
    """
    smallest = 0
    for k in range(indices.shape[0]):
        smallest = min(smallest, indices[k])
        base = _mix_scalar(key ^ (uint64(indices[k]) * uint64(0x9E3779B97F4A7C15)))
        for j in range(streams.shape[0]):
            out[k, j] = np.float64(_word(base, streams[j], 0) >> uint64(11)) * (1.0 / 9007199254740992.0)
    return smallest


@njit(**JIT)
def _uniform_field(key, indices, stream, out):
    """``out[k, j]``: the j-th uniform float64 in [0, 1) of ``stream`` for sample ``indices[k]`` (``j`` is the counter)."""
    smallest = 0
    for k in range(indices.shape[0]):
        smallest = min(smallest, indices[k])
        base = _mix_scalar(key ^ (uint64(indices[k]) * uint64(0x9E3779B97F4A7C15)))
        for j in range(out.shape[1]):
            out[k, j] = np.float64(_word(base, stream, j) >> uint64(11)) * (1.0 / 9007199254740992.0)
    return smallest


def uniforms(seed, epoch, indices, streams):
    """Uniform float64 draws in [0, 1), a pure function of ``(seed, epoch, index, stream)``.

    Args:
        seed: non-negative integer seed of the run.
        epoch: non-negative integer epoch.
        indices: 1-D non-negative integer sample indices.
        streams: 1-D integer stream numbers in ``[0, 2**32)``, one column each.

    Returns:
        float64 ``(len(indices), len(streams))``.
    """
    key = _seed_epoch_key(seed, epoch)
    idx = index_array(indices)
    streams = np.ascontiguousarray(streams, dtype=np.uint64).reshape(-1)
    out = np.empty((idx.size, streams.size), np.float64)
    if _uniforms(key, idx, streams, out) < 0:
        raise ValueError(f"indices must be >= 0, got {idx.min()}.")
    return out


def uniform_field(seed, epoch, indices, stream, count):
    """``count`` uniform float64 draws in [0, 1) per sample from one ``stream`` (a noise field's values).

    Returns:
        float64 ``(len(indices), count)``; column ``j`` is the stream's ``j``-th value.
    """
    key = _seed_epoch_key(seed, epoch)
    idx = index_array(indices)
    count = check.integer("count", count, minimum=0)
    out = np.empty((idx.size, count), np.float64)
    if _uniform_field(key, idx, np.uint64(stream), out) < 0:
        raise ValueError(f"indices must be >= 0, got {idx.min()}.")
    return out
