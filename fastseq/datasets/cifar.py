"""CIFAR-10, python version: ``cifar-10-python.tar.gz`` or its ``cifar-10-batches-py/`` folder.

Each batch file is a pickle of a dict whose ``b"data"`` entry is an
``(n, 3072)`` uint8 array (1024 red, 1024 green, 1024 blue values per row, each
plane row-major 32x32) and ``b"labels"`` a list of ``n`` ints in 0..9.
"""

import builtins
import gzip
import io
import posixpath
import tarfile
import zlib
from pathlib import Path

import numpy as np

from fastseq.datasets._util import check_labels, keras_datasets_dir, not_found, restricted_unpickle

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
BATCHES = (*TRAIN_BATCHES, TEST_BATCH)
FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _candidates(base):
    # Keras >= 3.? extracts into cifar-10-batches-py-target/ and keeps the
    # archive as cifar-10-batches-py-target_archive; older Keras used
    # cifar-10-batches-py/ and cifar-10-batches-py.tar.gz.
    return [
        base / FOLDER,
        base / "cifar-10-batches-py-target" / FOLDER,
        base / "cifar-10-python.tar.gz",
        base / "cifar-10-batches-py.tar.gz",
        base / "cifar-10-batches-py-target_archive",
    ]


def find_cifar10(path=None):
    """Resolve ``path`` (or Keras' cache) to a batch folder or an archive.

    Returns:
        ``("dir", folder)`` or ``("tar", archive)``.

    Raises:
        FileNotFoundError: nothing found; the message lists every place looked.
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return "tar", p
        if p.is_dir() and any((p / b).is_file() for b in BATCHES):
            return "dir", p
        candidates = _candidates(p) if p.is_dir() else [p]
    else:
        candidates = _candidates(keras_datasets_dir())
    for c in candidates:
        if c.is_dir():
            return "dir", c
        if c.is_file():
            return "tar", c
    how = (
        "Get it with keras.datasets.cifar10.load_data() (which caches it in "
        "$KERAS_HOME/datasets, default ~/.keras/datasets), or download "
        f"{URL} and pass load_cifar10(path=...) the archive or its extracted "
        f"{FOLDER}/ folder."
    )
    raise not_found("CIFAR-10", [str(c) for c in candidates], how)


def _parse_batch(blob, where):
    try:
        d = restricted_unpickle(io.BytesIO(blob))
    except Exception as e:  # a corrupt pickle can fail in many ways; all mean "bad file"
        raise ValueError(f"{where}: not a readable CIFAR batch pickle ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(d).__name__}")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        keys = ", ".join(repr(k) for k in d)
        raise ValueError(f"{where}: missing b'data' or b'labels' entry (has {keys})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{where}: b'data' should be a uint8 array of shape (n, 3072), got {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"{where}: b'labels' is not a list of integers ({e})") from e
    if y.ndim != 1 or len(y) != len(data):
        raise ValueError(
            f"{where}: label count does not match image count: {y.size} labels for {len(data)} rows of b'data'"
        )
    check_labels(y, 10, where)
    return data, y.astype(np.uint8)


def _read_dir(folder):
    missing = [b for b in BATCHES if not (folder / b).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: incomplete CIFAR-10 folder, missing {', '.join(missing)}")
    out = {}
    for b in BATCHES:
        with builtins.open(folder / b, "rb") as f:
            out[b] = _parse_batch(f.read(), folder / b)
    return out


def _read_tar(archive):
    out = {}
    try:
        # One sequential pass: members are parsed in archive order without
        # extracting anything to disk.
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = posixpath.basename(member.name)
                if name in BATCHES and name not in out and member.isfile():
                    blob = tar.extractfile(member).read()
                    out[name] = _parse_batch(blob, f"{member.name} in {archive}")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(
            f"{archive}: corrupt or truncated archive ({type(e).__name__}: {e}); download it again from {URL}"
        ) from e
    missing = [b for b in BATCHES if b not in out]
    if missing:
        raise ValueError(
            f"{archive}: not the CIFAR-10 python archive: it lacks {', '.join(FOLDER + '/' + m for m in missing)}"
        )
    return out


def _to_nhwc(data):
    # Keras: data.reshape(n, 3, 32, 32) then transpose(0, 2, 3, 1). Made
    # contiguous here because the kernels want C-contiguous input.
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def load_cifar10(path=None):
    """Load CIFAR-10 as ``((x_train, y_train), (x_test, y_test))``, like ``keras.datasets.cifar10.load_data()``.

    Reads the archive in one pass without extracting it; never downloads.

    Args:
        path (str | os.PathLike | None): ``cifar-10-python.tar.gz``, its extracted ``cifar-10-batches-py/``
            folder, or a directory holding either. None looks in Keras' cache,
            ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``), under every
            name Keras has used: ``cifar-10-batches-py/``,
            ``cifar-10-batches-py-target/cifar-10-batches-py/``,
            ``cifar-10-python.tar.gz``, ``cifar-10-batches-py.tar.gz`` and
            ``cifar-10-batches-py-target_archive``.

    Returns:
        tuple: Exactly Keras' values and shapes with ``channels_last``: images uint8
        ``(N, 32, 32, 3)`` (C-contiguous, where Keras returns a transposed
        view), labels uint8 ``(N, 1)``. ``y.ravel()`` gives ``(N,)``. N is
        50,000 and 10,000 for the real files (any batch size is accepted).

    Raises:
        FileNotFoundError: nothing found (every place looked is listed), or a
            batch folder missing some batch files.
        ValueError: a corrupt/truncated archive, a batch that does not unpickle,
            has the wrong shape or dtype, or a label count or value that does
            not match; the message names the file.
    """
    kind, where = find_cifar10(path)
    batches = _read_dir(where) if kind == "dir" else _read_tar(where)
    x_train = _to_nhwc(np.concatenate([batches[b][0] for b in TRAIN_BATCHES]))
    y_train = np.concatenate([batches[b][1] for b in TRAIN_BATCHES]).reshape(-1, 1)
    x_test = _to_nhwc(batches[TEST_BATCH][0])
    y_test = batches[TEST_BATCH][1].reshape(-1, 1)
    return (x_train, y_train), (x_test, y_test)
