"""Keras-side timing for ``fastseq.profiling``: the step recorder and ``StarvationMonitor``.

This module imports Keras at import time; ``fastseq.profiling`` imports it
only on first use so that ``python -m fastseq --help`` stays instant.

Where the wait happens. On the TensorFlow (and JAX) backend of Keras 3, ``fit``
calls ``on_train_batch_begin``, then ``train_function(iterator)``, which takes
the next batch *inside* the compiled step (``iterator.get_next()``), then
``on_train_batch_end``. The gap from one batch's end to the next one's begin is
therefore only callback overhead (about 20 us), and a monitor that timed that
gap would report 0% starvation for any loader. So on TensorFlow the recorder
wraps ``model.train_function`` for the duration of ``fit``: it takes the batch
with a timed ``next(iterator)`` and hands it to Keras' own compiled
``one_step_on_data`` (through the code path Keras uses for a Python iterator).
The compiled step is the same; only the fetch moves out of the graph, where it
can be timed. On other backends (torch fetches between the two callbacks) the
recorder falls back to the end-to-begin gap.
"""

from __future__ import annotations

import math
import time
import warnings

import keras
import numpy as np

_LISTENERS = "_fastseq_fetch_listeners"


def _leading_dim(batch):
    """Batch size of a fetched batch: the leading dimension of its first leaf."""
    try:
        import tensorflow as tf

        leaf = tf.nest.flatten(batch)[0]
        n = leaf.shape[0]
        return None if n is None else int(n)
    except Exception:  # an exotic structure: images/s falls back to batch_size
        return None


def install_fetch_timer(model, listener):
    """Time each ``next(iterator)`` of ``model.train_function``; call ``listener(wait_s, images)``.

    Several listeners share one wrapper (a ``StarvationMonitor`` inside
    ``fastseq.profile``'s own ``fit`` both see every fetch).

    Returns:
        True when fetches will be timed, False when this backend or this
        ``train_function`` cannot be wrapped (the caller then uses the
        end-to-begin gap).
    """
    if keras.backend.backend() != "tensorflow":
        return False
    fn = getattr(model, "train_function", None)
    if fn is None:
        return False
    listeners = getattr(fn, _LISTENERS, None)
    if listeners is not None:
        listeners.append(listener)
        return True

    import tensorflow as tf

    original = fn
    listeners = [listener]
    per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))

    def timed_train_function(iterator):
        # Only a plain tf.data iterator (the default strategy) is unpacked;
        # distributed iterators keep Keras' own path and go unmeasured.
        if not isinstance(iterator, tf.data.Iterator):
            return original(iterator)
        batches = []
        wait = 0.0
        for _ in range(per_call):
            t0 = time.perf_counter()
            try:
                batches.append(next(iterator))
            except (StopIteration, tf.errors.OutOfRangeError):
                break
            finally:
                wait += time.perf_counter() - t0
        if not batches:
            raise StopIteration
        images = sum((_leading_dim(b) or 0) for b in batches) or None
        for fn_ in list(listeners):
            fn_(wait, images)
        # A Python iterator takes Keras' `for data in iterator:
        # one_step_on_data(data)` branch: the same compiled step.
        return original(iter(batches))

    setattr(timed_train_function, _LISTENERS, listeners)
    timed_train_function._fastseq_original = original
    model.train_function = timed_train_function
    return True


def uninstall_fetch_timer(model, listener):
    """Undo ``install_fetch_timer`` for ``listener``; restore Keras' function when none is left."""
    fn = getattr(model, "train_function", None)
    listeners = getattr(fn, _LISTENERS, None)
    if listeners is None:
        return
    if listener in listeners:
        listeners.remove(listener)
    if not listeners:
        model.train_function = fn._fastseq_original


class StepRecorder(keras.callbacks.Callback):
    """Record per-step timestamps, data wait and images of every train batch.

    ``begin[k]``/``end[k]`` are ``time.perf_counter()`` at
    ``on_train_batch_begin``/``on_train_batch_end`` of step ``k``; ``wait[k]``
    is the time step ``k`` waited for its batch (see the module docstring),
    ``images[k]`` its batch size when known. ``epoch_of[k]`` is the epoch.
    """

    def __init__(self):
        super().__init__()
        self.begin, self.end, self.wait, self.images, self.epoch_of = [], [], [], [], []
        self.epoch_begin = {}
        self.fetch_timed = False
        self._pending = None  # (wait, images) of the fetch inside the current step
        self._epoch = 0

    def _on_fetch(self, wait, images):
        self._pending = (wait, images)

    def on_train_begin(self, logs=None):
        self.fetch_timed = install_fetch_timer(self.model, self._on_fetch)

    def on_train_end(self, logs=None):
        uninstall_fetch_timer(self.model, self._on_fetch)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.epoch_begin[epoch] = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._pending = None
        self.begin.append(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.end.append(now)
        self.epoch_of.append(self._epoch)
        if self.fetch_timed and self._pending is not None:
            wait, images = self._pending
        else:
            # Fallback: the gap since the previous batch ended (or the epoch began).
            prev = self.end[-2] if len(self.end) > 1 and self.epoch_of[-2] == self._epoch else None
            start = prev if prev is not None else self.epoch_begin.get(self._epoch, self.begin[-1])
            wait, images = max(0.0, self.begin[-1] - start), None
        self.wait.append(wait)
        self.images.append(images)


class StarvationMonitor(StepRecorder):
    """Keras callback: how long each epoch of ``fit`` waited for its input.

    Adds to every epoch's logs (so ``History``, ``CSVLogger`` and
    ``TensorBoard`` see them):

    - ``data_wait_fraction``: time the train steps spent waiting for their
      batch, divided by the epoch's training wall time (``on_epoch_begin``
      to the last batch's end, validation excluded), in ``[0, 1]``.
    - ``images_per_sec``: images trained on per second of that wall time.

    and, when ``sequence`` has fastseq's instrumentation (``stats()``,
    duck-typed, e.g. ``fastseq.ArraySequence``):

    - ``kernel_seconds`` / ``getitem_seconds``: time spent this epoch inside
      the fused kernel / inside ``__getitem__``;
    - ``batches_ahead``: mean over the epoch's steps of batches produced minus
      batches consumed, sampled as each step begins (0 means every step found
      nothing ready).

    The wait of a step is measured directly on the TensorFlow backend (the
    batch fetch is timed; see ``fastseq.profiling.monitor``); on other
    backends it is the gap from the end of one train batch to the begin of
    the next. The sequence's counters are read as deltas, never reset.

    Args:
        sequence (ArraySequence | keras.utils.PyDataset | None): the training data, optional; used for ``stats()`` and as a
            source of ``batch_size``.
        batch_size (int | None): images per batch, when it cannot be read from the
            fetched batches (other backends). Otherwise inferred.
    """

    def __init__(self, sequence: keras.utils.PyDataset | None = None, batch_size: int | None = None) -> None:
        super().__init__()
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")
        self.sequence = sequence
        self.batch_size = batch_size
        self._has_stats = sequence is not None and callable(getattr(sequence, "stats", None))
        self._epoch_first_step = 0
        self._stats0 = None
        self._ahead = []
        self._warned = False

    def _stats(self):
        return dict(self.sequence.stats())

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._epoch_first_step = len(self.end)
        self._ahead = []
        self._stats0 = self._stats() if self._has_stats else None

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        if self._stats0 is not None:
            consumed = len(self.end) - self._epoch_first_step
            produced = self._stats()["batches"] - self._stats0["batches"]
            self._ahead.append(produced - consumed)

    def _batch_size(self):
        if self.batch_size is not None:
            return self.batch_size
        bs = getattr(self.sequence, "batch_size", None)
        return int(bs) if isinstance(bs, (int, np.integer)) else None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:  # Keras always passes a dict; a manual call may not
            logs = {}
        k0 = self._epoch_first_step
        steps = len(self.end) - k0
        if steps == 0:
            wall = wait = 0.0
        else:
            wall = self.end[-1] - min(self.begin[k0], self.epoch_begin.get(epoch, self.begin[k0]))
            wait = float(sum(self.wait[k0:]))
        logs["data_wait_fraction"] = float(min(1.0, max(0.0, wait / wall))) if wall > 0 else 0.0
        images = 0
        bs = None
        for n in self.images[k0:]:
            if n is None:
                bs = self._batch_size() if bs is None else bs
                if bs is None:
                    images = None
                    break
                n = bs
            images += n
        if images is None:
            if not self._warned:
                warnings.warn(
                    "StarvationMonitor cannot tell the batch size on this backend: pass "
                    "StarvationMonitor(batch_size=...) to get images_per_sec; logging NaN.",
                    stacklevel=2,
                )
                self._warned = True
            logs["images_per_sec"] = math.nan
        else:
            logs["images_per_sec"] = float(images / wall) if wall > 0 else 0.0
        if self._stats0 is not None:
            now = self._stats()
            logs["kernel_seconds"] = float(now.get("kernel_seconds", 0.0) - self._stats0.get("kernel_seconds", 0.0))
            logs["getitem_seconds"] = float(
                now.get("getitem_seconds", 0.0) - self._stats0.get("getitem_seconds", 0.0)
            )
            logs["batches_ahead"] = float(np.mean(self._ahead)) if self._ahead else 0.0
