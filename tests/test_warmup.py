"""Compile time, which users wait through: the one-line notice and ``python -m fastseq compile``."""

import importlib
import logging
import subprocess
import sys
import time

import numpy as np
import pytest

from fastseq import warmup
from fastseq.kernels import config


def test_a_slow_first_call_says_once_what_it_compiles(monkeypatch, capsys):
    monkeypatch.setattr(config, "COMPILE_NOTICE_SECONDS", 0.01)
    monkeypatch.setattr(logging.getLogger("fastseq"), "handlers", [])
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    with config.compile_notice("the thing"):
        time.sleep(0.2)
    err = capsys.readouterr().err
    assert err.count("fastseq: compiling the thing (once: cached on disk") == 1, err
    with config.compile_notice("the thing"):
        pass  # a fast (cached) call says nothing
    time.sleep(0.05)
    assert capsys.readouterr().err == ""


def test_the_notice_goes_to_logging_where_the_application_configured_it(monkeypatch, caplog, capsys):
    monkeypatch.setattr(config, "COMPILE_NOTICE_SECONDS", 0.01)
    with caplog.at_level(logging.INFO, logger="fastseq"):
        with config.compile_notice("the other thing"):
            time.sleep(0.2)
    assert [r.getMessage() for r in caplog.records if "the other thing" in r.getMessage()]
    assert capsys.readouterr().err == ""


def test_compile_kernels_builds_each_variant_once():
    seen = []
    timings = warmup.compile_kernels(("float32", "float16", "bfloat16"), ("channels_last",),
                                     report=lambda what, s: seen.append(what))
    assert list(timings) == seen == [
        "random crop and flip parameters",
        "fused kernel, float32 channels_last",
        "fused kernel, float16 channels_last",  # bfloat16 shares float16's compiled variant
    ]
    assert all(s >= 0 for s in timings.values())


@pytest.mark.parametrize("kwargs", [dict(dtypes=("float64",)), dict(data_formats=("NCHW",)), dict(dtypes=())])
def test_compile_kernels_rejects_unknown_variants(kwargs):
    with pytest.raises(ValueError, match="must be a non-empty list from"):
        warmup.compile_kernels(**kwargs)


def test_a_compiled_plan_then_runs_without_the_notice(monkeypatch, capsys):
    from fastseq.kernels import FusedPlan

    monkeypatch.setattr(config, "COMPILE_NOTICE_SECONDS", 0.0)
    plan = FusedPlan(np.arange(48, dtype=np.uint8).reshape(1, 4, 4, 3), crop=(4, 4), dtype="uint8")
    plan.compile()
    out = plan(np.zeros(1, np.int64), np.zeros((1, 2), np.int64), np.zeros(1, np.uint8))
    np.testing.assert_array_equal(out[0], np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    time.sleep(0.05)
    assert "fastseq: compiling" not in capsys.readouterr().err


def test_compile_command():
    result = subprocess.run([sys.executable, "-m", "fastseq", "compile", "--dtype", "float32", "--dtype", "uint8"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("  ")[1].strip() for line in lines[:-1]] == [
        "random crop and flip parameters", "fused kernel, float32 channels_last", "fused kernel, uint8 channels_last"]
    assert lines[-1].startswith("compiled 3 kernels in") and "keras" not in result.stderr.lower()


def test_compile_kernels_photos_compiles_the_photo_resample_once_per_storage_type(monkeypatch, capsys):
    from fastseq.kernels import RaggedResizePlan

    seen = []
    warmup.compile_kernels(("float32", "float16", "bfloat16"), photos=True, report=lambda what, s: seen.append(what))
    assert seen[-3:] == ["photo random resized crop boxes and flips", "photo resample kernel, float32",
                         "photo resample kernel, float16/bfloat16"]
    # compiled: a photo plan's first batch now runs without the compile notice
    monkeypatch.setattr(config, "COMPILE_NOTICE_SECONDS", 0.0)
    image = np.arange(5 * 7 * 3, dtype=np.uint8)
    plan = RaggedResizePlan(image, np.zeros(1, np.int64), np.array([[5, 7, 3]]), size=(5, 7), mean=0.0, std=1.0)
    np.testing.assert_array_equal(plan(np.zeros(1, np.int64))[0], image.reshape(5, 7, 3).astype(np.float32))
    time.sleep(0.05)
    assert "fastseq: compiling" not in capsys.readouterr().err


def test_compile_kernels_in_processes_reports_every_variant_in_order():
    """``jobs=2``: each variant compiled in a process of its own, reported in the in-process order."""
    kwargs = dict(dtypes=("float32", "uint8"), data_formats=("channels_last",))
    seen = []
    timings = warmup.compile_kernels(**kwargs, jobs=2, report=lambda what, s: seen.append(what))
    assert seen == list(timings) == list(warmup.compile_kernels(**kwargs, _only="names")) == [
        "random crop and flip parameters", "fused kernel, float32 channels_last", "fused kernel, uint8 channels_last"]
    assert all(s > 0 for s in timings.values())


@pytest.mark.parametrize("memmap", [False, True], ids=["ram", "memmap"])
def test_compile_warms_the_very_signature_the_batches_use(memmap, tmp_path):
    """After ``plan.compile()`` a batch compiles nothing: ``python -m fastseq compile`` must warm what batches run.

    (FusedPlan.compile passed a writable read order where batches of images in RAM pass a cached read-only one:
    Numba types those apart, so the quickstart's first batch compiled again after the compile command.)
    """
    from fastseq import kernels as K

    x = np.arange(4 * 6 * 6 * 3, dtype=np.uint8).reshape(4, 6, 6, 3)
    if memmap:
        np.save(tmp_path / "x.npy", x)
        x = np.load(tmp_path / "x.npy", mmap_mode="r")
    idx = np.array([3, 0, 2], np.int64)
    plans = [
        (K.images._checked, K.FusedPlan(x, crop=(6, 6), padding=1, scale=0.5),
         lambda p: p(idx, np.zeros((3, 2), np.int64), np.zeros(3, np.uint8))),
        (K.resize._checked, K.ResizePlan(x, size=(5, 5), scale=0.5),
         lambda p: p(idx, np.array([[0, 0, 6, 6]] * 3, np.int64), np.zeros(3, np.uint8))),
    ]
    mix_plan = K.FusedMix(K.FusedPlan(x, crop=(6, 6), padding=1, scale=0.5), "float32")
    both = np.concatenate([idx, idx[::-1]])
    mix_module = importlib.import_module("fastseq.kernels.mix")  # K.mix is the function of that name
    plans.append((mix_module._fused_mix, mix_plan,
                  lambda p: p(both, np.zeros((6, 2), np.int64), np.zeros(6, np.uint8), np.full(3, 0.5, np.float32),
                              np.zeros((3, 4), np.int64))))
    for kernel, plan, batch in plans:
        plan.compile()
        compiled = set(kernel.overloads)
        batch(plan)
        assert set(kernel.overloads) == compiled, f"{type(plan).__name__}: a batch compiled another signature"


def test_images_in_ram_and_memory_mapped_share_one_compiled_specialisation(tmp_path):
    """The same variant over a memmap compiles nothing more: the images and the read order reach the kernel as
    read-only arrays either way (a memmap's sorted read order was writable: a second specialisation)."""
    from fastseq import kernels as K

    x = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    idx = np.array([4, 1, 3], np.int64)
    args = (idx, np.zeros((3, 2), np.int64), np.zeros(3, np.uint8))
    in_ram = K.FusedPlan(x, crop=(4, 4), padding=1, scale=0.5)(*args)
    compiled = set(K.images._checked.overloads)
    from_file = K.FusedPlan(mapped, crop=(4, 4), padding=1, scale=0.5)(*args)
    assert set(K.images._checked.overloads) == compiled
    np.testing.assert_array_equal(from_file, in_ram)
