"""MNIST and Fashion-MNIST: Keras' ``mnist.npz`` or the four IDX files (gzipped or not).

IDX is the format of Yann LeCun's MNIST distribution: a 4-byte magic number
``0x0000TTNN`` (``TT`` the element type, ``0x08`` for unsigned bytes; ``NN`` the
number of dimensions), then ``NN`` big-endian uint32 sizes, then the data.
Every header is checked against the file length, so a truncated or mismatched
file raises ``ValueError`` instead of giving a short array.
"""

import builtins
import gzip
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fastseq.datasets._util import check_labels, keras_datasets_dir, not_found

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Split key -> canonical IDX file name (without .gz).
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_IDX_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _read_exact(f, n):
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _readinto_full(f, arr):
    view = memoryview(arr).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got : got + (64 << 20)])
        if not n:
            break
        got += n
    return got


def _count_rest(f):
    extra = 0
    while b := f.read(_CHUNK):
        extra += len(b)
    return extra


def read_idx(path, *, ndim=None):
    """Read one IDX file of unsigned bytes, gzipped or not (detected from its content).

    Args:
        path (str | os.PathLike): the file.
        ndim (int | None): the number of dimensions the file must declare (3 for images,
            1 for labels), or None to accept any.

    Returns:
        np.ndarray: A writable, C-contiguous uint8 array of the shape in the header.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad magic number, element type other than 0x08, wrong
            number of dimensions, header dimensions that disagree with the file
            length (truncated or trailing bytes), or a corrupt/truncated gzip
            stream. The message names the file.
    """
    path = Path(path)
    with builtins.open(path, "rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        try:
            return _read_idx_stream(f, path, ndim, gzipped)
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise ValueError(
                f"{path}: corrupt or truncated gzip stream ({type(e).__name__}: {e}); "
                "the file is damaged, download it again"
            ) from e


def _read_idx_stream(f, path, ndim, gzipped):
    what = "uncompressed " if gzipped else ""
    magic = _read_exact(f, 4)
    if len(magic) < 4:
        raise ValueError(
            f"{path}: truncated: {len(magic)} {what}bytes, too short for an IDX header (4-byte magic number)"
        )
    value = int.from_bytes(magic, "big")
    if magic[0] or magic[1]:
        raise ValueError(
            f"{path}: not an IDX file: bad magic number 0x{value:08X} "
            "(expected 0x00000803 for images, 0x00000801 for labels)"
        )
    code, nd = magic[2], magic[3]
    if code != 0x08:
        kind = _IDX_TYPES.get(code, "unknown")
        raise ValueError(
            f"{path}: magic number 0x{value:08X} declares element type 0x{code:02X} ({kind}); "
            "only 0x08 (unsigned byte) is supported"
        )
    if ndim is not None and nd != ndim:
        raise ValueError(
            f"{path}: bad magic number 0x{value:08X}: it declares {nd} dimensions, expected {ndim} "
            f"(0x0000080{ndim} for {'images' if ndim == 3 else 'labels'})"
        )
    raw_dims = _read_exact(f, 4 * nd)
    if len(raw_dims) < 4 * nd:
        raise ValueError(f"{path}: truncated IDX header: {nd} dimensions declared but the file ends inside the header")
    dims = struct.unpack(f">{nd}I", raw_dims)
    header = 4 + 4 * nd
    size = int(np.prod(dims, dtype=np.int64))
    arr = np.empty(dims, np.uint8)
    got = _readinto_full(f, arr) if size else 0
    shape = "x".join(map(str, dims))
    if got < size:
        raise ValueError(
            f"{path}: truncated: header dimensions {shape} need {header + size} {what}bytes "
            f"({size} data bytes), the file has {header + got}"
        )
    extra = _count_rest(f)
    if extra:
        raise ValueError(
            f"{path}: dimensions do not match the file length: header dimensions {shape} need "
            f"{header + size} {what}bytes, the file has {header + size + extra} ({extra} extra)"
        )
    return arr


def _idx_candidates(folder, name):
    dotted = name.replace("-idx", ".idx")
    return [folder / n for n in (name + ".gz", name, dotted + ".gz", dotted)]


def find_idx_files(folder):
    """Map split keys to the IDX files in ``folder``; ``None`` for each one absent."""
    found = {}
    for key, name in IDX_FILES.items():
        found[key] = next((p for p in _idx_candidates(folder, name) if p.is_file()), None)
    return found


def _load_idx_folder(folder):
    found = find_idx_files(folder)
    missing = [IDX_FILES[k] for k, p in found.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"{folder}: incomplete IDX set, missing {', '.join(n + '[.gz]' for n in missing)}"
        )
    splits = []
    for part in ("train", "test"):
        xp, yp = found[f"x_{part}"], found[f"y_{part}"]
        x, y = read_idx(xp, ndim=3), read_idx(yp, ndim=1)
        if len(x) != len(y):
            raise ValueError(
                f"{yp}: label count does not match image count: {len(y)} labels in {yp.name} "
                f"but {len(x)} images in {xp.name}"
            )
        splits.append(((x, y), (xp, yp)))
    return splits


def _load_npz(path):
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: a .npy file, not a .npz archive with {', '.join(NPZ_KEYS)}")
        with f:
            files = list(f.files)
            arrays = {k: f[k] for k in NPZ_KEYS if k in files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, ValueError) as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: corrupt or truncated .npz ({type(e).__name__}: {e}); download it again") from e
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing arrays {', '.join(missing)} (has {', '.join(files) or 'none'})")
    splits = []
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        where = f"{path}[x_{part}]"
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(f"{where}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{path}[y_{part}]: expected integer labels of shape (N,), got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise ValueError(
                f"{path}: label count does not match image count: {len(y)} labels in y_{part} "
                f"but {len(x)} images in x_{part}"
            )
        splits.append(((x, y), (f"{path}[x_{part}]", f"{path}[y_{part}]")))
    return splits


def _candidates_for(path, default_dirs, npz_name):
    """Places to look, in order: (kind, path) with kind "npz" or "idx"."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file() or p.suffix == ".npz":
            return [("npz", p)]
        return [("npz", p / npz_name), ("idx", p)]
    out = []
    for kind, p in default_dirs:
        out.append((kind, p))
    return out


def load_mnist_like(candidates, what, how, num_classes=None):
    """Load the first candidate present; see ``load_mnist`` for the contract."""
    looked = []
    for kind, p in candidates:
        if kind == "npz":
            looked.append(str(p))
            if p.is_file():
                splits = _load_npz(p)
                break
        else:
            names = ", ".join(n + "[.gz]" for n in IDX_FILES.values())
            looked.append(f"{p}/{{{names}}}")
            found = find_idx_files(p) if p.is_dir() else {}
            if found and all(found.values()):
                splits = _load_idx_folder(p)
                break
            if found and any(found.values()):
                _load_idx_folder(p)  # raises, naming the missing files
    else:
        raise not_found(what, looked, how)
    if num_classes is not None:
        for (_, y), (_, yname) in splits:
            check_labels(y, num_classes, yname)
    return tuple(xy for xy, _ in splits)


_MNIST_HOW = (
    "Get it with keras.datasets.mnist.load_data() (which caches mnist.npz in "
    "$KERAS_HOME/datasets, default ~/.keras/datasets), or download "
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz "
    "and pass load_mnist(path=...)."
)
_FASHION_HOW = (
    "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, puts the four "
    f"gzipped IDX files in {FASHION_SYSTEM_DIR}), run keras.datasets.fashion_mnist.load_data(), "
    "or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
    "and t10k-labels-idx1-ubyte.gz from https://storage.googleapis.com/tensorflow/tf-keras-datasets/ "
    "into one folder and pass load_fashion_mnist(path=...)."
)


def load_mnist(path=None):
    """Load MNIST as ``((x_train, y_train), (x_test, y_test))``, like ``keras.datasets.mnist.load_data()``.

    Never downloads.

    Args:
        path (str | os.PathLike | None): Keras' ``mnist.npz`` file, or a folder holding ``mnist.npz`` or
            the four IDX files (``train-images-idx3-ubyte``,
            ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
            ``t10k-labels-idx1-ubyte``, each optionally ``.gz``; the
            ``train-images.idx3-ubyte`` spelling is accepted too). None looks in
            Keras' cache: ``$KERAS_HOME/datasets/mnist.npz`` (default
            ``~/.keras``), then IDX files in ``$KERAS_HOME/datasets/mnist/``.

    Returns:
        tuple: uint8 images ``(N, 28, 28)`` and uint8 labels ``(N,)`` in 0..9, for the
        60,000 training and 10,000 test images (whatever the files hold).

    Raises:
        FileNotFoundError: nothing found; the message lists every place looked
            and how to get the files.
        ValueError: a truncated, corrupt or inconsistent file (named).
    """
    base = keras_datasets_dir()
    candidates = _candidates_for(path, [("npz", base / "mnist.npz"), ("idx", base / "mnist")], "mnist.npz")
    return load_mnist_like(candidates, "MNIST", _MNIST_HOW, num_classes=10)


def load_fashion_mnist(path=None):
    """Load Fashion-MNIST as ``((x_train, y_train), (x_test, y_test))``, like Keras.

    Never downloads. Same formats as ``load_mnist``; class names are
    ``FASHION_MNIST_CLASSES``.

    Args:
        path (str | os.PathLike | None): a ``.npz`` file or a folder with the four IDX files (or a
            ``fashion-mnist.npz``). None looks in Keras' cache
            (``$KERAS_HOME/datasets/fashion-mnist/``), then in
            ``/usr/share/datasets/fashion-mnist/`` where Debian's
            ``dataset-fashion-mnist`` package installs it.

    Returns:
        tuple: uint8 images ``(N, 28, 28)`` and uint8 labels ``(N,)`` in 0..9.

    Raises:
        FileNotFoundError: nothing found; the message lists every place looked
            and how to get the files (``apt-get install dataset-fashion-mnist``).
        ValueError: a truncated, corrupt or inconsistent file (named).
    """
    defaults = [("idx", keras_datasets_dir() / "fashion-mnist"), ("idx", FASHION_SYSTEM_DIR)]
    candidates = _candidates_for(path, defaults, "fashion-mnist.npz")
    return load_mnist_like(candidates, "Fashion-MNIST", _FASHION_HOW, num_classes=10)
