"""model.fit / evaluate / predict through ArraySequence, on the backend KERAS_BACKEND names.

tests/test_backends.py reruns this module under every other installed backend.
"""

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from fastseq import ArraySequence, RandomCrop, Rescale

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.slow


def learnable_data(n=384, seed=0):
    """Class k images are brighter in channel k % 3 and carry a k-dependent stripe: learnable by a tiny CNN."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 120, (n, 12, 12, 3)).astype(np.int64)
    x[np.arange(n), :, :, y % 3] += 120
    x[np.arange(n), (y * 3) % 12, :, :] = 255
    return x.clip(0, 255).astype(np.uint8), y


def small_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.mark.parametrize(
    "workers,multiprocessing", [(1, False), (2, False), (2, True)], ids=["workers1", "threads2", "processes2"]
)
def test_fit_trains_and_loss_falls(workers, multiprocessing):
    x, y = learnable_data()
    seq = ArraySequence(
        x,
        y,
        batch_size=32,
        crop=RandomCrop(12, 12, padding=1),
        flip="vertical",
        normalize=Rescale(1 / 255),
        workers=workers,
        use_multiprocessing=multiprocessing,
    )
    # JAX and torch build the model with a batch pulled through Keras' enqueuer (tests/test_epochs.py)
    backend = {"jax": "JAX", "torch": "torch"}.get(keras.backend.backend())
    probe_prefetch = backend is not None and workers > 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = small_model().fit(seq, epochs=4, verbose=0)
    loss = history.history["loss"]
    assert np.all(np.isfinite(loss))
    assert loss[-1] < 0.8 * loss[0], loss
    if probe_prefetch:
        # Keras-JAX's and Keras-torch's probe starts the prefetching workers, which serve most or all of a
        # pass before training (see tests/test_epochs.py): the sequence says so, naming workers=1
        assert any(f"on the {backend} backend" in str(w.message) and "workers=1" in str(w.message) for w in caught)
        return
    # one pass per Keras epoch, despite Keras' extra hook calls; the fourth pass is complete, so the
    # on_epoch_end that follows it has moved the sequence to epoch 4, where its next batch comes from
    assert seq.epoch == 4
    assert not any("ArraySequence" in str(w.message) for w in caught)


def test_evaluate_and_predict_are_aligned_with_inputs():
    x, y = learnable_data(200, seed=1)
    train = ArraySequence(x, y, batch_size=32, normalize=Rescale(1 / 255))
    model = small_model()
    model.fit(train, epochs=2, verbose=0)
    test = train.for_evaluation(x, y, batch_size=48)
    preds = model.predict(test, verbose=0)
    direct = model.predict(x.astype(np.float32) * np.float32(1 / 255), batch_size=48, verbose=0)
    assert preds.shape == (200, 4)
    np.testing.assert_allclose(preds, direct, rtol=1e-4, atol=1e-5)
    evaluated = model.evaluate(test, verbose=0, return_dict=True)
    direct_eval = model.evaluate(x.astype(np.float32) * np.float32(1 / 255), y, batch_size=48, verbose=0, return_dict=True)
    assert evaluated["loss"] == pytest.approx(direct_eval["loss"], rel=1e-4)


def test_two_identical_fits_see_identical_batches():
    x, y = learnable_data(160, seed=2)

    class Recording(ArraySequence):
        def __getitem__(self, i):
            batch = super().__getitem__(i)
            self.log.append((self.epoch, int(i), batch[0].sum(dtype=np.float64)))
            return batch

    runs = []
    for _ in range(2):
        seq = Recording(x, y, batch_size=32, crop=RandomCrop(12, 12, padding=2), flip="horizontal", seed=5)
        seq.log = []
        small_model().fit(seq, epochs=3, verbose=0, shuffle=False)
        runs.append(sorted(seq.log))
    assert runs[0] == runs[1]
    assert {e for e, _, _ in runs[0]} == {0, 1, 2}
