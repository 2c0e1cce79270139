"""Which sample goes in which batch, per epoch and shard. NumPy only.

The order of an epoch is a pure function of ``(seed, epoch)``: a resumed
run, another process or another thread computes the same permutation.

Sharding: every process computes that same permutation and takes every
``count``-th position of it, starting at its ``index`` (:func:`shard_order`).
The shards are disjoint, and batch ``k`` of every shard together hold
positions ``[k * batch_size * count, (k + 1) * batch_size * count)`` of the
permutation: the global batch of ``count`` processes is the batch that one
process with ``batch_size * count`` would make. Every shard has the same
length, so every process runs the same number of steps; when ``count`` does
not divide the dataset the remainder rule decides (:data:`REMAINDERS`).
"""

import math

import numpy as np

#: How a dataset that ``count`` does not divide is split into equal shards.
#: ``"drop"``: each shard holds ``num_items // count`` samples and the last
#: ``num_items % count`` of the epoch's permutation are not served that epoch
#: (another few each epoch when shuffling); every other sample exactly once.
#: ``"repeat"``: the epoch's permutation is repeated
#: ``count // gcd(num_items, count)`` times, which ``count`` divides, so every
#: sample is served exactly that many times per epoch over all shards; once
#: when ``count`` divides ``num_items``. Weighted means (loss, accuracy) over
#: all shards then equal those over the dataset: this is the evaluation rule.
REMAINDERS = ("drop", "repeat")


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


def shard_repeats(num_items, count, remainder):
    """How often the epoch's permutation is laid out for ``count`` shards: 1, or ``count // gcd`` for "repeat"."""
    return count // math.gcd(num_items, count) if remainder == "repeat" else 1


def shard_size(num_items, count, remainder):
    """Samples per shard per epoch, the same for every shard (see :data:`REMAINDERS`)."""
    return num_items * shard_repeats(num_items, count, remainder) // count


def shard_order(epoch_order, index, count, remainder):
    """The samples of shard ``index`` of ``count`` in one epoch, in order.

    Positions ``index, index + count, index + 2 * count, ...`` of
    ``epoch_order`` (repeated end to end under ``"repeat"``), ``shard_size``
    of them. Over ``index = 0..count-1`` the shards are disjoint and cover
    the (repeated) permutation but the ``"drop"`` remainder.

    Args:
        epoch_order: int64 array, the epoch's permutation (:func:`epoch_order`).
        index, count: the shard, ``0 <= index < count``.
        remainder: one of :data:`REMAINDERS`.

    Returns:
        int64 array of ``shard_size(len(epoch_order), count, remainder)`` sample indices.
    """
    if count == 1:
        return epoch_order
    n = len(epoch_order)
    positions = index + count * np.arange(shard_size(n, count, remainder), dtype=np.int64)
    return epoch_order[positions % n]


class BatchOrder:
    """The samples of every batch of one shard, per epoch: :func:`epoch_order`, :func:`shard_order` and
    :func:`batch_bounds` together, with the latest epoch's order cached.

    ``batch_order(j, epoch)`` is a pure function of its arguments and of the
    ones given here; ``len(batch_order)`` is the number of batches per epoch.
    Safe to call from several threads: the cache is replaced whole.

    Args:
        num_items: dataset length.
        seed, shuffle: as for :func:`epoch_order`.
        shard: ``(index, count)``; ``(0, 1)`` for the whole dataset.
        remainder: one of :data:`REMAINDERS`.
        batch_size, drop_remainder: as for :func:`num_batches`.
    """

    def __init__(self, num_items, *, seed, shuffle, shard, remainder, batch_size, drop_remainder):
        self.num_items, self.seed, self.shuffle = num_items, seed, shuffle
        self.shard, self.remainder = tuple(shard), remainder
        self.batch_size, self.drop_remainder = batch_size, drop_remainder
        self.shard_items = shard_size(num_items, self.shard[1], remainder)
        self._cache = (None, None)  # (epoch, that epoch's shard order)

    def __len__(self):
        return num_batches(self.shard_items, self.batch_size, self.drop_remainder)

    def __getstate__(self):
        return {**self.__dict__, "_cache": (None, None)}

    def epoch(self, epoch):
        """This shard's samples of ``epoch`` in serving order (int64; shared, do not modify)."""
        cached_epoch, cached = self._cache
        if cached_epoch == epoch:
            return cached
        result = epoch_order(self.num_items, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        result = shard_order(result, *self.shard, self.remainder)
        self._cache = (epoch, result)
        return result

    def __call__(self, j, epoch):
        """The sample indices of batch ``j`` (``0..len-1``) of ``epoch`` (an int64 view; do not modify)."""
        start, stop = batch_bounds(j, self.shard_items, self.batch_size)
        return self.epoch(epoch)[start:stop]
