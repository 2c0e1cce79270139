"""Cutout, RandomErasing, MixUp and CutMix: passes over the made batch (``fastseq/kernels/mix.py``; NumPy only)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np


def _positive_alpha(value, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)) or value <= 0:
        raise ValueError(
            f"{owner}: alpha must be a finite number > 0 (lambda ~ Beta(alpha, alpha)), got {value!r}; "
            "common values are 0.2 (MixUp) and 1.0 (CutMix)."
        )
    return float(value)


@dataclass(frozen=True)
class Cutout:
    """Erase ``count`` squares of ``size`` x ``size`` pixels per sample (DeVries and Taylor's Cutout).

    Each square's centre is uniform over the output image (after the crop),
    so a square near the border lies partly outside it and erases less. The
    centres are a pure function of ``(seed, epoch, sample index)``.

    ``fill`` is the value written into the batch, in output units: after
    normalisation. The default 0 is the original Cutout (which erased the
    normalised tensor, where 0 is the data set's mean) and torchvision's
    ``RandomErasing(value=0)`` placed after ``Normalize``. For a
    ``dtype="uint8"`` sequence it is a pixel value and must be an integer
    0..255. Squares are cut after MixUp/CutMix, so a mixed sample is cut too.
    Evaluation sequences never cut out.

    Args:
        size (int): side of each square in pixels (>= 1).
        count (int): squares per sample (>= 1).
        fill (float): value written into the squares, in output units (after
            normalisation); an integer 0..255 for ``dtype="uint8"``.
    """

    size: int
    count: int = 1
    fill: float = 0.0

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, numbers.Integral) or self.size < 1:
            raise ValueError(f"Cutout: size must be a positive integer (the square's side in pixels), got {self.size!r}.")
        if isinstance(self.count, bool) or not isinstance(self.count, numbers.Integral) or not 1 <= self.count <= 32768:
            raise ValueError(f"Cutout: count must be an integer in [1, 32768] (squares per sample), got {self.count!r}.")
        f = self.fill
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not np.isfinite(float(f)):
            raise ValueError(f"Cutout: fill must be a finite number (the value written, in output units), got {f!r}.")


@dataclass(frozen=True)
class MixUp:
    """MixUp (Zhang et al.): each sample blended with a partner, pixels and labels alike.

    ``lambda ~ Beta(alpha, alpha)``; the output is ``lambda * sample + (1 -
    lambda) * partner`` and its target ``lambda * y + (1 - lambda) * y_partner``.
    The partner is drawn uniformly from the whole data set (not the batch) and
    made with its own crop and flips, so the partner and ``lambda`` are a pure
    function of ``(seed, epoch, sample index)``: batch size, workers and call
    order do not change a sample's pixels or target. Needs targets that can
    be mixed: ``num_classes`` with integer labels, or float one-hot ``y``.
    Evaluation sequences never mix. ``alpha=0.2`` is ``keras.layers.MixUp``'s default.

    Args:
        alpha (float): the Beta distribution's parameter (> 0); small values keep
            most samples close to one of the two.
    """

    alpha: float = 0.2

    def __post_init__(self):
        _positive_alpha(self.alpha, "MixUp")

    mode = "mixup"


@dataclass(frozen=True)
class CutMix:
    """CutMix (Yun et al.): a box of each sample replaced by the same box of a partner.

    ``lambda ~ Beta(alpha, alpha)``; the box is ``int(h * sqrt(1 - lambda))``
    x ``int(w * sqrt(1 - lambda))`` with its centre uniform over the image,
    clipped to it, and the target is mixed with the weight the pixels
    actually got: ``1 - box area / (h * w)``. Partner and draws as in
    ``MixUp`` (a pure function of ``(seed, epoch, sample index)``);
    needs ``num_classes`` or float one-hot ``y``. Evaluation sequences never
    mix. ``alpha=1.0`` is ``keras.layers.CutMix``'s default (``factor``).

    Args:
        alpha (float): the Beta distribution's parameter (> 0) for the share
            of the sample that is kept.
    """

    alpha: float = 1.0

    def __post_init__(self):
        _positive_alpha(self.alpha, "CutMix")

    mode = "cutmix"


def _pair(name, value, owner):
    try:
        lo, hi = value
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a (low, high) pair of numbers, got {value!r}.") from None
    return lo, hi


@dataclass(frozen=True)
class RandomErasing:
    """Random erasing (Zhong et al.; torchvision's ``RandomErasing``): one box of random area and shape.

    With probability ``probability`` per sample, a box covering a fraction
    of the output image uniform in ``scale``, with aspect ratio (height /
    width) log-uniform in ``ratio``, sides rounded half up, placed uniformly
    inside the image; torchvision's rule of up to 10 draws for a box smaller
    than the image in both sides, else none. ``fill`` as in ``Cutout``
    (output units). Pass it as ``cutout=``; draws are a pure function of
    ``(seed, epoch, sample index)``. Evaluation sequences never erase.

    Args:
        probability (float): chance that a sample gets a box, 0..1.
        scale (tuple[float, float]): range of the box's area as a fraction of the
            image's, ``0 < low <= high <= 1``.
        ratio (tuple[float, float]): range of the box's aspect ratio (height /
            width), ``0 < low <= high``.
        fill (float): value written into the box, in output units, as in ``Cutout``.
    """

    probability: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    fill: float = 0.0

    def __post_init__(self):
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"RandomErasing: probability must be a number in [0, 1], got {p!r}.")
        lo, hi = _pair("scale", self.scale, "RandomErasing")
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(
                f"RandomErasing: scale must be (low, high) area fractions with 0 < low <= high <= 1, got {self.scale!r}."
            )
        lo, hi = _pair("ratio", self.ratio, "RandomErasing")
        if not (0.0 < lo <= hi and np.isfinite(hi)):
            raise ValueError(
                f"RandomErasing: ratio must be (low, high) aspect ratios with 0 < low <= high, got {self.ratio!r}."
            )
        f = self.fill
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not np.isfinite(float(f)):
            raise ValueError(f"RandomErasing: fill must be a finite number (the value written, in output units), got {f!r}.")
