"""Seeded synthetic image data, shared by tests, benchmarks and the CLI.

The same ``(n, shape, seed)`` always gives the same bytes, so a benchmark
measures the very data the correctness tests check.
"""

import numpy as np

CIFAR_SHAPE = (32, 32, 3)
MNIST_SHAPE = (28, 28)
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)


def images(n, shape=CIFAR_SHAPE, *, seed=0):
    """Return ``n`` seeded uint8 images of ``shape`` (C-contiguous)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def labels(n, num_classes=10, *, seed=0):
    """Return ``n`` seeded int64 labels in ``[0, num_classes)``."""
    rng = np.random.default_rng([seed, 1])
    return rng.integers(0, num_classes, size=n, dtype=np.int64)


def cifar_like(n=50_000, *, seed=0):
    """CIFAR-10-shaped data: ``(x uint8 (n, 32, 32, 3), y int64 (n,))``."""
    return images(n, CIFAR_SHAPE, seed=seed), labels(n, seed=seed)


def mnist_like(n=60_000, *, seed=0):
    """MNIST-shaped data: ``(x uint8 (n, 28, 28), y int64 (n,))``."""
    return images(n, MNIST_SHAPE, seed=seed), labels(n, seed=seed)
