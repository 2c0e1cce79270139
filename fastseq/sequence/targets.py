"""The targets and weights of a batch, gathered (and mixed) like its images. NumPy only."""

from __future__ import annotations

import numpy as np

from fastseq import kernels


def gather(values, idx):
    """``values[idx]`` as a plain array: NumPy for small rows (labels, weights), the parallel kernel for large ones.

    For a batch of class labels NumPy's fancy indexing takes about 2 us where
    the kernel's argument checks and launch take about 25; targets with rows
    of a kilobyte or more (masks, images) go through the GIL-free kernel.
    """
    if values.itemsize * (values.size // max(len(values), 1)) < 1024 and type(values) is np.ndarray:
        return values[idx]
    return kernels.gather(values, idx)


def one_hot(labels, num_classes):
    """Integer ``labels`` (intp, ``(n,)``) as float32 one-hot rows ``(n, num_classes)``."""
    onehot = np.zeros((labels.size, num_classes), np.float32)
    onehot[np.arange(labels.size), labels] = 1.0
    return onehot


def mixed(y, labels, num_classes, idx, partners, lam):
    """Targets mixed with the weight the pixels got: ``lam * y + (1 - lam) * y_partner`` (float32 weights).

    Args:
        y: the per-sample targets: float one-hot rows when ``num_classes`` is None.
        labels: ``y`` as intp class indices when ``num_classes`` is set, else unused.
        num_classes: int or None.
        idx, partners: the batch's samples and each one's partner (int64, same length).
        lam: float32 weight of each sample (its partner gets ``1 - lam``).
    """
    lam = lam[:, None]
    if num_classes is None:  # float one-hot y, checked at construction
        ya, yb = gather(y, idx), gather(y, partners)
        return ya * lam.astype(ya.dtype) + yb * (np.float32(1) - lam).astype(ya.dtype)
    rows = np.arange(idx.size)
    result = np.zeros((idx.size, num_classes), np.float32)
    result[rows, labels[idx]] = lam[:, 0]
    result[rows, labels[partners]] += np.float32(1) - lam[:, 0]
    return result
