"""Fixtures shared by tests/ and benchmarks/.

Both suites draw their data from here, so a benchmark measures the very
arrays the correctness tests check.
"""

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
