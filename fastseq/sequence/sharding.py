"""``shard="auto"``: which data shard this process serves, read from Keras' distribution or JAX.

The arithmetic of shards (which samples a shard serves, how many, the
remainder rules) is :mod:`fastseq.sequence.order`'s and the checks of an explicit
``(index, count)`` are ``fastseq.sequence.options.shard_arg``'s; this module only
reads the running process's place among its peers. It imports Keras (lazily),
so it belongs to the Keras-facing layer.
"""

from __future__ import annotations

import warnings


def resolve(shard, stacklevel=2):
    """``ArraySequence``'s ``shard`` argument with ``"auto"`` resolved.

    Args:
        shard: None, ``"auto"`` or an ``(index, count)`` pair (left for
            ``fastseq.sequence.options.shard_arg`` to check).
        stacklevel: the caller's own, for the warning of
            ``warn_if_unsharded_under_processes`` to point at user code.

    Returns:
        ``(shard, shard_from)``: ``shard`` (the pair read for ``"auto"``, else
        as given) and, for ``"auto"`` only, a phrase that names where the pair
        was read (for error messages), else None.
    """
    if isinstance(shard, str) and shard == "auto":
        return auto_shard()
    if shard is None:
        warn_if_unsharded_under_processes(stacklevel=stacklevel + 1)
    return shard, None


def auto_shard():
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


def warn_if_unsharded_under_processes(stacklevel=2):
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
            stacklevel=stacklevel + 1,
        )
