"""``fastseq.BackupAndRestore``: Keras' callback of that name, plus the sequence's position."""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import TYPE_CHECKING, Any

import keras

_STATE_FILE = "fastseq_sequence.json"


if TYPE_CHECKING:
    from fastseq.sequence.array_sequence import ArraySequence

class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` that also backs up and restores a sequence's position.

    Keras' callback restores the weights, the optimizer and the epoch to
    resume at, but not the data: a restarted run would start its sequence at
    epoch 0 again. This one saves, beside Keras' files, the position at which
    the epoch that Keras will resume at started, and restores it in
    ``on_train_begin``. After a crash and a restart every epoch from the
    resumed one trains on the same batches (sample indices and pixels) as
    the uninterrupted run: batch for batch with ``fit(shuffle=False)``, the
    same set of batches per epoch with ``fit(shuffle=True)``.

    The position is counted from the batches Keras actually trained on
    (``on_train_batch_end``), not from the batches the sequence has served,
    which run ahead by what Keras has prefetched. So it also holds with
    ``steps_per_epoch`` below ``len(sequence)``, where a Keras epoch is part
    of a pass: the restored sequence serves the uninterrupted stream of
    batches from where that epoch began (see ``ArraySequence.set_state``'s
    ``offset``). Keras ends the epoch that reaches the end of its own count
    of ``len(sequence)`` batches early and does not back that count up, so
    a resumed run has the same Keras epoch boundaries as the uninterrupted
    one when ``steps_per_epoch`` divides ``len(sequence)``; otherwise it
    trains on the same stream of batches with boundaries shifted.

    Sharded across processes (``ArraySequence(shard=...)``), each process
    backs up into its own subfolder ``shard-<index>-of-<count>`` of
    ``backup_dir``, so processes that share a file system never write the
    same files (Keras' callback would have every process write one weights
    file), and a restarted run with the same number of processes continues
    each shard where it was. A restart with another number of processes is
    refused, naming the folders found.

    Args:
        backup_dir (str | os.PathLike): as Keras' ``BackupAndRestore``; the sequence's state is
            the JSON file ``fastseq_sequence.json`` in it (in the shard's
            subfolder when sharded).
        sequence (ArraySequence): the training data: an ``ArraySequence`` (anything with
            ``get_state()``, ``set_state(state)`` and ``len()``).
        **kwargs (Any): Keras' ``save_freq``, ``double_checkpoint``,
            ``delete_checkpoint``.

    Raises:
        TypeError: ``sequence`` without ``get_state``/``set_state``.
        ValueError: in ``on_train_begin``, a sharded run over a backup made
            with another number of processes.
    """

    def __init__(self, backup_dir: str | os.PathLike, sequence: ArraySequence, **kwargs: Any) -> None:
        missing = [name for name in ("get_state", "set_state", "__len__") if not hasattr(sequence, name)]
        if missing:
            raise TypeError(
                f"sequence must be a fastseq.ArraySequence (with get_state, set_state and len), got "
                f"{type(sequence).__name__} without {', '.join(missing)}; use keras.callbacks.BackupAndRestore "
                f"for other data."
            )
        index, count = getattr(sequence, "shard", (0, 1))
        self._root_dir = backup_dir
        self._shard_count = count
        if count > 1:
            backup_dir = os.path.join(backup_dir, f"shard-{index}-of-{count}")
        super().__init__(backup_dir, **kwargs)
        self.sequence = sequence
        self._state_path = os.path.join(backup_dir, _STATE_FILE)
        self._trained = 0  # batches trained since epoch 0 began, the restored ones included
        self._resume_at = 0  # the value of _trained when the epoch in progress began
        self._steps = 0

    def on_train_begin(self, logs=None):
        self._check_shard_count()
        super().on_train_begin(logs)  # restores weights, optimizer and model._initial_epoch
        restored = self._load_state()
        if restored is not None:
            self.sequence.set_state(restored)
        state = self.sequence.get_state()
        self._trained = self._resume_at = state["epoch"] * len(self.sequence) + state["offset"]

    def on_epoch_begin(self, epoch, logs=None):
        self._resume_at = self._trained
        self._steps = 0
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._steps = batch + 1  # batch is the step's last index, also with steps_per_execution
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._trained += self._steps
        self._resume_at = self._trained  # Keras' backup of this epoch resumes at the next one
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        super()._save_model()
        n = len(self.sequence)
        state = self.sequence.get_state()
        state.update(epoch=self._resume_at // n, offset=self._resume_at % n, served=[])
        # Keras writes its metadata's epoch from _current_epoch; ours names the same epoch, so a
        # restore can tell which of the current and the previous (double_checkpoint) files match.
        record = {"keras_epoch": self._current_epoch, "state": state}
        if self.double_checkpoint and os.path.exists(self._state_path):
            shutil.copyfile(self._state_path, self._state_path + ".bkp")
        tmp = self._state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, self._state_path)

    def _check_shard_count(self):
        """Refuse to start afresh beside a backup of the same run split into another number of shards."""
        if os.path.exists(self._training_metadata_path):
            return  # this shard's own backup: resume from it
        name = os.path.basename(self._training_metadata_path)
        found = [] if self._shard_count == 1 or not os.path.exists(os.path.join(self._root_dir, name)) else ["."]
        found += sorted(
            os.path.basename(os.path.dirname(p))
            for p in glob.glob(os.path.join(self._root_dir, "shard-*-of-*", name))
            if not os.path.dirname(p).endswith(f"-of-{self._shard_count}")
        )
        if found:
            raise ValueError(
                f"backup_dir {self._root_dir!r} holds a backup made with another number of processes (in "
                f"{', '.join(found)}) but this sequence has shard={getattr(self.sequence, 'shard', (0, 1))}: "
                f"resume with the number of processes the backup was made with, or delete the folder to start "
                f"afresh."
            )

    def _load_state(self):
        """The saved sequence state matching Keras' restored metadata, or None for a fresh run."""
        if not os.path.exists(self._training_metadata_path):
            return None
        with open(self._training_metadata_path) as f:
            keras_epoch = json.load(f)["epoch"]
        for path in (self._state_path, self._state_path + ".bkp"):
            if os.path.exists(path):
                with open(path) as f:
                    record = json.load(f)
                if record["keras_epoch"] == keras_epoch:
                    return record["state"]
        raise FileNotFoundError(
            f"backup_dir {self.backup_dir!r} holds Keras' backup of epoch {keras_epoch} but no matching "
            f"{_STATE_FILE}: it was written by keras.callbacks.BackupAndRestore, not fastseq.BackupAndRestore. "
            f"Delete the directory to start afresh, or resume it with Keras' callback."
        )
