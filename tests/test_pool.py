"""Reused batch buffers: never handed out again while anything still refers to them."""

import threading

import numpy as np
import pytest

from fastseq import ArraySequence, Normalize, RandomCrop, RandomFlip
from fastseq.sequence._pool import BufferPool


def test_a_released_buffer_is_reused_and_a_held_one_is_not():
    pool = BufferPool((4, 3), np.float32, capacity=4)
    a = pool.take()
    address = a.ctypes.data
    b = pool.take()
    assert b.ctypes.data != address  # a is still held here
    del a
    c = pool.take()
    assert c.ctypes.data == address  # released, so reused
    assert c.shape == (4, 3) and c.dtype == np.float32 and c.flags.c_contiguous and c.flags.writeable
    assert len(pool) == 2


@pytest.mark.parametrize(
    "holder",
    [
        lambda a: a[1:],  # a view keeps its base alive
        lambda a: a.reshape(-1),
        lambda a: memoryview(a),  # a buffer export
        lambda a: np.frombuffer(a, np.float32),
        lambda a: [a],
    ],
    ids=["slice", "reshape", "memoryview", "frombuffer", "list"],
)
def test_anything_derived_from_a_buffer_keeps_it_held(holder):
    pool = BufferPool((4, 3), np.float32, capacity=4)
    a = pool.take()
    address = a.ctypes.data
    kept = holder(a)
    del a
    others = [pool.take() for _ in range(3)]
    assert address not in [o.ctypes.data for o in others]
    del kept, others
    assert pool.take().ctypes.data == address  # the first slot, free again


def test_a_caller_that_keeps_every_buffer_gets_distinct_untouched_arrays_and_the_pool_stays_bounded():
    pool = BufferPool((8,), np.int64, capacity=3)
    kept = []
    for k in range(20):
        buf = pool.take()
        buf[:] = k
        kept.append(buf)
        assert len(pool) <= 3
    assert len({b.ctypes.data for b in kept}) == 20
    for k, buf in enumerate(kept):
        np.testing.assert_array_equal(buf, k)
    # Once the caller lets go, the tracked arrays are reused.
    tracked = {b.ctypes.data for b in kept[-3:]}
    del kept, buf
    assert pool.take().ctypes.data in tracked


def test_capacity_zero_allocates_every_time():
    pool = BufferPool((2,), np.uint8, capacity=0)
    held = pool.take()
    other = pool.take()
    assert held.ctypes.data != other.ctypes.data and len(pool) == 0


def test_threads_never_share_a_buffer():
    pool = BufferPool((64,), np.int64, capacity=4)
    errors = []

    def work(tag):
        for _ in range(300):
            buf = pool.take()
            buf[:] = tag
            # Give the other threads time to take (and wrongly scribble on) it.
            for _ in range(3):
                if not (buf == tag).all():
                    errors.append(tag)
            del buf

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(pool) <= 4


def _sequence(x):
    return ArraySequence(
        x, np.arange(len(x)), batch_size=16, seed=3, crop=RandomCrop(8, 8, padding=2), flip=RandomFlip("horizontal"),
        normalize=Normalize(mean=(1, 2, 3), std=(4, 5, 6)),
    )


def test_sequence_never_overwrites_a_batch_its_caller_still_holds():
    x = np.random.default_rng(0).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
    seq, fresh = _sequence(x), _sequence(x)
    first = seq[0][0]
    corner = first[3]  # a view of it
    held_addresses = {first.ctypes.data}
    for i in range(1, len(seq) - 1):  # full batches, from the pool
        bx = seq[i][0]
        assert bx.ctypes.data not in held_addresses
        np.testing.assert_array_equal(bx, fresh[i][0])
    np.testing.assert_array_equal(first, fresh[0][0])
    del first
    for i in range(1, len(seq)):
        seq[i]
    np.testing.assert_array_equal(corner, fresh[0][0][3])


def test_sequence_reuses_released_batch_memory():
    x = np.random.default_rng(1).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
    seq = _sequence(x)
    addresses = {seq[i][0].ctypes.data for i in range(len(seq) - 1) for _ in range(2)}
    assert len(addresses) == 1  # each batch is dropped before the next is asked for


def test_buffers_are_page_aligned_so_tensorflow_can_share_them():
    pool = BufferPool((5, 7, 3), np.float32, capacity=2)
    held = [pool.take() for _ in range(3)]  # two pooled, one beyond capacity
    for buf in held:
        assert buf.ctypes.data % 4096 == 0 and buf.flags.c_contiguous and buf.flags.writeable
    assert BufferPool((3,), np.uint8, capacity=0).take().ctypes.data % 4096 == 0


def test_batches_that_tensorflow_shares_stay_intact_while_their_tensors_live():
    # Keras' PyDataset adapter feeds TensorFlow through from_generator, whose
    # tensors share the memory of aligned NumPy batches instead of copying it.
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(2).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
    seq, fresh = _sequence(x), _sequence(x)
    full = len(seq) - 1
    ds = tf.data.Dataset.from_generator(
        lambda: (seq[i][0] for i in range(full)),
        output_signature=tf.TensorSpec((16, 8, 8, 3), tf.float32),
    ).prefetch(2)
    tensors = list(ds)  # every tensor held while the later batches are made
    assert len(tensors) == full
    for i, t in enumerate(tensors):
        np.testing.assert_array_equal(t.numpy(), fresh[i][0])
    del tensors
    # Once the tensors are gone, the memory is reused.
    assert len(seq._buffers) == seq._buffers.capacity
    addresses = {seq[i][0].ctypes.data for i in range(full)}
    assert addresses <= {slot[1].ctypes.data for slot in seq._buffers._slots}
