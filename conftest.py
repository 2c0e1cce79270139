"""Fixtures shared by tests/ and benchmarks/.

Both suites draw their data from here, so a benchmark measures the very
arrays the correctness tests check.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from fastseq.bench import synthetic

# Per-channel statistics used by every CIFAR-shaped job (tests, benchmarks, CLI).
CIFAR_MEAN = np.array(synthetic.CIFAR_MEAN, dtype=np.float64)
CIFAR_STD = np.array(synthetic.CIFAR_STD, dtype=np.float64)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # A plain `pytest` runs each benchmark once as a correctness test
    # (--benchmark-disable); `pytest --benchmark-only` times them. Setting it
    # here instead of in addopts keeps the two flags from colliding.
    opt = config.option
    if hasattr(opt, "benchmark_disable") and not getattr(opt, "benchmark_only", False):
        if not getattr(opt, "benchmark_enable", False):
            opt.benchmark_disable = True
    if _whole_suite(config):
        _precompile()
        _parallel(config)


def _whole_suite(config):
    """``python -m pytest`` with no paths (the README's test command), in the controlling process.

    Only then is the suite sped up below: a developer running one file gets
    neither the precompile nor the worker processes. Timed benchmark runs
    (``--benchmark-only``) are left alone too: they must run in one process.
    """
    return (
        not hasattr(config, "workerinput")
        and config.args_source == pytest.Config.ArgsSource.TESTPATHS
        and not getattr(config.option, "benchmark_only", False)
        and os.environ.get("FASTSEQ_TEST_FAST", "1") != "0"
    )


def _precompile():
    """Compile every kernel variant the suite reaches, one process per core, into the cache all tests share.

    Numba compiles on one thread, and the suite's tests and their Keras
    subprocesses would otherwise each compile the variants they meet first,
    one at a time (and some of them twice, in parallel workers). This is
    ``python -m fastseq compile``, as the docs advise for CI; the tests that
    measure a cold compile use caches of their own (``NUMBA_CACHE_DIR``).
    The augmentation pass is warmed for float32 only: its other storage types
    are reached by a few tests of the smallest variant, which compile it then.
    """
    t0 = time.perf_counter()
    jobs = ["--jobs", str(_workers())]
    commands = [
        [sys.executable, "-m", "fastseq", "compile", "--all", "--resize", "--augmentations", "--photos", *jobs],
        [sys.executable, "-m", "fastseq", "compile", "--augment", *jobs],
    ]
    lines = []
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise pytest.UsageError(f"precompiling the kernels failed ({' '.join(command)}):\n{result.stderr}")
        lines.append(result.stdout.splitlines()[-1])
    print(f"fastseq: kernels compiled or loaded in {time.perf_counter() - t0:.0f} s ({'; '.join(lines)})",
          file=sys.stderr, flush=True)


def _workers():
    return max(1, min(os.cpu_count() or 1, 4))


def _parallel(config):
    """Tests in one worker process per core (at most 4), handed out one at a time (pytest-xdist's worksteal)."""
    if config.pluginmanager.hasplugin("xdist") and config.option.numprocesses is None and _workers() > 1:
        config.option.numprocesses = _workers()
        config.option.dist = "worksteal"
        config.option.tx = ["popen"] * _workers()


@pytest.fixture(scope="session")
def cifar():
    """Seeded CIFAR-10-shaped data: x uint8 (50000, 32, 32, 3), y int64 (50000,)."""
    return synthetic.cifar_like(50_000, seed=0)


@pytest.fixture(scope="session")
def mnist():
    """Seeded MNIST-shaped data: x uint8 (60000, 28, 28), y int64 (60000,)."""
    return synthetic.mnist_like(60_000, seed=0)


@pytest.fixture(scope="session")
def cifar_npy(tmp_path_factory, cifar):
    """The ``cifar`` images saved as .npy and reopened read-only memory-mapped."""
    path = tmp_path_factory.mktemp("cifar") / "x.npy"
    np.save(path, cifar[0])
    return np.load(path, mmap_mode="r")
