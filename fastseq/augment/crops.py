"""Crops, resizes and flips: the window of each sample that the batch pass reads (NumPy only)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

PAD_MODES = ("constant", "reflect", "edge")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
#: Resampling filters of ``Resize``/``RandomResizedCrop`` (Keras' names). Images of
#: one size (arrays) take "bilinear" only; photo folders (``RaggedImages``) take all.
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


def _resample_options(owner, interpolation, antialias):
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{owner}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
    if not isinstance(antialias, (bool, np.bool_)):
        raise ValueError(f"{owner}: antialias must be True or False, got {antialias!r}.")


def _positive_int(name, value, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class RandomCrop:
    """Pad every side by ``padding`` pixels, then take a random ``(height, width)`` window.

    The window's top-left corner is uniform over every valid position of the
    (virtually) padded image, drawn per sample from ``(seed, epoch, index)``.
    ``pad_mode`` has ``np.pad``'s meaning: ``"constant"`` (with ``fill``),
    ``"reflect"`` or ``"edge"``. Padding is never materialised.

    With ``height``/``width`` equal to the image size and ``padding=4`` this is
    the classic CIFAR "pad 4 and crop 32" augmentation.

    Args:
        height (int): output height in pixels; at most the padded image's.
        width (int): output width in pixels; at most the padded image's.
        padding (int): pixels added on every side before cropping (>= 0).
        pad_mode (str): ``"constant"``, ``"reflect"`` or ``"edge"``, as ``np.pad``.
        fill (int): the padded pixels' value with ``pad_mode="constant"``, 0..255.
    """

    height: int
    width: int
    padding: int = 0
    pad_mode: str = "constant"
    fill: int = 0

    def __post_init__(self):
        _positive_int("height", self.height, "RandomCrop")
        _positive_int("width", self.width, "RandomCrop")
        if isinstance(self.padding, bool) or not isinstance(self.padding, numbers.Integral) or self.padding < 0:
            raise ValueError(f"RandomCrop: padding must be an integer >= 0, got {self.padding!r}.")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"RandomCrop: pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}.")
        if isinstance(self.fill, bool) or not isinstance(self.fill, numbers.Integral) or not 0 <= self.fill <= 255:
            raise ValueError(f"RandomCrop: fill must be an integer in [0, 255] (a uint8 pixel value), got {self.fill!r}.")

    random = True

    def check_image_size(self, image_size, argument="crop"):
        """Raise ValueError unless the crop fits the padded ``(H, W)`` image."""
        H, W = image_size
        p = self.padding
        if self.height > H + 2 * p or self.width > W + 2 * p:
            raise ValueError(
                f"{argument}: a {self.height}x{self.width} crop does not fit a {H}x{W} image padded by {p} "
                f"({H + 2 * p}x{W + 2 * p}); use a crop of at most {H + 2 * p}x{W + 2 * p} or more padding."
            )


@dataclass(frozen=True)
class CenterCrop:
    """Deterministic centre ``(height, width)`` window, for validation and test data.

    The corner is ``((H - height) // 2, (W - width) // 2)``, as in
    ``keras.layers.CenterCrop`` when the crop is smaller than the image.

    Args:
        height (int): output height in pixels, at most the image's.
        width (int): output width in pixels, at most the image's.
    """

    height: int
    width: int

    def __post_init__(self):
        _positive_int("height", self.height, "CenterCrop")
        _positive_int("width", self.width, "CenterCrop")

    padding = 0
    pad_mode = "constant"
    fill = 0
    random = False

    def check_image_size(self, image_size, argument="crop"):
        H, W = image_size
        if self.height > H or self.width > W:
            raise ValueError(
                f"{argument}: a {self.height}x{self.width} centre crop does not fit a {H}x{W} image; "
                f"use a crop of at most {H}x{W}."
            )


#: ``for_evaluation()`` of a RandomResizedCrop sequence resizes so that the
#: crop is this fraction of the resized image (torchvision's ImageNet recipe:
#: resize to 256, centre crop 224 = 0.875 of it).
EVAL_CROP_FRACTION = Fraction(7, 8)


def _range_pair(name, value, owner, upper=None):
    """A ``(low, high)`` pair of finite reals with ``0 < low <= high`` (and ``high <= upper``)."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a (low, high) pair of numbers, got {value!r}.") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(float(v)):
            raise ValueError(f"{owner}: {name} must be a (low, high) pair of finite numbers, got {value!r}.")
    if lo <= 0:
        raise ValueError(f"{owner}: {name} must have low > 0, got {value!r}; e.g. {name}=(0.08, 1.0).")
    if lo > hi:
        raise ValueError(f"{owner}: {name} must be in order (low <= high), got {value!r}; swap them: ({hi!r}, {lo!r}).")
    if upper is not None and hi > upper:
        raise ValueError(f"{owner}: {name} must have high <= {upper:g} (a fraction of the image), got {value!r}.")
    return (float(lo), float(hi))


@dataclass(frozen=True)
class RandomResizedCrop:
    """A random box of the image, resized bilinearly to ``(height, width)``: ImageNet-style training.

    Per sample, torchvision's rule: up to 10 times, draw an area fraction
    uniform in ``scale`` and an aspect ratio (width / height) whose log is
    uniform in ``log(ratio)``; round the box to integers and, if it fits the
    image, place it uniformly. After 10 misses, the centre crop of the whole
    image, narrowed to the nearest ratio in range. Every draw is a pure
    function of ``(seed, epoch, sample index)``.

    The box is resampled bilinearly with half-pixel centres, as
    ``tf.image.resize(box, (height, width), antialias=False)`` and
    ``keras.layers.Resizing`` do: output pixel ``i`` reads the box at
    ``(i + 0.5) * box_size / size - 0.5``, neighbours clamped to the box.
    Images may be larger or smaller than the output. On photo folders
    (``RaggedImages``) the box is drawn on each original photo, and
    ``interpolation`` may be any of ``INTERPOLATIONS``, ``antialias=True``
    low-pass filters when shrinking (``tf.image.resize(antialias=True)``).

    ``ArraySequence.for_evaluation`` turns it into ``Resize`` to
    ``crop / 0.875`` (the shorter side, keeping the image's aspect) then a
    centre crop of ``(height, width)``.

    Args:
        height (int): output height in pixels.
        width (int): output width in pixels.
        scale (tuple[float, float]): range of the box's area as a fraction of the
            image's, ``0 < low <= high <= 1``.
        ratio (tuple[float, float]): range of the box's aspect ratio (width /
            height), ``0 < low <= high``.
        interpolation (str): one of ``INTERPOLATIONS`` (Keras' names);
            images of one size (arrays) take ``"bilinear"`` only.
        antialias (bool): low-pass filter when shrinking (photo folders only).
    """

    height: int
    width: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bilinear"
    antialias: bool = False

    def __post_init__(self):
        _positive_int("height", self.height, "RandomResizedCrop")
        _positive_int("width", self.width, "RandomResizedCrop")
        object.__setattr__(self, "scale", _range_pair("scale", self.scale, "RandomResizedCrop", upper=1.0))
        object.__setattr__(self, "ratio", _range_pair("ratio", self.ratio, "RandomResizedCrop"))
        _resample_options("RandomResizedCrop", self.interpolation, self.antialias)

    @property
    def plain(self):
        """Bilinear without antialias: what the resampling of images of one size (arrays) implements."""
        return self.interpolation == "bilinear" and not self.antialias

    random = True

    def check_image_size(self, image_size, argument="crop"):
        """Any image size works: boxes are drawn inside it and resized."""

    def evaluation_resize(self, image_size):
        """The deterministic ``Resize`` for evaluation images of ``image_size``; see ``Resize.for_crop``."""
        return Resize.for_crop(self.height, self.width, image_size)


@dataclass(frozen=True)
class Resize:
    """Resize the whole image bilinearly to ``(height, width)``; with ``crop``, keep its centre window.

    ``Resize(64, 64)`` stretches every image to 64x64 (like
    ``keras.layers.Resizing(64, 64)``); ``Resize(64, 64, crop=(56, 56))``
    resizes to 64x64 and keeps the centred 56x56 window (corner
    ``((64 - 56) // 2, (64 - 56) // 2)``, as ``CenterCrop``), the
    evaluation path of ImageNet-style training, done in one pass.
    Deterministic; half-pixel centres as ``RandomResizedCrop``.

    On photo folders (``RaggedImages``), Keras' ``Resizing`` options apply
    too: ``crop_to_aspect_ratio=True`` resizes the largest centred box of
    each photo with the output's aspect ratio, ``pad_to_aspect_ratio=True``
    the whole photo into ``tf.image.resize_with_pad``'s window of a zero
    image; ``interpolation`` and ``antialias`` as ``RandomResizedCrop``.

    Args:
        height (int): height of the resized image in pixels.
        width (int): width of the resized image in pixels.
        crop (tuple[int, int] | None): ``(h, w)`` of the centred window kept
            from the resized image, or None for the whole of it.
        interpolation (str): one of ``INTERPOLATIONS``; arrays take ``"bilinear"`` only.
        antialias (bool): low-pass filter when shrinking (photo folders only).
        crop_to_aspect_ratio (bool): resize the largest centred box of the
            output's aspect ratio (Keras' ``smart_resize``; photo folders only).
        pad_to_aspect_ratio (bool): resize the whole image into a zero image,
            keeping its aspect ratio (``tf.image.resize_with_pad``; photo folders only).
    """

    height: int
    width: int
    crop: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    antialias: bool = False
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False

    def __post_init__(self):
        _positive_int("height", self.height, "Resize")
        _positive_int("width", self.width, "Resize")
        if self.crop is not None:
            try:
                ch, cw = self.crop
            except (TypeError, ValueError):
                raise ValueError(f"Resize: crop must be a (height, width) pair or None, got {self.crop!r}.") from None
            ch = _positive_int("crop height", ch, "Resize")
            cw = _positive_int("crop width", cw, "Resize")
            if ch > self.height or cw > self.width:
                raise ValueError(
                    f"Resize: crop={ch}x{cw} is larger than the resized image {self.height}x{self.width}; "
                    f"use a crop of at most {self.height}x{self.width} or resize to at least {ch}x{cw}."
                )
            object.__setattr__(self, "crop", (ch, cw))
        _resample_options("Resize", self.interpolation, self.antialias)
        for name in ("crop_to_aspect_ratio", "pad_to_aspect_ratio"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"Resize: {name} must be True or False, got {getattr(self, name)!r}.")
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError("Resize: only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True.")

    random = False

    @property
    def plain(self):
        """Bilinear, no antialias, the whole image stretched: what arrays of one size implement."""
        return (self.interpolation == "bilinear" and not self.antialias and not self.crop_to_aspect_ratio
                and not self.pad_to_aspect_ratio)

    @property
    def output_size(self):
        """``(height, width)`` of what comes out: the crop if there is one, else the resized image."""
        return self.crop if self.crop is not None else (self.height, self.width)

    def check_image_size(self, image_size, argument="crop"):
        """Any image size works."""

    @classmethod
    def for_crop(cls, height, width, image_size, fraction=EVAL_CROP_FRACTION):
        """Resize + centre crop for evaluating a model trained on ``(height, width)`` random resized crops.

        The image is scaled, keeping its aspect ratio, so that the crop is
        ``fraction`` (7/8 = 0.875) of the resized image along the tighter
        axis, then its centre ``(height, width)`` is kept. For a square
        image and crop this is torchvision's ``Resize(int(crop / 0.875))``
        then ``CenterCrop(crop)``: a 64x64 image and a 56x56 crop give
        ``Resize(64, 64, crop=(56, 56))``; 96x96 and 64 give ``Resize(73, 73, crop=(64, 64))``.
        """
        H, W = image_size
        s = max(Fraction(height, H), Fraction(width, W)) / Fraction(fraction)
        return cls(max(height, int(H * s)), max(width, int(W * s)), crop=(height, width))


@dataclass(frozen=True)
class RandomFlip:
    """Flip each sample with probability ``probability`` per enabled axis.

    ``mode`` uses Keras' names: ``"horizontal"`` (left-right, the default),
    ``"vertical"`` (up-down) or ``"horizontal_and_vertical"`` (each axis drawn
    independently). Draws are a pure function of ``(seed, epoch, index)``.

    Args:
        mode (str): ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.
        probability (float): chance of a flip per sample and enabled axis, 0..1.
    """

    mode: str = "horizontal"
    probability: float = 0.5

    def __post_init__(self):
        if self.mode not in FLIP_MODES:
            raise ValueError(f"RandomFlip: mode must be one of {FLIP_MODES}, got {self.mode!r}.")
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"RandomFlip: probability must be a number in [0, 1], got {p!r}.")

    @property
    def horizontal(self):
        """Probability of a left-right flip."""
        return float(self.probability) if self.mode in ("horizontal", "horizontal_and_vertical") else 0.0

    @property
    def vertical(self):
        """Probability of an up-down flip."""
        return float(self.probability) if self.mode in ("vertical", "horizontal_and_vertical") else 0.0
