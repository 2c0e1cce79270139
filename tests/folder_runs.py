"""Photo-folder Keras runs, each in its own process: ``python -m tests.folder_runs SCENARIO ARGS_JSON``.

Keras reads ``KERAS_BACKEND`` once, at import, so ``test_folder_sequence``
runs these with the backend set; each prints one JSON line prefixed ``RESULT``.
"""

from __future__ import annotations

import json
import sys


def scenario_fit_both(directory, cache_dir, epochs=2):
    """``model.fit(train, validation_data=val)`` on ``subset="both"`` of a photo folder: a small CNN, tiny images."""
    import keras

    import fastseq

    train, val = fastseq.image_dataset_from_directory(
        directory, image_size=(24, 24), batch_size=8, seed=1, validation_split=0.25, subset="both",
        cache_dir=cache_dir, verbose=False, crop=fastseq.RandomResizedCrop(24, 24), flip="horizontal",
        normalize=fastseq.Rescale(1 / 255),
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((24, 24, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(train.class_names)),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    counted = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            counted.append(0)

        def on_train_batch_end(self, batch, logs=None):
            counted[-1] += 1

    history = model.fit(train, validation_data=val, epochs=epochs, verbose=0, callbacks=[Count()])
    return {
        "backend": keras.backend.backend(),
        "loss": [float(v) for v in history.history["loss"]],
        "val_loss": [float(v) for v in history.history["val_loss"]],
        "batches_per_epoch": counted,
        "len_train": len(train),
        "epoch_after": train.epoch,
    }


def main():
    scenario, kwargs = sys.argv[1], json.loads(sys.argv[2])
    result = globals()[f"scenario_{scenario}"](**kwargs)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
