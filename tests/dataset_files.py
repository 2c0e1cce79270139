"""Tiny, seeded files in the exact on-disk formats the loaders read.

CIFAR-10 python batches (pickled dicts in ``cifar-10-batches-py/``, as a folder
or a ``.tar.gz``), IDX files (plain and gzipped), Keras' ``mnist.npz``, and a
folder of PNG/JPEG images. Every function returns the arrays it wrote so tests
compare against them.
"""

import gzip
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def cifar_batch(n, *, seed, label=b"training batch"):
    """A CIFAR batch dict in the real layout: b"data" (n, 3072) uint8, b"labels" list of int."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": label,
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def _dump(obj, path):
    # Protocol 4: bytes stay bytes, numpy arrays need only the globals Keras'
    # RestrictedUnpickler allows, as with the real (Python 2) files.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def write_cifar_folder(root, *, n=4, n_test=3, seed=0, batches=None):
    """Write ``root/cifar-10-batches-py/`` (5 train batches of ``n`` rows, test of ``n_test``).

    ``batches`` maps a batch name to a dict to write instead of the default.
    Returns ``(folder, {batch name: dict})``.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate(CIFAR_BATCHES):
        d = cifar_batch(n_test if name == "test_batch" else n, seed=seed * 100 + i)
        if batches and name in batches:
            d = batches[name]
        _dump(d, folder / name)
        written[name] = d
    meta = {b"label_names": [c.encode() for c in ("airplane", "automobile", "bird", "cat", "deer",
                                                  "dog", "frog", "horse", "ship", "truck")],
            b"num_cases_per_batch": n, b"num_vis": 3072}
    _dump(meta, folder / "batches.meta")
    return folder, written


def write_cifar_tar(path, **kwargs):
    """Write ``path`` (a .tar.gz holding ``cifar-10-batches-py/...``). Returns ``(path, batches)``."""
    path = Path(path)
    staging = path.parent / (path.name + ".staging")
    folder, written = write_cifar_folder(staging, **kwargs)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return path, written


def expected_cifar(batches):
    """What Keras returns for these batches: NHWC uint8 and (N, 1) uint8 labels."""
    def nhwc(d):
        return d[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    x_train = np.concatenate([nhwc(d) for d in train])
    y_train = np.concatenate([d[b"labels"] for d in train]).astype(np.uint8).reshape(-1, 1)
    test = batches["test_batch"]
    return (x_train, y_train), (nhwc(test), np.array(test[b"labels"], np.uint8).reshape(-1, 1))


def idx_bytes(arr, *, magic=None):
    """IDX encoding of a uint8 array: magic 0x000008NN, big-endian uint32 dims, data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | arr.ndim
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(path, arr, *, gz=False, magic=None):
    data = idx_bytes(arr, magic=magic)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)
    return Path(path)


IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def mnist_arrays(*, n=12, n_test=5, hw=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n, *hw), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_idx_folder(folder, *, gz=True, dotted=False, **kwargs):
    """Write the four MNIST IDX files into ``folder``. Returns ``(paths, arrays)`` keyed like mnist.npz."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = mnist_arrays(**kwargs)
    paths = {}
    for key, name in IDX_NAMES.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        paths[key] = write_idx(folder / (name + (".gz" if gz else "")), arrays[key], gz=gz)
    return paths, arrays


def write_mnist_npz(path, **kwargs):
    """Write Keras' mnist.npz layout. Returns ``(path, arrays)``."""
    arrays = mnist_arrays(**kwargs)
    np.savez_compressed(path, **arrays)
    return Path(path), arrays


def write_image_folder(root, *, classes=("cat", "dog"), per_class=3, hw=(6, 5), seed=0, fmt="PNG"):
    """Write ``root/<class>/<i>.png`` RGB images. Returns ``{path: (label, array)}``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for label, cls in enumerate(classes):
        (Path(root) / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            path = Path(root) / cls / f"{i}.{'png' if fmt == 'PNG' else 'jpg'}"
            Image.fromarray(arr).save(path, fmt)
            written[path] = (label, arr)
    return written
