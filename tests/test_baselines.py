"""The baselines are correct, so speed ratios against them are fair.

Each baseline must produce the same kind of batch as fastseq (float32 NHWC,
every output a crop of the zero-padded image, maybe flipped, normalised per
channel) and NumpySequence must keep the Sequence contract of the seed
document (exactly once per epoch, short last batch).
"""

import subprocess
import sys

import numpy as np
import pytest

from benchmarks import checks
from benchmarks.checks import windows
from fastseq.bench import baselines, synthetic

MEAN = np.array(synthetic.CIFAR_MEAN)
STD = np.array(synthetic.CIFAR_STD)


@pytest.fixture(scope="module")
def small():
    """100 seeded CIFAR-shaped images, labels = their own index."""
    x, _ = synthetic.cifar_like(100, seed=3)
    return x, np.arange(100, dtype=np.int64)


def denormalize(out, mean=MEAN, std=STD):
    """Map a normalised float batch back to uint8 pixels, checking they were integers."""
    return checks.denormalize(out, mean, std, atol=1e-3)


def assert_augmented(out, x, idx, padding, mean=MEAN, std=STD):
    """Each output sample is a (possibly flipped) window of its zero-padded source."""
    pixels = denormalize(out, mean, std)
    found = []
    for j, k in enumerate(idx):
        f = windows(pixels[j], x[k], padding)
        assert f, f"sample {j} (index {k}) is not a crop of its padded source image"
        found.append(f[0])
    return found


# -- import hygiene ---------------------------------------------------------------


def test_modules_import_without_keras():
    code = (
        "import sys, fastseq.bench.baselines, fastseq.bench.cli, fastseq.bench.kernel_rows; "
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- numpy_batch --------------------------------------------------------------------


def test_numpy_batch_shape_dtype_and_crops(small):
    x, _ = small
    idx = np.array([5, 0, 99, 42, 7, 7])
    out = baselines.numpy_batch(x, idx, np.random.default_rng(0), mean=MEAN, std=STD)
    assert out.shape == (6, 32, 32, 3) and out.dtype == np.float32
    found = assert_augmented(out, x, idx, padding=4)
    assert {f[2] for f in found} == {False, True}, "expected both flipped and unflipped samples"


def test_numpy_batch_unaugmented_pixels_normalise_exactly(small):
    x, _ = small
    idx = np.arange(10)
    out = baselines.numpy_batch(x, idx, np.random.default_rng(0), padding=0, flip=False, mean=MEAN, std=STD)
    np.testing.assert_allclose(out, (x[idx] - MEAN) / STD, rtol=1e-6, atol=1e-5)
    raw = baselines.numpy_batch(x, idx, np.random.default_rng(0), padding=0, flip=False)
    np.testing.assert_array_equal(raw, x[idx].astype(np.float32))


def test_numpy_batch_grayscale_gets_a_channel_axis():
    x, _ = synthetic.mnist_like(20)
    out = baselines.numpy_batch(x, np.arange(8), np.random.default_rng(1), crop=(28, 28), padding=2, mean=33.3, std=78.6)
    assert out.shape == (8, 28, 28, 1)
    assert_augmented(out, x, np.arange(8), padding=2, mean=33.3, std=78.6)


def test_numpy_batch_rejects_bad_input(small):
    x, _ = small
    with pytest.raises(ValueError, match="uint8"):
        baselines.numpy_batch(x.astype(np.float32), [0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="crop"):
        baselines.numpy_batch(x, [0], np.random.default_rng(0), crop=(48, 32), padding=4)


# -- NumpySequence ------------------------------------------------------------------


def test_numpy_sequence_exactly_once_per_epoch_and_short_last_batch(small):
    x, y = small
    seq = baselines.NumpySequence(x, y, batch_size=32, mean=MEAN, std=STD, seed=1)
    assert len(seq) == 4
    orders = []
    for _epoch in range(2):
        batches = [seq[i] for i in range(len(seq))]
        assert [len(b[1]) for b in batches] == [32, 32, 32, 4]
        assert all(b[0].shape == (len(b[1]), 32, 32, 3) and b[0].dtype == np.float32 for b in batches)
        labels = np.concatenate([b[1] for b in batches])
        np.testing.assert_array_equal(np.sort(labels), y)
        orders.append(labels)
        seq.on_epoch_end()
    assert not np.array_equal(orders[0], orders[1]), "on_epoch_end did not reshuffle"
    xb, yb = baselines.NumpySequence(x, y, batch_size=32, mean=MEAN, std=STD, seed=1)[3]
    assert_augmented(xb, x, yb, padding=4)


def test_numpy_sequence_unshuffled_order_reproducible_and_bounds(small):
    x, y = small
    seq = baselines.NumpySequence(x, y, batch_size=30, shuffle=False, mean=MEAN, std=STD)
    np.testing.assert_array_equal(np.concatenate([seq[i][1] for i in range(len(seq))]), y)
    again = baselines.NumpySequence(x, y, batch_size=30, shuffle=False, mean=MEAN, std=STD)
    np.testing.assert_array_equal(seq[2][0], again[2][0])
    with pytest.raises(IndexError):
        seq[len(seq)]
    images_only = baselines.NumpySequence(x, batch_size=30, mean=MEAN, std=STD)[0]
    assert isinstance(images_only, np.ndarray) and images_only.shape == (30, 32, 32, 3)


def test_numpy_sequence_is_a_pydataset(small):
    import keras

    seq = baselines.NumpySequence(small[0], small[1], batch_size=50, workers=2)
    assert isinstance(seq, keras.utils.PyDataset)
    assert seq.workers == 2


# -- tf.data ------------------------------------------------------------------------


def test_tf_data_pipeline_one_epoch_exactly_once_and_crops(small):
    x, y = small
    ds = baselines.tf_data_pipeline(x, y, batch_size=32, seed=2, mean=MEAN, std=STD)
    batches = [(xb.numpy(), yb.numpy()) for xb, yb in ds]
    assert [len(b[1]) for b in batches] == [32, 32, 32, 4]
    assert all(b[0].shape[1:] == (32, 32, 3) and b[0].dtype == np.float32 for b in batches)
    labels = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(np.sort(labels), y)
    assert not np.array_equal(labels, y), "not shuffled"
    xb, yb = batches[0]
    found = assert_augmented(xb[:12], x, yb[:12], padding=4)
    assert len({f[:2] for f in found}) > 1, "tf.data should draw a crop offset per sample"


def test_tf_data_pipeline_unaugmented_normalises_and_grayscale(small):
    x, y = small
    ds = baselines.tf_data_pipeline(x[:8], y[:8], batch_size=8, padding=0, flip=False, mean=MEAN, std=STD, shuffle=False)
    (xb, yb), = list(ds)
    np.testing.assert_allclose(xb.numpy(), (x[:8] - MEAN) / STD, rtol=1e-6, atol=1e-5)
    g, _ = synthetic.mnist_like(10)
    (gb,) = list(baselines.tf_data_pipeline(g, batch_size=10, crop=(28, 28), padding=2, shuffle=False))
    assert gb.shape == (10, 28, 28, 1)
    assert_augmented(gb.numpy(), g, np.arange(10), padding=2, mean=0.0, std=1.0)


# -- Grain --------------------------------------------------------------------------


def test_grain_pipeline_one_epoch_exactly_once_crops_and_determinism(small):
    pytest.importorskip("grain")
    x, y = small
    ds = baselines.grain_pipeline(x, y, batch_size=32, seed=2, mean=MEAN, std=STD, read_threads=2)
    batches = list(ds)
    assert [len(b[1]) for b in batches] == [32, 32, 32, 4]
    assert all(b[0].shape[1:] == (32, 32, 3) and b[0].dtype == np.float32 for b in batches)
    labels = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(np.sort(labels), y)
    assert not np.array_equal(labels, y), "not shuffled"
    xb, yb = batches[0]
    found = assert_augmented(xb[:12], x, yb[:12], padding=4)
    assert len({f[:2] for f in found}) > 1, "grain should draw a crop offset per record"
    again = list(baselines.grain_pipeline(x, y, batch_size=32, seed=2, mean=MEAN, std=STD, read_threads=1))
    for (a, la), (b, lb) in zip(batches, again):  # Grain's draws are per record: threads do not change them
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(a, b)


def test_grain_pipeline_unaugmented_normalises_repeats_and_grayscale(small):
    pytest.importorskip("grain")
    x, y = small
    ds = baselines.grain_pipeline(x[:8], y[:8], batch_size=8, padding=0, flip=False, mean=MEAN, std=STD,
                                  shuffle=False, repeat=True)
    it = iter(ds)
    for _ in range(3):  # repeat=True: epoch after epoch
        xb, yb = next(it)
        np.testing.assert_allclose(xb, (x[:8] - MEAN) / STD, rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(yb, y[:8])
    g, _ = synthetic.mnist_like(10)
    (gb,) = list(baselines.grain_pipeline(g, batch_size=10, crop=(28, 28), padding=2, shuffle=False))
    assert gb.shape == (10, 28, 28, 1)
    assert_augmented(gb, g, np.arange(10), padding=2, mean=0.0, std=1.0)


# -- Keras layers -------------------------------------------------------------------


def test_keras_layers_pipeline_crops_with_one_offset_per_batch(small):
    """Confirms the note the benchmarks carry: one crop offset for the whole batch."""
    x, _ = small
    f = baselines.keras_layers_pipeline(mean=MEAN, std=STD, seed=4)
    assert f.note == baselines.KERAS_RANDOM_CROP_NOTE
    seen = set()
    for _ in range(3):
        idx = np.arange(16)
        out = np.asarray(f(x[idx]))
        assert out.shape == (16, 32, 32, 3) and out.dtype == np.float32
        found = assert_augmented(out, x, idx, padding=4)
        offsets = {fd[:2] for fd in found}
        assert len(offsets) == 1, f"expected one offset for the batch, got {offsets}"
        seen |= offsets
        assert {fd[2] for fd in found} == {False, True}, "RandomFlip should flip per sample"
    assert len(seen) > 1, "the batch offset should change from call to call"


def test_keras_layers_pipeline_unaugmented_normalises(small):
    x, _ = small
    f = baselines.keras_layers_pipeline(padding=0, mean=MEAN, std=STD, graph=False)
    out = np.asarray(f(x[:6]))
    # Flips are random, so compare each sample with its source or its mirror.
    expected = (x[:6] - MEAN) / STD
    for j in range(6):
        ok = [np.allclose(out[j], e, rtol=1e-6, atol=1e-5) for e in (expected[j], expected[j][:, ::-1])]
        assert any(ok), f"sample {j} is not (x - mean) / std"
