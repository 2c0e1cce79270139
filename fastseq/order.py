"""Which sample goes in which batch, per epoch. NumPy only.

The order of an epoch is a pure function of ``(seed, epoch)``: a resumed
run, another process or another thread computes the same permutation.
"""

import numpy as np


def epoch_order(num_items, *, seed, epoch, shuffle):
    """The sample order of one epoch: ``0..num_items-1``, or a permutation of it.

    Args:
        num_items: dataset length.
        seed: non-negative integer seed.
        epoch: non-negative integer epoch.
        shuffle: False gives ``arange(num_items)``.

    Returns:
        int64 array of length ``num_items``; each index exactly once.
    """
    if not shuffle:
        return np.arange(num_items, dtype=np.int64)
    # A SeedSequence of (seed, epoch, tag) is a pure function of its entropy;
    # the tag keeps this stream apart from any other use of (seed, epoch).
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, 0x0DE7])))
    return rng.permutation(num_items).astype(np.int64, copy=False)


def num_batches(num_items, batch_size, drop_remainder):
    """``ceil(num_items / batch_size)``, or the floor when the short last batch is dropped."""
    return num_items // batch_size if drop_remainder else -(-num_items // batch_size)


def batch_bounds(i, num_items, batch_size):
    """Positions ``[start, stop)`` of batch ``i`` in the epoch order; the last may be short."""
    start = i * batch_size
    return start, min(start + batch_size, num_items)
