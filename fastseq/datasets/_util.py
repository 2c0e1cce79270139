"""Helpers shared by the dataset loaders: where Keras caches files, safe
unpickling, and the "not found" message. NumPy and the standard library only.
"""

import os
import pickle
from pathlib import Path

import numpy as np

# Pickled CIFAR batches hold one numpy array and lists of ints/bytes. Only the
# globals needed to rebuild an ndarray are allowed, so a tampered file cannot
# run code through a pickle ``__reduce__`` gadget (Keras does the same).
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: np._core.multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): lambda: np._core.numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): lambda: np._core.numeric._frombuffer,
    # Python 3 pickles of protocol < 3 spell bytes as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): lambda: __import__("codecs").encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]()
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR batch holds only arrays and lists"
            ) from None


def restricted_unpickle(fileobj):
    """Unpickle a Python-2 era pickle (``encoding="bytes"``) allowing only ndarray globals."""
    return _RestrictedUnpickler(fileobj, encoding="bytes").load()


def keras_home():
    """Keras' cache root: ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras`` if ``~`` is read-only).

    Mirrors ``keras.src.backend.config`` without importing Keras.
    """
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    base = Path.home()
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras"


def keras_datasets_dir():
    """``keras_home() / "datasets"``, where ``keras.datasets.*.load_data()`` stores files."""
    return keras_home() / "datasets"


def not_found(what, looked, how):
    """A FileNotFoundError that lists every place looked and how to get the data."""
    lines = [f"{what} not found. Looked in:"]
    lines += [f"  - {place}" for place in looked]
    lines.append("fastseq never downloads. " + how)
    return FileNotFoundError("\n".join(lines))


def check_labels(y, num_classes, where):
    """Raise ValueError naming ``where`` if any label is outside ``0..num_classes-1``."""
    if y.size == 0:
        return
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: label {int(y.flat[i])} at index {i} is outside 0..{num_classes - 1} "
            f"({bad.size} bad labels); the file is corrupt or not this dataset"
        )
