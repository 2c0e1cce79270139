"""Correctly rounded float32 -> float16 / bfloat16 conversion, as uint16 bits.

Numba's CPU target has no float16 arrays, so half-precision output is
written through a ``uint16`` view. Both conversions round to nearest, ties
to even, exactly as ``numpy.ndarray.astype(np.float16)`` and
``astype(ml_dtypes.bfloat16)`` (TensorFlow's bfloat16 cast) do, including
subnormals, overflow to infinity and NaN.
"""

import numpy as np
from numba import njit

from fastseq.kernels.config import JIT


@njit(inline="always", **JIT)
def f16_bits_from_f32_bits(bits):
    """float32 bit pattern (uint32) -> IEEE binary16 bit pattern (uint16), round half to even.

    Inlined where it is called, so a kernel that converts a whole row of
    values (``fastseq.kernels.mix``) keeps it in its loop.
    """
    sign = np.uint32((bits >> np.uint32(16)) & np.uint32(0x8000))
    exp = np.int32((bits >> np.uint32(23)) & np.uint32(0xFF))
    mant = np.uint32(bits & np.uint32(0x7FFFFF))
    if exp == 0xFF:  # inf or NaN; keep NaN quiet and non-zero
        if mant != 0:
            return np.uint16(sign | np.uint32(0x7E00) | (mant >> np.uint32(13)))
        return np.uint16(sign | np.uint32(0x7C00))
    e = exp - 127 + 15
    if e >= 31:  # overflow
        return np.uint16(sign | np.uint32(0x7C00))
    if e <= 0:  # subnormal half or zero
        if e < -10:
            return np.uint16(sign)
        m = mant | np.uint32(0x800000)  # implicit leading one
        shift = np.uint32(14 - e)  # 14..24
        half = np.uint32(1) << (shift - np.uint32(1))
        rest = m & ((np.uint32(1) << shift) - np.uint32(1))
        out = m >> shift
        if rest > half or (rest == half and (out & np.uint32(1)) == 1):
            out += np.uint32(1)
        return np.uint16(sign | out)
    out = (np.uint32(e) << np.uint32(10)) | (mant >> np.uint32(13))
    rest = mant & np.uint32(0x1FFF)
    if rest > 0x1000 or (rest == 0x1000 and (out & np.uint32(1)) == 1):
        out += np.uint32(1)  # a carry into the exponent is the correct rounding (up to inf)
    return np.uint16(sign | out)


@njit(inline="always", **JIT)
def bf16_bits_from_f32_bits(bits):
    """float32 bit pattern (uint32) -> bfloat16 bit pattern (uint16), round half to even."""
    if (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000) and (bits & np.uint32(0x7FFFFF)) != 0:
        return np.uint16((bits >> np.uint32(16)) | np.uint32(0x40))  # quiet NaN
    rounding = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return np.uint16((bits + rounding) >> np.uint32(16))


@njit(**JIT)
def f32_to_f16_bits(value):
    """float32 -> IEEE binary16 bit pattern (uint16), round half to even."""
    return f16_bits_from_f32_bits(np.uint32(np.array([np.float32(value)]).view(np.uint32)[0]))


@njit(**JIT)
def f32_to_bf16_bits(value):
    """float32 -> bfloat16 bit pattern (uint16), round half to even."""
    return bf16_bits_from_f32_bits(np.uint32(np.array([np.float32(value)]).view(np.uint32)[0]))


@njit(**JIT)
def _to_half_bits(values, bf16, out):
    for i in range(values.shape[0]):
        if bf16:
            out[i] = f32_to_bf16_bits(values[i])
        else:
            out[i] = f32_to_f16_bits(values[i])


def to_half_bits(values, dtype):
    """Round a float32 array to ``dtype`` ("float16" or "bfloat16"); return uint16 bits.

    Args:
        values: array-like of float32 (anything else is cast to float32 first).
        dtype: "float16" or "bfloat16".

    Returns:
        A uint16 array of the same shape holding the rounded bit patterns.
    """
    if dtype not in ("float16", "bfloat16"):
        raise ValueError(f"dtype must be 'float16' or 'bfloat16', got {dtype!r}.")
    arr = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty(arr.shape, dtype=np.uint16)
    _to_half_bits(arr.reshape(-1), dtype == "bfloat16", out.reshape(-1))
    return out
