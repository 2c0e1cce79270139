"""``fastseq.image_dataset_from_directory``: Keras' call, served by an ``ArraySequence`` over a decoded store.

The listing, labels and split are Keras' own (:mod:`fastseq.photos.listing`);
the photos are decoded once into a ragged uint8 store on disk
(:mod:`fastseq.photos.store`); every batch is resampled from the original
photos by the ragged resize kernel, through ``ArraySequence``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import numpy as np

from fastseq.augment import INTERPOLATIONS, CenterCrop, RandomCrop, RandomResizedCrop, Resize
from fastseq.photos import listing
from fastseq.sequence import options
from fastseq.sequence.array_sequence import ArraySequence

if TYPE_CHECKING:
    from fastseq.augment import CutMix, Cutout, MixUp, Normalize, RandomErasing, RandomFlip, Rescale


class FolderSequence(ArraySequence):
    """An ``ArraySequence`` over a photo folder, as ``image_dataset_from_directory`` returns it.

    Attributes:
        class_names (list[str] | None): Keras' class names (None without labels).
        file_paths (list[str]): the files of this sequence's samples, in Keras' order:
            sample ``i`` is ``file_paths[i]`` (with ``shuffle=False`` the
            batches come in this order).
        store (fastseq.datasets.Store): the decoded store the pixels come from (``.path``,
            ``.decoded``, ``.skipped``).
        unbatched (bool): ``batch_size=None`` was asked for: each item is one
            sample (image, label) without a batch axis, as Keras' unbatched
            dataset yields them; ``len`` is the number of samples.
    """

    class_names = None
    file_paths = None
    store = None
    unbatched = False

    def __getitem__(self, i):
        result = super().__getitem__(i)
        if not self.unbatched:
            return result
        sample = tuple(part[0] for part in result)
        return sample[0] if len(sample) == 1 else sample

    def __repr__(self):
        inner = super().__repr__()
        inner = inner[inner.index("(") + 1 : -1]
        return f"FolderSequence({inner}, class_names={self.class_names}, store={str(self.store.path)!r})"


def image_dataset_from_directory(
    directory: str | os.PathLike,
    labels: str | list | None = "inferred",
    label_mode: str | None = "int",
    class_names: list[str] | None = None,
    color_mode: str = "rgb",
    batch_size: int | None = 32,
    image_size: tuple[int, int] | int = (256, 256),
    shuffle: bool = True,
    seed: int | None = None,
    validation_split: float | None = None,
    subset: str | None = None,
    interpolation: str = "bilinear",
    follow_links: bool = False,
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
    data_format: str | None = None,
    format: str | None = None,
    verbose: bool = True,
    *,
    crop: RandomResizedCrop | Resize | None = None,
    flip: RandomFlip | str | None = None,
    normalize: Normalize | Rescale | None = None,
    cutout: Cutout | RandomErasing | None = None,
    mix: MixUp | CutMix | None = None,
    augment: object = None,
    dtype: str = "float32",
    antialias: bool = False,
    drop_remainder: bool = False,
    shard: tuple[int, int] | str | None = None,
    shard_remainder: str = "drop",
    exif_transpose: bool = True,
    max_side: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    strict: bool = False,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
) -> FolderSequence | tuple[FolderSequence, FolderSequence]:
    """Keras' ``image_dataset_from_directory``, decoded once and augmented from the original photos.

    Takes every argument of ``keras.utils.image_dataset_from_directory``
    (Keras 3.15) with the same meaning, defaults and errors, and serves the
    same files, labels, class names and split. It returns a
    ``FolderSequence`` (a ``keras.utils.PyDataset`` that ``model.fit``
    takes on every backend) with ``class_names`` and ``file_paths``, or a
    tuple ``(training, validation)`` for ``subset="both"``; the validation
    one is deterministic (no shuffle, no augmentation: the evaluation form
    of ``crop``).

    The first call decodes every listed photo once into a store on disk
    (see ``fastseq.photos.store``); later calls on the same folder, with
    any ``image_size``, crop, split or seed, decode nothing. With
    ``shuffle=False`` the batches come in Keras' order. With
    ``shuffle=True`` the listing is shuffled as Keras shuffles it (so the
    split is Keras' split) and each epoch is fastseq's exactly-once order,
    a pure function of ``(seed, epoch)``.

    Pixels: by default float32 0..255, each photo resized whole to
    ``image_size`` like ``tf.image.resize`` (half-pixel centres, no
    antialias), or with ``crop_to_aspect_ratio``/``pad_to_aspect_ratio`` as
    Keras does them. The one deliberate difference: a photo with an EXIF
    orientation tag comes out upright (``exif_transpose=False`` for Keras'
    raw pixels).

    Args:
        directory (str | os.PathLike): the folder; with ``labels="inferred"``
            one subfolder per class.
        labels (str | list | None): ``"inferred"`` (from the subfolders),
            None (images only) or one integer label per file, in the sorted
            order of the file paths (Keras').
        label_mode (str | None): ``"int"`` (int32), ``"categorical"``
            (float32 one-hot), ``"binary"`` (float32 ``(n, 1)``, two classes)
            or None (images only).
        class_names (list[str] | None): with inferred labels, the subfolders
            to use, in this order.
        color_mode (str): ``"grayscale"``, ``"rgb"`` or ``"rgba"`` (1, 3, 4 channels).
        batch_size (int | None): samples per batch; None serves single
            samples without a batch axis, as Keras does (for iterating, not
            for ``fit``).
        image_size (tuple[int, int] | int): ``(height, width)`` of the output.
        shuffle (bool): shuffle the listing as Keras does, and each epoch.
        seed (int | None): the shuffle and augmentation seed; None draws one.
        validation_split (float | None): fraction of the files kept for validation.
        subset (str | None): ``"training"``, ``"validation"`` or ``"both"``.
        interpolation (str): one of Keras' eight (``fastseq.augment.INTERPOLATIONS``).
        follow_links (bool): walk into linked folders.
        crop_to_aspect_ratio (bool): resize the largest centred box of the
            output's aspect ratio (Keras' ``smart_resize``).
        pad_to_aspect_ratio (bool): resize the whole photo into a zero
            image of ``image_size``, keeping its aspect ratio.
        data_format (str | None): ``"channels_last"``, ``"channels_first"``
            or None (``keras.config.image_data_format()``).
        format (str | None): Keras' ``"tf"`` or ``"grain"``; accepted and
            ignored (fastseq serves its own ``PyDataset``).
        verbose (bool): print what was found, the split and the store build.
        crop (RandomResizedCrop | Resize | None): None resizes the whole
            photo (Keras); ``fastseq.RandomResizedCrop(*image_size, ...)``
            draws a random box of each original photo, resampled once;
            ``fastseq.Resize(h, w, crop=image_size)`` resizes then keeps the
            centre. Its output size must be ``image_size``.
        flip (RandomFlip | str | None): as ``fastseq.ArraySequence``.
        normalize (Normalize | Rescale | None): as ``fastseq.ArraySequence``.
        cutout (Cutout | RandomErasing | None): as ``fastseq.ArraySequence``.
        mix (MixUp | CutMix | None): as ``fastseq.ArraySequence``; needs
            ``label_mode="categorical"`` (or ``"binary"``).
        augment (list | None): as ``fastseq.ArraySequence``: Keras' augmentation layers as fastseq
            ops, in order, after the crop and flip; the crop of each original
            photo and the geometric ops are one resample.
        dtype (str): ``"float32"`` (Keras'), ``"float16"``, ``"bfloat16"`` or ``"uint8"``.
        antialias (bool): low-pass filter when shrinking (not Keras' default).
        drop_remainder (bool): drop the short last training batch.
        shard (tuple[int, int] | str | None): as ``fastseq.ArraySequence``.
        shard_remainder (str): as ``fastseq.ArraySequence``.
        exif_transpose (bool): turn photos upright by their EXIF orientation
            tag (False: Keras' raw pixels).
        max_side (int | None): cap the stored long side (None keeps the originals).
        cache_dir (str | os.PathLike | None): where the store goes (default
            ``$FASTSEQ_CACHE_DIR``, ``$XDG_CACHE_HOME/fastseq`` or ``~/.cache/fastseq``).
        strict (bool): a file that cannot be decoded is an error naming it
            (default: a warning naming it, and the file is left out).
        workers (int): ``PyDataset`` worker threads or processes.
        use_multiprocessing (bool): ``PyDataset``'s own.
        max_queue_size (int): ``PyDataset``'s own.

    Returns:
        FolderSequence | tuple[FolderSequence, FolderSequence]: the sequence,
        or ``(training, validation)`` for ``subset="both"``.

    Raises:
        ValueError, TypeError, FileNotFoundError: Keras' errors for Keras'
            arguments, fastseq's for its own; all before anything is decoded.
    """
    from keras import config

    from fastseq.photos import store as photo_store

    # Keras' order of checks: labels, label_mode, color_mode, image_size, interpolation, format, split.
    listing.check_label_args(labels, label_mode, class_names)
    num_channels = listing.color_mode_channels(color_mode)
    image_size = listing.image_size_arg(image_size)
    interpolation = _interpolation_arg(interpolation)
    if format not in (None, "tf", "grain"):
        raise ValueError(f'`format` should be either "tf" or "grain". Received: format={format!r}')
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be set to `True`.")
    listing.check_validation_split_arg(validation_split, subset, shuffle, seed)
    if data_format is None:
        data_format = config.image_data_format()
    if data_format not in options.DATA_FORMATS:
        raise ValueError(
            f"The `data_format` argument must be one of {{'channels_first', 'channels_last'}}. "
            f"Received: data_format={data_format!r}"
        )
    unbatched = batch_size is None
    batch = 1 if unbatched else options.int_arg("batch_size", batch_size, minimum=1)
    crop = _crop_arg(crop, image_size, interpolation, antialias, crop_to_aspect_ratio, pad_to_aspect_ratio)
    # fastseq's own arguments are checked before the (possibly long) decode, too.
    flip = options.flip_arg(flip)
    normalize = options.normalize_arg(normalize, num_channels)
    if dtype not in options.DTYPES:
        raise ValueError(f"dtype must be one of {options.DTYPES}, got {dtype!r}.")
    if dtype == "uint8" and normalize is not None:
        raise ValueError(
            f"dtype='uint8' returns raw pixels, but normalize={normalize!r} was given; drop normalize (and "
            "normalise on the device with fastseq.DeviceNormalize) or choose a float dtype."
        )
    options.cutout_arg(cutout, dtype)
    options.augment_arg(augment, crop, num_channels, ragged=True)
    if mix is not None and label_mode not in ("categorical", "binary"):
        raise ValueError(
            f"mix={mix!r} mixes labels as well as images, so they must be one-hot or binary floats: pass "
            f"label_mode='categorical' (or 'binary'), got label_mode={label_mode!r}."
        )

    found = listing.list_folder(
        directory,
        labels=labels,
        label_mode=label_mode,
        class_names=class_names,
        color_mode=color_mode,
        shuffle=shuffle,
        seed=seed,
        validation_split=validation_split,
        subset=subset,
        follow_links=follow_links,
        verbose=verbose,
    )
    store = photo_store.build_or_open(
        directory,
        found.files,
        color_mode=color_mode,
        exif_transpose=exif_transpose,
        max_side=max_side,
        cache_dir=cache_dir,
        strict=strict,
        verbose=verbose,
    )
    position = {os.path.abspath(p): i for i, p in enumerate(store.files)}

    pydataset = dict(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
    made, training = [], None
    for split in found.splits:
        rows = np.array([position.get(os.path.abspath(p), -1) for p in split.file_paths], np.int64)
        kept = rows >= 0  # files the store could not decode (warned about there) are left out
        paths = [p for p, k in zip(split.file_paths, kept) if k]
        if not paths:
            raise ValueError(
                f"none of the {len(split.file_paths)} files of {os.fspath(directory)!r}"
                + (f" ({split.subset})" if split.subset else "")
                + " could be decoded; see the warnings above for each file."
            )
        y, num_classes = listing.label_targets(
            None if split.labels is None else split.labels[kept], found.label_mode,
            None if found.class_names is None else len(found.class_names),
        )
        images = store.images.take(rows[kept])
        # The path every sequence takes: options (checked once) -> plan -> assembled. The validation half of
        # subset="both" is the training half's evaluation form, as ArraySequence.for_evaluation makes it.
        if split.subset == "validation" and subset == "both":
            o = options.for_evaluation(training, images, y)
        else:
            o = options.check(
                images, y, batch_size=batch, shuffle=bool(shuffle), seed=found.seed, drop_remainder=drop_remainder,
                crop=crop, flip=flip, normalize=normalize, dtype=dtype, data_format=data_format,
                num_classes=num_classes, sample_weight=None, shard=shard, shard_remainder=shard_remainder,
                cutout=cutout, mix=mix, augment=augment,
            )
            training = o
        seq = FolderSequence._from_options(o, **pydataset)
        seq.class_names = found.class_names
        seq.file_paths = paths
        seq.store = store
        seq.unbatched = unbatched
        made.append(seq)
    return tuple(made) if subset == "both" else made[0]


def _interpolation_arg(interpolation):
    name = interpolation.lower() if isinstance(interpolation, str) else interpolation
    if name not in INTERPOLATIONS:
        raise ValueError(
            f"Argument `interpolation` should be one of {INTERPOLATIONS}. Received: interpolation={interpolation!r}"
        )
    return name


def _crop_arg(crop, image_size, interpolation, antialias, crop_to_aspect_ratio, pad_to_aspect_ratio):
    """The resample spec for every batch: Keras' whole-photo resize, or the user's crop at ``image_size``."""
    if crop is None:
        return Resize(
            *image_size,
            interpolation=interpolation,
            antialias=bool(antialias),
            crop_to_aspect_ratio=bool(crop_to_aspect_ratio),
            pad_to_aspect_ratio=bool(pad_to_aspect_ratio),
        )
    if isinstance(crop, (RandomCrop, CenterCrop)):
        raise TypeError(
            f"crop={crop!r}: photos of a folder differ in size, so a fixed window does not fit them all; pass "
            f"crop=fastseq.RandomResizedCrop({image_size[0]}, {image_size[1]}) (a random box of each photo, resized "
            f"to image_size) or fastseq.Resize(h, w, crop={image_size}) (resize, then a centre crop)."
        )
    if not isinstance(crop, (RandomResizedCrop, Resize)):
        raise TypeError(
            f"crop must be None, fastseq.RandomResizedCrop(height, width, ...) or fastseq.Resize(height, width, "
            f"crop=...), got {options.describe(crop)}."
        )
    out = (crop.height, crop.width) if isinstance(crop, RandomResizedCrop) else crop.output_size
    if tuple(out) != tuple(image_size):
        raise ValueError(
            f"crop={crop!r} makes {out[0]}x{out[1]} images but image_size={image_size}: the crop's output size "
            f"must be image_size (e.g. crop=fastseq.RandomResizedCrop({image_size[0]}, {image_size[1]}))."
        )
    if isinstance(crop, RandomResizedCrop) and (crop_to_aspect_ratio or pad_to_aspect_ratio):
        raise ValueError(
            f"crop={crop!r} draws its own box on each photo, so crop_to_aspect_ratio/pad_to_aspect_ratio (which "
            "choose the box of the plain resize) do not apply; drop them or drop the crop."
        )
    changes = dict(interpolation=interpolation, antialias=bool(antialias))
    if isinstance(crop, Resize):
        changes.update(
            crop_to_aspect_ratio=bool(crop_to_aspect_ratio or crop.crop_to_aspect_ratio),
            pad_to_aspect_ratio=bool(pad_to_aspect_ratio or crop.pad_to_aspect_ratio),
        )
    return dataclasses.replace(crop, **changes)
