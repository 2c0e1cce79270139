"""A new user's first run: the README quickstart as a script, beside the same script on tf.data (issue 34).

``python -m fastseq.bench.first_run [fastseq|tf.data]`` is the script: the
quickstart's model trained for two epochs of one ``fit`` each, timed inside
(imports, building, first and second ``fit``); it prints one JSON line.
With ``tf.data`` the same model trains on the same data through the
TensorFlow tutorial's pipeline (pad, random crop, random flip, rescale;
``map`` with ``AUTOTUNE``, ``prefetch``).

:func:`measure` runs it as the rows of ``benchmarks/test_first_run.py``
(group ``first-run``) and of ``python -m fastseq bench --compile``, each in
a fresh interpreter timed from start to exit: ``tf.data``;
``fastseq-empty-cache`` (an empty ``NUMBA_CACHE_DIR``: a new venv, CI job or
Colab session; the kernel compiles in a separate process while the NumPy
tier serves); ``fastseq-warm-cache`` (the cache that compile left).
:func:`verdicts` holds them to issue 34's targets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROWS = ("tf.data", "fastseq-empty-cache", "fastseq-warm-cache")

#: issue 34's targets: (label, row, its figure, reference row, its figure, most allowed ratio)
TARGETS = (
    ("first fit, empty cache / tf.data", "fastseq-empty-cache", "fit1_s", "tf.data", "fit1_s", 1.5),
    ("whole script, empty cache / tf.data", "fastseq-empty-cache", "script_s", "tf.data", "script_s", 1.3),
    ("second fit while compiling / warm cache", "fastseq-empty-cache", "fit2_s", "fastseq-warm-cache", "fit2_s", 2.0),
)


def main(argv):
    t_start = time.perf_counter()
    loader = argv[1] if len(argv) > 1 else "fastseq"
    if loader not in ("fastseq", "tf.data"):
        raise SystemExit(f"loader must be fastseq or tf.data, got {loader!r}")
    import keras
    import numpy as np

    if loader == "fastseq":
        # The README's names, from their modules (the bench imports nothing through the facade, which only
        # hands these on: the same import cost).
        from fastseq.augment import RandomCrop, Rescale
        from fastseq.sequence.array_sequence import ArraySequence

    t_imported = time.perf_counter()
    x = np.random.default_rng(0).integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
    y = np.arange(512) % 10
    if loader == "fastseq":
        train = ArraySequence(x, y, batch_size=128, crop=RandomCrop(32, 32, padding=4), flip="horizontal",
                              normalize=Rescale(1 / 255))
    else:
        import tensorflow as tf

        def augment(img, label):
            img = tf.image.pad_to_bounding_box(img, 4, 4, 40, 40)
            img = tf.image.random_crop(img, (32, 32, 3))
            img = tf.image.random_flip_left_right(img)
            return tf.cast(img, tf.float32) / 255.0, label

        train = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x))
                 .map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(128).prefetch(tf.data.AUTOTUNE))
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    history = model.fit(train, epochs=1, verbose=0)
    t1 = time.perf_counter()
    model.fit(train, epochs=1, verbose=0)
    t2 = time.perf_counter()
    print(json.dumps({
        "loader": loader, "import_s": round(t_imported - t_start, 2), "build_s": round(t0 - t_imported, 2),
        "fit1_s": round(t1 - t0, 2), "fit2_s": round(t2 - t1, 2), "script_s_before_exit": round(t2 - t_start, 2),
        "loss": float(history.history["loss"][0]), "compile_in": os.environ.get("FASTSEQ_COMPILE_IN", "(default)"),
        "kernel_ready_at_end": train._plan._tier_job().ready() if loader == "fastseq" else None,
    }), flush=True)
    return 0


def _package_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(loader, cache=None, timeout=600):
    """The script for ``loader`` in a fresh interpreter (``NUMBA_CACHE_DIR=cache`` if given); its JSON, with
    ``script_s``: the wall time from start to exit."""
    root = _package_root()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fastseq.bench.first_run", loader], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=root)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"first_run {loader} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]), script_s=round(wall, 2))


def wait_for_compile(cache, timeout=600):
    """Block until the compile processes started on ``cache`` have finished (their lock files are free)."""
    import fcntl
    import glob

    deadline = time.monotonic() + timeout
    for lock in glob.glob(os.path.join(str(cache), "**", "fastseq-compile-*.lock"), recursive=True):
        with open(lock, "a+b") as f:
            while True:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the compile process holding {lock} ran past {timeout} s") from None
                    time.sleep(0.2)


def measure(row, cache):
    """One row's figures: ``tf.data``, or the fastseq script on ``cache`` (for ``fastseq-warm-cache``, call
    :func:`wait_for_compile` first: the compile an earlier ``fastseq-empty-cache`` row left running fills it)."""
    if row == "tf.data":
        return run_script("tf.data")
    return run_script("fastseq", cache)


def verdicts(rows):
    """Issue 34's targets on ``rows`` (``{row: figures}``), for the pairs that ran: time ratios against the reference."""
    from fastseq.bench import verdicts as v

    got = []
    for label, row, figure, ref, ref_figure, most in TARGETS:
        if row in rows and ref in rows:
            a, b = rows[row][figure], rows[ref][ref_figure]
            got.append(v.judge(f"first-run {figure}", f"{label} ({a:.1f} s / {b:.1f} s)", a / b,
                               v.Target(f"first-run {figure}", "max", most,
                                        "Keras, TensorFlow and the NumPy tier beside the compile")))
    return got


def table_lines(rows):
    """The rows as text lines: each script's first and second ``fit`` and its whole time."""
    out = ["first run: the README quickstart as a script in a fresh process (2 fits of 1 epoch, 512 CIFAR-shaped "
           "images, batch 128)"]
    for name, r in rows.items():
        out.append(f"  {name:<22} first fit {r['fit1_s']:6.2f} s  second fit {r['fit2_s']:6.2f} s  "
                   f"whole script {r['script_s']:6.2f} s  (imports {r['import_s']:.1f} s)")
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv))
