"""Output normalisation specs: ``Normalize`` and ``Rescale`` (NumPy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _channel_vector(name, value, owner):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1 or arr.size == 0:
        raise ValueError(f"{owner}: {name} must be a number or a 1-D sequence of per-channel numbers, got {value!r}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}.")
    return np.atleast_1d(arr)


@dataclass(frozen=True, eq=False)
class Normalize:
    """Per-channel standardisation: ``(v - mean[c]) / std[c]``.

    ``mean`` and ``std`` are numbers or per-channel sequences in pixel units
    (0..255), e.g. CIFAR-10's ``mean=(125.3, 123.0, 113.9)``,
    ``std=(63.0, 62.1, 66.7)``.

    Args:
        mean (float | Sequence[float]): per-channel mean in pixel units (0..255),
            or one number for every channel.
        std (float | Sequence[float]): per-channel standard deviation in pixel
            units, each > 0, or one number for every channel.
    """

    mean: float | Sequence[float]
    std: float | Sequence[float]

    def __post_init__(self):
        mean = _channel_vector("mean", self.mean, "Normalize")
        std = _channel_vector("std", self.std, "Normalize")
        if np.any(std <= 0):
            raise ValueError(f"Normalize: std must be > 0 for every channel, got {self.std!r}.")
        if mean.size != std.size and 1 not in (mean.size, std.size):
            raise ValueError(
                f"Normalize: mean has {mean.size} values and std has {std.size}; give one per channel for both."
            )
        object.__setattr__(self, "_mean", mean)
        object.__setattr__(self, "_std", std)

    @property
    def channels(self):
        """Number of channels this spec is for (1 means it broadcasts)."""
        return max(self._mean.size, self._std.size)

    def kernel_kwargs(self):
        """Keyword arguments for ``fastseq.kernels.fused``."""
        return {"mean": self._mean, "std": self._std}

    def __repr__(self):
        return f"Normalize(mean={self._mean.tolist()}, std={self._std.tolist()})"


@dataclass(frozen=True, eq=False)
class Rescale:
    """Affine rescaling ``v * scale + offset``, like ``keras.layers.Rescaling``.

    ``Rescale(1 / 255)`` maps pixels to [0, 1]; ``Rescale(2 / 255, -1)`` to
    [-1, 1]. Use ``to_range`` for a custom ``(low, high)`` range.

    Args:
        scale (float | Sequence[float]): multiplier, one number or one per channel.
        offset (float | Sequence[float]): added after scaling, one number or one
            per channel.
    """

    scale: float | Sequence[float]
    offset: float | Sequence[float] = 0.0

    def __post_init__(self):
        object.__setattr__(self, "_scale", _channel_vector("scale", self.scale, "Rescale"))
        object.__setattr__(self, "_offset", _channel_vector("offset", self.offset, "Rescale"))
        if self._scale.size != self._offset.size and 1 not in (self._scale.size, self._offset.size):
            raise ValueError(
                f"Rescale: scale has {self._scale.size} values and offset has {self._offset.size}; "
                "give one per channel for both."
            )

    @classmethod
    def to_range(cls, low, high):
        """Map uint8 ``0..255`` linearly onto ``[low, high]``."""
        return cls((high - low) / 255.0, low)

    @property
    def channels(self):
        return max(self._scale.size, self._offset.size)

    def kernel_kwargs(self):
        return {"scale": self._scale, "offset": self._offset}

    def __repr__(self):
        return f"Rescale(scale={self._scale.tolist()}, offset={self._offset.tolist()})"
