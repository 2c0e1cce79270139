"""Sharding across processes, one process at a time: the order (NumPy only), the checks, the sequence.

The 2-process ``keras.distribution`` run is ``tests/test_distributed.py``.
"""

import math
import os
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastseq.sequence import order
from fastseq.sequence.options import shard_arg


def images(n, hw=6, seed=0):
    """Seeded uint8 images whose pixel (0, 0, 0) is the sample index (n <= 256)."""
    x = np.random.default_rng(seed).integers(0, 256, (n, hw, hw, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n)
    return x


# ---- order.py -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), count=st.integers(1, 9), seed=st.integers(0, 2**31), epoch=st.integers(0, 50),
       shuffle=st.booleans())
def test_drop_shards_are_disjoint_equal_and_leave_out_only_the_tail(n, count, seed, epoch, shuffle):
    count = min(count, n)
    perm = order.epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle)
    shards = [order.shard_order(perm, i, count, "drop") for i in range(count)]
    assert {len(s) for s in shards} == {n // count} == {order.shard_size(n, count, "drop")}
    union = np.concatenate(shards)
    assert len(np.unique(union)) == len(union)  # disjoint
    assert set(union.tolist()) == set(perm[: n - n % count].tolist())  # all but the last n % count


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), count=st.integers(1, 9), seed=st.integers(0, 2**31), shuffle=st.booleans())
def test_repeat_shards_serve_every_sample_equally_often(n, count, seed, shuffle):
    count = min(count, n)
    perm = order.epoch_order(n, seed=seed, epoch=3, shuffle=shuffle)
    shards = [order.shard_order(perm, i, count, "repeat") for i in range(count)]
    k = count // math.gcd(n, count)
    assert order.shard_repeats(n, count, "repeat") == k
    assert {len(s) for s in shards} == {n * k // count}
    assert np.array_equal(np.bincount(np.concatenate(shards), minlength=n), np.full(n, k))
    if n % count == 0:
        assert k == 1  # then it is the same split as "drop"
        for i in range(count):
            assert np.array_equal(shards[i], order.shard_order(perm, i, count, "drop"))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), count=st.integers(1, 6), batch=st.integers(1, 9), seed=st.integers(0, 1000))
def test_batch_k_of_all_shards_is_batch_k_of_one_process_with_count_times_the_batch(n, count, batch, seed):
    count = min(count, n)
    perm = order.epoch_order(n, seed=seed, epoch=1, shuffle=True)
    shards = [order.shard_order(perm, i, count, "drop") for i in range(count)]
    m = len(shards[0])
    for k in range(order.num_batches(m, batch, False)):
        together = np.concatenate([s[slice(*order.batch_bounds(k, m, batch))] for s in shards])
        start, stop = order.batch_bounds(k, n, batch * count)
        assert set(together.tolist()) <= set(perm[start:stop].tolist())
        assert len(together) == min(stop, count * m) - start


def test_unsharded_order_is_unchanged():
    perm = order.epoch_order(10, seed=1, epoch=2, shuffle=True)
    assert order.shard_order(perm, 0, 1, "drop") is perm
    assert order.shard_size(10, 1, "repeat") == 10


# ---- options.py: clear errors at construction ----------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 120), count=st.integers(1, 5), batch_size=st.integers(1, 17), seed=st.integers(0, 2**31),
       epoch=st.integers(0, 20), shuffle=st.booleans(), remainder=st.sampled_from(order.REMAINDERS),
       drop_remainder=st.booleans())
def test_batch_order_cuts_the_shard_order_into_batches(n, count, batch_size, seed, epoch, shuffle, remainder,
                                                       drop_remainder):
    count = min(count, n)
    for index in range(count):
        b = order.BatchOrder(n, seed=seed, shuffle=shuffle, shard=(index, count), remainder=remainder,
                             batch_size=batch_size, drop_remainder=drop_remainder)
        expected = order.shard_order(order.epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle), index, count,
                                     remainder)
        assert len(b) == order.num_batches(len(expected), batch_size, drop_remainder)
        if len(b) == 0:  # refused by ArraySequence (options.check); nothing to cut
            assert drop_remainder and batch_size > len(expected)
            continue
        got = [b(j, epoch) for j in range(len(b))]
        assert all(g.size == batch_size for g in got[:-1]) and 0 < got[-1].size <= batch_size
        kept = len(b) * batch_size if drop_remainder else len(expected)
        np.testing.assert_array_equal(np.concatenate(got), expected[:kept])
        # Another epoch replaces the cache; a pickled copy (without it) still gives the same batches.
        nxt = order.shard_order(order.epoch_order(n, seed=seed, epoch=epoch + 1, shuffle=shuffle), index, count,
                                remainder)
        np.testing.assert_array_equal(b(0, epoch + 1), nxt[:batch_size])
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(b))(len(b) - 1, epoch), got[-1])


@pytest.mark.parametrize(
    "shard, remainder, exc, match",
    [
        ((2, 2), "drop", ValueError, r"shard=\(2, 2\): index must be in 0\.\.1 .*got 2"),
        ((-1, 2), "drop", ValueError, r"index must be in 0\.\.1 .*got -1"),
        ((0, 0), "drop", ValueError, r"shard=\(0, 0\): count must be >= 1 .*got 0"),
        ((0, 11), "drop", ValueError, r"11 shards but x has only 10 samples"),
        ((0, 11), "repeat", ValueError, r"11 shards but x has only 10 samples"),
        ("all", "drop", TypeError, r"shard must be None, 'auto' or a pair \(index, count\).*got 'all'"),
        ((0, 1, 2), "drop", TypeError, r"shard must be None, 'auto' or a pair"),
        ((0.0, 2), "drop", TypeError, r"needs integers, got index=0\.0"),
        ((0, True), "drop", TypeError, r"needs integers, got count=True"),
        ((0, 2), "pad", ValueError, r"shard_remainder must be one of \('drop', 'repeat'\), got 'pad'"),
    ],
)
def test_bad_shard_values_name_the_problem(shard, remainder, exc, match):
    with pytest.raises(exc, match=match):
        shard_arg(shard, remainder, 10)


def test_auto_shard_errors_say_where_the_pair_came_from():
    with pytest.raises(ValueError, match=r"shard=\(0, 11\) \(shard='auto' read DataParallel\)"):
        shard_arg((0, 11), "drop", 10, "shard='auto' read DataParallel")


def test_sequence_checks_shard_at_construction():
    from fastseq import ArraySequence

    with pytest.raises(ValueError, match=r"index must be in 0\.\.2"):
        ArraySequence(images(10), shard=(3, 3))
    with pytest.raises(ValueError, match=r"batch_size=6 > the 5 samples of each of 2 shards .*per process"):
        ArraySequence(images(11), batch_size=6, drop_remainder=True, shard=(0, 2))
    assert len(ArraySequence(images(11), batch_size=5, drop_remainder=True, shard=(1, 2))) == 1


# ---- the sequence ---------------------------------------------------------------------------


def shard_sequences(n, count, **kwargs):
    from fastseq import ArraySequence, RandomCrop

    kwargs = {"batch_size": 3, "seed": 9, "crop": RandomCrop(6, 6, padding=2), "flip": "horizontal", **kwargs}
    return [ArraySequence(images(n), shard=(i, count), **kwargs) for i in range(count)]


def test_every_shard_has_the_same_length_and_they_split_each_epoch():
    seqs = shard_sequences(23, 3)  # 7 samples each, 2 left out per epoch
    assert [len(s) for s in seqs] == [3, 3, 3]
    for epoch in range(3):
        served = []
        for s in seqs:
            s.set_epoch(epoch)
            served += [int(v) for i in range(len(s)) for v in s.indices(i)]
        assert len(served) == len(set(served)) == 21
        tail = order.epoch_order(23, seed=9, epoch=epoch, shuffle=True)[-2:]
        assert set(range(23)) - set(served) == set(tail.tolist())


@pytest.mark.parametrize("resized", [False, True])
def test_a_sample_gets_the_same_pixels_in_any_shard_and_unsharded(resized):
    from fastseq import ArraySequence, RandomCrop, RandomResizedCrop

    n = 20
    crop = RandomResizedCrop(5, 4) if resized else RandomCrop(6, 6, padding=2)
    single = ArraySequence(images(n), batch_size=n, seed=9, crop=crop, flip="horizontal")
    for epoch in (0, 4):
        single.set_epoch(epoch)
        expected = dict(zip(single.indices(0).tolist(), single[0][0]))
        for s in shard_sequences(n, 4, crop=crop):
            s.set_epoch(epoch)
            for i in range(len(s)):
                for j, batch_x in zip(s.indices(i).tolist(), s[i][0]):
                    np.testing.assert_array_equal(batch_x, expected[j])


def test_memmap_shard_equals_in_ram(tmp_path):
    from fastseq import ArraySequence

    path = tmp_path / "x.npy"
    np.save(path, images(30))
    mm = ArraySequence(np.load(path, mmap_mode="r"), batch_size=4, seed=2, shard=(1, 3))
    ram = ArraySequence(images(30), batch_size=4, seed=2, shard=(1, 3))
    for i in range(len(ram)):
        batch = mm[i][0]
        np.testing.assert_array_equal(batch, ram[i][0])
        # Pixel (0, 0, 0) is the sample index: the memmap was read at this shard's samples.
        np.testing.assert_array_equal(batch[:, 0, 0, 0], ram.indices(i))


def test_state_of_a_shard_restores_that_shard_mid_pass():
    a0, a1 = shard_sequences(40, 2, batch_size=4)  # 5 batches each
    b0, b1 = shard_sequences(40, 2, batch_size=4)
    for seq in (a0, a1):
        for i in range(5):
            seq[i]
        for i in range(2):
            seq[i]  # epoch 1, batches 0 and 1
    state = a1.get_state()
    assert state["shard"] == [1, 2] and state["epoch"] == 1 and state["served"] == [[0, 2]]
    # Processes in step are at the same position, so either shard's saved state restores either shard.
    for fresh, original in ((b1, a1), (b0, a0)):
        fresh.set_state(state)
        assert fresh.unserved() == [2, 3, 4]
        for i in fresh.unserved():
            np.testing.assert_array_equal(fresh[i][0], original[i][0])
            np.testing.assert_array_equal(fresh.indices(i), original.indices(i))
    other = shard_sequences(40, 4, batch_size=2)[0]  # also 5 batches, but 4 shards
    with pytest.raises(ValueError, match=r"state\['shard'\] is \[1, 2\] but this sequence has shard=\(0, 4\)"):
        other.set_state(state)


def test_for_evaluation_keeps_the_shard_and_counts_every_sample_equally():
    (train0, train1) = shard_sequences(20, 2)
    for n_val, k in ((11, 2), (12, 1)):
        vals = [t.for_evaluation(images(n_val, seed=1)) for t in (train0, train1)]
        assert [v.shard for v in vals] == [(0, 2), (1, 2)] and {v.shard_remainder for v in vals} == {"repeat"}
        assert len(vals[0]) == len(vals[1])
        counts = np.bincount(
            [int(j) for v in vals for i in range(len(v)) for j in v.indices(i)], minlength=n_val
        )
        assert counts.tolist() == [k] * n_val


def test_auto_reads_the_active_keras_distribution():
    import keras

    from fastseq import ArraySequence

    class FakeDataParallel:  # what ArraySequence reads of a multi-process DataParallel
        num_processes, data_shard_id, num_model_replicas = 4, 3, 8

    assert ArraySequence(images(10), shard="auto").shard == (0, 1)  # none active, not JAX
    keras.distribution.set_distribution(FakeDataParallel())
    try:
        seq = ArraySequence(images(10), batch_size=2, shard="auto")
        assert seq.shard == (3, 4) and len(seq) == 1
        with pytest.raises(ValueError, match=r"\(shard='auto' read FakeDataParallel of keras.distribution\)"):
            ArraySequence(images(3), shard="auto")
        with pytest.warns(RuntimeWarning, match=r"FakeDataParallel over 4 processes is active but .* not sharded"):
            ArraySequence(images(10))
    finally:
        keras.distribution.set_distribution(None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ArraySequence(images(10))  # no distribution, no warning


def test_backup_and_restore_keeps_each_shard_apart_and_refuses_another_count(tmp_path):
    from fastseq import BackupAndRestore

    seqs = shard_sequences(12, 2)
    callbacks = [BackupAndRestore(str(tmp_path), s) for s in seqs]
    assert [c.backup_dir for c in callbacks] == [str(tmp_path / "shard-0-of-2"), str(tmp_path / "shard-1-of-2")]
    # A backup made by 2 processes, resumed by 3 (or by 1): refused before anything is restored.
    os.makedirs(tmp_path / "shard-1-of-2")
    (tmp_path / "shard-1-of-2" / "training_metadata.json").write_text('{"epoch": 0, "batch": -1}')
    for seq in (shard_sequences(12, 3)[0], shard_sequences(12, 1)[0]):
        with pytest.raises(ValueError, match=r"backup made with another number of processes \(in shard-1-of-2\)"):
            BackupAndRestore(str(tmp_path), seq).on_train_begin()
