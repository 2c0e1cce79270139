"""ArraySequence: the drop-in ``keras.utils.PyDataset`` over the fused kernel."""

from __future__ import annotations

import multiprocessing
import numbers
import threading
import time
import warnings

import numpy as np
from keras.utils import PyDataset

from fastseq import kernels, options, order
from fastseq._memmap import MemmapRef
from fastseq._pool import BufferPool
from fastseq.augment import CenterCrop, Cutout, RandomCrop, RandomErasing, RandomResizedCrop, Resize
from fastseq.kernels import _validate as check


class ArraySequence(PyDataset):
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
      and the JAX backend's ``begin/[0]/end`` probe cannot skip or split an
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
      still holds is never overwritten. See ``fastseq/_pool.py``.

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
        x: uint8 images, (N, H, W, C) or (N, H, W) (grayscale; batches get a
            channel axis of 1).
        y: optional targets of length N, any dtype and trailing shape;
            gathered with the same indices.
        batch_size: samples per batch (>= 1).
        shuffle: permute the samples each epoch.
        seed: non-negative integer; with the epoch, fixes order and augmentation.
        drop_remainder: drop the short last batch.
        crop: ``RandomCrop(height, width, padding=..., pad_mode=...)``,
            ``CenterCrop(height, width)``, ``RandomResizedCrop(height,
            width, scale=..., ratio=...)``, ``Resize(height, width,
            crop=...)`` or None. The last two resample bilinearly (half-pixel
            centres) from images of any size.
        flip: ``RandomFlip(mode)``, a mode string ("horizontal", "vertical",
            "horizontal_and_vertical"), or None. ``RandomFlip()`` flips
            left-right only (Keras' layer defaults to both axes).
        normalize: ``Normalize(mean, std)``, ``Rescale(scale, offset)`` or
            None (raw 0..255 values in ``dtype``).
        cutout: ``Cutout(size, count=1, fill=0.0)``, ``RandomErasing(probability,
            scale, ratio, fill=0.0)`` or None: erase squares (boxes) of each
            made sample (``fill`` in output units, after normalisation).
        mix: ``MixUp(alpha)``, ``CutMix(alpha)`` or None: blend each sample
            with a partner drawn from the whole data set, and its target
            alike; needs ``num_classes`` or float one-hot ``y``. The order of
            the passes: crop, flip, normalise, then mix, then cutout.
            Evaluation sequences (:meth:`for_evaluation`) never mix or cut out.
        dtype: "float32", "float16", "bfloat16" or "uint8" (raw pixels, for
            normalisation on the device; no ``normalize`` then).
        data_format: "channels_last" (N, h, w, C) or "channels_first" (N, C, h, w).
        num_classes: turn integer labels into one-hot float32, like
            ``keras.utils.to_categorical``.
        sample_weight: optional per-sample weights of length N, gathered like y.
        shard: None (the whole dataset), ``(index, count)`` (this process
            serves shard ``index`` of ``count``) or ``"auto"``: the data
            shard of the active ``keras.distribution`` (``data_shard_id``
            and the number of processes, for ``DataParallel`` the process
            index and count), else ``(jax.process_index(),
            jax.process_count())`` on the JAX backend, else ``(0, 1)``.
            Read at construction: build the sequence after
            ``keras.distribution.initialize`` and ``set_distribution``.
        shard_remainder: when ``count`` does not divide N. ``"drop"`` (the
            default, for training): each shard serves ``N // count`` samples
            and the last ``N % count`` of each epoch's permutation are
            skipped that epoch (other ones next epoch when shuffling).
            ``"repeat"`` (what :meth:`for_evaluation` uses): the data is
            repeated ``count // gcd(N, count)`` times, so every sample is
            served the same number of times per epoch over all shards (once
            when ``count`` divides N) and averaged metrics are unbiased.
        workers, use_multiprocessing, max_queue_size: ``PyDataset``'s own.

    Raises:
        TypeError, ValueError: at construction, naming the argument and the
            value received.
    """

    def __init__(
        self,
        x,
        y=None,
        *,
        batch_size=32,
        shuffle=True,
        seed=0,
        drop_remainder=False,
        crop=None,
        flip=None,
        normalize=None,
        dtype="float32",
        data_format="channels_last",
        num_classes=None,
        sample_weight=None,
        shard=None,
        shard_remainder="drop",
        cutout=None,
        mix=None,
        workers=1,
        use_multiprocessing=False,
        max_queue_size=10,
    ):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        shard_from = None
        if isinstance(shard, str) and shard == "auto":
            shard, shard_from = _auto_shard()
        elif shard is None:
            _warn_if_unsharded_under_processes()
        o = options.check(
            x,
            y,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_remainder=drop_remainder,
            crop=crop,
            flip=flip,
            normalize=normalize,
            dtype=dtype,
            data_format=data_format,
            num_classes=num_classes,
            sample_weight=sample_weight,
            shard=shard,
            shard_remainder=shard_remainder,
            shard_from=shard_from,
            cutout=cutout,
            mix=mix,
        )
        self.cutout, self.mix = o.cutout, o.mix
        self.x, self.y, self.sample_weight, self._labels = o.x, o.y, o.sample_weight, o.labels
        self.batch_size, self.shuffle, self.seed, self.drop_remainder = o.batch_size, o.shuffle, o.seed, o.drop_remainder
        self.crop, self.flip, self.normalize = o.crop, o.flip, o.normalize
        self.dtype, self.data_format, self.num_classes = o.dtype, o.data_format, o.num_classes
        self.image_shape = o.image_shape
        self._num_items = o.num_items
        self.shard, self.shard_remainder, self._shard_items = o.shard, o.shard_remainder, o.shard_items
        self._new_position(0, 0, ())
        self._warned = set()
        self._setup()

    # -- construction helpers -------------------------------------------------

    def _setup(self):
        """Build the kernel plan and the thread-local state (also after unpickling)."""
        self._plan = self._make_plan(self.dtype)
        # Full batches are written into reused arrays: a fresh one per batch
        # costs more in model.fit than the kernel (see fastseq/_pool.py). Room
        # for the batches Keras' thread queue holds, plus the ones in flight.
        threaded = self.workers > 1 and not self.use_multiprocessing
        self._buffers = BufferPool(
            self._plan.output_shape(self.batch_size),
            check.numpy_dtype(self.dtype),
            capacity=4 + (self.workers + self.max_queue_size if threaded else 0),
        )
        self._lock = threading.Lock()
        self._order = (None, None)  # (epoch, order) cache; replaced whole, so reads are atomic
        self._stats = {"batches": 0, "kernel_seconds": 0.0, "getitem_seconds": 0.0}
        H, W, _ = self.image_shape
        self._center = None
        self._random = None  # the per-sample crop corners and flips, when there are any
        crop, flip = self.crop, self.flip
        if isinstance(crop, CenterCrop):
            self._center = ((H - crop.height) // 2, (W - crop.width) // 2)
        elif isinstance(crop, RandomResizedCrop):
            # Boxes and flips in one compiled call; the flip bits equal RandomParams' for the same sample.
            self._random = kernels.ResizedCropParams(
                image_size=(H, W),
                scale=crop.scale,
                ratio=crop.ratio,
                horizontal=0.0 if flip is None else flip.horizontal,
                vertical=0.0 if flip is None else flip.vertical,
            )
        elif isinstance(crop, RandomCrop) or flip is not None:
            random_crop = isinstance(crop, RandomCrop)
            self._random = kernels.RandomParams(
                image_size=(H, W),
                crop_size=(crop.height, crop.width) if random_crop else (H, W),
                padding=crop.padding if random_crop else 0,
                horizontal=0.0 if flip is None else flip.horizontal,
                vertical=0.0 if flip is None else flip.vertical,
            )
        self._setup_mix()

    def _setup_mix(self):
        """The Cutout and MixUp/CutMix draws, and for mixing a plan that makes sample and partner together."""
        shape = self._plan.output_shape(1)
        out_size = tuple(shape[2:4]) if self.data_format == "channels_first" else tuple(shape[1:3])
        self._cutout = None
        if isinstance(self.cutout, Cutout):
            self._cutout = kernels.CutoutParams(image_size=out_size, size=self.cutout.size, count=self.cutout.count)
        elif isinstance(self.cutout, RandomErasing):
            c = self.cutout
            self._cutout = kernels.ErasingParams(
                image_size=out_size, probability=c.probability, scale=c.scale, ratio=c.ratio
            )
        self._mix = self._pairs = self._mix_plan = self._fused_mix = None
        if self.mix is None:
            return
        self._mix = kernels.MixParams(
            num_items=self._num_items, image_size=out_size, alpha=self.mix.alpha, mode=self.mix.mode
        )
        # Samples and partners are made in one fused call, in float32 (or raw
        # uint8) whatever the output dtype: the blend is computed in float32
        # and rounded once, so half-precision outputs are not rounded twice.
        pair_dtype = "uint8" if self.dtype == "uint8" else "float32"
        self._mix_plan = self._plan if pair_dtype == self.dtype else self._make_plan(pair_dtype)
        if isinstance(self._mix_plan, kernels.FusedPlan):
            # The blend inside the fused pass; the resampling pass still makes the pair batches.
            self._fused_mix = kernels.FusedMix(self._mix_plan, self.dtype)
            return
        threaded = self.workers > 1 and not self.use_multiprocessing
        self._pairs = BufferPool(
            self._mix_plan.output_shape(2 * self.batch_size),
            check.numpy_dtype(pair_dtype),
            capacity=2 + (self.workers if threaded else 0),
        )

    def _make_plan(self, dtype):
        """The batch pass for ``dtype``: the resampling ResizePlan or the FusedPlan."""
        crop = self.crop
        normalize = {} if self.normalize is None else self.normalize.kernel_kwargs()
        if isinstance(crop, (RandomResizedCrop, Resize)):
            # The resampling pass; called like a FusedPlan, with boxes for origins.
            resize = isinstance(crop, Resize)
            return kernels.ResizePlan(
                self.x,
                size=crop.output_size if resize else (crop.height, crop.width),
                scaled_size=(crop.height, crop.width) if resize else None,
                dtype=dtype,
                data_format=self.data_format,
                **normalize,
            )
        return kernels.FusedPlan(
            self.x,
            crop=None if crop is None else (crop.height, crop.width),
            padding=0 if crop is None else crop.padding,
            pad_mode="constant" if crop is None else crop.pad_mode,
            fill=0 if crop is None else crop.fill,
            dtype=dtype,
            data_format=self.data_format,
            **normalize,
        )

    def _new_position(self, epoch, offset, served):
        """A fresh position block: ``[epoch, offset, served count]`` (int64) then one byte per batch.

        It is a ``multiprocessing.RawArray`` guarded by a ``multiprocessing.Lock``,
        so Keras' worker processes (``use_multiprocessing=True``) mark the
        batches they serve in the very block the main process reads: the
        position is counted where the batches are made, in every mode. Forked
        workers inherit the block; spawned or forkserver workers receive it
        while being spawned (see ``__getstate__``). Any other pickled copy
        (a file, a queue) gets a block of its own.
        """
        n = len(self)
        self._attach_position(multiprocessing.RawArray("B", 24 + max(n, 1)), multiprocessing.Lock())
        self._pos[:] = (epoch, offset, 0)
        for i in served:
            self._served[i] = 1
        self._pos[2] = int(self._served.sum())

    def _attach_position(self, block, lock):
        self._pos_block, self._pos_lock = block, lock
        self._pos = np.frombuffer(block, np.int64, 3)
        self._served = np.frombuffer(block, np.uint8, len(self), offset=24)

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in (
            "_plan", "_buffers", "_lock", "_order", "_stats", "_center", "_random", "_cutout", "_mix", "_mix_plan", "_pairs",
            "_fused_mix",
        ):
            state.pop(key, None)
        for key in ("_pos_lock", "_pos_block", "_pos", "_served"):
            state.pop(key, None)
        popen = _spawning()
        if popen is not None:
            # A worker process being spawned (Keras' pool under the spawn or forkserver start
            # method): hand it the shared block itself, so the batches it serves count here. The
            # lock goes too; one made for fork (unlinked at once, so it cannot be pickled) is
            # replaced first by one of the spawning context. Only threads already waiting on the
            # old lock at this instant could overlap: in that mode the parent serves no batches
            # while Keras starts its pool (TensorFlow's probe comes before).
            if getattr(self._pos_lock, "_is_fork_ctx", False):
                old = self._pos_lock
                with old:
                    self._pos_lock = multiprocessing.get_context(popen.method).Lock()
            state["_position"] = ("shared", self._pos_block, self._pos_lock)
        else:
            with self._pos_lock:
                state["_position"] = (int(self._pos[0]), int(self._pos[1]), np.flatnonzero(self._served).tolist())
        state["x"] = MemmapRef.wrap(self.x)
        return state

    def __setstate__(self, state):
        position = state.pop("_position")
        self.__dict__.update(state)
        if isinstance(self.x, MemmapRef):
            self.x = self.x.open()
        if position[0] == "shared":
            self._attach_position(position[1], position[2])
        else:
            self._new_position(*position)
        self._setup()

    # -- the Sequence protocol ------------------------------------------------

    def __len__(self):
        return order.num_batches(self._shard_items, self.batch_size, self.drop_remainder)

    @property
    def num_batches(self):
        return len(self)

    def __getitem__(self, i):
        """Batch ``i`` of the current epoch: ``(x, y)``, ``(x, y, w)`` or ``(x,)``."""
        t0 = time.perf_counter()
        i = self._check_index(i)
        with self._pos_lock:
            if self._pos[2] == len(self):  # the first request after a complete pass starts the next
                self._advance()
            if not self._served[i]:
                self._served[i] = 1
                self._pos[2] += 1
            epoch, j = self._locate(i)  # read once: the whole batch belongs to one epoch
        idx = self._batch_indices(j, epoch)
        out = self._buffers.take() if idx.size == self.batch_size else None
        erased = False
        if self._mix is None:
            draw = None
            origins, flips = self._params(idx, epoch)
            if self._cutout is not None and isinstance(self._plan, kernels.FusedPlan):
                # Cutout / erasing inside the fused pass: no second pass over the batch.
                boxes, erased = self._cutout(self.seed, epoch, idx), True
                t1 = time.perf_counter()
                batch_x = self._plan(idx, origins, flips, out=out, erase=boxes, erase_fill=self.cutout.fill)
            else:
                t1 = time.perf_counter()
                batch_x = self._plan(idx, origins, flips, out=out)
        else:
            draw = self._mix(self.seed, epoch, idx)
            both = np.concatenate([idx, draw.partners])
            origins, flips = self._params(both, epoch)
        if draw is not None and self._fused_mix is not None:
            # Sample, partner, blend (and Cutout) in one pass, each output sample written once.
            boxes, erased = (None, False) if self._cutout is None else (self._cutout(self.seed, epoch, idx), True)
            t1 = time.perf_counter()
            batch_x = self._fused_mix(both, origins, flips, draw.weights, draw.boxes, out=out, erase=boxes,
                                      erase_fill=0 if boxes is None else self.cutout.fill)
        elif draw is not None:
            t1 = time.perf_counter()
            pairs = self._mix_plan(both, origins, flips, out=self._pairs.take() if idx.size == self.batch_size else None)
            n = idx.size
            batch_x = kernels.mix(
                pairs[:n], pairs[n:], draw.weights, draw.boxes, dtype=self.dtype, data_format=self.data_format, out=out
            )
        if self._cutout is not None and not erased:
            kernels.cutout(batch_x, self._cutout(self.seed, epoch, idx), fill=self.cutout.fill, data_format=self.data_format)
        t2 = time.perf_counter()
        result = (batch_x,)
        if self.y is not None:
            result += (self._targets(idx) if draw is None else self._mixed_targets(idx, draw),)
        if self.sample_weight is not None:
            result += (_gather(self.sample_weight, idx),)
        t3 = time.perf_counter()
        with self._lock:
            self._stats["batches"] += 1
            self._stats["kernel_seconds"] += t2 - t1
            self._stats["getitem_seconds"] += t3 - t0
        return result

    def indices(self, i):
        """The sample indices (int64) in batch ``i`` of the current pass. Inspects only: serves nothing.

        After the last batch of a pass has been served this still describes
        that pass, until the next request or hook starts the next one.
        """
        i = self._check_index(i)
        with self._pos_lock:
            epoch, j = self._locate(i)
        return self._batch_indices(j, epoch).copy()

    @property
    def epoch(self):
        """The epoch of the current pass (starts at 0).

        After the last batch of a pass has been served it still reads the
        finished epoch until the next request or ``on_epoch_end``/
        ``on_epoch_begin`` moves on.
        """
        return int(self._pos[0])

    def set_epoch(self, epoch):
        """Jump to the start of ``epoch`` (nothing served yet); hooks before its first batch keep it."""
        epoch = options.int_arg("epoch", epoch, minimum=0)
        with self._pos_lock:
            self._pos[:] = (epoch, 0, 0)
            self._served[:] = 0

    def unserved(self):
        """The batch indices not yet served in the current pass, ascending (all of them after a complete pass).

        A custom loop that restored a mid-pass state with :meth:`set_state`
        resumes with ``for i in seq.unserved(): ...``.
        """
        with self._pos_lock:
            if self._pos[2] == len(self):
                return list(range(len(self)))
            return np.flatnonzero(self._served == 0).tolist()

    def get_state(self):
        """The position as a small JSON-able dict, for :meth:`set_state` (also in another process or run).

        Returns:
            ``{"epoch", "offset", "served", "num_batches", "seed", "shard"}``:
            the epoch of the current pass, the rotation set by a resumed run
            (0 otherwise), the batches served in this pass as ``[start,
            stop)`` runs, and three fields that :meth:`set_state` checks
            (``shard`` is ``[index, count]``). A complete pass is reported as
            the start of the next epoch.

        Under sharding the position counts this process's batches; processes
        that train in step (``keras.distribution``) are at the same position,
        and each restores its own shard's samples from it.
        """
        n = len(self)
        with self._pos_lock:
            epoch, offset, count = (int(v) for v in self._pos)
            served = [] if count == n else _runs(np.flatnonzero(self._served))
        if count == n:
            epoch, served = epoch + 1, []
        return {
            "epoch": epoch,
            "offset": offset,
            "served": served,
            "num_batches": n,
            "seed": self.seed,
            "shard": list(self.shard),
        }

    def set_state(self, state):
        """Restore a position saved by :meth:`get_state` (or written by ``fastseq.BackupAndRestore``).

        ``offset`` (0..len-1) rotates the pass: request ``i`` then serves
        batch ``(i + offset) % len`` of the epoch, or of the next epoch once
        ``i + offset`` passes the end. A run resumed at a Keras epoch that
        began mid-pass (``steps_per_epoch`` below ``len(seq)``) uses it to
        continue the uninterrupted run's stream where Keras restarts its
        own count at batch 0.

        A state saved by one shard restores any shard of the same ``count``
        (the position is the same for processes in step; the samples are
        the restoring shard's own), but not another ``count``: that splits
        the epoch's samples differently.

        Raises:
            TypeError, ValueError: a state that is not such a dict, or one
                saved from a sequence with another ``len``, ``seed`` or
                shard count.
        """
        n = len(self)
        if not isinstance(state, dict) or not {"epoch", "offset", "served"} <= state.keys():
            raise TypeError(
                f"state must be the dict returned by get_state() (keys epoch, offset, served), "
                f"got {options.describe(state)}."
            )
        saved = state.get("shard", [0, 1])
        if not isinstance(saved, (list, tuple)) or len(saved) != 2 or saved[1] != self.shard[1]:
            raise ValueError(
                f"state['shard'] is {saved!r} but this sequence has shard={self.shard}: a state restores into a "
                f"sequence split into as many shards (processes) as it was saved from; resume with that many "
                f"processes, or start an epoch afresh with set_epoch()."
            )
        for key, mine in (("num_batches", n), ("seed", self.seed)):
            if key in state and state[key] != mine:
                raise ValueError(
                    f"state[{key!r}] is {state[key]!r} but this sequence has {key}={mine!r}: restore a "
                    f"state into a sequence built with the same data, batch_size, drop_remainder and seed."
                )
        epoch = options.int_arg("state['epoch']", state["epoch"], minimum=0)
        offset = options.int_arg("state['offset']", state["offset"], minimum=0)
        if offset >= n:
            raise ValueError(f"state['offset'] must be < len(seq) = {n}, got {offset}.")
        served = np.zeros(n, np.uint8)
        try:
            for start, stop in state["served"]:
                if not 0 <= start < stop <= n:
                    raise ValueError
                served[start:stop] = 1
        except (TypeError, ValueError):
            raise ValueError(
                f"state['served'] must be a list of [start, stop) runs within 0..{n}, got {state['served']!r}."
            ) from None
        with self._pos_lock:
            self._served[:] = served
            self._pos[:] = (epoch, offset, int(served.sum()))

    def on_epoch_begin(self):
        """Called by Keras as an epoch starts: moves to the next epoch only if this pass is complete."""
        with self._pos_lock:
            if self._pos[2] == len(self):
                self._advance()

    def on_epoch_end(self):
        """Called by Keras after an epoch, before training and around validation; also a hand loop's end of epoch.

        Moves to the next epoch only if every batch of this pass has been
        served, so the calls Keras makes mid-pass (``steps_per_epoch`` below
        ``len(seq)``, probes, validation) and repeated calls change nothing.
        """
        n = len(self)
        with self._pos_lock:
            count = int(self._pos[2])
            if count == n:
                self._advance()
        if not self.shuffle and self._random is None:
            return  # every epoch is the same: nothing to lose
        if 2 < count < n and (self.workers > 1 or self.use_multiprocessing):
            self._warn_once(
                "partial",
                f"ArraySequence: Keras ended its epoch after {count} of this pass's {n} batches while prefetching "
                f"with workers={self.workers}"
                + (", use_multiprocessing=True" if self.use_multiprocessing else "")
                + ": with steps_per_epoch below len(seq), Keras restarts its requests at batch 0 at each of its "
                "epochs, so batches of a pass longer than its queue (max_queue_size) are never requested and "
                "others are trained twice: a pass may not see every sample exactly once. Use workers=1 (the "
                "batch itself is already parallel) or leave steps_per_epoch unset.",
            )
        self._check_backend()

    def _check_backend(self):
        if not (self.workers > 1 or (self.workers > 0 and self.use_multiprocessing)):
            return
        try:
            from keras import backend
        except ImportError:  # pragma: no cover - keras is a dependency
            return
        if backend.backend() == "jax":
            self._warn_once(
                "jax",
                f"ArraySequence: on the JAX backend with workers={self.workers}, Keras' pre-training probe "
                "starts its prefetching workers and then trains the first epoch partly on the batches they "
                "prefetched, and each later epoch partly on the previous one's leftovers: epochs are not "
                "exactly-once passes. Use workers=1 on JAX (the batch itself is already parallel).",
            )

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- instrumentation ------------------------------------------------------

    def stats(self):
        """Counters since construction or :meth:`reset_stats`.

        Returns:
            dict with ``batches`` (batches produced), ``kernel_seconds``
            (time in the fused kernel) and ``getitem_seconds`` (time in
            ``__getitem__``), summed over all threads.
        """
        with self._lock:
            return dict(self._stats)

    def reset_stats(self):
        with self._lock:
            self._stats = {"batches": 0, "kernel_seconds": 0.0, "getitem_seconds": 0.0}

    # -- evaluation -----------------------------------------------------------

    def for_evaluation(self, x, y=None, *, sample_weight=None, batch_size=None, **pydataset_kwargs):
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
        crop = options.evaluation_crop(self.crop, check.images(x, "x").shape[1:3])
        return ArraySequence(
            x,
            y,
            batch_size=batch_size or self.batch_size,
            shuffle=False,
            seed=self.seed,
            crop=crop,
            flip=None,
            normalize=self.normalize,
            dtype=self.dtype,
            data_format=self.data_format,
            num_classes=self.num_classes,
            sample_weight=sample_weight,
            shard=self.shard,
            shard_remainder="repeat",
            **pydataset_kwargs,
        )

    # -- internals ------------------------------------------------------------

    def _epoch_order(self, epoch):
        cached_epoch, cached = self._order
        if cached_epoch == epoch:
            return cached
        result = order.epoch_order(self._num_items, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        result = order.shard_order(result, *self.shard, self.shard_remainder)
        self._order = (epoch, result)
        return result

    def _check_index(self, i):
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"batch index must be an integer, got {options.describe(i)}.")
        if not -n <= i < n:
            raise IndexError(f"batch index {i} out of range for a sequence of {n} batches.")
        return int(i) % n

    def _advance(self):
        """Start the next pass (caller holds ``_pos_lock``)."""
        self._pos[0] += 1
        self._pos[2] = 0
        self._served[:] = 0

    def _locate(self, i):
        """(epoch, batch of that epoch) for request ``i`` (caller holds ``_pos_lock``)."""
        epoch, offset = int(self._pos[0]), int(self._pos[1])
        j = i + offset
        n = len(self)
        return (epoch, j) if j < n else (epoch + 1, j - n)

    def _batch_indices(self, j, epoch):
        start, stop = order.batch_bounds(j, self._shard_items, self.batch_size)
        return self._epoch_order(epoch)[start:stop]

    def _params(self, idx, epoch):
        if self._center is not None:
            return np.broadcast_to(np.array(self._center, np.int64), (idx.size, 2)), None
        if self._random is None:
            return None, None
        origins, flips = self._random(self.seed, epoch, idx)  # boxes, for a RandomResizedCrop
        if isinstance(self.crop, RandomResizedCrop):
            return origins, flips  # all zero without a flip: then the plan takes its fast path
        return (origins if isinstance(self.crop, RandomCrop) else None), (None if self.flip is None else flips)

    def _targets(self, idx):
        if self.num_classes is None:
            return _gather(self.y, idx)
        labels = self._labels[idx]
        onehot = np.zeros((idx.size, self.num_classes), np.float32)
        onehot[np.arange(idx.size), labels] = 1.0
        return onehot

    def _mixed_targets(self, idx, draw):
        """Targets mixed with the weight the pixels got: ``lam * y + (1 - lam) * y_partner`` (float32 weights)."""
        lam = draw.lam[:, None]
        if self.num_classes is None:  # float one-hot y, checked at construction
            ya, yb = _gather(self.y, idx), _gather(self.y, draw.partners)
            return ya * lam.astype(ya.dtype) + yb * (np.float32(1) - lam).astype(ya.dtype)
        rows = np.arange(idx.size)
        mixed = np.zeros((idx.size, self.num_classes), np.float32)
        mixed[rows, self._labels[idx]] = lam[:, 0]
        mixed[rows, self._labels[draw.partners]] += np.float32(1) - lam[:, 0]
        return mixed

    def __repr__(self):
        return (
            f"ArraySequence(N={self._num_items}, image_shape={self.image_shape}, batch_size={self.batch_size}, "
            f"batches={len(self)}, shuffle={self.shuffle},"
            + (f" shard={self.shard}, shard_remainder={self.shard_remainder!r}," if self.shard[1] > 1 else "")
            + f" seed={self.seed}, epoch={self.epoch}, crop={self.crop}, "
            f"flip={self.flip}, normalize={self.normalize}, cutout={self.cutout}, mix={self.mix}, dtype={self.dtype!r}, "
            f"data_format={self.data_format!r})"
        )


def _auto_shard():
    """``shard="auto"``: ``((index, count), where it was read)``.

    The active ``keras.distribution`` first: its data shard (``data_shard_id``;
    for ``DataParallel`` the process index) and the number of data shards (the
    process count, or the number of model replicas where processes share one,
    as in a ``ModelParallel`` whose replica spans processes). Without one,
    JAX's process index and count on the JAX backend (``jax.distributed``
    started by hand), else one shard.
    """
    from keras import backend, distribution

    dist = distribution.distribution()
    if dist is not None and dist.num_processes > 1:
        count = dist.num_processes
        try:
            count = min(count, dist.num_model_replicas)
        except NotImplementedError:  # a Distribution subclass without replicas: one shard per process
            pass
        return (dist.data_shard_id, count), f"shard='auto' read {type(dist).__name__} of keras.distribution"
    if backend.backend() == "jax":
        import jax

        return (jax.process_index(), jax.process_count()), "shard='auto' read jax.process_index()/process_count()"
    return (0, 1), None


def _warn_if_unsharded_under_processes():
    """Warn when several processes train in step but this sequence gives every one of them all the data."""
    try:
        from keras import distribution

        dist = distribution.distribution()
    except (ImportError, AttributeError):  # pragma: no cover - keras >= 3.5 has keras.distribution
        return
    if dist is not None and dist.num_processes > 1:
        warnings.warn(
            f"ArraySequence: a keras.distribution {type(dist).__name__} over {dist.num_processes} processes is "
            "active but this sequence is not sharded (shard=None), so every process feeds the same samples and "
            "each global batch holds every one of them that many times. Pass shard='auto' (or an explicit "
            "(index, count)).",
            RuntimeWarning,
            stacklevel=3,
        )


def _spawning():
    """The process being spawned if this pickling is for one (the only pickling that may carry a shared
    block and lock), else None."""
    from multiprocessing import context

    return context.get_spawning_popen()


def _runs(sorted_indices):
    """Ascending indices as ``[start, stop)`` runs: ``[0, 1, 2, 5]`` -> ``[[0, 3], [5, 6]]``."""
    runs = []
    for i in sorted_indices.tolist():
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return runs


def _gather(values, idx):
    """``values[idx]`` as a plain array: NumPy for small rows (labels, weights), the parallel kernel for large ones.

    For a batch of class labels NumPy's fancy indexing takes about 2 us where
    the kernel's argument checks and launch take about 25; targets with rows
    of a kilobyte or more (masks, images) go through the GIL-free kernel.
    """
    if values.itemsize * (values.size // max(len(values), 1)) < 1024 and type(values) is np.ndarray:
        return values[idx]
    return kernels.gather(values, idx)
