"""Keras runs for the backend tests, each in its own process: ``python -m tests.keras_runs SCENARIO ARGS_JSON``.

Keras reads ``KERAS_BACKEND`` once, at import, so a test that wants another
backend runs one of these scenarios in a subprocess with that variable set
(see ``run``). Each scenario prints one JSON line, prefixed ``RESULT``.

Trained samples are logged from inside the train step (``run_eagerly=True``
makes the batch concrete on every backend), not from ``__getitem__``: what
Keras prefetched but did not train on must not count.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
_MODULE_OF = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def backend_available(backend):
    import importlib.util

    return importlib.util.find_spec(_MODULE_OF[backend]) is not None


#: Backends whose tests must run, not skip: CI sets it (.ci/run), so that a backend that failed to
#: install fails the run instead of turning its tests into skips. Space or comma separated.
REQUIRE_ENV = "FASTSEQ_REQUIRE_BACKENDS"


def require(backend):
    """Skip the calling test when ``backend`` is not installed, or fail it where ``REQUIRE_ENV`` names it."""
    import pytest

    if backend_available(backend):
        return
    required = os.environ.get(REQUIRE_ENV, "").replace(",", " ").split()
    if backend in required:
        pytest.fail(f"{backend} is not installed but {REQUIRE_ENV}={os.environ[REQUIRE_ENV]!r} requires its tests")
    pytest.skip(f"{backend} is not installed")


def run(scenario, backend, timeout=300, **kwargs):
    """Run ``scenario(**kwargs)`` under ``backend`` in a fresh interpreter; return its result dict.

    Returns ``{"rc": ..., "result": ..., "stderr": ...}``; ``result`` is None if
    the process died before printing it (e.g. the SIGKILL of a resume test).
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.keras_runs", scenario, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=root,
        env=env,
    )
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    return {"rc": proc.returncode, "result": result, "stderr": proc.stderr[-3000:]}


# ---- inside the subprocess ---------------------------------------------------------------


def indexed_images(n, hw=(4, 4)):
    """Pixels encode the sample index (channel 0: low byte, channel 1: high byte), whatever the flips."""
    x = np.zeros((n, *hw, 3), np.uint8)
    x[..., 0] = (np.arange(n) % 256)[:, None, None]
    x[..., 1] = (np.arange(n) // 256)[:, None, None]
    x[..., 2] = np.random.default_rng(n).integers(0, 256, (n, *hw))  # something for the flips to move
    return x


def decode(batch_x):
    b = np.asarray(batch_x, np.float64)
    return (b[:, 0, 0, 0] + 256 * b[:, 0, 0, 1]).astype(np.int64).tolist()


def _model(keras, shape, log=None, seed=0):
    """A tiny Flatten+Dense model; with ``log``, its train step appends (indices, pixel md5) of each trained batch."""

    class Logged(keras.Model):
        def train_step(self, *args):
            data = args[-1]  # TensorFlow/torch: (data,); JAX: (state, data)
            if log is not None:
                x = keras.ops.convert_to_numpy(data[0])
                log.append((decode(x), hashlib.md5(np.ascontiguousarray(x).tobytes()).hexdigest()))
            return super().train_step(*args)

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    outputs = keras.layers.Dense(4)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    model = Logged(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=log is not None,
    )
    return model


def _sequence(n=100, batch_size=10, **kwargs):
    from fastseq import ArraySequence, RandomCrop

    x = indexed_images(n)
    y = np.arange(n) % 4
    kwargs.setdefault("crop", RandomCrop(4, 4, padding=1, pad_mode="reflect"))
    kwargs.setdefault("flip", "horizontal")
    return ArraySequence(x, y, batch_size=batch_size, seed=7, **kwargs)


def scenario_patterns():
    """The hook and request pattern Keras uses, plus what the sequence did with it."""
    import keras

    from fastseq import ArraySequence

    out = {}

    def logged(log, **kwargs):
        class Logged(ArraySequence):
            def __getitem__(self, i):
                log.append(f"[{i}]")
                return super().__getitem__(i)

            def on_epoch_begin(self):
                log.append("begin")
                super().on_epoch_begin()

            def on_epoch_end(self):
                log.append("end")
                super().on_epoch_end()

        x = indexed_images(50)
        return Logged(x, np.arange(50) % 4, batch_size=10, seed=1, flip="horizontal", **kwargs)

    class Marks(keras.callbacks.Callback):
        def __init__(self, log, seq):
            super().__init__()
            self.log, self.seq, self.epochs = log, seq, []

        def on_epoch_begin(self, epoch, logs=None):
            self.log.append("|")
            self.epochs.append((epoch, self.seq.epoch))

    for name, kwargs, fit_kwargs in [
        ("plain", {}, {}),
        ("steps2", {}, {"steps_per_epoch": 2}),
        ("threads2", {"workers": 2}, {}),
        ("processes2", {"workers": 2, "use_multiprocessing": True}, {}),
    ]:
        log = []
        seq = logged(log, **kwargs)
        marks = Marks(log, seq)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _model(keras, (4, 4, 3)).fit(seq, epochs=3, verbose=0, shuffle=False, callbacks=[marks], **fit_kwargs)
        out[name] = {
            "log": " ".join(log),
            "epochs_at_begin": marks.epochs,
            "epoch_after": seq.epoch,
            "warnings": [str(w.message) for w in caught if "ArraySequence" in str(w.message)],
        }
    # evaluate and predict on a sequence: a pass each, which moves a training sequence on
    log = []
    seq = logged(log)
    model = _model(keras, (4, 4, 3))
    model.evaluate(seq, verbose=0)
    log.append("/")
    model.predict(seq, verbose=0)
    out["evaluate_predict"] = {"log": " ".join(log), "epoch_after": seq.epoch, "state": seq.get_state()}
    return out


def scenario_hand_loop(epochs=3):
    """The seed's hand-written loop: seq[i] for every i, then on_epoch_end(); and the same with no hook at all."""
    import keras  # noqa: F401  (the backend under test is loaded, as in a user's script)

    out = {}
    for hooks in (True, False):
        seq = _sequence()
        passes = []
        for _ in range(epochs):
            samples, digest = [], hashlib.md5()
            for i in range(len(seq)):
                x, _y = seq[i]
                samples += decode(x)
                digest.update(np.ascontiguousarray(x).tobytes())
            passes.append({"samples": samples, "md5": digest.hexdigest(), "epoch": seq.epoch})
            if hooks:
                seq.on_epoch_end()
        out["hooks" if hooks else "no_hooks"] = passes
    return out


def scenario_trained(
    epochs, steps_per_epoch=None, workers=1, use_multiprocessing=False, shuffle=False, start_method=None, n=100
):
    """Which samples each Keras epoch trained on, logged from inside the train step."""
    import multiprocessing

    import keras

    if start_method is not None:  # how Keras' worker pool starts its processes (default: fork on Linux)
        multiprocessing.set_start_method(start_method, force=True)
    seq = _sequence(n=n, workers=workers, use_multiprocessing=use_multiprocessing)
    log = []
    marks = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.append(len(log))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _model(keras, (4, 4, 3), log=log).fit(
            seq, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0, shuffle=shuffle, callbacks=[Epochs()]
        )
    marks.append(len(log))
    return {
        "batches": [samples for samples, _ in log],
        "epoch_starts": marks,
        "len": len(seq),
        "warnings": [str(w.message) for w in caught if "ArraySequence" in str(w.message)],
    }


def scenario_augmented(epochs=2, workers=2):
    """``model.fit`` on a sequence with an ``augment`` list, batches fetched by ``workers`` threads: what was served,
    and whether each served batch equals the one a fresh sequence makes offline for that epoch and batch."""
    import keras

    import fastseq

    log = []

    def make(cls=fastseq.ArraySequence, **kw):
        return cls(indexed_images(60, (12, 12)), np.arange(60) % 4, batch_size=10, seed=5, flip="horizontal",
                   crop=fastseq.RandomCrop(12, 12, padding=2),
                   augment=[fastseq.RandomRotation(0.1), fastseq.RandomColorJitter(brightness_factor=0.2)], **kw)

    class Logged(fastseq.ArraySequence):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            log.append((tuple(int(v) for v in np.asarray(y)), hashlib.md5(np.ascontiguousarray(x).tobytes()).hexdigest()))
            return x, y

    seq = make(Logged, workers=workers)
    _model(keras, (12, 12, 3)).fit(seq, epochs=epochs, verbose=0)
    fresh = make()
    offline = {}
    for epoch in range(epochs + 1):  # JAX and torch: their workers may prefetch from the pass after the last
        fresh.set_epoch(epoch)
        for i in range(len(fresh)):
            x, y = fresh[i]
            offline[tuple(int(v) for v in y), hashlib.md5(np.ascontiguousarray(x).tobytes()).hexdigest()] = epoch
    distinct = [len({entry for entry in log if offline.get(entry) == epoch}) for epoch in range(epochs)]
    return {"served": len(log), "len": len(seq), "matched": [offline.get(entry) for entry in log], "distinct": distinct}


def scenario_resume(backup_dir, log_path, weights_path, epochs, kill_at=None, shuffle=False, steps_per_epoch=None):
    """``fit`` with fastseq.BackupAndRestore; SIGKILLs itself at ``kill_at = (epoch, step)``.

    Each trained batch is appended to ``log_path`` as a JSON line (epoch,
    step, sample indices, pixel md5) and flushed, so the lines written before
    the kill survive it.
    """
    import signal

    import keras

    import fastseq

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    seq = _sequence()
    trained = []
    model = _model(keras, (4, 4, 3), log=trained)
    sink = open(log_path, "a")

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            samples, md5 = trained[-1]
            sink.write(json.dumps({"epoch": self.epoch, "step": batch, "samples": samples, "md5": md5}) + "\n")
            sink.flush()
            if kill_at is not None and [self.epoch, batch] == list(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)

    model.fit(
        seq,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        verbose=0,
        shuffle=shuffle,
        callbacks=[fastseq.BackupAndRestore(backup_dir, seq), Record()],
    )
    np.save(weights_path, np.concatenate([np.ravel(keras.ops.convert_to_numpy(w)) for w in model.weights]))
    return {"epoch_after": seq.epoch}


def scenario_monitor(epochs=2):
    """fastseq.StarvationMonitor in a real fit: its per-epoch logs."""
    import keras

    import fastseq

    seq = _sequence()
    history = _model(keras, (4, 4, 3)).fit(
        seq, epochs=epochs, verbose=0, callbacks=[fastseq.StarvationMonitor(sequence=seq)]
    )
    return {k: v for k, v in history.history.items() if k != "loss"}


def scenario_dataloader(epochs=3):
    """The pure-PyTorch door: ``torch.utils.data.DataLoader(seq, batch_size=None)`` in a hand-written loop.

    Each mode gives, per epoch, the samples and a pixel md5 as the loop saw them (as torch tensors),
    the sequence's epoch, and the batch's torch dtype. Modes: ``num_workers`` 0 and 2 (forked
    worker processes, which mark the parent's position), the loop calling ``seq.on_epoch_end()``
    or ``seq.set_epoch(e)``, and a shuffling sampler (batch order permuted, batches unchanged).
    """
    import torch
    from torch.utils.data import DataLoader

    out = {}
    for name, num_workers, hook, shuffle in [
        ("w0_end", 0, "on_epoch_end", False),
        ("w0_set", 0, "set_epoch", False),
        ("w2_end", 2, "on_epoch_end", False),
        ("w2_set", 2, "set_epoch", False),
        ("w2_shuffle", 2, "on_epoch_end", True),
    ]:
        seq = _sequence()
        loader = DataLoader(seq, batch_size=None, num_workers=num_workers, shuffle=shuffle)
        passes = []
        for epoch in range(epochs):
            if hook == "set_epoch":
                seq.set_epoch(epoch)
            batches = []
            for x, y in loader:
                assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
                batches.append((decode(x.numpy()), hashlib.md5(x.numpy().tobytes()).hexdigest(), str(x.dtype)))
            batches.sort()  # a shuffling sampler permutes the batches: compare them as a set
            passes.append(
                {
                    "samples": sum((b[0] for b in batches), []),
                    "md5": hashlib.md5("".join(b[1] for b in batches).encode()).hexdigest(),
                    "dtypes": sorted({b[2] for b in batches}),
                    "epoch": seq.epoch,
                }
            )
            if hook == "on_epoch_end":
                seq.on_epoch_end()
        out[name] = passes
    # bfloat16 batches: torch's default conversion refuses ml_dtypes' bfloat16; the collate_fn of
    # docs/guides/backends.md reinterprets the bits (the same 16 bits in both libraries).
    def to_torch(batch):
        return tuple(
            torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(a)
            for a in batch
        )

    seq, twin = _sequence(dtype="bfloat16"), _sequence(dtype="bfloat16")
    got = [(str(x.dtype), x.float().numpy()) for x, _y in DataLoader(seq, batch_size=None, collate_fn=to_torch)]
    want = [twin[i][0].astype(np.float32) for i in range(len(twin))]
    out["bf16_collate"] = {
        "dtypes": sorted({d for d, _ in got}),
        "equal": len(got) == len(want) and all(np.array_equal(g, w) for (_, g), w in zip(got, want)),
    }
    # The hand loop over seq[i] that the DataLoader must match, batch for batch.
    seq, passes = _sequence(), []
    for _ in range(epochs):
        batches = sorted(
            (decode(x), hashlib.md5(np.ascontiguousarray(x).tobytes()).hexdigest())
            for x, _y in (seq[i] for i in range(len(seq)))
        )
        passes.append(
            {"samples": sum((b[0] for b in batches), []), "md5": hashlib.md5("".join(b[1] for b in batches).encode()).hexdigest()}
        )
        seq.on_epoch_end()
    out["hand_loop"] = passes
    return out


def scenario_fit_dataloader(epochs=3, num_workers=2):
    """``model.fit(DataLoader(seq, batch_size=None, num_workers=...))``: torch's worker processes prefetch
    instead of Keras' enqueuer. Which samples each Keras epoch trained on, logged inside the train step."""
    import keras
    from torch.utils.data import DataLoader

    seq = _sequence()
    log, marks = [], []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.append(len(log))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = DataLoader(seq, batch_size=None, num_workers=num_workers)
        _model(keras, (4, 4, 3), log=log).fit(loader, epochs=epochs, verbose=0, callbacks=[Epochs()])
    marks.append(len(log))
    return {
        "batches": [samples for samples, _ in log],
        "epoch_starts": marks,
        "len": len(seq),
        "epoch_after": seq.get_state()["epoch"],
        "warnings": [str(w.message) for w in caught if "ArraySequence" in str(w.message)],
    }


def scenario_dtypes(dtypes=("float32", "float16", "bfloat16", "uint8")):
    """The type and dtype of the image batch as the train step, ``evaluate`` and ``predict`` receive it, per sequence dtype."""
    import keras

    out = {}
    for dtype in dtypes:
        seen = []

        class Seen(keras.Model):
            def train_step(self, *args):
                seen.append(("train", type(args[-1][0]).__module__.split(".")[0], str(args[-1][0].dtype)))
                return super().train_step(*args)

            def test_step(self, *args):
                seen.append(("test", type(args[-1][0]).__module__.split(".")[0], str(args[-1][0].dtype)))
                return super().test_step(*args)

            def predict_step(self, *args):
                data = args[-1]
                x = data[0] if isinstance(data, (tuple, list)) else data
                seen.append(("predict", type(x).__module__.split(".")[0], str(x.dtype)))
                return super().predict_step(*args)

        seq = _sequence(n=40, dtype=dtype)
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4, 4, 3), dtype=dtype)
        model = Seen(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))))
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
        history = model.fit(seq, epochs=1, verbose=0)
        model.evaluate(seq.for_evaluation(indexed_images(40), np.arange(40) % 4), verbose=0)
        model.predict(seq.for_evaluation(indexed_images(40)), verbose=0)
        out[dtype] = {"seen": sorted(set(map(tuple, seen))), "loss": history.history["loss"]}
    return out


def scenario_device_normalize():
    """``DeviceNormalize`` on the sequence's uint8 batches against its float32 batches (host path), per spec and
    layout: the two as arrays, and the same through ``model.predict``."""
    import keras

    import fastseq

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (24, 6, 5, 3), dtype=np.uint8)
    out = {}
    for name, spec in [
        ("normalize", fastseq.Normalize(mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7))),
        ("rescale", fastseq.Rescale(1 / 255)),
    ]:
        for data_format in ("channels_last", "channels_first"):
            kw = dict(batch_size=8, shuffle=False, flip="horizontal", data_format=data_format, seed=3)
            host = fastseq.ArraySequence(x, normalize=spec, **kw)
            raw = fastseq.ArraySequence(x, dtype="uint8", **kw)
            layer = fastseq.DeviceNormalize(spec, data_format=data_format)
            pairs = [(host[i][0], keras.ops.convert_to_numpy(layer(raw[i][0]))) for i in range(len(host))]
            shape = raw[0][0].shape[1:]
            model = keras.Sequential([keras.Input(shape, dtype="uint8"), fastseq.DeviceNormalize(spec, data_format=data_format)])
            predicted = model.predict(fastseq.ArraySequence(x, dtype="uint8", **kw), verbose=0)
            expected = np.concatenate([h for h, _ in pairs])
            out[f"{name}_{data_format}"] = {
                "dtype": str(pairs[0][1].dtype),
                "bitwise": all(np.array_equal(h, d) for h, d in pairs),
                "predict_bitwise": bool(np.array_equal(predicted, expected)),
                "max_abs_diff": float(max(np.max(np.abs(h - d)) for h, d in pairs)),
            }
    return out


def scenario_profile_cli(json_path):
    """``python -m fastseq profile`` (its ``main``) on synthetic data, a few steps; the JSON report."""
    import contextlib
    import io

    from fastseq.__main__ import main

    printed = io.StringIO()
    argv = ["profile", "--loader", "fastseq", "--model", "cnn", "--dtype", "uint8", "--data", "synthetic",
            "--steps", "3", "--warmup", "1", "--batch-size", "16", "--json", json_path]  # fmt: skip
    with contextlib.redirect_stdout(printed):
        rc = main(argv)
    with open(json_path) as f:
        return {"rc": rc, "stdout": printed.getvalue(), "json": json.load(f)}


# The photo-folder sequences (fastseq.image_dataset_from_directory) in fit with a validation split
# get their per-backend scenario here, as scenario_photo_folders, and a row in the RUNS of
# tests/test_torch.py and tests/test_epochs.py.


def serve(seq, indices):
    """Request ``seq[i]`` for each index: the target of a spawned process in test_epochs."""
    for i in indices:
        seq[i]


def _children():
    """Live child processes of this one (zombies excluded), from /proc."""
    me, kids = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                kids.append(int(entry))
    return kids


def _resources():
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {"rss_mb": rss / 2**20, "threads": len(os.listdir("/proc/self/task")), "fds": len(os.listdir("/proc/self/fd"))}


def scenario_soak(epochs=100, marks=(10, 100), mp_epochs=20):
    """Many fit epochs with prefetching threads, then with worker processes: resources at the marks, children after."""
    import time

    import keras

    out = {"threads": {}, "children_during": []}
    seq = _sequence(n=200, batch_size=20, workers=2)
    model = _model(keras, (4, 4, 3))

    class Sample(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 in marks:
                out["threads"][str(epoch + 1)] = _resources()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the JAX backend's workers warning
        model.fit(seq, epochs=epochs, verbose=0, callbacks=[Sample()])
        out["epoch_after_threads"] = seq.epoch
        seq = _sequence(n=200, batch_size=20, workers=2, use_multiprocessing=True)

        class Children(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                out["children_during"].append(len(_children()))

        model.fit(seq, epochs=mp_epochs, verbose=0, callbacks=[Children()])
    out["epoch_after_processes"] = seq.epoch
    deadline = time.monotonic() + 20
    while _children() and time.monotonic() < deadline:
        time.sleep(0.1)
    out["children_after"] = len(_children())
    return out


def scenario_many(runs):
    """Several scenarios in one process (one interpreter start and one import of the backend): ``[[name, kwargs], ...]``."""
    return [globals()[f"scenario_{name}"](**kwargs) for name, kwargs in runs]


def main():
    scenario, kwargs = sys.argv[1], json.loads(sys.argv[2])
    result = globals()[f"scenario_{scenario}"](**kwargs)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
