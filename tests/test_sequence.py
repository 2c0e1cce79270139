"""ArraySequence: the seed's promises (exactly-once epochs, short last batch, fresh augmentation) under Keras."""

import json
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastseq import ArraySequence, CenterCrop, Normalize, RandomCrop, RandomFlip, Rescale
from tests import reference as R

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


def indexed_images(n, hw=(6, 5), channels=3):
    """Images whose pixels encode their own index, so alignment is checkable after any batching."""
    x = np.zeros((n, *hw, channels), np.uint8)
    x[..., 0] = (np.arange(n) % 256)[:, None, None]
    x[..., 1] = (np.arange(n) // 256)[:, None, None]
    return x


def decode(batch_x):
    """Recover sample indices from raw (uint8 or float) indexed_images batches."""
    b = np.asarray(batch_x, np.float64)
    return (b[:, 0, 0, 0] + 256 * b[:, 0, 0, 1]).astype(np.int64)


def epoch_samples(seq):
    return np.concatenate([seq.indices(i) for i in range(len(seq))])


# ---- the seed's tests, as properties over (N, batch_size) --------------------


@PROPERTY
@given(n=st.integers(1, 300), batch_size=st.integers(1, 400), shuffle=st.booleans(), seed=st.integers(0, 2**31))
def test_every_sample_exactly_once_per_epoch_with_correct_batch_sizes(n, batch_size, shuffle, seed):
    x = indexed_images(n)
    seq = ArraySequence(x, np.arange(n) * 3, batch_size=batch_size, shuffle=shuffle, seed=seed, dtype="uint8")
    assert len(seq) == -(-n // batch_size)
    for _epoch in range(2):
        seen = []
        for i in range(len(seq)):
            bx, by = seq[i]
            expected_size = batch_size if i < len(seq) - 1 else n - batch_size * (len(seq) - 1)
            assert len(bx) == len(by) == expected_size
            ids = decode(bx)
            np.testing.assert_array_equal(ids, seq.indices(i))  # images are the indexed samples
            np.testing.assert_array_equal(by, ids * 3)  # labels aligned with their images
            seen.append(ids)
        seen = np.concatenate(seen)
        assert sorted(seen.tolist()) == list(range(n))
        if not shuffle:
            assert seen.tolist() == list(range(n))
        seq.on_epoch_end()
        seq.on_epoch_begin()


@PROPERTY
@given(n=st.integers(1, 200), batch_size=st.integers(1, 64))
def test_drop_remainder_drops_only_the_short_batch(n, batch_size):
    if batch_size > n:
        with pytest.raises(ValueError, match="drop_remainder=True with batch_size"):
            ArraySequence(indexed_images(n), batch_size=batch_size, drop_remainder=True)
        return
    seq = ArraySequence(indexed_images(n), batch_size=batch_size, drop_remainder=True, shuffle=False)
    assert len(seq) == n // batch_size
    assert all(len(seq[i][0]) == batch_size for i in range(len(seq)))
    assert len(set(epoch_samples(seq).tolist())) == len(seq) * batch_size


def test_batch_larger_than_dataset_is_one_short_batch():
    seq = ArraySequence(indexed_images(5), batch_size=32, shuffle=False, dtype="uint8")
    assert len(seq) == 1
    (bx,) = seq[0]
    assert bx.shape == (5, 6, 5, 3) and decode(bx).tolist() == [0, 1, 2, 3, 4]


def test_negative_and_out_of_range_batch_indices():
    seq = ArraySequence(indexed_images(10), batch_size=4, shuffle=False, dtype="uint8")
    np.testing.assert_array_equal(decode(seq[-1][0]), [8, 9])
    with pytest.raises(IndexError, match="batch index 3 out of range for a sequence of 3 batches"):
        seq[3]


# ---- order and epochs -----------------------------------------------------------


def test_shuffled_order_is_a_pure_function_of_seed_and_epoch_and_differs_between_epochs():
    x = indexed_images(500)
    a = ArraySequence(x, batch_size=64, seed=3)
    b = ArraySequence(x, batch_size=64, seed=3)
    c = ArraySequence(x, batch_size=64, seed=4)
    order0 = epoch_samples(a)
    np.testing.assert_array_equal(order0, epoch_samples(b))
    assert (order0 != epoch_samples(c)).mean() > 0.9
    a.set_epoch(1)
    assert (order0 != epoch_samples(a)).mean() > 0.9


def served_samples(seq, order=None):
    """Serve one pass (``seq[i]`` for every batch, in ``order``) and return the sample indices, in order."""
    return np.concatenate([decode(seq[i][0]) for i in (order if order is not None else range(len(seq)))])


def test_epoch_survives_keras_extra_hook_calls_and_probes():
    """Keras: probes of batches 0/1 before training, hooks before training, at steps_per_epoch and around validation."""
    x = indexed_images(100)
    kw = dict(batch_size=10, seed=1, dtype="uint8")
    seq = ArraySequence(x, **kw)
    reference = {}
    for e in range(3):
        fresh = ArraySequence(x, **kw)
        fresh.set_epoch(e)
        reference[e] = epoch_samples(fresh)
    seq[0], seq[1]  # TensorFlow's output-signature probe
    seq.on_epoch_end()  # reset() before training
    seq.on_epoch_begin()
    seq[0]  # JAX's probe: begin, [0], end
    seq.on_epoch_end()
    epochs_seen = []
    for epoch in range(3):
        seq.on_epoch_begin()
        epochs_seen.append(seq.epoch)
        first = served_samples(seq, range(4))
        seq.on_epoch_end()  # a Keras epoch of steps_per_epoch=4 ends mid-pass: changes nothing
        seq.on_epoch_begin()
        rest = served_samples(seq, range(4, len(seq)))
        np.testing.assert_array_equal(np.concatenate([first, rest]), reference[epoch])
        seq.on_epoch_end()
        seq.on_epoch_end()  # the extra calls around validation change nothing
    assert epochs_seen == [0, 1, 2]
    assert seq.epoch == 3


def test_hand_loop_without_hooks_gets_a_new_epoch_each_pass():
    x = indexed_images(100)
    seq = ArraySequence(x, batch_size=10, seed=1, dtype="uint8")
    passes = [served_samples(seq) for _ in range(3)]
    for p in passes:
        assert sorted(p.tolist()) == list(range(100))
    assert (passes[0] != passes[1]).mean() > 0.9 and (passes[1] != passes[2]).mean() > 0.9
    assert seq.epoch == 2  # the third pass is complete; the next request starts epoch 3
    seq[5]
    assert seq.epoch == 3


def test_keras_shuffled_request_order_still_completes_the_pass():
    x = indexed_images(95)
    seq = ArraySequence(x, batch_size=10, seed=2, dtype="uint8")
    order = np.random.default_rng(0).permutation(len(seq))
    first = served_samples(seq, order)
    assert sorted(first.tolist()) == list(range(95))
    assert seq.unserved() == list(range(len(seq)))
    assert seq.get_state()["epoch"] == 1
    second = served_samples(seq, order)
    assert sorted(second.tolist()) == list(range(95)) and (first != second).mean() > 0.9


def test_get_state_and_set_state_resume_mid_pass():
    x = indexed_images(100)
    kw = dict(batch_size=10, seed=4, dtype="uint8")
    seq = ArraySequence(x, **kw)
    served_samples(seq)  # epoch 0
    head = served_samples(seq, range(3))  # epoch 1, batches 0..2
    state = seq.get_state()
    assert state == {"epoch": 1, "offset": 0, "served": [[0, 3]], "num_batches": 10, "seed": 4, "shard": [0, 1]}
    assert json.loads(json.dumps(state)) == state
    uninterrupted = served_samples(seq, range(3, 10))
    resumed = ArraySequence(x, **kw)
    resumed.set_state(state)
    assert resumed.epoch == 1 and resumed.unserved() == list(range(3, 10))
    np.testing.assert_array_equal(served_samples(resumed, resumed.unserved()), uninterrupted)
    assert sorted(np.concatenate([head, uninterrupted]).tolist()) == list(range(100))
    # offset: request i serves batch (i + offset) % n, of the next epoch past the end
    rotated = ArraySequence(x, **kw)
    rotated.set_state({"epoch": 1, "offset": 3, "served": []})
    stream = served_samples(rotated)
    np.testing.assert_array_equal(stream[:70], uninterrupted)
    np.testing.assert_array_equal(stream[70:], served_samples(seq, range(3)))  # seq is now in epoch 2
    with pytest.raises(ValueError, match=r"state\['num_batches'\] is 9 but this sequence has num_batches=10"):
        seq.set_state(dict(state, num_batches=9))
    with pytest.raises(ValueError, match=r"state\['offset'\] must be < len\(seq\) = 10, got 10"):
        seq.set_state(dict(state, offset=10))
    with pytest.raises(ValueError, match=r"state\['served'\] must be a list of \[start, stop\) runs"):
        seq.set_state(dict(state, served=[[4, 2]]))
    with pytest.raises(TypeError, match="state must be the dict returned by get_state"):
        seq.set_state(3)


def test_position_survives_pickling():
    seq = ArraySequence(indexed_images(50), batch_size=10, seed=3, dtype="uint8")
    served_samples(seq, [0, 2])
    copy = pickle.loads(pickle.dumps(seq))
    assert copy.get_state() == seq.get_state()
    copy[1]
    assert seq.unserved() == [1, 3, 4]  # the copy has its own position


def test_concurrent_requests_complete_each_pass_exactly_once():
    seq = ArraySequence(indexed_images(400), batch_size=8, seed=6, dtype="uint8")
    n = len(seq)
    for epoch in range(3):
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda i: decode(seq[i][0]), range(n)))
        assert sorted(np.concatenate(got).tolist()) == list(range(400)), epoch
        assert seq.epoch == epoch


def test_set_epoch_on_a_fresh_sequence_resumes_identically():
    x = np.random.default_rng(0).integers(0, 256, (300, 12, 12, 3), dtype=np.uint8)
    kw = dict(batch_size=50, crop=RandomCrop(10, 10, padding=2), flip="horizontal_and_vertical", seed=9)
    long_run = ArraySequence(x, **kw)
    for _ in range(2):
        for i in range(len(long_run)):
            long_run[i]
        long_run.on_epoch_end()
    assert long_run.epoch == 2
    resumed = ArraySequence(x, **kw)
    resumed.set_epoch(2)
    resumed.on_epoch_begin()
    resumed.on_epoch_end()  # no batch served in between: changes nothing
    assert resumed.epoch == 2
    for i in range(len(resumed)):
        np.testing.assert_array_equal(resumed[i][0], long_run[i][0])


# ---- pixels: correct, deterministic, fresh each epoch ---------------------------


def aug_kwargs():
    return dict(
        crop=RandomCrop(14, 12, padding=3, pad_mode="reflect"),
        flip=RandomFlip("horizontal_and_vertical"),
        normalize=Normalize(mean=(100, 110, 120), std=(50, 60, 70)),
        seed=42,
    )


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).integers(0, 256, (257, 16, 13, 3), dtype=np.uint8)


def per_sample(seq):
    """{sample index: pixels} for one epoch."""
    out = {}
    for i in range(len(seq)):
        for k, img in zip(seq.indices(i), seq[i][0]):
            out[int(k)] = img
    return out


def test_batches_equal_the_reference_composition(images):
    seq = ArraySequence(images, batch_size=40, **aug_kwargs())
    seq.set_epoch(3)
    for i in (0, len(seq) - 1):
        idx = seq.indices(i)
        origins, flips = R.random_params(42, 3, idx, image_size=(16, 13), crop_size=(14, 12), padding=3,
                                         horizontal=0.5, vertical=0.5)
        expected = R.fused(images, idx, crop=(14, 12), origins=origins, flips=flips, padding=3, pad_mode="reflect",
                           mean=(100, 110, 120), std=(50, 60, 70))
        np.testing.assert_array_equal(seq[i][0], expected)


def test_pixels_identical_across_batch_sizes(images):
    a = per_sample(ArraySequence(images, batch_size=7, **aug_kwargs()))
    b = per_sample(ArraySequence(images, batch_size=64, shuffle=False, **aug_kwargs()))
    assert a.keys() == b.keys() == set(range(len(images)))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_pixels_identical_across_eight_threads_out_of_order(images):
    seq = ArraySequence(images, batch_size=16, **aug_kwargs())
    serial = [seq[i][0] for i in range(len(seq))]
    other = ArraySequence(images, batch_size=16, **aug_kwargs())  # seq has served its pass: the next is epoch 1
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda i: (i, other[i][0]), reversed(range(len(seq)))))
    for i, batch in threaded:
        np.testing.assert_array_equal(batch, serial[i])


def test_pixels_identical_across_processes(images, tmp_path):
    seq = ArraySequence(images, batch_size=32, **aug_kwargs())
    seq.set_epoch(2)
    path = tmp_path / "seq.pkl"
    path.write_bytes(pickle.dumps(seq))
    code = textwrap.dedent(
        f"""
        import pickle, numpy as np
        seq = pickle.loads(open({str(path)!r}, "rb").read())
        np.save({str(tmp_path / "b.npy")!r}, seq[3][0])
        print(seq.epoch)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("2")
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), seq[3][0])


def test_fresh_augmentation_each_epoch(images):
    seq = ArraySequence(images, batch_size=64, **aug_kwargs())
    first = per_sample(seq)  # serves the whole pass of epoch 0
    seq.on_epoch_begin()
    seq.on_epoch_begin()  # now epoch 1: only the first call after the complete pass moves on
    assert seq.epoch == 1
    second = per_sample(seq)
    changed = sum(not np.array_equal(first[k], second[k]) for k in first)
    assert changed > 0.9 * len(first)


def test_memmap_equals_in_ram(images, tmp_path):
    np.save(tmp_path / "x.npy", images)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = ArraySequence(images, np.arange(len(images)), batch_size=50, **aug_kwargs())
    b = ArraySequence(mm, np.arange(len(images)), batch_size=50, **aug_kwargs())
    for i in range(len(a)):
        for u, v in zip(a[i], b[i]):
            np.testing.assert_array_equal(u, v)
    # pickling a memmap-backed sequence references the file instead of copying the data
    assert len(pickle.dumps(b)) < images.nbytes / 10
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(b))[2][0], b[2][0])


# ---- outputs: labels, weights, dtypes, layouts ------------------------------------


def test_one_hot_labels_and_sample_weights():
    x = indexed_images(30)
    y = (np.arange(30) % 4).reshape(30, 1)  # Keras-style (N, 1) labels
    w = np.linspace(0, 1, 30)
    seq = ArraySequence(x, y, batch_size=8, num_classes=4, sample_weight=w, dtype="uint8")
    bx, by, bw = seq[1]
    ids = decode(bx)
    assert by.dtype == np.float32 and by.shape == (8, 4)
    np.testing.assert_array_equal(by.argmax(1), ids % 4)
    np.testing.assert_array_equal(by.sum(1), 1)
    np.testing.assert_array_equal(bw, w[ids])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "uint8"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_dtypes_and_layouts_for_grayscale(dtype, data_format):
    x = np.random.default_rng(1).integers(0, 256, (20, 9, 7), dtype=np.uint8)
    norm = None if dtype == "uint8" else Rescale(1 / 255)
    seq = ArraySequence(x, batch_size=6, shuffle=False, dtype=dtype, data_format=data_format, normalize=norm)
    (bx,) = seq[0]
    assert bx.shape == ((6, 9, 7, 1) if data_format == "channels_last" else (6, 1, 9, 7))
    assert bx.dtype.name == dtype
    expected = R.fused(x, np.arange(6), dtype=dtype, data_format=data_format, **({} if norm is None else {"scale": 1 / 255}))
    np.testing.assert_array_equal(bx.view(np.uint8), expected.view(np.uint8))


def test_for_evaluation_has_no_randomness_and_centre_crops():
    x = np.random.default_rng(2).integers(0, 256, (40, 10, 10, 3), dtype=np.uint8)
    train = ArraySequence(x, np.arange(40), batch_size=8, crop=RandomCrop(8, 8, padding=1), flip="horizontal",
                          normalize=Rescale(1 / 255), num_classes=40)
    val = train.for_evaluation(x, np.arange(40))
    assert isinstance(val.crop, CenterCrop) and val.flip is None and not val.shuffle
    bx, by = val[0]
    np.testing.assert_array_equal(by.argmax(1), np.arange(8))
    np.testing.assert_allclose(bx, x[:8, 1:9, 1:9].astype(np.float32) * np.float32(1 / 255), rtol=1e-6)
    full = ArraySequence(x, crop=RandomCrop(10, 10, padding=4)).for_evaluation(x)
    assert full.crop is None


def test_stats_count_batches_and_kernel_time(images):
    seq = ArraySequence(images, batch_size=32, **aug_kwargs())
    for i in range(3):
        seq[i]
    stats = seq.stats()
    assert stats["batches"] == 3
    assert 0 < stats["kernel_seconds"] <= stats["getitem_seconds"]
    seq.reset_stats()
    assert seq.stats()["batches"] == 0


# ---- bad input: clear errors at construction ----------------------------------------

X = np.zeros((10, 8, 8, 3), np.uint8)
BAD = [
    ("x float", dict(x=X.astype(np.float32)), TypeError, r"x must have dtype uint8, got float32"),
    ("x 2-D", dict(x=np.zeros((10, 8), np.uint8)), ValueError, r"x must be 3-D .* got shape \(10, 8\)"),
    ("x empty", dict(x=np.zeros((0, 8, 8, 3), np.uint8)), ValueError, r"x has no samples"),
    ("y length", dict(y=np.arange(9)), ValueError, r"y must have one entry per sample \(len\(x\) = 10\), got length 9"),
    ("batch_size 0", dict(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    ("batch_size float", dict(batch_size=3.5), TypeError, r"batch_size must be an integer, got 3.5"),
    ("crop too big", dict(crop=RandomCrop(20, 8, padding=2)), ValueError, r"crop: a 20x8 crop does not fit a 8x8 image padded by 2"),
    ("centre crop too big", dict(crop=CenterCrop(9, 9)), ValueError, r"crop: a 9x9 centre crop does not fit a 8x8 image"),
    ("crop tuple", dict(crop=(4, 4)), TypeError, r"crop must be fastseq.RandomCrop"),
    ("num_classes float labels", dict(y=np.linspace(0, 1, 10), num_classes=3), ValueError, r"num_classes=3 needs integer class labels"),
    ("num_classes out of range", dict(y=np.arange(10), num_classes=5), ValueError, r"labels must lie in \[0, num_classes=5\), got 9"),
    ("num_classes without y", dict(num_classes=5), ValueError, r"num_classes was given but y is None"),
    ("sample_weight length", dict(sample_weight=np.ones(11)), ValueError, r"sample_weight must have one entry per sample \(len\(x\) = 10\), got length 11"),
    ("sample_weight 2-D", dict(sample_weight=np.ones((10, 2))), ValueError, r"sample_weight must be a 1-D numeric array"),
    ("unknown dtype", dict(dtype="float64"), ValueError, r"dtype must be one of .* got 'float64'"),
    ("unknown data_format", dict(data_format="NCHW"), ValueError, r"data_format must be one of .* got 'NCHW'"),
    ("unknown flip mode", dict(flip="diagonal"), ValueError, r"RandomFlip: mode must be one of .* got 'diagonal'"),
    ("flip bool", dict(flip=True), TypeError, r"flip must be fastseq.RandomFlip\(mode\), a mode string or None, got True"),
    ("normalize channels", dict(normalize=Normalize([1, 2], [1, 1])), ValueError, r"has 2 per-channel values but x has 3 channels"),
    ("uint8 with normalize", dict(dtype="uint8", normalize=Rescale(1 / 255)), ValueError, r"dtype='uint8' returns raw pixels, but normalize=Rescale"),
    ("negative seed", dict(seed=-1), ValueError, r"seed must be >= 0, got -1"),
    ("x channels first", dict(x=np.zeros((10, 3, 32, 32), np.uint8)), ValueError,
     r"x has shape \(10, 3, 32, 32\), which looks channels-first .* np.ascontiguousarray\(x.transpose\(0, 2, 3, 1\)\)"),
    ("x grayscale channels first", dict(x=np.zeros((10, 1, 28, 28), np.uint8)), ValueError, r"looks channels-first"),
    ("0..1 statistics", dict(normalize=Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))), ValueError,
     r"statistics on the 0..1 scale, but x holds uint8 pixels 0..255 \(they would come out up to 1136\); .*"
     r"Normalize\(mean=\[123.675, 116.28, 103.53\], std=\[58.395, 57.12, 57.375\]\), which equals Rescale\(1/255\)"),
    ("string labels", dict(y=np.array(["cat", "dog"] * 5)), TypeError,
     r"y must be numeric .* got dtype <U3 \(first value np.str_\('cat'\)\); map class names to integers first"),
    ("string labels with num_classes", dict(y=np.array(["cat", "dog"] * 5), num_classes=2), TypeError,
     r"y must be numeric"),
]


def test_inputs_near_the_new_checks_are_still_accepted():
    # channels-last images that are 3 or 4 pixels tall, a no-op Normalize, bool and float targets.
    for shape in [(10, 3, 5, 3), (10, 4, 4, 4), (10, 3, 32, 1), (10, 32, 32, 3), (10, 3, 32)]:
        assert ArraySequence(np.zeros(shape, np.uint8), batch_size=4)[0][0].shape[1:3] == shape[1:3]
    ArraySequence(X, normalize=Normalize(0, 1))
    ArraySequence(X, normalize=Normalize(mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7)))
    ArraySequence(X, y=np.ones(10, bool))
    ArraySequence(X, y=np.ones((10, 3), np.float32))


@pytest.mark.parametrize("kwargs,exc,match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises_at_construction(kwargs, exc, match):
    kwargs = dict(kwargs)
    x = kwargs.pop("x", X)
    with pytest.raises(exc, match=match):
        ArraySequence(x, **kwargs)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: Normalize(mean=0, std=[1, 0, 1]), r"Normalize: std must be > 0 for every channel"),
        (lambda: Normalize(mean=[0, np.nan], std=1), r"Normalize: mean must be finite"),
        (lambda: RandomCrop(0, 4), r"RandomCrop: height must be a positive integer, got 0"),
        (lambda: RandomCrop(4, 4, pad_mode="wrap"), r"RandomCrop: pad_mode must be one of .* got 'wrap'"),
        (lambda: RandomFlip(probability=2), r"RandomFlip: probability must be a number in \[0, 1\], got 2"),
    ],
)
def test_bad_augmentation_specs(build, match):
    with pytest.raises(ValueError, match=match):
        build()
