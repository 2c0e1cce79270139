"""ArraySequence: the drop-in ``keras.utils.PyDataset`` over the fused kernel."""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from keras.utils import PyDataset

from fastseq import kernels
from fastseq._memmap import MemmapRef
from fastseq.kernels import _validate as check
from fastseq.sequence import keras_quirks, options, order, plans, targets
from fastseq.sequence._pool import BufferPool
from fastseq.sequence.position import Position, PositionAPI
from fastseq.sequence.readahead import ReadAhead

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from fastseq.augment import (
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
    )
    from fastseq.ragged import RaggedImages


class ArraySequence(PositionAPI, PyDataset):
    """Batches of uint8 images, augmented and normalised in one parallel Numba pass.

    A fast replacement for a hand-written ``keras.utils.Sequence``: pass it
    to ``model.fit``/``evaluate``/``predict`` like any ``PyDataset``.

    Guarantees:

    * Every sample appears exactly once per epoch; the last batch is short
      unless ``drop_remainder``. With ``shuffle=False`` the order is
      ``0..N-1``; otherwise it is a permutation that is a pure function of
      ``(seed, epoch)`` and differs between epochs.
    * A sample's crop corner and flips are a pure function of
      ``(seed, epoch, sample index)``: the same pixels whatever the batch
      size, worker threads or processes, or call order. So are its Cutout
      squares and its MixUp/CutMix partner, weight and box.
    * The only mutable state is the position: the epoch and which batches of
      its pass have been served. A pass ends when every one of its
      ``len(seq)`` batches has been served (requested, by any thread or by
      Keras' worker processes); the epoch then advances at the next request
      or at the next ``on_epoch_end``/``on_epoch_begin``. Hooks called
      mid-pass change nothing, so Keras' probes before training, its hook
      calls at every ``steps_per_epoch`` boundary and around validation,
      and the JAX and torch backends' ``begin/[0]/end`` probe cannot skip or split an
      epoch, and a hand-written loop that calls only ``on_epoch_end`` (or
      nothing) still gets a new epoch each pass. Two identical ``fit`` runs
      over fresh sequences see identical batches; ``set_epoch(e)`` jumps to
      the start of epoch ``e``; ``get_state``/``set_state`` save and restore
      the position mid-pass (see ``fastseq.BackupAndRestore``).
    * ``fit(shuffle=True)`` (Keras' default) additionally permutes the order
      in which batches are requested within an epoch. Each batch is still
      requested once, so every sample is still seen exactly once.
    * Full batches are written into reused arrays, but only into one that
      nothing else refers to: a batch (or a view of it) that a caller
      still holds is never overwritten. See ``fastseq/sequence/_pool.py``.

    ``x`` may be a NumPy array or a read-only ``np.memmap``
    (``np.load(path, mmap_mode="r")``), larger than RAM: only the samples of
    a batch are read, in sorted order, when the batch is requested.

    Sharding across processes (``shard=(index, count)`` or ``"auto"``): every
    process computes the same epoch permutation and serves every
    ``count``-th sample of it, from position ``index`` on, so the shards are
    disjoint and together serve each sample once per epoch, but the
    remainder (``shard_remainder``). Every shard has the same ``len``, so
    every process runs the same number of steps. ``batch_size`` is per
    process: the global batch is ``batch_size * count``, and batch ``k`` of
    all shards together holds the samples that batch ``k`` of one unsharded
    sequence with ``batch_size * count`` would. Pixels depend on the sample,
    not the shard: a sample gets the same crop and flips whichever process
    serves it. A memory-mapped ``x`` is read only for this shard's samples.

    Args:
        x (np.ndarray | np.memmap | fastseq.ragged.RaggedImages): uint8 images, (N, H, W, C) or (N, H, W)
            (grayscale; batches get a channel axis of 1); or a ``RaggedImages`` (images of different sizes,
            a photo folder's store), whose crop must be a ``Resize`` or a ``RandomResizedCrop``: each sample
            is resampled once from its original image.
        y (array-like | None): optional targets of length N, any dtype and trailing shape;
            gathered with the same indices.
        batch_size (int): samples per batch (>= 1).
        shuffle (bool): permute the samples each epoch.
        seed (int): non-negative integer; with the epoch, fixes order and augmentation.
        drop_remainder (bool): drop the short last batch.
        crop (RandomCrop | CenterCrop | RandomResizedCrop | Resize | None):
            ``RandomCrop(height, width, padding=..., pad_mode=...)``, ``CenterCrop(height, width)``, ``RandomResizedCrop(height,
            width, scale=..., ratio=...)``, ``Resize(height, width,
            crop=...)`` or None. The last two resample bilinearly (half-pixel
            centres) from images of any size.
        flip (RandomFlip | str | None): ``RandomFlip(mode)``, a mode string ("horizontal", "vertical",
            "horizontal_and_vertical"), or None. ``RandomFlip()`` flips
            left-right only (Keras' layer defaults to both axes).
        normalize (Normalize | Rescale | None): ``Normalize(mean, std)``, ``Rescale(scale, offset)`` or
            None (raw 0..255 values in ``dtype``).
        cutout (Cutout | RandomErasing | None): ``Cutout(size, count=1, fill=0.0)``, ``RandomErasing(probability,
            scale, ratio, fill=0.0)`` or None: erase squares (boxes) of each
            made sample (``fill`` in output units, after normalisation).
        mix (MixUp | CutMix | None): ``MixUp(alpha)``, ``CutMix(alpha)`` or None: blend each sample
            with a partner drawn from the whole data set, and its target
            alike; needs ``num_classes`` or float one-hot ``y``. The order of
            the passes: crop, flip, normalise, then mix, then cutout.
            Evaluation sequences (``for_evaluation``) never mix or cut out.
        augment (list | None): Keras' augmentation layers as fastseq ops
            (``fastseq.RandomRotation(0.1)``, ``fastseq.RandomBrightness(0.2)``, ...), one op or a
            list, applied in the order listed, as a ``keras.Sequential`` of
            the same layers would, after the crop and flip and before the
            normalisation: crop, flip, ``augment``, normalise, mix, cutout.
            The crop, the flips and consecutive geometric ops are one
            resample of the original image (``fastseq.augment.chain``); color
            ops run on each sample in cache. ``for_evaluation`` drops every
            random op.
        dtype (str): "float32", "float16", "bfloat16" or "uint8" (raw pixels, for
            normalisation on the device; no ``normalize`` then).
        data_format (str): "channels_last" (N, h, w, C) or "channels_first" (N, C, h, w).
        num_classes (int | None): turn integer labels into one-hot float32, like
            ``keras.utils.to_categorical``.
        sample_weight (array-like | None): optional per-sample weights of length N, gathered like y.
        shard (tuple[int, int] | str | None): None (the whole dataset), ``(index, count)`` (this process
            serves shard ``index`` of ``count``) or ``"auto"``: the data
            shard of the active ``keras.distribution`` (``data_shard_id``
            and the number of processes, for ``DataParallel`` the process
            index and count), else ``(jax.process_index(),
            jax.process_count())`` on the JAX backend, else ``(0, 1)``.
            Read at construction: build the sequence after
            ``keras.distribution.initialize`` and ``set_distribution``.
        shard_remainder (str): when ``count`` does not divide N. ``"drop"`` (the
            default, for training): each shard serves ``N // count`` samples
            and the last ``N % count`` of each epoch's permutation are
            skipped that epoch (other ones next epoch when shuffling).
            ``"repeat"`` (what ``for_evaluation`` uses): the data is
            repeated ``count // gcd(N, count)`` times, so every sample is
            served the same number of times per epoch over all shards (once
            when ``count`` divides N) and averaged metrics are unbiased.
        workers (int): ``PyDataset``'s own: threads (or processes) that
            prepare batches ahead; 1 (the default) on the JAX backend.
        use_multiprocessing (bool): ``PyDataset``'s own: workers are
            processes, which share the position with the parent.
        max_queue_size (int): ``PyDataset``'s own: batches prepared ahead.

    Raises:
        TypeError, ValueError: at construction, naming the argument and the
            value received.
    """

    def __init__(
        self,
        x: np.ndarray | RaggedImages,
        y: ArrayLike | None = None,
        *,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = False,
        crop: RandomCrop | CenterCrop | RandomResizedCrop | Resize | None = None,
        flip: RandomFlip | str | None = None,
        normalize: Normalize | Rescale | None = None,
        dtype: str = "float32",
        data_format: str = "channels_last",
        num_classes: int | None = None,
        sample_weight: ArrayLike | None = None,
        shard: tuple[int, int] | str | None = None,
        shard_remainder: str = "drop",
        cutout: Cutout | RandomErasing | None = None,
        mix: MixUp | CutMix | None = None,
        augment: object = None,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        self._assemble(options.check(
            x, y, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder, crop=crop,
            flip=flip, normalize=normalize, dtype=dtype, data_format=data_format, num_classes=num_classes,
            sample_weight=sample_weight, shard=shard, shard_remainder=shard_remainder, cutout=cutout, mix=mix,
            augment=augment,
        ))

    # -- construction: options (checked) -> plan -> assembled --------------------

    @classmethod
    def _from_options(cls, o, *, workers=1, use_multiprocessing=False, max_queue_size=10):
        """A sequence of class ``cls`` from checked options (``fastseq.sequence.options.Options``)."""
        seq = cls.__new__(cls)
        super(ArraySequence, seq).__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                                           max_queue_size=max_queue_size)
        seq._assemble(o)
        return seq

    def _assemble(self, o):
        """The sequence from its options: the attributes, the batch order, the position, then ``_setup``."""
        self._options = o
        self.cutout, self.mix, self.augment = o.cutout, o.mix, list(o.augment)
        self.x, self.y, self.sample_weight, self._labels = o.x, o.y, o.sample_weight, o.labels
        self.batch_size, self.shuffle, self.seed, self.drop_remainder = o.batch_size, o.shuffle, o.seed, o.drop_remainder
        self.crop, self.flip, self.normalize = o.crop, o.flip, o.normalize
        self.dtype, self.data_format, self.num_classes = o.dtype, o.data_format, o.num_classes
        self.image_shape = o.image_shape
        self._num_items = o.num_items
        self.shard, self.shard_remainder, self._shard_items = o.shard, o.shard_remainder, o.shard_items
        # Batch j of an epoch -> its sample indices (the epoch's permutation, sharded, cut into batches).
        self._batch_indices = order.BatchOrder(
            o.num_items, seed=o.seed, shuffle=o.shuffle, shard=o.shard, remainder=o.shard_remainder,
            batch_size=o.batch_size, drop_remainder=o.drop_remainder,
        )
        self._position = Position(len(self), seed=self.seed, shard=self.shard)
        self._warned = set()
        self._setup()

    def _setup(self):
        """The plan (from the options), the buffers and the thread-local state (also after unpickling)."""
        plan = plans.make(self._options)
        self._plan, self._draws, self._cutout, self._mix = plan.batch, plan.draws, plan.cutout, plan.mix
        self._mix_plan, self._fused_mix, self._mix_pass = plan.mix_plan, plan.fused_mix, plan.mix_pass
        self._random = plan.draws.random  # the per-sample crop corners and flips, when there are any
        # Full batches are written into reused arrays: a fresh one per batch
        # costs more in model.fit than the kernel (see fastseq/sequence/_pool.py). Room
        # for the batches Keras' thread queue holds, plus the ones in flight.
        threaded = self.workers > 1 and not self.use_multiprocessing
        self._buffers = BufferPool(
            self._plan.output_shape(self.batch_size),
            check.numpy_dtype(self.dtype),
            capacity=4 + (self.workers + self.max_queue_size if threaded else 0),
        )
        # Mixing outside the fused pass makes each sample and its partner into one pair batch first.
        self._pairs = None
        if self._mix_plan is not None and self._fused_mix is None:
            self._pairs = BufferPool(
                self._mix_plan.output_shape(2 * self.batch_size),
                check.numpy_dtype("uint8" if self.dtype == "uint8" else "float32"),
                capacity=2 + (self.workers if threaded else 0),
            )
        # Data memory-mapped from a file: the next batches' rows are asked of the disk while the model trains.
        self._readahead = ReadAhead.for_images(self.x, self._batch_indices, len(self))
        self._lock = threading.Lock()
        self._stats = {"batches": 0, "kernel_seconds": 0.0, "getitem_seconds": 0.0}

    def __getstate__(self):
        # The position pickles itself: its shared block to a worker being spawned, a copy otherwise.
        state = self.__dict__.copy()
        for key in ("_plan", "_buffers", "_lock", "_readahead", "_stats", "_draws", "_random", "_cutout", "_mix",
                    "_mix_plan", "_pairs", "_fused_mix", "_mix_pass"):
            state.pop(key, None)
        # x by reference where it is a memmap; the options hold the same reference, so it is pickled once.
        state["x"] = MemmapRef.wrap(self.x)
        state["_options"] = dataclasses.replace(self._options, x=state["x"])
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if isinstance(self.x, MemmapRef):
            self.x = self.x.open()
            self._options = dataclasses.replace(self._options, x=self.x)
        self._setup()

    # -- the Sequence protocol ------------------------------------------------

    def __len__(self):
        return len(self._batch_indices)

    @property
    def num_batches(self):
        return len(self)

    def __getitem__(self, i):
        """Batch ``i`` of the current epoch: ``(x, y)``, ``(x, y, w)`` or ``(x,)``."""
        t0 = time.perf_counter()
        i = options.batch_index(i, len(self))
        epoch, j = self._position.serve(i)  # marks it served; read once: the whole batch belongs to one epoch
        idx = self._batch_indices(j, epoch)
        out = self._buffers.take() if idx.size == self.batch_size else None
        draw = None if self._mix is None else self._mix(self.seed, epoch, idx)
        readahead = self._readahead
        faults = readahead.faults() if readahead is not None else 0
        batch_x, t1 = self._make_x(idx, epoch, draw, out)
        t2 = time.perf_counter()
        if readahead is not None:
            readahead.after(epoch, j, faults)
        result = (batch_x,)
        if self.y is not None:
            result += (self._targets(idx) if draw is None else self._mixed_targets(idx, draw),)
        if self.sample_weight is not None:
            result += (targets.gather(self.sample_weight, idx),)
        t3 = time.perf_counter()
        with self._lock:
            self._stats["batches"] += 1
            self._stats["kernel_seconds"] += t2 - t1
            self._stats["getitem_seconds"] += t3 - t0
        return result

    def _make_x(self, idx, epoch, draw, out):
        """The batch's images and when the kernels started: the fused pass makes them, mixing (``draw``) and
        cutting out inside it where the plan is a ``FusedPlan``; else the resampling pass, then mix, then cutout."""
        erase = None if self._cutout is None else self._cutout(self.seed, epoch, idx)
        fill = 0 if erase is None else self.cutout.fill
        both = idx if draw is None else np.concatenate([idx, draw.partners])
        origins, flips = self._params(both, epoch)
        t1 = time.perf_counter()
        if draw is None and isinstance(self._plan, kernels.FusedPlan):
            return self._plan(idx, origins, flips, out=out, erase=erase, erase_fill=fill), t1
        if draw is not None and self._fused_mix is not None:
            return self._fused_mix(both, origins, flips, draw.weights, draw.boxes, out=out, erase=erase,
                                   erase_fill=fill), t1
        if draw is None:
            batch_x = self._plan(idx, origins, flips, out=out)
        else:
            pairs = self._mix_plan(both, origins, flips, out=self._pairs.take() if idx.size == self.batch_size else None)
            n = idx.size
            batch_x = self._mix_pass(pairs[:n], pairs[n:], draw.weights, draw.boxes, out=out)
        if erase is not None:
            kernels.cutout(batch_x, erase, fill=fill, data_format=self.data_format)
        return batch_x, t1

    def indices(self, i):
        """The sample indices (int64) in batch ``i`` of the current pass. Inspects only: serves nothing.

        After the last batch of a pass has been served this still describes
        that pass, until the next request or hook starts the next one.
        """
        epoch, j = self._position.locate(options.batch_index(i, len(self)))
        return self._batch_indices(j, epoch).copy()

    def on_epoch_begin(self):
        """Called by Keras as an epoch starts: moves to the next epoch only if this pass is complete."""
        self._position.advance_if_complete()

    def on_epoch_end(self):
        """Called by Keras after an epoch, before training and around validation; also a hand loop's end of epoch.

        Moves to the next epoch only if every batch of this pass has been
        served, so the calls Keras makes mid-pass (``steps_per_epoch`` below
        ``len(seq)``, probes, validation) and repeated calls change nothing.
        """
        count = self._position.advance_if_complete()
        if not self.shuffle and self._random is None:
            return  # every epoch is the same: nothing to lose
        mode = (self.workers, self.use_multiprocessing)
        for key, message in (("partial", keras_quirks.partial_pass(count, len(self), *mode)),
                             ("prefetch", keras_quirks.probe_prefetch(*mode))):
            if message is not None:
                self._warn_once(key, message)

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- instrumentation ------------------------------------------------------

    def stats(self):
        """Counters since construction or ``reset_stats``.

        Returns:
            dict: ``batches`` (batches produced), ``kernel_seconds``
            (time in the fused kernel) and ``getitem_seconds`` (time in
            ``__getitem__``), summed over all threads.
        """
        with self._lock:
            return dict(self._stats)

    def reset_stats(self):
        with self._lock:
            self._stats = {"batches": 0, "kernel_seconds": 0.0, "getitem_seconds": 0.0}

    # -- evaluation -----------------------------------------------------------

    def for_evaluation(
        self,
        x: np.ndarray | RaggedImages,
        y: ArrayLike | None = None,
        *,
        sample_weight: ArrayLike | None = None,
        batch_size: int | None = None,
        **pydataset_kwargs: Any,
    ) -> ArraySequence:
        """A sequence for validation/test data with this one's preprocessing but no randomness.

        Same normalisation, dtype, layout, ``num_classes``; ``shuffle=False``,
        no flips, and the crop made deterministic: a ``RandomCrop`` whose
        window is smaller than the image becomes a ``CenterCrop`` of that
        size; one as large as the image (pad-and-crop augmentation) becomes
        no crop; a ``RandomResizedCrop(h, w)`` becomes a resize that makes
        the crop 0.875 of the image's tighter axis (aspect kept) and a centre
        ``(h, w)`` crop (``Resize.for_crop``: 64x64 images, 56x56 crop ->
        ``Resize(64, 64, crop=(56, 56))``). It never cuts out or mixes:
        ``cutout`` and ``mix`` are training-time augmentations, and targets
        stay one-hot (``num_classes``) or as given. Use it as
        ``validation_data`` or for ``evaluate``/``predict``.
        Sharded like this sequence (the same ``(index, count)``), with
        ``shard_remainder="repeat"``: every process evaluates its share and
        every sample counts the same number of times over all processes
        (once when ``count`` divides ``len(x)``, else ``count // gcd(len(x),
        count)`` times, all of them), so ``evaluate`` under ``DataParallel``
        gives the loss and metrics one process gets on the whole set. With a
        metric that sums rather than averages (``keras.metrics.TruePositives``
        and other counts) the repeats multiply the count. ``predict`` on a
        sharded sequence returns the outputs in shard order; build an
        unsharded ``ArraySequence`` for it.
        """
        o = options.for_evaluation(self._options, x, y, sample_weight=sample_weight, batch_size=batch_size)
        return ArraySequence._from_options(o, **pydataset_kwargs)

    # -- internals ------------------------------------------------------------

    def _params(self, idx, epoch):
        """``(origins, flips)`` for the plan: see :class:`fastseq.sequence.plans.CropFlipDraws`."""
        return self._draws(self.seed, epoch, idx)

    def _targets(self, idx):
        if self.num_classes is None:
            return targets.gather(self.y, idx)
        return targets.one_hot(self._labels[idx], self.num_classes)

    def _mixed_targets(self, idx, draw):
        """Targets mixed with the weight the pixels got: ``lam * y + (1 - lam) * y_partner`` (float32 weights)."""
        return targets.mixed(self.y, self._labels, self.num_classes, idx, draw.partners, draw.lam)

    def __repr__(self):
        return (
            f"ArraySequence(N={self._num_items}, image_shape={self.image_shape}, batch_size={self.batch_size}, "
            f"batches={len(self)}, shuffle={self.shuffle},"
            + (f" shard={self.shard}, shard_remainder={self.shard_remainder!r}," if self.shard[1] > 1 else "")
            + f" seed={self.seed}, epoch={self.epoch}, crop={self.crop}, "
            f"flip={self.flip}, normalize={self.normalize}, cutout={self.cutout}, mix={self.mix}, dtype={self.dtype!r}, "
            f"data_format={self.data_format!r})"
        )
