"""One process of the shard feed benchmark: ``python -m benchmarks.shard_feed ARGS_JSON``.

``model.fit`` of the feed suite's trivial model, fed by
``ArraySequence(shard=(index, count))`` over the memory-mapped CIFAR-shaped
``.npy``, with ``NUMBA_NUM_THREADS`` set by the caller. After ``warmup``
steps every process of a row waits at a file barrier, so the timed steps of
the processes run at the same time; each then reports its own images/s and
the wall-clock moments its timed steps began and ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


def sequence_kwargs(batch_size):
    """The feed suite's fastseq row: pad 4, random 32x32 crop, horizontal flip, CIFAR normalisation, float32."""
    from fastseq.augment import Normalize, RandomCrop, RandomFlip
    from fastseq.bench import synthetic

    return dict(
        batch_size=batch_size,
        seed=0,
        crop=RandomCrop(32, 32, padding=4),
        flip=RandomFlip("horizontal"),
        normalize=Normalize(synthetic.CIFAR_MEAN, synthetic.CIFAR_STD),
    )


def main(index, count, x_path, y_path, batch_size, steps, warmup, barrier_dir, out_path):
    import numpy as np

    from fastseq import ArraySequence
    from fastseq.bench import feed

    keras = feed._keras()
    x, y = np.load(x_path, mmap_mode="r"), np.load(y_path)
    served = []

    class Seq(ArraySequence):
        def __getitem__(self, i):
            served.append(int(i))
            return super().__getitem__(i)

    seq = Seq(x, y, shard=(index, count), **sequence_kwargs(batch_size))
    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == warmup:
                open(os.path.join(barrier_dir, f"ready{index}"), "w").close()
                deadline = time.time() + 120
                while len(os.listdir(barrier_dir)) < count and time.time() < deadline:
                    time.sleep(0.002)
                marks["start"] = time.time()

        def on_train_batch_end(self, batch, logs=None):
            marks["end"] = time.time()

    model = feed.trivial_model(x.shape[1:])
    model.fit(seq, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[Clock()], shuffle=False)
    seq.set_epoch(0)  # Keras may have prefetched to the end of the pass and moved on: check epoch 0's batch 0
    first = seq.indices(0)
    batch0 = seq[0][0]
    result = {
        "index": index,
        "count": count,
        "steps": steps,
        "images_per_sec": steps * batch_size / (marks["end"] - marks["start"]),
        "start": marks["start"],
        "end": marks["end"],
        "served": served,
        "batch0_indices": first.tolist(),
        "batch0_md5": hashlib.md5(np.ascontiguousarray(batch0).tobytes()).hexdigest(),
        "numba_threads": int(os.environ.get("NUMBA_NUM_THREADS", "0")),
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(**json.loads(sys.argv[1]))
