"""The photo resample's filters: their numbering, TensorFlow's sampling kernels and their radii.

Below both the compiled pass (:mod:`fastseq.kernels.ragged`) and its NumPy
tier (:mod:`fastseq.kernels.quick_ragged`), which compute the same weights.
"""

import math

import numpy as np
from numba import njit

from fastseq.kernels.config import JIT

# Filters of the span pass; _LERP is the bilinear pass.
_LERP, _NEAREST, _AREA, _CUBIC_TABLE, _TRIANGLE, _KEYS, _LANCZOS3, _LANCZOS5, _GAUSSIAN, _MITCHELL = range(-1, 9)
#: Largest box or window side accepted (a guard against absurd sizes, not a real limit).
MAX_SIDE = 1 << 20


@njit(inline="always", **JIT)
def _sat_kernel(filt, x):
    """TensorFlow's sampling kernels (sampling_kernels.h), float32."""
    x = abs(x)
    if filt == _TRIANGLE:
        return np.float32(1.0) - x if x < np.float32(1.0) else np.float32(0.0)
    if filt == _KEYS:
        if x >= np.float32(2.0):
            return np.float32(0.0)
        if x >= np.float32(1.0):
            return ((np.float32(-0.5) * x + np.float32(2.5)) * x - np.float32(4.0)) * x + np.float32(2.0)
        return ((np.float32(1.5) * x - np.float32(2.5)) * x) * x + np.float32(1.0)
    if filt == _MITCHELL:
        if x >= np.float32(2.0):
            return np.float32(0.0)
        if x >= np.float32(1.0):
            return (((np.float32(-7.0 / 18.0)) * x + np.float32(2.0)) * x - np.float32(10.0 / 3.0)) * x + np.float32(
                16.0 / 9.0)
        return (((np.float32(7.0 / 6.0)) * x - np.float32(2.0)) * x) * x + np.float32(8.0 / 9.0)
    if filt == _GAUSSIAN:
        if x >= np.float32(1.5):
            return np.float32(0.0)
        sigma = np.float32(1.5) / np.float32(3.0)
        return np.float32(math.exp(-np.float64(x) * np.float64(x) / (2.0 * np.float64(sigma) * np.float64(sigma))))
    radius = np.float32(3.0) if filt == _LANCZOS3 else np.float32(5.0)
    if x > radius:
        return np.float32(0.0)
    if x <= np.float32(1e-3):
        return np.float32(1.0)
    pi = np.float32(3.14159265359)
    return (radius * np.float32(math.sin(pi * x)) * np.float32(math.sin(pi * x / radius))
            / (pi * pi * x * x))


@njit(inline="always", **JIT)
def _sat_radius(filt):
    if filt == _TRIANGLE:
        return np.float32(1.0)
    if filt == _GAUSSIAN:
        return np.float32(1.5)
    if filt == _LANCZOS3:
        return np.float32(3.0)
    if filt == _LANCZOS5:
        return np.float32(5.0)
    return np.float32(2.0)  # Keys, Mitchell


@njit(**JIT)
def sat_weights(filt, x, out):
    """``out[i] = _sat_kernel(filt, x[i])``: the compiled pass's own weight function, one scalar call each.

    The NumPy tier takes the transcendental filters' weights (lanczos, gaussian:
    sin and exp, where NumPy's vector functions may differ by an ulp) from here.
    """
    for i in range(x.shape[0]):
        out[i] = _sat_kernel(filt, x[i])
