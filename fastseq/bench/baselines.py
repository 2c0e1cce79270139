"""The loaders fastseq is measured against, written the way users write them.

Three comparison points, each a fair, correct implementation of the same job
(pad, random crop, random horizontal flip, per-channel normalise, float32
NHWC out):

- :class:`NumpySequence`: the hand-written ``keras.utils.PyDataset`` of the
  seed document, looping over samples in Python (``np.pad``, slice, ``[:, ::-1]``,
  ``astype``, normalise). Its per-batch work is :func:`numpy_batch`, which the
  benchmarks call directly so both measure the same code.
- :func:`tf_data_pipeline`: the TensorFlow tutorial pipeline
  (``from_tensor_slices -> shuffle -> map(...) -> batch -> prefetch``).
- :func:`keras_layers_pipeline`: Keras 3 preprocessing layers applied to a
  whole uint8 batch.

They double as behavioural references: ``tests/test_baselines.py`` proves they
are correct, so a speed ratio against them compares like with like.

Importing this module imports neither Keras nor TensorFlow: they are imported
inside the functions, and ``NumpySequence`` (a ``PyDataset`` subclass) is built
on first access through the module's ``__getattr__``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "KERAS_RANDOM_CROP_NOTE",
    "NumpySequence",
    "keras_layers_pipeline",
    "grain_pipeline",
    "numpy_batch",
    "tf_data_pipeline",
]

KERAS_RANDOM_CROP_NOTE = "RandomCrop uses one offset for the whole batch"


def _stats(mean, std, channels):
    """Return float32 ``(mean, std)`` broadcastable over ``channels``, or ``(None, None)``."""
    if mean is None and std is None:
        return None, None
    mean = np.zeros(1) if mean is None else np.atleast_1d(np.asarray(mean, dtype=np.float64))
    std = np.ones(1) if std is None else np.atleast_1d(np.asarray(std, dtype=np.float64))
    for name, v in (("mean", mean), ("std", std)):
        if v.ndim != 1 or v.size not in (1, channels):
            raise ValueError(f"{name} must be a number or {channels} per-channel values, got {v.tolist()!r}.")
    if np.any(std <= 0):
        raise ValueError(f"std must be > 0 for every channel, got {std.tolist()!r}.")
    return mean.astype(np.float32), std.astype(np.float32)


def _check_images(x):
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(
            f"x must be uint8 images of shape (N, H, W) or (N, H, W, C), got dtype {x.dtype} shape {x.shape}."
        )
    return x


def _check_crop(crop, padding, image_size):
    ch, cw = crop
    H, W = image_size
    if ch > H + 2 * padding or cw > W + 2 * padding:
        raise ValueError(
            f"crop: a {ch}x{cw} crop does not fit a {H}x{W} image padded by {padding}; "
            f"use a crop of at most {H + 2 * padding}x{W + 2 * padding}."
        )
    return int(ch), int(cw)


def numpy_batch(x, indices, rng, *, crop=(32, 32), padding=4, flip=True, mean=None, std=None):
    """Augment one batch sample by sample in Python: the hand-written baseline.

    For each index: ``np.pad`` (constant zeros) by ``padding``, crop a
    ``crop`` window at an offset drawn from ``rng``, flip left-right with
    probability 0.5 (``[:, ::-1]``), ``astype(float32)``, then
    ``(v - mean[c]) / std[c]``.

    Args:
        x: uint8 images ``(N, H, W)`` or ``(N, H, W, C)``.
        indices: the samples of this batch, any integer sequence.
        rng: a ``np.random.Generator``; one offset pair and one flip draw per sample.
        crop: ``(height, width)`` of the output window.
        padding: zero padding on every side before cropping.
        flip: whether to flip left-right with probability 0.5.
        mean, std: per-channel statistics in pixel units, or ``None`` for no
            normalisation (then the output is the pixel value as float32).

    Returns:
        float32 ``(len(indices), height, width, C)`` (``C = 1`` for grayscale).
    """
    x = _check_images(x)
    channels = 1 if x.ndim == 3 else x.shape[3]
    ch, cw = _check_crop(crop, padding, x.shape[1:3])
    mean32, std32 = _stats(mean, std, channels)
    out = np.empty((len(indices), ch, cw, channels), dtype=np.float32)
    for j, k in enumerate(indices):
        out[j] = _augment_one(x[k], rng, (ch, cw), padding, flip, mean32, std32)
    return out


def _augment_one(img, rng, crop, p, flip, mean32, std32):
    """One sample of :func:`numpy_batch`: pad, crop at a drawn offset, maybe flip, float32, normalise."""
    ch, cw = crop
    if img.ndim == 2:
        img = img[:, :, None]
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="constant")
    top = rng.integers(0, padded.shape[0] - ch + 1)
    left = rng.integers(0, padded.shape[1] - cw + 1)
    patch = padded[top : top + ch, left : left + cw]
    if flip and rng.random() < 0.5:
        patch = patch[:, ::-1]
    patch = patch.astype(np.float32)
    if mean32 is not None:
        patch = (patch - mean32) / std32
    return patch


def _make_numpy_sequence_class():
    import keras

    class NumpySequence(keras.utils.PyDataset):
        """Hand-written ``PyDataset``: per-sample NumPy augmentation in ``__getitem__``.

        Written as the seed document's shuffling Sequence would be: an index
        list reshuffled in ``on_epoch_end``; batch ``i`` covers positions
        ``[i * batch_size, min((i + 1) * batch_size, N))`` so the last batch may
        be short and every sample is seen exactly once per epoch. Each batch is
        augmented by :func:`numpy_batch` with a generator seeded from
        ``(seed, epoch, i)``, so worker threads never share a generator and a
        batch's pixels do not depend on which worker made it.

        Args:
            x: uint8 images ``(N, H, W)`` or ``(N, H, W, C)``.
            y: labels ``(N, ...)`` or ``None`` (then ``seq[i]`` is the images alone).
            batch_size: samples per batch.
            shuffle: reshuffle the index list every epoch (including the first).
            seed: seeds the shuffle and the augmentation.
            crop, padding, flip, mean, std: as in :func:`numpy_batch`.
            workers, use_multiprocessing, max_queue_size: passed to ``PyDataset``.
        """

        def __init__(
            self,
            x,
            y=None,
            *,
            batch_size=32,
            shuffle=True,
            seed=0,
            crop=(32, 32),
            padding=4,
            flip=True,
            mean=None,
            std=None,
            workers=1,
            use_multiprocessing=False,
            max_queue_size=10,
        ):
            super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
            self.x = _check_images(x)
            self.y = None if y is None else np.asarray(y)
            if self.y is not None and len(self.y) != len(self.x):
                raise ValueError(f"y must have one label per image: len(x)={len(self.x)}, len(y)={len(self.y)}.")
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
            self.batch_size = int(batch_size)
            self.shuffle = shuffle
            self.seed = seed
            self.crop = _check_crop(crop, padding, self.x.shape[1:3])
            self.padding = padding
            self.flip = flip
            self.mean, self.std = mean, std
            self.epoch = 0
            self.indices = np.arange(len(self.x))
            self._shuffle()

        def _shuffle(self):
            if self.shuffle:
                self.indices = np.random.default_rng([self.seed, self.epoch, 0]).permutation(len(self.x))

        def __len__(self):
            return -(-len(self.x) // self.batch_size)

        def __getitem__(self, i):
            if not 0 <= i < len(self):
                raise IndexError(f"batch index {i} out of range for a sequence of {len(self)} batches.")
            idx = self.indices[i * self.batch_size : (i + 1) * self.batch_size]
            rng = np.random.default_rng([self.seed, self.epoch, 1, i])
            xb = numpy_batch(
                self.x, idx, rng, crop=self.crop, padding=self.padding, flip=self.flip, mean=self.mean, std=self.std
            )
            return xb if self.y is None else (xb, self.y[idx])

        def on_epoch_end(self):
            self.epoch += 1
            self._shuffle()

    NumpySequence.__module__ = __name__
    NumpySequence.__qualname__ = "NumpySequence"
    return NumpySequence


def __getattr__(name):
    # NumpySequence subclasses keras.utils.PyDataset, so it can only be
    # defined once Keras is imported; building it on first access keeps
    # `import fastseq.bench.baselines` (and `python -m fastseq --help`) Keras-free.
    if name == "NumpySequence":
        cls = _make_numpy_sequence_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tf_data_pipeline(
    x, y=None, *, batch_size=32, seed=0, crop=(32, 32), padding=4, flip=True, mean=None, std=None, shuffle=True
):
    """The TensorFlow-tutorial input pipeline for the same job.

    ``from_tensor_slices -> shuffle(len(x)) -> map(pad_to_bounding_box,
    random_crop, random_flip_left_right, cast, normalise;
    num_parallel_calls=AUTOTUNE) -> batch -> prefetch(AUTOTUNE)``. Every sample
    gets its own crop offset and flip. The shuffle buffer holds the whole
    data set, so each epoch is a true permutation (exactly once per epoch).
    One pass over the returned dataset is one epoch; call ``.repeat()`` for
    more.

    Args:
        x: uint8 images ``(N, H, W)`` (a channel axis is added) or ``(N, H, W, C)``.
        y: labels, or ``None`` to yield images alone.
        batch_size, seed, crop, padding, flip, mean, std, shuffle: as in
            :class:`NumpySequence`.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 (b, h, w, C), labels)`` or of images.
    """
    import tensorflow as tf

    x = _check_images(x)
    if x.ndim == 3:
        x = x[..., None]
    N, H, W, C = x.shape
    ch, cw = _check_crop(crop, padding, (H, W))
    mean32, std32 = _stats(mean, std, C)
    p = padding

    def augment(img):
        img = tf.image.pad_to_bounding_box(img, p, p, H + 2 * p, W + 2 * p)
        img = tf.image.random_crop(img, (ch, cw, C), seed=seed)
        if flip:
            img = tf.image.random_flip_left_right(img, seed=seed)
        img = tf.cast(img, tf.float32)
        if mean32 is not None:
            img = (img - mean32) / std32
        return img

    if y is None:
        ds = tf.data.Dataset.from_tensor_slices(x)
        fn = augment
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y)))

        def fn(img, label):
            return augment(img), label

    if shuffle:
        ds = ds.shuffle(N, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def grain_pipeline(
    x, y=None, *, batch_size=32, seed=0, crop=(32, 32), padding=4, flip=True, mean=None, std=None, shuffle=True,
    repeat=False, read_threads=None,
):
    """The same job written the way Google Grain's documentation writes it.

    ``MapDataset.source(records) -> shuffle(seed) -> random_map(pad + crop +
    flip + normalise per record, seed) -> batch -> to_iter_dataset(ReadOptions(
    num_threads=...))``: a deterministic, per-record pipeline whose random
    draws come from Grain's own per-record generators, read by a pool of
    threads. The per-record work is :func:`numpy_batch`'s. Keras 3 accepts
    the result in ``fit`` directly. One pass is one epoch.

    Args:
        x, y, batch_size, seed, crop, padding, flip, mean, std, shuffle: as in :func:`tf_data_pipeline`.
        repeat: epoch after epoch without end (each reshuffled), for ``fit(steps_per_epoch=...)``.
        read_threads: Grain's read threads (default: one per CPU).

    Returns:
        A ``grain.IterDataset`` of ``(float32 (b, h, w, C), labels)`` or of images.
    """
    import os

    import grain

    x = _check_images(x)
    channels = 1 if x.ndim == 3 else x.shape[3]
    ch, cw = _check_crop(crop, padding, x.shape[1:3])
    mean32, std32 = _stats(mean, std, channels)
    labels = None if y is None else np.asarray(y)

    class Records:
        """Random access to one (image, label) record: Grain's data-source protocol."""

        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i] if labels is None else (x[i], labels[i])

    class PadCropFlipNormalize(grain.transforms.RandomMap):
        def random_map(self, record, rng):
            if labels is None:
                return _augment_one(record, rng, (ch, cw), padding, flip, mean32, std32)
            img, label = record
            return _augment_one(img, rng, (ch, cw), padding, flip, mean32, std32), label

    ds = grain.MapDataset.source(Records())
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if repeat:
        ds = ds.repeat()
    ds = ds.random_map(PadCropFlipNormalize(), seed=seed).batch(batch_size)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads or os.cpu_count() or 1))


def keras_layers_pipeline(*, crop=(32, 32), padding=4, mean, std, seed=0, graph=True):
    """Keras 3 preprocessing layers applied to a whole uint8 batch.

    ``ZeroPadding2D(padding) -> RandomCrop(h, w, seed) ->
    RandomFlip("horizontal", seed) -> Normalization(mean, variance=std**2)``,
    called with ``training=True``.

    Unlike the other loaders, this is not the same augmentation per sample:
    in Keras 3.15 ``RandomCrop.get_random_transformation`` draws ``h_start``
    and ``w_start`` with ``random.uniform(())``, a scalar, and slices the whole
    batch with it, so **RandomCrop uses one offset for the whole batch**
    (its docstring says so too). ``RandomFlip`` draws one flip per sample.

    Args:
        crop: ``(height, width)`` of the output.
        padding: zero padding on every side before cropping.
        mean, std: per-channel statistics in pixel units.
        seed: seeds RandomCrop and RandomFlip.
        graph: wrap the layers in ``tf.function`` (as they run inside
            ``model.fit`` or a ``tf.data`` map); ``False`` runs them eagerly.

    Returns:
        ``f(uint8 batch (b, H, W, C) or (b, H, W)) -> float32 tensor (b, h, w, C)``.
    """
    import keras
    import tensorflow as tf

    ch, cw = crop
    mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    std = np.atleast_1d(np.asarray(std, dtype=np.float64))
    layers = [
        keras.layers.ZeroPadding2D(padding),
        keras.layers.RandomCrop(ch, cw, seed=seed),
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.Normalization(mean=mean, variance=std**2),
    ]

    def apply(batch):
        v = tf.cast(batch, tf.float32)
        if v.shape.rank == 3:
            v = v[..., None]
        for layer in layers:
            v = layer(v, training=True) if isinstance(layer, (keras.layers.RandomCrop, keras.layers.RandomFlip)) else layer(v)
        return v

    f = tf.function(apply) if graph else apply
    f.layers = layers
    f.note = KERAS_RANDOM_CROP_NOTE
    return f
