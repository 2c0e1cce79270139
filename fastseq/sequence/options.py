"""ArraySequence's arguments, checked and normalised once, at construction. NumPy only.

:func:`check` turns what a user passes to ``ArraySequence(...)`` into an
:class:`Options` record, or raises a ``TypeError``/``ValueError`` that names
the argument, the value received and what to do instead; :func:`for_evaluation`
makes the options of an evaluation sequence from a training sequence's.
Keeping this apart from :mod:`fastseq.sequence.array_sequence` lets the class
read as the ``PyDataset`` protocol, the epoch and the batch assembly only, and
lets the checks be tested without Keras.

A sequence is built one way: these options first (``shard="auto"`` is read
here, through :mod:`fastseq.sequence.sharding`), then the plan from them
(``fastseq.sequence.plans.make``), then the sequence assembles from both.
Nothing here calls back into the plan or the sequence.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from fastseq.augment import (
    EVAL_CROP_FRACTION,
    CenterCrop,
    CutMix,
    Cutout,
    MixUp,
    Normalize,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    RandomResizedCrop,
    Rescale,
    Resize,
    chain,
)
from fastseq.kernels import _validate as validate
from fastseq.ragged import RaggedImages
from fastseq.sequence import order, sharding

DTYPES = ("float32", "float16", "bfloat16", "uint8")
DATA_FORMATS = ("channels_last", "channels_first")

describe = validate._describe  # one way to show a received value in every error message


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything ``ArraySequence`` was given, checked.

    Attributes:
        x: the images as passed (an array or a read-only memmap; never copied).
        y, sample_weight: per-sample arrays of length ``num_items``, or None.
        labels: ``y`` as intp class indices when ``num_classes`` is set, else None.
        image_shape: ``(H, W, C)`` of one image (C is 1 for ``(N, H, W)`` input).
        num_items: number of samples.
        shard: ``(index, count)``; ``(0, 1)`` when not sharded.
        shard_from: where a ``shard="auto"`` pair was read (for error messages), else None.
        shard_remainder: one of ``order.REMAINDERS``.
        shard_items: samples this shard serves per epoch (``num_items`` unsharded).
        crop: a ``RandomCrop``/``CenterCrop`` that fits the image, a
            ``RandomResizedCrop``/``Resize`` (any image size), or None.
        flip: a ``RandomFlip`` or None (mode strings are turned into one).
        normalize: a ``Normalize``/``Rescale`` with 1 or C values, or None.
        cutout: a ``Cutout``/``RandomErasing`` whose fill fits ``dtype``, or None.
        mix: a ``MixUp``/``CutMix`` with targets it can mix, or None.
        the rest: as passed, type-checked.
    """

    x: object
    y: np.ndarray | None
    sample_weight: np.ndarray | None
    labels: np.ndarray | None
    image_shape: tuple
    num_items: int
    shard: tuple
    shard_remainder: str
    shard_items: int
    batch_size: int
    shuffle: bool
    seed: int
    drop_remainder: bool
    crop: RandomCrop | CenterCrop | RandomResizedCrop | Resize | None
    flip: RandomFlip | None
    normalize: Normalize | Rescale | None
    dtype: str
    data_format: str
    num_classes: int | None
    cutout: Cutout | RandomErasing | None = None
    mix: MixUp | CutMix | None = None
    shard_from: str | None = None
    augment: tuple = ()


def check(
    x,
    y=None,
    *,
    batch_size,
    shuffle,
    seed,
    drop_remainder,
    crop,
    flip,
    normalize,
    dtype,
    data_format,
    num_classes,
    sample_weight,
    shard=None,
    shard_remainder="drop",
    shard_from=None,
    cutout=None,
    mix=None,
    augment=None,
):
    """Check and normalise ``ArraySequence``'s arguments.

    ``shard="auto"`` is read here (``fastseq.sequence.sharding.resolve``),
    which also warns when processes train in step on an unsharded sequence.
    ``shard_from`` names where an ``(index, count)`` pair came from, for one
    that was read for another sequence (``for_evaluation``).

    Returns:
        An :class:`Options`.

    Raises:
        TypeError, ValueError: naming the argument, the value received and the fix.
    """
    # stacklevel 3: the warning points at the line that built the sequence (sharding -> here -> the builder).
    shard, read_from = sharding.resolve(shard, stacklevel=3)
    shard_from = shard_from or read_from
    ragged = isinstance(x, RaggedImages)
    if ragged:
        # Photos of different sizes: only a crop that resamples each one to a fixed size makes a batch.
        n_items, H, W, C = len(x), None, None, x.channels
        if n_items == 0:
            raise ValueError("x (RaggedImages) holds no images; give at least one.")
        if not isinstance(crop, (RandomResizedCrop, Resize)):
            raise ValueError(
                f"x is a RaggedImages (images of different sizes), so every batch must be resampled to one size: "
                f"pass crop=fastseq.Resize(height, width) (the whole image, as Keras) or "
                f"fastseq.RandomResizedCrop(height, width), got crop={describe(crop)}."
            )
    else:
        x4 = validate.images(x, "x")  # raises for wrong type/dtype/ndim/contiguity
        n_items, H, W, C = x4.shape
        if n_items == 0:
            raise ValueError(f"x has no samples (shape {x.shape}); give at least one image.")
    if not ragged and x.ndim == 4 and H in (1, 3, 4) and C > 4:
        raise ValueError(
            f"x has shape {x.shape}, which looks channels-first (N, C, H, W) with {H} channels; ArraySequence "
            f"reads x as channels-last (N, H, W, C), which would make {H}x{W} images with {C} channels. Pass "
            "np.ascontiguousarray(x.transpose(0, 2, 3, 1)) (and data_format='channels_first' to get "
            "channels-first batches back)."
        )
    batch_size = int_arg("batch_size", batch_size, minimum=1)
    shard, shard_remainder = shard_arg(shard, shard_remainder, n_items, shard_from)
    shard_items = order.shard_size(n_items, shard[1], shard_remainder)
    if drop_remainder and batch_size > shard_items:
        have = f"len(x)={n_items}" if shard[1] == 1 else f"the {shard_items} samples of each of {shard[1]} shards"
        raise ValueError(
            f"drop_remainder=True with batch_size={batch_size} > {have} leaves no batch; "
            "lower batch_size (it is per process) or set drop_remainder=False."
        )
    y = per_sample("y", y, n_items)
    if y is not None and y.dtype.kind not in "biuf":
        raise TypeError(
            f"y must be numeric (integer class labels, floats or one-hot rows), got dtype {y.dtype} "
            f"(first value {y.reshape(-1)[0]!r}); map class names to integers first, e.g. "
            "classes, y = np.unique(y, return_inverse=True), and pass num_classes=len(classes)."
        )
    sample_weight = per_sample("sample_weight", sample_weight, n_items)
    if sample_weight is not None and (sample_weight.ndim != 1 or not np.issubdtype(sample_weight.dtype, np.number)):
        raise ValueError(f"sample_weight must be a 1-D numeric array of length {n_items}, got {describe(sample_weight)}.")
    num_classes = None if num_classes is None else int_arg("num_classes", num_classes, minimum=1)
    normalize = normalize_arg(normalize, C)
    if isinstance(normalize, Normalize):
        mean, std = normalize.kernel_kwargs()["mean"], normalize.kernel_kwargs()["std"]
        if mean.max() <= 1.0 and std.max() <= 1.0 and not (np.all(mean == 0) and np.all(std == 1)):
            raise ValueError(
                f"normalize={normalize!r} has statistics on the 0..1 scale, but x holds uint8 pixels 0..255 "
                f"(they would come out up to {np.max((255 - mean) / std):.0f}); give them in pixel units, "
                f"Normalize(mean={np.round(mean * 255, 3).tolist()}, std={np.round(std * 255, 3).tolist()}), "
                "which equals Rescale(1/255) followed by your Normalize."
            )
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}.")
    if dtype == "uint8" and normalize is not None:
        raise ValueError(
            f"dtype='uint8' returns raw pixels, but normalize={normalize!r} was given; to normalise on the "
            f"device, drop normalize here and make fastseq.DeviceNormalize({normalize!r}) the model's first layer "
            "(after keras.Input(..., dtype='uint8')); or choose a float dtype."
        )
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}.")
    return Options(
        x=x,
        y=y,
        sample_weight=sample_weight,
        labels=None if num_classes is None else class_labels(y, num_classes),
        image_shape=(H, W, C),
        num_items=n_items,
        shard=shard,
        shard_remainder=shard_remainder,
        shard_items=shard_items,
        batch_size=batch_size,
        shuffle=bool(shuffle),
        seed=int_arg("seed", seed, minimum=0),
        drop_remainder=bool(drop_remainder),
        crop=crop_arg(crop, (H, W), ragged=ragged),
        flip=flip_arg(flip),
        normalize=normalize,
        dtype=dtype,
        data_format=data_format,
        num_classes=num_classes,
        cutout=cutout_arg(cutout, dtype),
        mix=mix_arg(mix, y, num_classes),
        shard_from=shard_from,
        augment=augment_arg(augment, crop, C, ragged),
    )


def for_evaluation(o, x, y=None, *, sample_weight=None, batch_size=None):
    """The options of an evaluation sequence over ``x`` after training with options ``o``.

    The same normalisation, dtype, layout, ``num_classes``, seed and shard;
    ``shuffle=False``, no flips, no cutout or mix, no random op of ``augment`` (``AutoContrast`` and
    ``Equalization`` stay), no dropped batch, the crop
    made deterministic (:func:`evaluation_crop`) and
    ``shard_remainder="repeat"`` (see ``ArraySequence.for_evaluation``).
    ``batch_size`` None keeps ``o``'s.
    """
    crop = evaluation_crop(o.crop, image_size_of(x))
    return check(
        x, y, batch_size=batch_size or o.batch_size, shuffle=False, seed=o.seed, drop_remainder=False, crop=crop,
        flip=None, normalize=o.normalize, dtype=o.dtype, data_format=o.data_format, num_classes=o.num_classes,
        sample_weight=sample_weight, shard=o.shard, shard_remainder="repeat", shard_from=o.shard_from,
        augment=chain.evaluation_ops(o.augment),
    )


def int_arg(name, value, minimum):
    """``value`` as an int >= ``minimum``; bools and non-integers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {describe(value)}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def batch_index(i, n):
    """A batch index ``i`` of a sequence of ``n`` batches as ``0..n-1``; negative ones count from the end."""
    if isinstance(i, bool) or not isinstance(i, numbers.Integral):
        raise TypeError(f"batch index must be an integer, got {describe(i)}.")
    if not -n <= i < n:
        raise IndexError(f"batch index {i} out of range for a sequence of {n} batches.")
    return int(i) % n


def shard_arg(shard, remainder, n_items, shard_from=None):
    """``(index, count)`` with ``0 <= index < count <= n_items`` and a known remainder rule.

    ``shard_from`` (e.g. "shard='auto' read keras.distribution") is added to
    the error, so a pair the user did not type is traced to its source.
    """
    if remainder not in order.REMAINDERS:
        raise ValueError(
            f"shard_remainder must be one of {order.REMAINDERS}, got {describe(remainder)}: 'drop' serves "
            "n // count samples per shard, 'repeat' repeats the data until count divides it."
        )
    if shard is None:
        return (0, 1), remainder
    if isinstance(shard, str) or not isinstance(shard, (tuple, list)) or len(shard) != 2:
        raise TypeError(
            f"shard must be None, 'auto' or a pair (index, count) such as (0, 2), got {describe(shard)}."
        )
    source = f" ({shard_from})" if shard_from else ""
    index, count = shard
    for name, value in (("index", index), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"shard=(index, count) needs integers, got {name}={describe(value)}{source}.")
    index, count = int(index), int(count)
    if count < 1:
        raise ValueError(
            f"shard=({index}, {count}){source}: count must be >= 1 (the number of processes), got {count}."
        )
    if not 0 <= index < count:
        raise ValueError(
            f"shard=({index}, {count}){source}: index must be in 0..{count - 1} (this process's rank), got {index}."
        )
    if count > n_items:
        raise ValueError(
            f"shard=({index}, {count}){source}: {count} shards but x has only {n_items} samples, so some "
            f"processes would have no data; use at most {n_items} processes or more data."
        )
    return (index, count), remainder


def per_sample(name, value, n):
    """``value`` as an array with one entry per sample, or None."""
    if value is None:
        return None
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.ndim == 0 or len(arr) != n:
        got = "a scalar" if arr.ndim == 0 else f"length {len(arr)}"
        raise ValueError(f"{name} must have one entry per sample (len(x) = {n}), got {got}.")
    if arr.dtype.hasobject:
        raise TypeError(f"{name} must be a numeric or fixed-width array, got dtype object.")
    return arr


def class_labels(y, num_classes):
    """Integer labels ``(N,)`` or ``(N, 1)`` in ``[0, num_classes)`` as intp ``(N,)``."""
    if y is None:
        raise ValueError("num_classes was given but y is None; pass integer labels as y.")
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # Keras' CIFAR labels are (N, 1)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"num_classes={num_classes} needs integer class labels of shape (N,) or (N, 1), "
            f"got {describe(y)}; pass one-hot targets without num_classes instead."
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"labels must lie in [0, num_classes={num_classes}), got {lo if lo < 0 else hi}; "
            "raise num_classes or fix the labels."
        )
    return labels.astype(np.intp)


def crop_arg(crop, image_size, ragged=False):
    """A crop spec that fits ``(H, W)`` (any size when ``ragged``: a ``Resize``/``RandomResizedCrop``), or None."""
    if crop is None:
        return None
    if not isinstance(crop, (RandomCrop, CenterCrop, RandomResizedCrop, Resize)):
        raise TypeError(
            f"crop must be fastseq.RandomCrop(height, width, padding=...), fastseq.CenterCrop(height, width), "
            f"fastseq.RandomResizedCrop(height, width, scale=..., ratio=...), fastseq.Resize(height, width, crop=...) "
            f"or None, got {describe(crop)}."
        )
    crop.check_image_size(image_size, "crop")
    if not ragged and isinstance(crop, (RandomResizedCrop, Resize)) and not crop.plain:
        raise ValueError(
            f"crop={crop!r}: on images of one size (an array x) the resample is bilinear, without antialias, of the "
            "whole image; interpolation, antialias and crop/pad_to_aspect_ratio are for photo folders "
            "(fastseq.image_dataset_from_directory, or a fastseq.ragged.RaggedImages x)."
        )
    return crop


def flip_arg(flip):
    """A ``RandomFlip`` (from a spec or a mode string), or None."""
    if flip is None:
        return None
    if isinstance(flip, str):
        return RandomFlip(flip)
    if not isinstance(flip, RandomFlip):
        raise TypeError(f"flip must be fastseq.RandomFlip(mode), a mode string or None, got {describe(flip)}.")
    return flip


def normalize_arg(normalize, channels):
    """A ``Normalize``/``Rescale`` with 1 or ``channels`` values, or None."""
    if normalize is None:
        return None
    if not isinstance(normalize, (Normalize, Rescale)):
        raise TypeError(
            f"normalize must be fastseq.Normalize(mean, std), fastseq.Rescale(scale, offset) or None, "
            f"got {describe(normalize)}."
        )
    if normalize.channels not in (1, channels):
        raise ValueError(
            f"normalize={normalize!r} has {normalize.channels} per-channel values but x has {channels} "
            f"channel{'s' if channels != 1 else ''}; give {channels} values (or one for all)."
        )
    return normalize


def image_size_of(x):
    """``(H, W)`` of the images of ``x``, or None for a ``RaggedImages`` (each image its own size)."""
    if isinstance(x, RaggedImages):
        return None
    return validate.images(x, "x").shape[1:3]


def evaluation_crop(crop, image_size):
    """The deterministic crop for evaluation data of ``image_size`` after training with ``crop``.

    A ``RandomCrop`` whose window differs from the image becomes a
    ``CenterCrop`` of that size; one as large as the image (pad-and-crop
    augmentation) becomes no crop. A ``RandomResizedCrop`` becomes a resize
    to crop / 0.875 and a centre crop (``fastseq.Resize.for_crop``; for
    images of different sizes, ``image_size`` None, the same on each
    image's centre box of the crop's aspect ratio); a ``Resize`` is
    deterministic already and stays.
    """
    if isinstance(crop, RandomResizedCrop):
        if image_size is None:
            # Photos of different sizes: the centre box of each with the crop's aspect ratio, 0.875 of its
            # tighter axis, resized to the crop size (Resize.for_crop on each original photo).
            return Resize(
                int(crop.height / EVAL_CROP_FRACTION), int(crop.width / EVAL_CROP_FRACTION),
                crop=(crop.height, crop.width), interpolation=crop.interpolation, antialias=crop.antialias,
                crop_to_aspect_ratio=True,
            )
        return crop.evaluation_resize(image_size)
    if isinstance(crop, Resize):
        return crop
    if crop is not None and (crop.height, crop.width) != tuple(image_size):
        return CenterCrop(crop.height, crop.width)
    return None


def cutout_arg(cutout, dtype):
    """A ``Cutout``/``RandomErasing`` whose fill the output ``dtype`` can hold, or None."""
    if cutout is None:
        return None
    if not isinstance(cutout, (Cutout, RandomErasing)):
        raise TypeError(
            f"cutout must be fastseq.Cutout(size, count=..., fill=...), fastseq.RandomErasing(probability, scale, "
            f"ratio, fill=...) or None, got {describe(cutout)}."
        )
    fill = cutout.fill
    if dtype == "uint8" and (float(fill) != int(fill) or not 0 <= fill <= 255):
        raise ValueError(
            f"cutout={cutout!r}: with dtype='uint8' the fill is a raw pixel value and must be an integer "
            "0..255; give e.g. fill=0 or fill=128."
        )
    if dtype == "float16" and abs(float(fill)) > 65504:
        raise ValueError(f"cutout={cutout!r}: the fill does not fit float16 (|fill| <= 65504).")
    return cutout


def mix_arg(mix, y, num_classes):
    """A ``MixUp``/``CutMix`` whose targets can be mixed (``num_classes`` or float one-hot ``y``), or None."""
    if mix is None:
        return None
    if not isinstance(mix, (MixUp, CutMix)):
        raise TypeError(f"mix must be fastseq.MixUp(alpha), fastseq.CutMix(alpha) or None, got {describe(mix)}.")
    name = type(mix).__name__
    if y is None:
        raise ValueError(
            f"mix={mix!r} mixes labels as well as images, but y is None; pass integer labels as y with "
            "num_classes=..., or float one-hot targets of shape (N, num_classes) as y."
        )
    if num_classes is None and not (y.ndim == 2 and np.issubdtype(y.dtype, np.floating)):
        raise ValueError(
            f"mix={mix!r}: {name} mixes targets linearly, so they must be one-hot; got y {describe(y)} "
            "and num_classes=None. Pass num_classes=... with integer labels, or float one-hot y of shape "
            "(N, num_classes)."
        )
    return mix


def augment_arg(augment, crop, channels, ragged):
    """The ordered ops of ``augment=[...]`` as a tuple (see ``fastseq.augment.chain``); () for none."""
    ops = chain.as_ops(augment)
    if ops:
        for op in ops:
            op.check_channels(channels)
        if isinstance(crop, (RandomResizedCrop, Resize)) and (
            crop.interpolation not in chain.INTERP_CODES or crop.antialias or getattr(crop, "pad_to_aspect_ratio", False)
        ):
            raise ValueError(
                f"augment: with crop={crop!r} the crop is resampled in the same pass as the augment ops, which "
                "interpolate 'bilinear' or 'nearest' without antialias (Keras' geometric layers); use "
                "interpolation='bilinear' or 'nearest', antialias=False and no pad_to_aspect_ratio."
            )
    return ops
