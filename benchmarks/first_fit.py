"""The README quickstart as a script, timed: ``python benchmarks/first_fit.py`` (issue 34).

Run it in a fresh process with an empty ``NUMBA_CACHE_DIR`` to see what a new
user waits for: the first ``model.fit`` (the kernel compiling meanwhile), the
second one, and, measured by whoever starts it, the whole script's wall time
(with the thread compile, the script waited at exit for the compile). Prints
one JSON line.
"""

import json
import os
import time

t_start = time.perf_counter()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import fastseq  # noqa: E402

t_imported = time.perf_counter()
x = np.random.default_rng(0).integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
y = np.arange(512) % 10
train = fastseq.ArraySequence(x, y, batch_size=128, crop=fastseq.RandomCrop(32, 32, padding=4),
                              flip="horizontal", normalize=fastseq.Rescale(1 / 255))
model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
t0 = time.perf_counter()
model.fit(train, epochs=1, verbose=0)
t1 = time.perf_counter()
model.fit(train, epochs=1, verbose=0)
t2 = time.perf_counter()
print(json.dumps({"import_s": round(t_imported - t_start, 2), "build_s": round(t0 - t_imported, 2),
                  "fit1_s": round(t1 - t0, 2), "fit2_s": round(t2 - t1, 2), "script_s_before_exit": round(t2 - t_start, 2),
                  "compile_in": os.environ.get("FASTSEQ_COMPILE_IN", "(default)"),
                  "kernel_ready_at_end": train._plan._tier_job().ready()}), flush=True)
