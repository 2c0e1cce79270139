"""A sequence's position: its epoch and which batches of the current pass were served. NumPy only.

The position is the one piece of mutable state of an
``fastseq.ArraySequence``, and it is derived from what was served, not
from which hooks were called: a pass ends when every one of its batches has
been requested (by any thread, or by Keras' worker processes), and the next
request or end-of-epoch hook then starts the next epoch.

It lives in a ``multiprocessing.RawArray`` guarded by a
``multiprocessing.Lock``: ``[epoch, offset, served count]`` as int64, then
one byte per batch. Keras' worker processes (``use_multiprocessing=True``)
mark the batches they serve in the very block the main process reads, so the
position is counted where the batches are made, in every mode. Forked workers
inherit the block; spawned or forkserver workers receive it while being
spawned (see ``Position.__getstate__``). Any other pickled copy (a file, a
queue) gets a block of its own.
"""

from __future__ import annotations

import multiprocessing

import numpy as np

from fastseq.sequence import options

_HEADER = 24  # [epoch, offset, served count] as int64


class Position:
    """Epoch, rotation and served batches of one sequence, shared with its worker processes.

    Args:
        num_batches: batches per pass (``len(seq)``, >= 0).
        seed: the sequence's seed, recorded in and checked against saved states.
        shard: the sequence's ``(index, count)``; a saved state restores into
            a position with the same ``count``.
        epoch, offset, served: where to start: the epoch, the rotation (see
            ``set_state``) and the batch indices already served.

    Thread- and process-safe: every read-modify-write holds ``lock``.
    """

    def __init__(self, num_batches, *, seed=0, shard=(0, 1), epoch=0, offset=0, served=()):
        self.num_batches, self.seed, self.shard = int(num_batches), seed, tuple(shard)
        self._attach(multiprocessing.RawArray("B", _HEADER + max(self.num_batches, 1)), multiprocessing.Lock())
        self._pos[:] = (epoch, offset, 0)
        for i in served:
            self._served[i] = 1
        self._pos[2] = int(self._served.sum())

    def _attach(self, block, lock):
        self._block, self.lock = block, lock
        self._pos = np.frombuffer(block, np.int64, 3)
        self._served = np.frombuffer(block, np.uint8, self.num_batches, offset=_HEADER)

    # -- pickling: the shared block only to a worker being spawned -------------

    def __getstate__(self):
        state = {"num_batches": self.num_batches, "seed": self.seed, "shard": self.shard}
        popen = _spawning()
        if popen is not None:
            # A worker process being spawned (Keras' pool under the spawn or forkserver start
            # method): hand it the shared block itself, so the batches it serves count here. The
            # lock goes too; one made for fork (unlinked at once, so it cannot be pickled) is
            # replaced first by one of the spawning context. Only threads already waiting on the
            # old lock at this instant could overlap: in that mode the parent serves no batches
            # while Keras starts its pool (TensorFlow's probe comes before).
            if getattr(self.lock, "_is_fork_ctx", False):
                old = self.lock
                with old:
                    self.lock = multiprocessing.get_context(popen.method).Lock()
            state["shared"] = (self._block, self.lock)
        else:
            with self.lock:
                state["private"] = (int(self._pos[0]), int(self._pos[1]), np.flatnonzero(self._served).tolist())
        return state

    def __setstate__(self, state):
        self.num_batches, self.seed, self.shard = state["num_batches"], state["seed"], state["shard"]
        if "shared" in state:
            self._attach(*state["shared"])
        else:
            epoch, offset, served = state["private"]
            self.__init__(self.num_batches, seed=self.seed, shard=self.shard, epoch=epoch, offset=offset, served=served)

    # -- reading and moving ----------------------------------------------------

    @property
    def epoch(self):
        """The epoch of the current pass (a finished pass still reads its own until the next one starts)."""
        return int(self._pos[0])

    @property
    def served_count(self):
        """How many distinct batches of the current pass have been served."""
        return int(self._pos[2])

    def serve(self, i):
        """Mark request ``i`` (0..num_batches-1) served and say what it serves.

        The first request after a complete pass starts the next one.

        Returns:
            ``(epoch, batch)``: the batch of that epoch's order to make (see ``locate``).
        """
        with self.lock:
            if self._pos[2] == self.num_batches:
                self._advance()
            if not self._served[i]:
                self._served[i] = 1
                self._pos[2] += 1
            return self._locate(i)  # read once: the whole batch belongs to one epoch

    def locate(self, i):
        """``(epoch, batch of that epoch)`` that request ``i`` serves, without serving it.

        Request ``i`` serves batch ``i + offset`` of the current epoch, or batch
        ``i + offset - num_batches`` of the next once that passes the end.
        """
        with self.lock:
            return self._locate(i)

    def advance_if_complete(self):
        """Start the next pass if every batch of this one has been served (an end-of-epoch hook).

        Returns:
            The number of batches that had been served of the pass before the call.
        """
        with self.lock:
            count = int(self._pos[2])
            if count == self.num_batches:
                self._advance()
        return count

    def set_epoch(self, epoch):
        """Jump to the start of ``epoch``: nothing served, no rotation.

        Raises:
            TypeError, ValueError: ``epoch`` is not an integer >= 0.
        """
        epoch = options.int_arg("epoch", epoch, minimum=0)
        with self.lock:
            self._pos[:] = (epoch, 0, 0)
            self._served[:] = 0

    def unserved(self):
        """The requests not yet served in the current pass, ascending (all of them after a complete pass)."""
        with self.lock:
            if self._pos[2] == self.num_batches:
                return list(range(self.num_batches))
            return np.flatnonzero(self._served == 0).tolist()

    def _advance(self):
        """Start the next pass (caller holds ``lock``)."""
        self._pos[0] += 1
        self._pos[2] = 0
        self._served[:] = 0

    def _locate(self, i):
        """``locate`` for a caller that holds ``lock``."""
        epoch, offset = int(self._pos[0]), int(self._pos[1])
        j = i + offset
        n = self.num_batches
        return (epoch, j) if j < n else (epoch + 1, j - n)

    # -- saving and restoring --------------------------------------------------

    def get_state(self):
        """The position as a small JSON-able dict, for ``set_state`` (also in another process or run).

        Returns:
            ``{"epoch", "offset", "served", "num_batches", "seed", "shard"}``:
            the epoch of the current pass, the rotation set by a resumed run
            (0 otherwise), the batches served in this pass as ``[start,
            stop)`` runs, and three fields that ``set_state`` checks
            (``shard`` is ``[index, count]``). A complete pass is reported as
            the start of the next epoch.
        """
        n = self.num_batches
        with self.lock:
            epoch, offset, count = (int(v) for v in self._pos)
            served = [] if count == n else runs(np.flatnonzero(self._served))
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
        """Restore a position saved by ``get_state``.

        ``offset`` (0..num_batches-1) rotates the pass: request ``i`` then
        serves batch ``(i + offset) % num_batches`` of the epoch, or of the
        next epoch once ``i + offset`` passes the end.

        Args:
            state: the dict ``get_state`` returned. ``num_batches``,
                ``seed`` and ``shard`` may be left out (they are then not
                checked); ``shard``'s index may differ from this one's.

        Raises:
            TypeError, ValueError: a state that is not such a dict, or one
                saved with another ``num_batches``, ``seed`` or shard count,
                naming the field, the value received and what to do.
        """
        n = self.num_batches
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
        with self.lock:
            self._served[:] = served
            self._pos[:] = (epoch, offset, int(served.sum()))


class PositionAPI:
    """A sequence's epoch and resume methods, read from and written to its ``Position``.

    Mixed into ``fastseq.ArraySequence`` (whose ``_assemble`` sets
    ``self._position``); the epoch hooks themselves (``on_epoch_begin``,
    ``on_epoch_end``) stay with the sequence, which knows its Keras caller.
    """

    _position: Position

    @property
    def epoch(self):
        """The epoch of the current pass (starts at 0).

        After the last batch of a pass has been served it still reads the
        finished epoch until the next request or ``on_epoch_end``/
        ``on_epoch_begin`` moves on.
        """
        return self._position.epoch

    def set_epoch(self, epoch):
        """Jump to the start of ``epoch`` (nothing served yet); hooks before its first batch keep it."""
        self._position.set_epoch(epoch)

    def unserved(self):
        """The batch indices not yet served in the current pass, ascending (all of them after a complete pass).

        A custom loop that restored a mid-pass state with ``set_state``
        resumes with ``for i in seq.unserved(): ...``.
        """
        return self._position.unserved()

    def get_state(self):
        """The position as a small JSON-able dict, for ``set_state`` (also in another process or run).

        Returns:
            ``{"epoch", "offset", "served", "num_batches", "seed", "shard"}``:
            the epoch of the current pass, the rotation set by a resumed run
            (0 otherwise), the batches served in this pass as ``[start,
            stop)`` runs, and three fields that ``set_state`` checks
            (``shard`` is ``[index, count]``). A complete pass is reported as
            the start of the next epoch.

        Under sharding the position counts this process's batches; processes
        that train in step (``keras.distribution``) are at the same position,
        and each restores its own shard's samples from it.
        """
        return self._position.get_state()

    def set_state(self, state):
        """Restore a position saved by ``get_state`` (or written by ``fastseq.BackupAndRestore``).

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
        self._position.set_state(state)


def runs(sorted_indices):
    """Ascending indices as ``[start, stop)`` runs: ``[0, 1, 2, 5]`` -> ``[[0, 3], [5, 6]]``."""
    result = []
    for i in sorted_indices.tolist():
        if result and result[-1][1] == i:
            result[-1][1] = i + 1
        else:
            result.append([i, i + 1])
    return result


def _spawning():
    """The process being spawned if this pickling is for one (the only pickling that may carry a shared
    block and lock), else None."""
    from multiprocessing import context

    return context.get_spawning_popen()
