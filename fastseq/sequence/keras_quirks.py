"""Where Keras' own call pattern breaks exactly-once epochs, and the warnings that say so.

The sequence's position is derived from what was served, so Keras' hooks
cannot move it; but Keras itself decides which batches it requests and
trains. Two of its patterns (logged in ``tests/test_epochs.py``) make a
Keras epoch differ from a pass, whatever the sequence does; the sequence
warns once for each, with what to set instead.
"""

from __future__ import annotations


def _mode(workers, use_multiprocessing):
    return f"workers={workers}" + (", use_multiprocessing=True" if use_multiprocessing else "")


def prefetches(workers, use_multiprocessing):
    """Whether Keras reads this sequence ahead of training through its worker queue."""
    return workers > 1 or (workers > 0 and use_multiprocessing)


def partial_pass(count, n, workers, use_multiprocessing):
    """The warning for a Keras epoch that ended after ``count`` of a pass's ``n`` batches while prefetching, or None."""
    if not (2 < count < n and (workers > 1 or use_multiprocessing)):
        return None
    return (
        f"ArraySequence: Keras ended its epoch after {count} of this pass's {n} batches while prefetching with "
        f"{_mode(workers, use_multiprocessing)}: with steps_per_epoch below len(seq), Keras restarts its requests "
        "at batch 0 at each of its epochs, so batches of a pass longer than its queue (max_queue_size) are never "
        "requested and others are trained twice: a pass may not see every sample exactly once. Use workers=1 (the "
        "batch itself is already parallel) or leave steps_per_epoch unset."
    )


def probe_prefetch(workers, use_multiprocessing):
    """The warning for prefetching workers on a backend whose model-building probe leaves batches queued, or None.

    JAX and torch build the model with a first batch pulled through Keras'
    enqueuer (the TensorFlow backend probes with ``seq[i]`` instead); the
    batches prefetched for that probe stay in its queue and are trained in
    the next epoch.
    """
    if not prefetches(workers, use_multiprocessing):
        return None
    try:
        from keras import backend
    except ImportError:  # pragma: no cover - keras is a dependency
        return None
    name = {"jax": "JAX", "torch": "torch"}.get(backend.backend())
    if name is None:
        return None
    torch_way = (", or let torch prefetch: model.fit(torch.utils.data.DataLoader(seq, batch_size=None, "
                 "num_workers=2)) keeps every epoch exactly-once.")
    return (
        f"ArraySequence: on the {name} backend with {_mode(workers, use_multiprocessing)}, Keras' pre-training "
        "probe starts its prefetching workers and then trains the first epoch partly on the batches they "
        "prefetched, and each later epoch partly on the previous one's leftovers: epochs are not exactly-once "
        f"passes. Use workers=1 on {name} (the batch itself is already parallel)"
        + (torch_way if name == "torch" else ".")
    )
