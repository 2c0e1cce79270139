"""Photo folders -> the files, labels and splits Keras would use. NumPy and the standard library only.

This module mirrors, line for line where it matters, Keras 3.15's
``keras/src/utils/dataset_utils.py`` (``index_directory``,
``iter_valid_files``, ``index_subdirectory``,
``get_training_or_validation_split``, ``check_validation_split_arg``) and
the argument checks at the top of ``image_dataset_from_directory``, so that
``fastseq.image_dataset_from_directory`` serves the very files, labels,
class names and training/validation split that
``keras.utils.image_dataset_from_directory`` does for the same arguments:

* a sorted ``os.walk`` of each class folder (``follow_links`` as Keras), the
  extensions ``.bmp .gif .jpeg .jpg .png`` in any case, nested folders
  included; class folders are the sorted non-hidden subfolders (hidden
  files and nested hidden folders are listed, as Keras lists them);
* with ``shuffle=True`` the paths and labels are shuffled by
  ``numpy.random.RandomState(seed).shuffle`` (the same permutation Keras
  applies), with ``seed=None`` drawn by ``numpy.random.randint(1e6)``;
* ``validation_split=v`` keeps the last ``int(v * n)`` files (of the
  shuffled list) for validation and the rest for training.

Where Keras gives a confusing error or silently wrong data, this module
raises an error that says what happened and what to do:

* ``int(validation_split * n) == 0`` (Keras trains on nothing, or
  "validates" on every file);
* duplicated ``class_names`` (Keras lists those files twice);
* explicit ``labels`` that are not integers, and ``labels`` outside
  ``0..len(class_names)-1`` under ``label_mode="categorical"`` (Keras
  one-hot encodes them as all-zero rows);
* a missing ``directory`` (Keras raises for ``labels="inferred"`` only).

A class folder without images is not an error in Keras (its class keeps its
index; no sample has it); it is not here either, but it gets a warning.

Nothing here imports Keras: the Keras-facing function lives in
:mod:`fastseq.photos.folder_sequence`.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import warnings

import numpy as np

#: The extensions keras.utils.image_dataset_from_directory lists (any case).
ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
LABEL_MODES = ("int", "categorical", "binary", None)
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
SUBSETS = ("training", "validation", "both")


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclasses.dataclass(frozen=True)
class Split:
    """One subset of a listed folder, in the order Keras serves it with ``shuffle=False``.

    Attributes:
        subset: ``"training"``, ``"validation"`` or None (every file).
        file_paths: the paths, as strings built the way Keras builds them.
        labels: int labels ``(n,)`` (int32 when inferred, the given values
            when ``labels`` was a list), or None.
    """

    subset: str | None
    file_paths: list
    labels: np.ndarray | None

    def __len__(self):
        return len(self.file_paths)


@dataclasses.dataclass(frozen=True)
class Listing:
    """What ``list_folder`` found.

    Attributes:
        files: every listed file, in Keras' unshuffled (sorted walk) order:
            the files a store must hold, whatever the seed or split.
        splits: one ``Split`` (``subset`` None, ``"training"`` or
            ``"validation"``) or two (training, validation) for ``subset="both"``.
        class_names: Keras' class names, or None when there are no labels.
        label_mode: ``"int"``, ``"categorical"``, ``"binary"`` or None.
        num_channels: 1, 3 or 4 (from ``color_mode``).
        seed: the shuffle seed used (drawn when None was given, as Keras does).
    """

    files: list
    splits: tuple
    class_names: list | None
    label_mode: str | None
    num_channels: int
    seed: int


def check_label_args(labels, label_mode, class_names):
    """Keras' checks of ``labels``, ``label_mode`` and ``class_names``; returns ``(labels, label_mode)``.

    ``labels`` comes back as "inferred", None, or a 1-D integer array; both
    become None when either is None (Keras: no labels at all).
    """
    if not (isinstance(labels, str) and labels == "inferred") and labels is not None:
        if isinstance(labels, str) or not isinstance(labels, (list, tuple, np.ndarray)):
            raise ValueError(
                "`labels` must be 'inferred' (one subfolder per class), None (images only) or a list/tuple of "
                "integer labels, one per image file in the sorted order of the file paths (os.walk order). "
                f"Received: labels={_describe(labels)}"
            )
        if class_names:
            raise ValueError(
                'You can only pass `class_names` if `labels="inferred"` (they name the subfolders). '
                f"Received: labels={_describe(labels)}, and class_names={class_names!r}"
            )
        array = np.asarray(labels)
        if array.ndim != 1 or (array.size and (array.dtype.kind not in "iub" or array.dtype == bool)):
            raise ValueError(
                "`labels` given as a list must hold one integer class index per image file, "
                f"got {_describe(array if array.ndim else labels)}; map names to integers first, e.g. "
                "classes, labels = numpy.unique(names, return_inverse=True)."
            )
        labels = array.astype(np.int64) if array.size else np.zeros(0, np.int64)
    if label_mode not in LABEL_MODES:
        raise ValueError(
            '`label_mode` must be one of "int" (integer labels), "categorical" (one-hot), "binary" (0/1 floats, '
            f"two classes) or None (no labels). Received: label_mode={label_mode!r}"
        )
    if labels is None or label_mode is None:
        return None, None
    return labels, label_mode


def color_mode_channels(color_mode):
    """1, 3 or 4 for ``"grayscale"``, ``"rgb"``, ``"rgba"``."""
    try:
        return COLOR_MODES[color_mode]
    except (KeyError, TypeError):
        raise ValueError(
            f'`color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. Received: color_mode={color_mode!r}'
        ) from None


def image_size_arg(image_size):
    """``image_size`` as a ``(height, width)`` pair of positive ints (an int means a square)."""
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2:
        raise ValueError(
            "Invalid `image_size` value. Expected a tuple of 2 integers (height, width), e.g. (256, 256). "
            f"Received: image_size={_describe(image_size)}"
        )
    for v in image_size:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(
                f"Invalid `image_size` value: height and width must be positive integers. "
                f"Received: image_size={image_size!r}"
            )
    return (int(image_size[0]), int(image_size[1]))


def check_validation_split_arg(validation_split, subset, shuffle, seed):
    """Keras' checks of ``validation_split``, ``subset``, ``shuffle`` and ``seed``, worded for a user."""
    if validation_split is not None and (
        isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real)
    ):
        raise ValueError(
            f"`validation_split` must be a number between 0 and 1 (the fraction of files kept for validation), "
            f"received: {_describe(validation_split)}"
        )
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(
            "`validation_split` must be between 0 and 1 (the fraction of files kept for validation, e.g. 0.2), "
            f"received: {validation_split}"
        )
    if subset not in ("training", "validation", "both", None):
        raise ValueError(
            f'`subset` must be either "training", "validation" or "both", received: {subset!r}'
        )
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError(
            "If `subset` is set, `validation_split` must be set, and inversely: pass both, e.g. "
            f'validation_split=0.2, subset="training" (received validation_split={validation_split!r}, '
            f"subset={subset!r})."
        )
    if validation_split and shuffle and seed is None:
        raise ValueError(
            "If using `validation_split` and shuffling the data, you must provide a `seed` argument, to make sure "
            "that there is no overlap between the training and validation subset: pass the same seed=... to the "
            'training and the validation call (or use subset="both").'
        )


def iter_valid_files(directory, follow_links, formats):
    """``(root, file name)`` of every file under ``directory`` with an allowed extension, Keras' order."""
    walk = os.walk(directory, followlinks=follow_links) if follow_links else os.walk(directory)
    for root, _, files in sorted(walk, key=lambda x: x[0]):
        for fname in sorted(files):
            if fname.lower().endswith(formats):
                yield root, fname


def index_subdirectory(directory, class_indices, follow_links, formats):
    """Keras' ``index_subdirectory``: relative paths (``class/...``) and the class index of each."""
    dirname = os.path.basename(directory)
    labels = []
    filenames = []
    for root, fname in iter_valid_files(directory, follow_links, formats):
        labels.append(class_indices[dirname])
        absolute_path = os.path.join(root, fname)
        filenames.append(os.path.join(dirname, os.path.relpath(absolute_path, directory)))
    return filenames, labels


def index_directory(
    directory,
    labels,
    formats=ALLOWLIST_FORMATS,
    class_names=None,
    shuffle=True,
    seed=None,
    follow_links=False,
    verbose=True,
):
    """Keras' ``index_directory``: ``(file_paths, labels, class_names)``, shuffled by ``seed`` if ``shuffle``.

    Args:
        directory: the folder.
        labels: "inferred", None, or a 1-D integer array (one per file, in
            the unshuffled order).
        formats: allowed extensions (lower case, with the dot).
        class_names, shuffle, seed, follow_links, verbose: as Keras.

    Returns:
        ``(file_paths, labels, class_names)``: a list of str; an int32 array
        (inferred), the given labels (reordered like the paths) or None; a
        list of str or None.

    Raises:
        FileNotFoundError: ``directory`` does not exist or is not a folder.
        ValueError: ``class_names`` that are not subfolders (or repeated),
            ``class_names`` without inferred labels, or a ``labels`` list
            whose length is not the number of files found.
    """
    if not os.path.isdir(directory):
        what = "is not a folder" if os.path.exists(directory) else "does not exist"
        raise FileNotFoundError(
            f"directory {os.fspath(directory)!r} {what}: pass the folder that holds the images "
            "(one subfolder per class for labels='inferred')."
        )
    inferred = isinstance(labels, str) and labels == "inferred"
    if inferred:
        subdirs = []
        for subdir in sorted(os.listdir(directory)):
            if os.path.isdir(os.path.join(directory, subdir)):
                if not subdir.startswith("."):
                    if subdir.endswith("/"):
                        subdir = subdir[:-1]
                    subdirs.append(subdir)
        if class_names is not None:
            class_names = list(class_names)
            if not set(class_names).issubset(set(subdirs)):
                missing = [c for c in class_names if c not in set(subdirs)]
                raise ValueError(
                    "The `class_names` passed did not match the names of the subdirectories of the target "
                    f"directory: {missing} are not subfolders of {os.fspath(directory)!r}. "
                    f"Expected: {subdirs} (or a subset of it), but received: class_names={class_names}"
                )
            if len(set(class_names)) != len(class_names):
                repeated = sorted({c for c in class_names if class_names.count(c) > 1})
                raise ValueError(
                    f"`class_names` names {repeated} more than once; give each class folder once "
                    f"(received: class_names={class_names})."
                )
            subdirs = class_names  # keep the order given
    else:
        subdirs = [""]
        if class_names is not None:
            if labels is None:
                raise ValueError("When `labels=None` (no labels), argument `class_names` cannot be specified.")
            raise ValueError(
                "When argument `labels` is specified, argument `class_names` cannot be specified (the "
                "`class_names` will be the sorted list of labels)."
            )
    class_names = subdirs
    class_indices = dict(zip(class_names, range(len(class_names))))

    filenames = []
    labels_list = []
    for subdir in subdirs:
        partial_filenames, partial_labels = index_subdirectory(
            os.path.join(directory, subdir), class_indices, follow_links, formats
        )
        labels_list.append(partial_labels)
        filenames += partial_filenames

    if inferred:
        labels = np.zeros((len(filenames),), dtype="int32")
        i = 0
        for partial_labels in labels_list:
            labels[i : i + len(partial_labels)] = partial_labels
            i += len(partial_labels)
        empty = [name for name, part in zip(class_names, labels_list) if not part]
        if empty and filenames:
            warnings.warn(
                f"class folder(s) {empty} of {os.fspath(directory)!r} hold no image files "
                f"({', '.join(ALLOWLIST_FORMATS)}); as in Keras they keep their label index "
                f"({', '.join(str(class_indices[c]) for c in empty)}) but no sample has it.",
                UserWarning,
                stacklevel=3,
            )
    elif labels is None:
        class_names = None
    else:
        if len(labels) != len(filenames):
            raise ValueError(
                "Expected the lengths of `labels` to match the number of files in the target directory. "
                f"len(labels) is {len(labels)} while we found {len(filenames)} files in directory "
                f"{os.fspath(directory)!r} (extensions {', '.join(ALLOWLIST_FORMATS)}, any case, in subfolders "
                "too)."
            )
        class_names = [str(label) for label in sorted(set(labels.tolist()))]
    if verbose:
        if labels is None:
            print(f"Found {len(filenames)} files.")
        else:
            print(f"Found {len(filenames)} files belonging to {len(class_names)} classes.")
    file_paths = [os.path.join(directory, fname) for fname in filenames]

    if shuffle:
        if seed is None:
            seed = np.random.randint(1e6)
        file_paths, labels = shuffled(file_paths, labels, seed)
    return file_paths, labels, class_names


def shuffled(file_paths, labels, seed):
    """Keras' global shuffle: ``RandomState(seed).shuffle`` of the paths, and of the labels with a fresh one.

    Two generators of the same seed give the same permutation, applied here
    to both at once (a permutation of ``arange(n)`` equals Keras' in-place
    shuffle of its list: the same Fisher-Yates draws).
    """
    perm = np.arange(len(file_paths))
    np.random.RandomState(seed).shuffle(perm)
    return [file_paths[i] for i in perm], (None if labels is None else labels[perm])


def get_training_or_validation_split(samples, labels, validation_split, subset, verbose=True):
    """Keras' split: the last ``int(validation_split * len(samples))`` for validation, the rest for training.

    Raises:
        ValueError: the fraction gives no validation file (Keras would then
            train on nothing, or validate on every file), or an unknown subset.
    """
    if not validation_split:
        return samples, labels
    num_val_samples = int(validation_split * len(samples))
    if num_val_samples == 0 and len(samples):
        raise ValueError(
            f"validation_split={validation_split} of {len(samples)} files keeps int({validation_split} * "
            f"{len(samples)}) = 0 files for validation; use a fraction of at least {1 / len(samples):.3g} "
            "(or more files)."
        )
    if subset == "training":
        if verbose:
            print(f"Using {len(samples) - num_val_samples} files for training.")
        samples = samples[:-num_val_samples] if num_val_samples else samples[:0]
        if labels is not None:
            labels = labels[:-num_val_samples] if num_val_samples else labels[:0]
    elif subset == "validation":
        if verbose:
            print(f"Using {num_val_samples} files for validation.")
        samples = samples[-num_val_samples:] if num_val_samples else samples[:0]
        if labels is not None:
            labels = labels[-num_val_samples:] if num_val_samples else labels[:0]
    else:
        raise ValueError(f'`subset` must be either "training" or "validation", received: {subset!r}')
    return samples, labels


def _no_images_error(directory, labels, what="images"):
    """Keras' "No images found" error, saying where it looked and what to change."""
    directory = os.fspath(directory)
    hint = ""
    if isinstance(labels, str) and labels == "inferred":
        try:
            entries = os.listdir(directory)
        except OSError:
            entries = []
        classes = [e for e in entries if os.path.isdir(os.path.join(directory, e)) and not e.startswith(".")]
        top = [e for e in entries if e.lower().endswith(ALLOWLIST_FORMATS) and os.path.isfile(os.path.join(directory, e))]
        if not classes and top:
            hint = (
                f" labels='inferred' reads one subfolder per class, and {directory!r} has {len(top)} image(s) at its "
                "top level but no class subfolders: move them into one subfolder per class, or pass labels=None."
            )
        elif not classes:
            hint = f" {directory!r} has no class subfolders: put the images in one subfolder per class."
        else:
            hint = f" Its class subfolders {sorted(classes)[:10]} hold no image files."
    return ValueError(
        f"No {what} found in directory {directory}. Allowed formats: {ALLOWLIST_FORMATS} (any case).{hint}"
    )


def list_folder(
    directory,
    labels="inferred",
    label_mode="int",
    class_names=None,
    color_mode="rgb",
    shuffle=True,
    seed=None,
    validation_split=None,
    subset=None,
    follow_links=False,
    verbose=True,
):
    """Everything ``image_dataset_from_directory`` decides before reading a pixel, as Keras decides it.

    Checks the arguments in Keras' order, lists the folder, shuffles and
    splits it. ``image_size``, ``interpolation`` and the rest are checked by
    the caller.

    Returns:
        A ``Listing``.

    Raises:
        ValueError, FileNotFoundError: Keras' errors, worded to say what to do.
    """
    raw_labels = labels
    labels, label_mode = check_label_args(labels, label_mode, class_names)
    num_channels = color_mode_channels(color_mode)
    check_validation_split_arg(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = int(np.random.randint(1e6))
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"`seed` must be an integer in [0, 2**32) or None, received: {_describe(seed)}")
    seed = int(seed)
    files, labels, class_names = index_directory(
        directory, labels, class_names=class_names, shuffle=False, follow_links=follow_links, verbose=verbose
    )
    file_paths = files
    if shuffle:
        file_paths, labels = shuffled(files, labels, seed)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(
            'When passing `label_mode="binary"`, there must be exactly 2 class_names (two class subfolders, or '
            f"two distinct labels). Received: class_names={class_names}; use label_mode='categorical' or 'int' for "
            f"{len(class_names)} classes."
        )
    if label_mode == "categorical" and labels is not None and len(labels):
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= len(class_names):
            raise ValueError(
                f"label_mode='categorical' one-hot encodes labels 0..{len(class_names) - 1} (one per distinct "
                f"label), but `labels` holds {lo if lo < 0 else hi} (distinct labels {class_names}); Keras would "
                "encode it as an all-zero row. Renumber the labels 0..K-1, or use label_mode='int'."
            )
    if subset == "both":
        splits = tuple(
            Split(s, *get_training_or_validation_split(file_paths, labels, validation_split, s, verbose))
            for s in ("training", "validation")
        )
        for s in splits:
            if not s.file_paths:
                raise _no_images_error(directory, raw_labels, f"{s.subset} images")
    else:
        paths, split_labels = get_training_or_validation_split(file_paths, labels, validation_split, subset, verbose)
        if not paths:
            raise _no_images_error(directory, raw_labels)
        splits = (Split(subset, paths, split_labels),)
    return Listing(
        files=files,
        splits=splits,
        class_names=class_names,
        label_mode=label_mode,
        num_channels=num_channels,
        seed=seed,
    )


def label_targets(labels, label_mode, num_classes):
    """The targets Keras yields for ``labels``: ``(y, one_hot_classes)``.

    ``"int"``: int32 ``(n,)``. ``"binary"``: float32 ``(n, 1)``.
    ``"categorical"``: int32 ``(n,)`` and ``num_classes`` (the sequence
    one-hot encodes them as float32, so MixUp/CutMix can mix them). None:
    ``(None, None)``.
    """
    if label_mode is None or labels is None:
        return None, None
    labels = np.asarray(labels)
    if label_mode == "int":
        return labels.astype(np.int32), None
    if label_mode == "binary":
        return labels.astype(np.float32).reshape(-1, 1), None
    if label_mode == "categorical":
        return labels.astype(np.int32), int(num_classes)
    raise ValueError(f"unknown label_mode {label_mode!r}")
