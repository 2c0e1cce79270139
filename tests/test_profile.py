"""Tests for fastseq.profile: the starvation estimator, the callback, the verdict, the CLI.

The estimator is checked by controlled experiments on the CPU: a loader that
sleeps ``L`` seconds per batch against a train step that sleeps ``C`` seconds
(``tf.py_function(time.sleep)`` inside a layer, compiled, not eager). Sleeps
keep the timings stable on a loaded 2-core machine. The ground truth is
measured in the test itself, without the code under test: model-only step
time from ``train_on_batch`` on a resident batch, real step time from a plain
``fit`` timed by a local callback.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from fastseq.profiling import ProfileReport, Verdict, decide, summary_table  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# Test doubles: a sleeping loader and a model whose step sleeps.
# --------------------------------------------------------------------------


def _keras():
    import keras

    return keras


def sleep_data(seconds, *, n=40, batch_size=8, workers=1, stats=False):
    """A PyDataset whose __getitem__ sleeps ``seconds``; optionally with fastseq-style stats()."""
    keras = _keras()

    class SleepData(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers)
            rng = np.random.default_rng(0)
            self.x = rng.random((batch_size, 8), dtype=np.float32)
            self.y = rng.integers(0, 2, batch_size)
            self.batch_size = batch_size
            self._produced, self._seconds = 0, 0.0

        def __len__(self):
            return n

        def __getitem__(self, i):
            t0 = time.perf_counter()
            time.sleep(seconds)
            self._produced += 1
            self._seconds += time.perf_counter() - t0
            return self.x, self.y

    if stats:

        def _stats(self):
            return {"batches": self._produced, "kernel_seconds": self._seconds, "getitem_seconds": self._seconds}

        def _reset(self):
            self._produced, self._seconds = 0, 0.0

        SleepData.stats, SleepData.reset_stats = _stats, _reset
    return SleepData()


def sleep_model(seconds):
    """A compiled model whose train step costs ``seconds`` (a py_function sleep) plus a tiny Dense."""
    keras = _keras()
    import tensorflow as tf

    class Sleep(keras.layers.Layer):
        def call(self, x):
            def _sleep(v):
                time.sleep(seconds)
                return v

            y = tf.py_function(_sleep, [x], x.dtype)
            y.set_shape(x.shape)
            return y

    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(2)(Sleep()(inp)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=False)
    return model


def measured_truth(loader_seconds, compute_seconds, *, steps=10, warmup=3):
    """Ground truth, measured without fastseq: 1 - t_model_only / t_fit (means after warm-up)."""
    keras = _keras()
    import tensorflow as tf

    model = sleep_model(compute_seconds)
    data = sleep_data(loader_seconds)
    x, y = (tf.constant(a) for a in data[0])
    for _ in range(warmup):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    t_model = (time.perf_counter() - t0) / steps

    begins = []

    class Begin(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            begins.append(time.perf_counter())

    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # trace for this input, untimed
    model.fit(data, steps_per_epoch=warmup + steps + 1, epochs=1, verbose=0, callbacks=[Begin()])
    t_fit = (begins[-1] - begins[warmup]) / (len(begins) - 1 - warmup)
    return max(0.0, 1.0 - t_model / t_fit), t_model, t_fit


# --------------------------------------------------------------------------
# Import hygiene.
# --------------------------------------------------------------------------


def test_import_does_not_load_keras():
    code = "import sys, fastseq.profiling; sys.exit(int('keras' in sys.modules or 'tensorflow' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_lazy_exports():
    import fastseq
    import fastseq.profiling as fp

    # The package is fastseq.profiling so that the name fastseq.profile is only ever the function.
    assert fastseq.profile is fp.profile
    with pytest.raises(ValueError, match="compiled"):
        fastseq.profile(object(), None)
    assert fastseq.ProfileReport is ProfileReport
    assert fastseq.StarvationMonitor is fp.StarvationMonitor


# --------------------------------------------------------------------------
# Verdict rules.
# --------------------------------------------------------------------------

RULES = [
    # (kwargs, expected action)
    (dict(starvation=0.05, loader_images_per_sec=10, model_images_per_sec=1000), "none"),
    (dict(starvation=0.0999, loader_images_per_sec=10, model_images_per_sec=1000), "none"),
    (dict(starvation=0.5, loader_images_per_sec=100, model_images_per_sec=300, workers=1, cpu_count=8), "more_workers"),
    (dict(starvation=0.5, loader_images_per_sec=100, model_images_per_sec=300, workers=8, cpu_count=8), "uint8_on_device"),
    (dict(starvation=0.5, loader_images_per_sec=100, model_images_per_sec=300, input_dtype="uint8", memmap=True),
     "page_cache"),
    (dict(starvation=0.5, loader_images_per_sec=100, model_images_per_sec=300, input_dtype="uint8"), "faster_loader"),
    (dict(starvation=0.5, loader_images_per_sec=100, model_images_per_sec=300, input_dtype="float16"), "faster_loader"),
    (dict(starvation=0.3, loader_images_per_sec=5000, model_images_per_sec=1000, model_step_seconds=0.004),
     "bigger_batch"),
    (dict(starvation=0.3, loader_images_per_sec=5000, model_images_per_sec=1000, model_step_seconds=0.1),
     "cpu_contention"),
]


@pytest.mark.parametrize("kwargs, action", RULES)
def test_decide_rules(kwargs, action):
    v = decide(**kwargs)
    assert isinstance(v, Verdict)
    assert v.action == action
    assert v.message and str(v).splitlines()[0] == v.message


def test_decide_suggests_enough_workers_and_lists_other_hints():
    v = decide(starvation=0.6, loader_images_per_sec=100, model_images_per_sec=350, workers=1, cpu_count=16,
               input_dtype="float32", memmap=True)
    assert v.action == "more_workers" and "workers=4" in v.message
    assert [h[0] for h in v.hints] == ["uint8_on_device", "page_cache", "faster_loader"]
    capped = decide(starvation=0.6, loader_images_per_sec=100, model_images_per_sec=350, workers=1, cpu_count=2)
    assert "workers=2" in capped.message


def test_a_fastseq_loader_is_never_told_to_use_fastseq():
    slow_loader = dict(starvation=0.5, loader_images_per_sec=100, model_images_per_sec=300)
    fast_loader = dict(starvation=0.3, loader_images_per_sec=5000, model_images_per_sec=1000, model_step_seconds=0.1)
    for kwargs in (dict(slow_loader, input_dtype="uint8"), dict(slow_loader, workers=8, cpu_count=8), fast_loader):
        other = decide(**kwargs)
        mine = decide(**kwargs, loader="fastseq")
        assert mine.action == other.action  # the same diagnosis ...
        every = [mine.message] + [m for _, m in mine.hints]
        forbidden = ("use fastseq.ArraySequence", "with fastseq:", "(fastseq, uint8)")
        assert not any(f in m for f in forbidden for m in every), every  # ... other advice
        assert any(f in m for f in forbidden for m in [other.message] + [m for _, m in other.hints])
    one_line = decide(**slow_loader, loader="fastseq")
    assert one_line.action == "uint8_on_device" and "fastseq.DeviceNormalize(your Normalize)" in one_line.message
    lever = decide(**dict(slow_loader, input_dtype="uint8"), loader="fastseq")
    assert lever.action == "faster_loader" and "NUMBA_NUM_THREADS" in lever.message
    assert "dtype='uint8'" in decide(**fast_loader, loader="fastseq").message


def test_verdict_prints_its_message_and_hints():
    v = decide(starvation=0.6, loader_images_per_sec=100, model_images_per_sec=350, workers=1, cpu_count=16,
               input_dtype="float32", memmap=True)
    lines = str(v).splitlines()
    assert lines[0] == v.message
    assert lines[1:] == [f"also: {m}" for _, m in v.hints] and len(lines) == 4
    assert repr(v).startswith("Verdict(action='more_workers'")
    from fastseq.profiling.report import ACTIONS

    assert {v.action, *(a for a, _ in v.hints)} <= set(ACTIONS)
    for _, action in RULES:
        assert action in ACTIONS


# --------------------------------------------------------------------------
# Report: dict, table.
# --------------------------------------------------------------------------


def make_report(name="numpy", starvation=0.4, wait=0.38):
    verdict = decide(starvation=starvation, loader_images_per_sec=600, model_images_per_sec=1000, workers=1,
                     cpu_count=2)
    return ProfileReport(
        name=name, batch_size=32, steps=4, warmup=2, loader_step_seconds=32 / 600, model_step_seconds=0.032,
        fit_step_seconds=0.032 / (1 - starvation), loader_images_per_sec=600.0, model_images_per_sec=1000.0,
        achieved_images_per_sec=1000.0 * (1 - starvation), starvation=starvation, measured_wait_fraction=wait,
        verdict=verdict, input_dtype="float32", workers=1,
        fit_step_timeline=[[0.02, 0.03], [0.021, 0.031], [0.0, 0.05], [0.019, 0.03]],
        loader_batch_timeline=[0.05, 0.05, 0.05, 0.05], notes=["a note"],
    )


def test_report_to_dict_is_json_and_complete():
    r = make_report()
    d = json.loads(json.dumps(r.to_dict()))
    assert d["starvation"] == pytest.approx(0.4)
    assert d["verdict"]["action"] == "more_workers"
    assert d["ideal_speedup"] == pytest.approx(1 / 0.6)
    for key in ("loader_images_per_sec", "model_images_per_sec", "achieved_images_per_sec", "measured_wait_fraction",
                "fit_step_timeline", "batch_size", "notes"):
        assert key in d


def test_report_table_text():
    r = make_report()
    text = r.table()
    assert str(r) == text
    for needle in ("loader alone", "model alone", "achieved in fit", "starvation", "40.0 %", "x1.67",
                   "measured fetch wait", "verdict: input-bound", "workers=2", "note: a note", "600"):
        assert needle in text, needle
    r.measured_wait_fraction = None
    assert "n/a" in r.table()


def test_window_starvation_shows_the_spread_of_a_drifting_run():
    r = make_report()
    r.model_step_seconds = 0.030
    # Ten steps: the first five as fast as the model alone, the last five twice as slow.
    r.fit_step_timeline = [[0.0, 0.030]] * 5 + [[0.030, 0.030]] * 5
    assert r.window_starvation(windows=2) == pytest.approx([0.0, 0.5])
    assert r.starvation_spread == pytest.approx((0.0, 0.5))
    assert len(r.window_starvation()) == 5
    d = json.loads(json.dumps(r.to_dict()))
    assert d["starvation_spread"] == pytest.approx([0.0, 0.5]) and len(d["starvation_windows"]) == 5
    assert "starvation per window" in r.table() and "0 - 50 %" in r.table()
    r.fit_step_timeline = []
    assert r.window_starvation() == [] and r.starvation_spread is None


def test_step_breakdown_tells_contention_from_waiting():
    r = make_report()
    r.model_step_seconds = 0.030
    r.fit_step_timeline = [[0.0, 0.030], [0.0, 0.045], [0.020, 0.030], [0.001, 0.020]]
    parts = r.step_breakdown()
    expected = [(0.030, 0.0, 0.0), (0.030, 0.015, 0.0), (0.030, 0.0, 0.020), (0.020, 0.0, 0.001)]
    np.testing.assert_allclose(parts, expected, atol=1e-12)
    for (w, c), p in zip(r.fit_step_timeline, parts):
        assert sum(p) == pytest.approx(w + c)


def test_summary_table_lists_each_loader():
    text = summary_table([make_report("numpy"), make_report("tf.data", 0.0, None)])
    lines = text.splitlines()
    assert lines[0].startswith("loader") and "next action" in lines[0]
    assert any(line.startswith("numpy") and "more_workers" in line for line in lines)
    assert any(line.startswith("tf.data") and line.rstrip().endswith("none") for line in lines)


# --------------------------------------------------------------------------
# profile(): argument checks and the three regimes.
# --------------------------------------------------------------------------


def test_profile_rejects_uncompiled_model_and_bad_data():
    keras = _keras()
    from fastseq.profiling import profile

    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    with pytest.raises(ValueError, match="compiled"):
        profile(model, sleep_data(0.0))
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match="PyDataset or a tf.data.Dataset"):
        profile(model, np.zeros((4, 8)))
    with pytest.raises(ValueError, match="batches"):
        profile(model, sleep_data(0.0, n=3), steps=5, warmup=2)


REGIMES = {
    # name: (loader seconds per batch, model seconds per step)
    "input-bound": (0.060, 0.020),
    "partly input-bound": (0.050, 0.030),
    "balanced": (0.040, 0.040),
    "compute-bound": (0.010, 0.050),
}


@pytest.mark.slow
@pytest.mark.parametrize("regime", list(REGIMES))
def test_starvation_matches_measured_truth(regime):
    from fastseq.profiling import profile

    loader_s, compute_s = REGIMES[regime]
    truth, t_model, t_fit = measured_truth(loader_s, compute_s)
    model = sleep_model(compute_s)
    w0 = [w.copy() for w in model.get_weights()]
    report = profile(model, sleep_data(loader_s), steps=10, warmup=3, name=regime)
    print(f"\n{regime}: truth {truth:.3f} (model {1e3 * t_model:.1f} ms, fit {1e3 * t_fit:.1f} ms) "
          f"reported {report.starvation:.3f} measured wait {report.measured_wait_fraction:.3f}")
    print(report.table())
    assert 0.0 <= report.starvation <= 1.0
    assert abs(report.starvation - truth) <= 0.10
    # The direct measurement agrees too, and the weights are put back.
    assert abs(report.measured_wait_fraction - truth) <= 0.10
    for a, b in zip(w0, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    if regime == "input-bound":
        assert truth > 0.5 and report.verdict.action != "none"
        assert report.loader_images_per_sec < report.model_images_per_sec
    if regime == "compute-bound":
        assert truth < 0.1 and report.verdict.action == "none"
    assert len(report.fit_step_timeline) == report.steps == 10


@pytest.mark.slow
def test_profile_honours_pydataset_workers():
    from fastseq.profiling import profile

    # 60 ms per batch on one thread is input-bound against a 25 ms step; four
    # worker threads (keras' OrderedEnqueuer) make it compute-bound.
    report = profile(sleep_model(0.025), sleep_data(0.06, workers=4), steps=10, warmup=3)
    assert report.workers == 4
    assert report.loader_images_per_sec > 2 * 8 / 0.06
    assert report.starvation < 0.15 and report.verdict.action == "none"


@pytest.mark.slow
def test_profile_accepts_tf_data():
    import tensorflow as tf

    from fastseq.profiling import profile

    def slow(x, y):
        def _sleep(v):
            time.sleep(0.04)
            return v

        x = tf.py_function(_sleep, [x], tf.float32)
        x.set_shape((8, 8))
        return x, y

    rng = np.random.default_rng(0)
    batch = (rng.random((8, 8), dtype=np.float32), rng.integers(0, 2, 8))
    ds = tf.data.Dataset.from_tensors(batch).take(4).map(slow)  # finite and short: profile() repeats it
    report = profile(sleep_model(0.01), ds, steps=8, warmup=2)
    assert report.workers is None and report.batch_size == 8
    assert report.starvation > 0.5
    assert abs(report.starvation - report.measured_wait_fraction) <= 0.10


@pytest.mark.slow
def test_profile_leaves_an_array_sequence_where_it_found_it():
    keras = _keras()
    import fastseq

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 2, 96)
    seq = fastseq.ArraySequence(x, y, batch_size=8, crop=fastseq.RandomCrop(8, 8, padding=1), flip="horizontal")
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = (seq.epoch, [seq.indices(i) for i in range(len(seq))], seq[3][0].copy())
    for _ in range(2):  # a second call starts from the same place too
        report = fastseq.profile(model, seq, steps=3, warmup=1)
        assert seq.epoch == before[0]
        for i, idx in enumerate(before[1]):
            np.testing.assert_array_equal(seq.indices(i), idx)
        np.testing.assert_array_equal(seq[3][0], before[2])
    every = [report.verdict.message] + [m for _, m in report.verdict.hints]
    assert not any("use fastseq" in m for m in every), every


# --------------------------------------------------------------------------
# StarvationMonitor.
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_monitor_logs_reach_history_and_csv(tmp_path):
    keras = _keras()
    from fastseq import StarvationMonitor

    model = sleep_model(0.01)
    data = sleep_data(0.03, n=12, stats=True)
    csv = tmp_path / "log.csv"
    monitor = StarvationMonitor(sequence=data)
    model.fit(data, steps_per_epoch=1, verbose=0)  # trace first: a traced step is not waiting
    original = model.train_function
    hist = model.fit(data, epochs=2, steps_per_epoch=5, verbose=0, callbacks=[monitor, keras.callbacks.CSVLogger(csv)])
    waits = hist.history["data_wait_fraction"]
    assert len(waits) == 2 and all(0.0 <= w <= 1.0 for w in waits)
    assert all(w > 0.4 for w in waits), waits  # 30 ms loader vs ~12 ms step: about 60% waiting
    ips = hist.history["images_per_sec"]
    assert all(8 / 0.06 < v < 8 / 0.02 for v in ips), ips  # about one batch of 8 per 30 ms
    assert all(0.1 < k < 0.6 for k in hist.history["kernel_seconds"])  # ~5 x 30 ms (+ prefetched)
    assert all(b < 1.5 for b in hist.history["batches_ahead"])  # starved: nothing waits in the queue
    header = csv.read_text().splitlines()[0].split(",")
    assert {"data_wait_fraction", "images_per_sec", "kernel_seconds", "batches_ahead"} <= set(header)
    assert model.train_function is original  # the fetch timer is removed after fit


@pytest.mark.slow
def test_monitor_compute_bound_waits_little():
    from fastseq import StarvationMonitor

    model = sleep_model(0.04)
    hist = model.fit(sleep_data(0.005, n=12), epochs=1, steps_per_epoch=8, verbose=0, callbacks=[StarvationMonitor()])
    assert hist.history["data_wait_fraction"][0] < 0.15


def test_monitor_gap_fallback_without_fetch_timer():
    # A backend whose fetch cannot be timed: the wait is the end -> begin gap.
    from fastseq import StarvationMonitor

    class NoTrainFunction:
        train_function = None

    mon = StarvationMonitor(batch_size=4)
    mon.set_model(NoTrainFunction())
    mon.on_train_begin()
    assert not mon.fetch_timed
    mon.on_epoch_begin(0)
    for _ in range(3):
        time.sleep(0.02)  # waiting for data
        mon.on_train_batch_begin(0)
        time.sleep(0.02)  # computing
        mon.on_train_batch_end(0, {})
    logs = {}
    mon.on_epoch_end(0, logs)
    mon.on_train_end()
    assert 0.3 < logs["data_wait_fraction"] < 0.7
    assert logs["images_per_sec"] == pytest.approx(12 / 0.12, rel=0.5)


def test_monitor_rejects_bad_batch_size():
    from fastseq import StarvationMonitor

    with pytest.raises(ValueError, match="batch_size"):
        StarvationMonitor(batch_size=0)


# --------------------------------------------------------------------------
# Plot and command line.
# --------------------------------------------------------------------------


def _check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_plot_writes_png(tmp_path):
    from fastseq.profiling.plot import plot_reports

    path = tmp_path / "p.png"
    plot_reports([make_report("numpy"), make_report("fastseq", 0.02, 0.01)], path, title="test")
    _check_png(path)


def test_plot_draws_contention_apart_from_waiting():
    from fastseq.profiling.plot import STEP_PARTS, figure

    r = make_report("fastseq")
    r.model_step_seconds = 0.030
    r.fit_step_timeline = [[0.0, 0.045], [0.020, 0.030]]
    fig = figure([r, make_report("numpy")])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {label for _, _, label in STEP_PARTS} <= set(labels)
    assert any("contention" in label for label in labels) and any("waiting" in label for label in labels)
    ax = fig.axes[0]
    heights = [round(p.get_height() * 1e3) / 1e3 for p in ax.patches]  # model, model, contention, contention, ...
    assert heights[:6] == pytest.approx([30.0, 30.0, 15.0, 0.0, 0.0, 20.0])
    assert "over windows" in ax.get_title(loc="left")


def test_loader_option_parsing():
    import argparse

    from fastseq.profiling.cli import _loader_list, configure_parser

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--loader", "fastseq", "--loader", "numpy,tf.data,numpy", "--dtype", "uint8"])
    assert _loader_list(args.loader) == ["fastseq", "numpy", "tf.data"]
    assert _loader_list(None) == ["fastseq", "numpy", "tf.data"]
    defaults = parser.parse_args([])
    assert (defaults.model, defaults.steps, defaults.plot) == ("cnn", 30, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--dtype", "int8"])


def test_cli_rejects_unknown_loader(capsys):
    from fastseq.profiling.cli import main

    assert main(["--loader", "pytorch"]) == 2
    assert "--loader must be one of" in capsys.readouterr().err


def test_cli_plot_without_matplotlib(monkeypatch, capsys, tmp_path):
    from fastseq.profiling.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install 'fastseq[plot]'" in capsys.readouterr().err


def test_dispatcher_help_is_fast():
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "fastseq", "profile", "--help"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "--loader" in res.stdout and "--plot" in res.stdout
    assert time.perf_counter() - t0 < 20


@pytest.mark.slow
@pytest.mark.parametrize(
    "loader, model, dtype",
    [("numpy", "cnn", "float32"), ("tf.data", "resnet", "float32"), ("fastseq", "cnn", "uint8")],
)
def test_cli_with_real_loader(loader, model, dtype, tmp_path, capsys):
    from fastseq.profiling.cli import main

    png, js = tmp_path / "profile.png", tmp_path / "profile.json"
    argv = ["--loader", loader, "--model", model, "--dtype", dtype, "--data", "synthetic", "--steps", "3",
            "--warmup", "1", "--batch-size", "32", "--plot", str(png), "--json", str(js)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "data: synthetic CIFAR-shaped data" in out
    assert f"fastseq profile: {loader}" in out and "starvation" in out and "summary" in out
    assert f"wrote {png}" in out
    _check_png(png)
    d = json.loads(js.read_text())
    (rep,) = d["reports"]
    assert rep["name"] == loader and 0.0 <= rep["starvation"] <= 1.0 and rep["batch_size"] == 32
    if dtype == "uint8":
        assert rep["input_dtype"] == "uint8" and any("on the device" in n for n in rep["notes"])
