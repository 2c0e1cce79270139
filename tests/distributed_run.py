"""One process of the 2-process ``keras.distribution.DataParallel`` run: ``python -m tests.distributed_run ARGS_JSON``.

``tests/test_distributed.py`` starts two of these on 127.0.0.1 (JAX backend,
CPU, gloo between the processes). Each one:

1. joins the cluster (``keras.distribution.initialize``) and sets
   ``DataParallel(devices=jax.devices(), auto_shard_dataset=False)``;
2. fits a small CNN for 3 epochs through ``ArraySequence(shard="auto",
   crop=..., flip=..., normalize=...)`` with ``for_evaluation`` validation,
   then evaluates;
3. trains again from the same initial weights with
   ``fastseq.BackupAndRestore``, stopped by an exception as epoch 2 begins,
   and then once more with fresh model and sequence objects over the same
   backup (the restart);
4. evaluates the trained weights in a single-process model (the
   distribution unset) on an unsharded sequence over the whole set.

It writes ``result<process_id>.json``: weight digests, the
batches it trained on (epoch, batch, sample indices, per-sample pixel
digest), the metrics. Batches are recorded in ``__getitem__`` from
``on_train_begin`` on: with ``workers=1`` and no ``steps_per_epoch`` Keras
then trains on every batch it requests (the JAX backend's probe of batch 0
comes before ``on_train_begin`` and is not trained on).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np

SEED = 5
MEAN, STD = (120.0, 110.0, 100.0), (60.0, 62.0, 64.0)


def data(n_train, n_val, hw=8):
    """Seeded uint8 images and integer labels 0..2."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_val, hw, hw, 3), dtype=np.uint8)
    y = rng.integers(0, 3, n_train + n_val).astype(np.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def sequence_kwargs(batch_size):
    from fastseq import Normalize, RandomCrop

    return dict(
        batch_size=batch_size,
        seed=SEED,
        crop=RandomCrop(8, 8, padding=2),
        flip="horizontal",
        normalize=Normalize(MEAN, STD),
    )


def pixel_digests(batch_x):
    return [hashlib.md5(np.ascontiguousarray(b).tobytes()).hexdigest()[:12] for b in np.asarray(batch_x)]


def weights_digest(weights):
    h = hashlib.md5()
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def main(process_id, port, out_dir, n_train, n_val, batch_size, epochs):
    import jax
    import keras

    keras.distribution.initialize(job_addresses=f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
    )
    import fastseq
    from fastseq import ArraySequence

    class Recorded(ArraySequence):
        def __init__(self, *args, log, **kwargs):
            super().__init__(*args, **kwargs)
            self.log, self.recording = log, False

        def __getitem__(self, i):
            batch = super().__getitem__(i)
            # workers=1: nothing else serves in between, so epoch/indices describe this very batch.
            if self.recording:
                self.log.append([self.epoch, int(i) % len(self), self.indices(i).tolist(), pixel_digests(batch[0])])
            return batch

    class Record(keras.callbacks.Callback):
        """Last in the list: logs from on_train_begin on, after any restore; the JAX probe before is not trained."""

        def __init__(self, seq):
            super().__init__()
            self.seq = seq

        def on_train_begin(self, logs=None):
            self.seq.recording = True

    x, y, xv, yv = data(n_train, n_val)

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential(
            [
                keras.Input((8, 8, 3)),
                keras.layers.Conv2D(4, 3, activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        m.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    out = {"shard": None, "len": None}

    # 2. The uninterrupted run.
    log = []
    seq = Recorded(x, y, shard="auto", log=log, **sequence_kwargs(batch_size))
    val = seq.for_evaluation(xv, yv)
    out.update(shard=list(seq.shard), len=len(seq), val_shard=list(val.shard), val_len=len(val))
    m = model()
    # fit(shuffle=False): the sequence shuffles; Keras' own batch-order shuffle draws from each
    # process's Python random and could hand the processes batches of different sizes.
    hist = m.fit(seq, epochs=epochs, validation_data=val, shuffle=False, verbose=0, callbacks=[Record(seq)])
    out["log"] = log
    out["history"] = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    weights = [np.asarray(w) for w in m.get_weights()]
    out["weights_md5"] = weights_digest(weights)
    out["evaluate"] = {k: float(v) for k, v in m.evaluate(val, verbose=0, return_dict=True).items()}

    # 3. Interrupted as epoch 2 begins, then restarted with fresh objects over the same backup.
    class Stop(Exception):
        pass

    class StopAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == epochs - 1:
                raise Stop

    backup = os.path.join(out_dir, "backup")  # one folder for both: each process writes its shard's subfolder
    mine = os.path.join(backup, f"shard-{process_id}-of-2")

    def files():
        return sorted(os.listdir(mine)) if os.path.isdir(mine) else []
    first = Recorded(x, y, shard="auto", log=[], **sequence_kwargs(batch_size))
    try:
        model().fit(first, epochs=epochs, shuffle=False, verbose=0,
                    callbacks=[fastseq.BackupAndRestore(backup, first), StopAt()])
        raise AssertionError("the run was not stopped")
    except Stop:
        pass
    out["backup_after_stop"] = files()
    resumed_log = []
    again = Recorded(x, y, shard="auto", log=resumed_log, **sequence_kwargs(batch_size))
    m2 = model()
    m2.fit(again, epochs=epochs, shuffle=False, verbose=0,
           callbacks=[fastseq.BackupAndRestore(backup, again), Record(again)])
    out["resumed_log"] = resumed_log
    out["resumed_weights_md5"] = weights_digest([np.asarray(w) for w in m2.get_weights()])
    out["backup_after_resume"] = files()

    # 4. One process, the whole set, the same weights: the distribution unset, an unsharded sequence.
    keras.distribution.set_distribution(None)
    single = model()
    single.set_weights(weights)
    whole = ArraySequence(x, y, **sequence_kwargs(batch_size)).for_evaluation(xv, yv, batch_size=2 * batch_size)
    assert whole.shard == (0, 1)
    out["single_evaluate"] = {k: float(v) for k, v in single.evaluate(whole, verbose=0, return_dict=True).items()}

    with open(os.path.join(out_dir, f"result{process_id}.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(**json.loads(sys.argv[1]))
