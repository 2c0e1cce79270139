"""``python -m fastseq bench`` runs every row and prints the table."""

import argparse
import io
import os
import subprocess
import sys

import numpy as np
import pytest

from fastseq.bench import cli, timing
from fastseq.bench import feed as bench_feed


def run_bench(*argv):
    parser = cli.configure_parser(argparse.ArgumentParser())
    out = io.StringIO()
    status = cli.run(parser.parse_args(list(argv)), out=out)
    return status, out.getvalue()


@pytest.mark.slow
def test_bench_quick_prints_every_table_the_verdicts_and_the_summary():
    """The default command in its --quick form: kernel rows, fit rows, photo rows, verdicts, summary."""
    status, text = run_bench("--quick", "--batch-size", "64", "--repeat", "2", "--data", "synthetic")
    assert status == 0, text
    for label in (
        "ceiling: NumPy uint8->float32 copy",
        "NumPy gather + uint8->float32",
        "fastseq fused, threads by the work rule",
        "fastseq fused, pinned to 1 thread",
        "NumPy per-sample loop",
        "tf.data per-sample map",
        "Keras layers per batch*",
        "synthetic CIFAR-shaped",
        "RandomCrop uses one offset for the whole batch",
        "targets (CIFAR-sized 32x32x3",
        "end-to-end: model.fit",
        "fastseq / convert",
        "fastseq / noop",
        "photo folder: a generated folder of 100 JPEGs",
        "fastseq epoch vs keras epoch",
        "targets (photos at 224x224x3)",
        "verdicts: ",
        "summary:",
        "On this machine fastseq makes",
        "Keras' image_dataset_from_directory per epoch",
        "In model.fit it keeps up with a training step",
    ):
        assert label in text, f"{label!r} missing from:\n{text}"
    # A batch of 64 (0.8 MB) runs on one thread by the work rule: the row says so, and no thread verdict.
    assert "not judged (the work rule ran this 0.8 MB batch on 1 thread)" in text
    summary = text[text.index("summary:"):].splitlines()[1:]
    assert len(summary) == 3, summary


def test_bench_rows_show_the_threads_the_work_rule_gives():
    status, text = run_bench("--quick", "--batch-size", "512", "--repeat", "2", "--data", "synthetic",
                             "--rows", "fastseq,fastseq-1t", "--no-e2e", "--no-photos")
    assert status == 0, text
    from fastseq.bench.kernel_rows import rule_threads

    n = rule_threads(512 * 32 * 32 * 3 * 4)
    row = next(line for line in text.splitlines() if line.startswith("fastseq fused, threads by the work rule"))
    assert row.split()[7] == str(n) and "512x32x32x3" in row
    pinned = next(line for line in text.splitlines() if line.startswith("fastseq fused, pinned to 1 thread"))
    assert pinned.split()[6] == "1"
    assert ("not judged" in text) == (n == 1)
    assert "summary:" in text and "The model.fit rows did not run" in text


def test_bench_default_data_says_which():
    status, text = run_bench("--quick", "--batch-size", "32", "--repeat", "2", "--rows", "ceiling,fastseq", "--no-e2e",
                             "--no-photos")
    assert status == 0, text
    if os.path.isdir("/usr/share/datasets/fashion-mnist"):
        assert "Fashion-MNIST training set (60000, 28, 28)" in text
    else:
        assert "synthetic CIFAR-shaped" in text
    assert "end-to-end" not in text


def test_bench_other_dtype_skips_the_float32_baselines():
    status, text = run_bench("--quick", "--batch-size", "16", "--repeat", "2", "--dtype", "float16",
                             "--rows", "ceiling,fastseq,numpy", "--no-e2e", "--no-photos")
    assert status == 0
    assert "uint8->float16" in text and "skipped numpy: row 'numpy' runs float32 channels_last only" in text
    # The targets were measured on float32 channels_last: another dtype gets its ratios, no verdict.
    assert "verdicts: none on this shape" in text and " PASS" not in text and "MISS (" not in text


def test_bench_rejects_unknown_rows(capsys):
    status, _ = run_bench("--rows", "ceiling,nope")
    assert status == 2
    assert "nope" in capsys.readouterr().err


def test_help_through_the_dispatcher_is_keras_free():
    code = (
        "import sys, contextlib, io\n"
        "from fastseq.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: main(['bench', '--help'])\n"
        "    except SystemExit: pass\n"
        "assert '--batch-size' in out.getvalue() and '--rows' in out.getvalue(), out.getvalue()\n"
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_malloc_like_copy_is_equal_and_misaligned_like_a_large_malloc():
    a = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)
    b = bench_feed.malloc_like_copy(a)
    np.testing.assert_array_equal(a, b)
    assert b.dtype == a.dtype and b.flags.c_contiguous and b.ctypes.data % 64 == 16


@pytest.mark.parametrize("shape", [(50, 4, 5, 3), (50, 4, 5)])
def test_convert_dataset_gives_each_contiguous_run_as_float32_in_aligned_reused_buffers(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    y = np.arange(len(x))
    data = bench_feed.convert_dataset(x, y, batch_size=16, steps=7)
    assert len(data) == 7
    x4 = x.reshape(50, 4, 5, -1)
    addresses = set()
    for i in range(7):  # 3 runs of 16 in 50 images: batch 3 is run 0 again
        bx, by = data[i]
        run = slice(i % 3 * 16, (i % 3 + 1) * 16)
        assert bx.dtype == np.float32 and bx.shape == (16, 4, 5, x4.shape[3])
        np.testing.assert_array_equal(bx, x4[run].astype(np.float32))
        np.testing.assert_array_equal(by, y[run])
        assert bx.ctypes.data % 4096 == 0
        addresses.add(bx.ctypes.data)
        del bx, by
    assert len(addresses) == 1  # released batches are reused, not reallocated


def test_interleaved_calls_every_function_once_per_round_in_turn():
    calls = []
    times = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3  # one warm-up round, then per round: settle + timed
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    calls.clear()
    timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2, warmup=0, settle=0)
    assert calls == ["a", "b", "a", "b"]
    assert all(t >= 0 for v in times.values() for t in v)


@pytest.mark.slow
def test_feed_table_runs_every_row_interleaved_and_renders_the_targets():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 96)
    results = bench_feed.feed_table(x, y, batch_size=16, mean=(1, 2, 3), std=(4, 5, 6), padding=2, steps=2, rounds=2)
    assert sorted(results) == sorted(["noop", "noop-copied", "convert", "fastseq", "fastseq-memmap", "fastseq-uint8",
                                      "numpy", "tf.data", "grain"])
    for r in results.values():
        assert r.images_per_sec > 0 and r.steps == 2 and r.batch_size == 16
        assert np.isclose(r.images_per_sec * r.step_ms / 1e3, 16)
    out = io.StringIO()
    bench_feed.render(results, out)
    text = out.getvalue()
    for label in ("fastseq / noop", "fastseq / tf.data", "fastseq / numpy", "fastseq-memmap / fastseq",
                  "fastseq / convert", "fastseq / grain", "fastseq-uint8 / noop"):
        assert label in text


# -- clean output -------------------------------------------------------------------

NOISE = ("I0000", "E0000", "W0000", "absl::InitializeLog", "cuInit", "oneDNN", "Warning", "WARNING")


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--quick", "--data", "synthetic", "--batch-size", "64", "--rows", "ceiling,tf.data"],
        ["profile", "--loader", "fastseq,tf.data", "--steps", "2", "--warmup", "1", "--batch-size", "32",
         "--data", "synthetic", "--samples", "512"],
    ],
    ids=["bench", "profile"],
)
def test_commands_print_no_tensorflow_noise_or_keras_warnings(argv):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    result = subprocess.run([sys.executable, "-m", "fastseq", *argv], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    # The one line a first (cold) compile of a kernel variant writes is meant to be seen.
    assert [line for line in result.stderr.splitlines() if not line.startswith("fastseq: compiling ")] == []
    noisy = [line for line in result.stdout.splitlines() if any(n in line for n in NOISE)]
    assert noisy == []
    assert "targets (" in result.stdout and "summary:" in result.stdout if argv[0] == "bench" else (
        "summary" in result.stdout)


def test_importing_fastseq_leaves_logging_settings_alone():
    # Keras and JAX set some of these themselves on import (JAX: TF_CPP_MIN_LOG_LEVEL=1), so they are
    # imported first and fastseq is judged on what it changes after them.
    code = (
        "import os, warnings, logging, keras, tensorflow\n"
        "keys = ('TF_CPP_MIN_LOG_LEVEL', 'TF_CPP_MAX_VLOG_LEVEL', 'GRPC_VERBOSITY', 'PYTHONWARNINGS')\n"
        "logs = lambda: {k: os.environ.get(k) for k in keys}\n"
        "env, filters = logs(), list(warnings.filters)\n"
        "level = logging.getLogger('tensorflow').level\n"
        "import fastseq, fastseq.bench.cli, fastseq.profiling.cli, fastseq.__main__\n"
        "fastseq.ArraySequence; fastseq.StarvationMonitor; fastseq.datasets\n"
        "assert logs() == env, (logs(), env)\n"
        "assert warnings.filters == filters\n"
        "assert logging.getLogger('tensorflow').level == level\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_bench_markdown_writes_the_page_with_the_machine(tmp_path):
    page = tmp_path / "numbers.md"
    status, text = run_bench("--quick", "--batch-size", "32", "--repeat", "2", "--rows", "ceiling,fastseq",
                             "--no-e2e", "--data", "synthetic", "--markdown", str(page), "--no-photos")
    assert status == 0, text
    md = page.read_text()
    assert md.startswith("# Measured numbers\n")
    assert "- CPU: " in md and f"{os.cpu_count()} logical cores" in md
    assert "numpy " + np.__version__ in md and "- date: " in md
    assert "summary:" in md and "On this machine fastseq makes" in md
    # The printed tables, verbatim, inside one fenced block.
    assert "```text\n" + text.rstrip("\n") + "\n```" in md


def test_bench_augmentations_adds_the_fused_op_rows_and_their_targets():
    status, text = run_bench("--quick", "--batch-size", "32", "--repeat", "2", "--data", "synthetic",
                             "--rows", "fastseq", "--augmentations", "--no-e2e", "--no-photos")
    assert status == 0, text
    for line in ("fastseq + Cutout(16)", "fastseq + RandomErasing()", "fastseq + MixUp(0.2)", "fastseq + CutMix(1.0)",
                 "+ Cutout(16) / plain time", "+ MixUp(0.2) / plain time", "+ CutMix(1.0) / plain time"):
        assert line in text, line


@pytest.mark.parametrize("op", ["cutout", "erasing", "mixup", "cutmix"])
def test_augmented_rows_make_what_the_unfused_passes_make(op):
    """Each row's batch equals the plain pass followed by the separate cutout / mix pass on the same draws."""
    from fastseq import kernels
    from fastseq.bench import kernel_rows, synthetic

    x, y = synthetic.cifar_like(300, seed=1)
    job = kernel_rows.cifar_job(x, y, batch_size=16, seed=3)
    row = kernel_rows.BUILDERS[f"fastseq+{op}"](job)
    got = np.array(row.fn())
    plan = kernels.FusedPlan(job.x, **job.static_kwargs())
    if op in ("cutout", "erasing"):
        indices, origins, flips, boxes = row.check_data()
        want = plan(indices, origins, flips)
        kernels.cutout(want, boxes, fill=0)
        assert (want == 0).any()
    else:
        both, origins, flips, weights, boxes = row.check_data()
        pairs = plan(both, origins, flips)
        n = len(both) // 2
        want = kernels.mix(pairs[:n], pairs[n:], weights, boxes, dtype="float32")
    np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_bench_augment_adds_the_augment_rows_albumentations_and_their_targets():
    pytest.importorskip("albumentations")
    status, text = run_bench("--quick", "--batch-size", "64", "--repeat", "2", "--data", "synthetic",
                             "--rows", "fastseq", "--augment", "--no-e2e", "--no-photos")
    assert status == 0, text
    for line in ("fastseq + rotation, zoom, translation", "fastseq + RandomColorJitter", "albumentations + Affine, ",
                 "albumentations + ColorJitter, ", "+ rotation, zoom, shift / plain time", "+ RandomColorJitter / plain time",
                 "+ geometry vs albumentations + Affine", "+ jitter vs albumentations + ColorJitter",
                 "fused vs albumentations (no target)"):
        assert line in text, f"{line!r} missing from:\n{text}"


def test_augment_rows_refuse_a_grayscale_job():
    from fastseq.bench import augment_rows, kernel_rows, synthetic

    x, y = synthetic.mnist_like(600, seed=0)
    job = kernel_rows.mnist_job(x, y, batch_size=16)
    for name in ("albumentations", "fastseq+jitter"):
        with pytest.raises(ValueError, match="RGB"):
            augment_rows.BUILDERS[name](job)
