"""Loaders (CIFAR-10, MNIST/Fashion-MNIST, IDX) and the .npy cache, on tiny files in the exact formats."""

import gzip
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

import fastseq.datasets as ds
from fastseq.datasets import cache, mnist
from tests import dataset_files as files

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache, so default lookups never see the real ~/.keras."""
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def test_import_pulls_in_neither_keras_nor_pil():
    code = (
        "import sys, fastseq.datasets, fastseq.datasets.convert;"
        "print(sorted(m for m in ('keras', 'tensorflow', 'PIL', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_open_is_not_star_exported():
    assert "open" not in ds.__all__ and ds.open is cache.open
    assert {"load_cifar10", "load_mnist", "load_fashion_mnist", "save"} <= set(ds.__all__)
    assert len(ds.CIFAR10_CLASSES) == len(ds.FASHION_MNIST_CLASSES) == len(ds.MNIST_CLASSES) == 10


# --- CIFAR-10 ---------------------------------------------------------------


def _assert_cifar(result, batches):
    (x_train, y_train), (x_test, y_test) = result
    (ex_train, ey_train), (ex_test, ey_test) = files.expected_cifar(batches)
    for actual, expected in ((x_train, ex_train), (y_train, ey_train), (x_test, ex_test), (y_test, ey_test)):
        assert actual.dtype == np.uint8 and actual.shape == expected.shape
        assert_array_equal(actual, expected)
    assert x_train.flags.c_contiguous and x_test.flags.c_contiguous


def test_cifar_from_folder_archive_and_parent(tmp_path):
    folder, batches = files.write_cifar_folder(tmp_path / "f", n=4, n_test=3, seed=1)
    archive, tar_batches = files.write_cifar_tar(tmp_path / "t" / "cifar-10-python.tar.gz", n=4, n_test=3, seed=1)
    _assert_cifar(ds.load_cifar10(folder), batches)
    _assert_cifar(ds.load_cifar10(folder.parent), batches)
    _assert_cifar(ds.load_cifar10(archive), tar_batches)
    _assert_cifar(ds.load_cifar10(archive.parent), tar_batches)
    (x_train, y_train), (x_test, _) = ds.load_cifar10(archive)
    assert x_train.shape == (20, 32, 32, 3) and y_train.shape == (20, 1) and x_test.shape == (3, 32, 32, 3)


def test_cifar_pixel_layout_is_planar_rgb(tmp_path):
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each 32x32 row-major.
    data = np.zeros((1, 3072), np.uint8)
    data[0, 0] = 10  # red of pixel (0, 0)
    data[0, 1024 + 33] = 20  # green of pixel (1, 1)
    data[0, 2048 + 31] = 30  # blue of pixel (0, 31)
    batch = {b"data": data, b"labels": [7], b"batch_label": b"x", b"filenames": [b"a.png"]}
    folder, _ = files.write_cifar_folder(tmp_path, batches={"test_batch": batch})
    (_, _), (x_test, y_test) = ds.load_cifar10(folder)
    assert x_test[0, 0, 0, 0] == 10 and x_test[0, 1, 1, 1] == 20 and x_test[0, 0, 31, 2] == 30
    assert int(x_test.sum()) == 60 and y_test.tolist() == [[7]]


def test_cifar_matches_keras_load_batch(tmp_path):
    cifar = pytest.importorskip("keras.src.datasets.cifar")
    folder, _ = files.write_cifar_folder(tmp_path, n=5, n_test=4, seed=3)
    xs, ys = [], []
    for name in files.CIFAR_BATCHES:  # keras' cifar10.load_data, minus the fixed 10000 rows per batch
        data, labels = cifar.load_batch(str(folder / name))
        xs.append(data.transpose(0, 2, 3, 1))
        ys.append(np.asarray(labels, np.uint8).reshape(-1, 1))
    (x_train, y_train), (x_test, y_test) = ds.load_cifar10(folder)
    assert_array_equal(x_train, np.concatenate(xs[:5]))
    assert_array_equal(y_train, np.concatenate(ys[:5]))
    assert_array_equal(x_test, xs[5])
    assert_array_equal(y_test, ys[5])
    assert y_train.dtype == np.uint8 and y_train.shape == (25, 1)


@pytest.mark.parametrize(
    "layout",
    ["cifar-10-batches-py", "cifar-10-batches-py-target/cifar-10-batches-py", "cifar-10-python.tar.gz",
     "cifar-10-batches-py.tar.gz", "cifar-10-batches-py-target_archive"],
)
def test_cifar_default_looks_in_keras_cache(keras_home, layout):
    target = keras_home / "datasets" / layout
    if "tar" in layout or "archive" in layout:
        target.parent.mkdir(parents=True)
        _, batches = files.write_cifar_tar(target, n=2, n_test=2, seed=4)
    else:
        _, batches = files.write_cifar_folder(target.parent, n=2, n_test=2, seed=4)
    _assert_cifar(ds.load_cifar10(), batches)


def test_cifar_missing_names_every_place(keras_home):
    with pytest.raises(FileNotFoundError) as err:
        ds.load_cifar10()
    msg = str(err.value)
    base = keras_home / "datasets"
    for name in ("cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar-10-batches-py-target_archive"):
        assert str(base / name) in msg
    assert "cifar-10-python.tar.gz" in msg and "never downloads" in msg


def test_cifar_folder_missing_batch(tmp_path):
    folder, _ = files.write_cifar_folder(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="missing data_batch_3") as err:
        ds.load_cifar10(folder)
    assert str(folder) in str(err.value)


def test_cifar_corrupt_archive(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="corrupt or truncated archive") as err:
        ds.load_cifar10(bad)
    assert str(bad) in str(err.value)


def test_cifar_truncated_archive(tmp_path):
    archive, _ = files.write_cifar_tar(tmp_path / "c.tar.gz", n=40, n_test=40, seed=5)
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated archive") as err:
        ds.load_cifar10(archive)
    assert str(archive) in str(err.value)


def test_cifar_archive_without_batches(tmp_path):
    archive = tmp_path / "other.tar.gz"
    (tmp_path / "readme.txt").write_text("hello")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "readme.txt", arcname="cifar-10-batches-py/readme.txt")
    with pytest.raises(ValueError, match="lacks cifar-10-batches-py/data_batch_1") as err:
        ds.load_cifar10(archive)
    assert str(archive) in str(err.value)


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda d: d.update({b"data": d[b"data"][:, :3000]}), r"shape \(n, 3072\), got uint8 \(4, 3000\)"),
        (lambda d: d.update({b"data": d[b"data"].astype(np.int16)}), r"uint8 array .* got int16"),
        (lambda d: d.update({b"labels": d[b"labels"][:-1]}), "3 labels for 4 rows"),
        (lambda d: d.update({b"labels": [0, 1, 12, 3]}), r"label 12 at index 2 is outside 0..9"),
        (lambda d: d.pop(b"labels"), "missing b'data' or b'labels'"),
    ],
)
def test_cifar_bad_batch_names_file_and_problem(tmp_path, mutate, problem):
    batch = files.cifar_batch(4, seed=9)
    mutate(batch)
    folder, _ = files.write_cifar_folder(tmp_path, n=4, batches={"data_batch_2": batch})
    with pytest.raises(ValueError, match=problem) as err:
        ds.load_cifar10(folder)
    assert str(folder / "data_batch_2") in str(err.value)


def test_cifar_bad_batch_in_archive_names_member(tmp_path):
    batch = files.cifar_batch(4, seed=9)
    batch[b"data"] = batch[b"data"].reshape(4, 32, 96)
    archive, _ = files.write_cifar_tar(tmp_path / "c.tar.gz", n=4, batches={"test_batch": batch})
    with pytest.raises(ValueError, match=r"cifar-10-batches-py/test_batch in .*c\.tar\.gz.*\(n, 3072\)"):
        ds.load_cifar10(archive)


def test_cifar_truncated_and_malicious_pickles(tmp_path):
    folder, _ = files.write_cifar_folder(tmp_path)
    blob = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(blob[:100])
    with pytest.raises(ValueError, match="not a readable CIFAR batch pickle") as err:
        ds.load_cifar10(folder)
    assert str(folder / "data_batch_1") in str(err.value)
    (folder / "data_batch_1").write_bytes(pickle.dumps(os.system, protocol=4) + blob)
    with pytest.raises(ValueError, match="refusing to load global posix.system"):
        ds.load_cifar10(folder)


# --- IDX / MNIST -------------------------------------------------------------


def _assert_mnist(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for key, actual in zip(("x_train", "y_train", "x_test", "y_test"), (x_train, y_train, x_test, y_test)):
        assert actual.dtype == np.uint8 and actual.shape == arrays[key].shape, key
        assert_array_equal(actual, arrays[key])


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dotted", [False, True])
def test_mnist_from_idx(tmp_path, gz, dotted):
    _, arrays = files.write_idx_folder(tmp_path, gz=gz, dotted=dotted, seed=2)
    result = ds.load_mnist(tmp_path)
    _assert_mnist(result, arrays)
    assert result[0][0].flags.writeable and result[0][0].shape == (12, 28, 28)


def test_mnist_from_npz_file_folder_and_keras_cache(tmp_path, keras_home):
    path, arrays = files.write_mnist_npz(tmp_path / "mnist.npz", seed=3)
    _assert_mnist(ds.load_mnist(path), arrays)
    _assert_mnist(ds.load_mnist(tmp_path), arrays)
    (keras_home / "datasets").mkdir()
    os.replace(path, keras_home / "datasets" / "mnist.npz")
    _assert_mnist(ds.load_mnist(), arrays)


def test_fashion_mnist_default_order(keras_home, tmp_path, monkeypatch):
    system = tmp_path / "system"
    _, system_arrays = files.write_idx_folder(system, seed=5)
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIR", system)
    _assert_mnist(ds.load_fashion_mnist(), system_arrays)  # falls back to the system folder
    _, cached = files.write_idx_folder(keras_home / "datasets" / "fashion-mnist", seed=6)
    _assert_mnist(ds.load_fashion_mnist(), cached)  # Keras' cache comes first


def test_fashion_mnist_missing_names_every_place(keras_home, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        ds.load_fashion_mnist()
    msg = str(err.value)
    assert str(keras_home / "datasets" / "fashion-mnist") in msg
    assert str(tmp_path / "nowhere") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "train-images-idx3-ubyte" in msg


def test_mnist_missing_names_every_place(keras_home):
    with pytest.raises(FileNotFoundError) as err:
        ds.load_mnist()
    msg = str(err.value)
    assert str(keras_home / "datasets" / "mnist.npz") in msg and str(keras_home / "datasets" / "mnist") in msg
    assert "mnist.npz" in msg and "never downloads" in msg


def test_incomplete_idx_folder_names_missing_file(tmp_path):
    paths, _ = files.write_idx_folder(tmp_path)
    paths["y_test"].unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte") as err:
        ds.load_mnist(tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(keras_home):
    (x_train, y_train), (x_test, y_test) = ds.load_fashion_mnist()  # found in /usr/share/datasets
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10
    assert 0 < x_train.mean() < 255 and x_train.max() == 255


def test_read_idx_any_dims(tmp_path):
    arr = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)
    path = files.write_idx(tmp_path / "a.idx", arr, gz=True)
    assert_array_equal(ds.read_idx(path), arr)


def _idx_error(path, ndim=None):
    with pytest.raises(ValueError) as err:
        ds.read_idx(path, ndim=ndim)
    assert str(path) in str(err.value)
    return str(err.value)


def test_idx_truncated_gzip(tmp_path):
    path = files.write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.ones((50, 28, 28), np.uint8) * 7, gz=True)
    rng = np.random.default_rng(0)
    noisy = files.write_idx(tmp_path / "n.gz", rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), gz=True)
    for p in (path, noisy):
        blob = p.read_bytes()
        p.write_bytes(blob[: len(blob) * 2 // 3])
        assert "corrupt or truncated gzip" in _idx_error(p)


def test_idx_corrupt_gzip_crc(tmp_path):
    path = files.write_idx(tmp_path / "a.gz", np.zeros((3, 4, 4), np.uint8), gz=True)
    blob = bytearray(path.read_bytes())
    blob[-8] ^= 0xFF  # CRC32 in the gzip trailer
    path.write_bytes(bytes(blob))
    assert "corrupt or truncated gzip" in _idx_error(path)


def test_idx_wrong_magic(tmp_path):
    labels = files.write_idx(tmp_path / "labels", np.zeros(5, np.uint8))
    assert "bad magic number 0x00000801" in _idx_error(labels, ndim=3)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert "not an IDX file" in _idx_error(junk)
    floats = files.write_idx(tmp_path / "floats", np.zeros(5, np.uint8), magic=0x0D01)
    assert "element type 0x0D (float32)" in _idx_error(floats)


def test_idx_dims_vs_file_length(tmp_path):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    short = tmp_path / "short"
    short.write_bytes(files.idx_bytes(arr)[:-10])
    msg = _idx_error(short)
    assert "truncated" in msg and "need 1584 bytes" in msg and "has 1574" in msg
    long = tmp_path / "long"
    long.write_bytes(files.idx_bytes(arr) + b"\0" * 3)
    assert "dimensions do not match the file length" in _idx_error(long) and "3 extra" in _idx_error(long)
    header_only = tmp_path / "header"
    header_only.write_bytes(files.idx_bytes(arr)[:9])
    assert "truncated IDX header" in _idx_error(header_only)
    gz = tmp_path / "long.gz"
    gz.write_bytes(gzip.compress(files.idx_bytes(arr) + b"\0"))
    assert "1 extra" in _idx_error(gz)


def test_idx_label_count_mismatch(tmp_path):
    paths, arrays = files.write_idx_folder(tmp_path, gz=False)
    files.write_idx(paths["y_train"], arrays["y_train"][:-1])
    with pytest.raises(ValueError, match="label count does not match image count: 11 labels") as err:
        ds.load_mnist(tmp_path)
    assert str(paths["y_train"]) in str(err.value) and "12 images" in str(err.value)


def test_idx_label_out_of_range(tmp_path):
    paths, arrays = files.write_idx_folder(tmp_path, gz=True)
    y = arrays["y_test"].copy()
    y[3] = 10
    files.write_idx(paths["y_test"], y, gz=True)
    with pytest.raises(ValueError, match=r"label 10 at index 3 is outside 0..9") as err:
        ds.load_mnist(tmp_path)
    assert str(paths["y_test"]) in str(err.value)


def test_mnist_corrupt_npz(tmp_path):
    path, arrays = files.write_mnist_npz(tmp_path / "mnist.npz")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated .npz") as err:
        ds.load_mnist(path)
    assert str(path) in str(err.value)
    np.savez(path, x_train=arrays["x_train"], y_train=arrays["y_train"])
    with pytest.raises(ValueError, match="missing arrays x_test, y_test"):
        ds.load_mnist(path)
    np.savez(path, **{**arrays, "y_train": arrays["y_train"][:3]})
    with pytest.raises(ValueError, match="3 labels in y_train but 12 images in x_train"):
        ds.load_mnist(path)


# --- the cache ---------------------------------------------------------------


def test_cache_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (9, 5, 4, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 9).astype(np.uint8)
    out = ds.save(tmp_path / "c", x, y, class_names=("a", "b", "c"), name="tiny")
    assert out == tmp_path / "c" and sorted(p.name for p in out.iterdir()) == ["manifest.json", "x.npy", "y.npy"]
    c = ds.open(out, verify=True)
    assert isinstance(c.x, np.memmap) and isinstance(c.y, np.memmap)
    assert not c.x.flags.writeable and not c.y.flags.writeable
    assert_array_equal(c.x, x)
    assert_array_equal(c.y, y)
    assert c.class_names == ("a", "b", "c") and c.name == "tiny" and len(c) == 9
    assert c.manifest["count"] == 9 and c.manifest["class_counts"] == np.bincount(y, minlength=3).tolist()
    assert c.manifest["arrays"]["x"]["shape"] == [9, 5, 4, 3] and len(c.manifest["arrays"]["x"]["sha256"]) == 64
    xx, yy = c
    assert xx is c.x and yy is c.y
    with pytest.raises(ValueError):
        c.x[0, 0, 0, 0] = 1


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 5),
    hw=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    channels=st.sampled_from([None, 1, 3, 4]),
    with_y=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cache_round_trip_shapes(tmp_path_factory, n, hw, channels, with_y, seed):
    rng = np.random.default_rng(seed)
    shape = (n, *hw) if channels is None else (n, *hw, channels)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    y = rng.integers(0, 10, (n, 1)).astype(np.int64) if with_y else None
    d = tmp_path_factory.mktemp("c") / "cache"
    c = ds.open(ds.save(d, x, y), verify=True)
    assert c.x.shape == shape
    assert_array_equal(c.x, x)
    assert (c.y is None) if y is None else (c.y.dtype == np.int64 and np.array_equal(c.y, y))


def test_cache_verify_catches_flipped_byte(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    out = ds.save(tmp_path / "c", x, np.arange(4))
    f = out / "x.npy"
    blob = bytearray(f.read_bytes())
    blob[-5] ^= 0x01
    f.write_bytes(bytes(blob))
    assert ds.open(out).x.reshape(-1)[-5] == x.reshape(-1)[-5] ^ 1  # cheap checks pass, by design
    with pytest.raises(ValueError, match="checksum mismatch") as err:
        ds.open(out, verify=True)
    assert str(f) in str(err.value)


def test_cache_detects_truncated_or_replaced_files(tmp_path):
    x = np.zeros((4, 2, 2), np.uint8)
    out = ds.save(tmp_path / "c", x, np.arange(4))
    np.save(out / "y.npy", np.arange(4).astype(np.int8))  # same rows, other dtype, other size
    with pytest.raises(ValueError, match="bytes, the manifest says") as err:
        ds.open(out)
    assert str(out / "y.npy") in str(err.value)
    np.save(out / "y.npy", np.arange(4).reshape(2, 2))  # same byte size, other shape
    with pytest.raises(ValueError, match=r"holds int64 \(2, 2\), the manifest says int64 \(4,\)"):
        ds.open(out)
    (out / "y.npy").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        ds.open(out)


def test_cache_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a fastseq cache"):
        ds.open(tmp_path / "nowhere")
    out = ds.save(tmp_path / "root" / "train", np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="holds the splits train"):
        ds.open(tmp_path / "root")
    (out / "manifest.json").write_text('{"format": "fastseq.cache", "version": 1, "arr')
    with pytest.raises(ValueError, match="corrupt manifest") as err:
        ds.open(out)
    assert str(out / "manifest.json") in str(err.value)
    (out / "manifest.json").write_text('{"format": "fastseq.cache", "version": 99}')
    with pytest.raises(ValueError, match="version 99"):
        ds.open(out)


def test_cache_save_is_atomic(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cache, "write_manifest", boom)
    with pytest.raises(OSError, match="disk full"):
        ds.save(tmp_path / "c", np.zeros((3, 2, 2), np.uint8), np.arange(3))
    assert list(tmp_path.iterdir()) == []  # neither the cache nor its temporary folder


def test_cache_overwrite(tmp_path):
    d = tmp_path / "c"
    ds.save(d, np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ds.save(d, np.ones((3, 2, 2), np.uint8))
    assert ds.open(d).x.shape == (2, 2, 2)
    ds.save(d, np.ones((3, 2, 2), np.uint8), overwrite=True)
    assert_array_equal(ds.open(d).x, np.ones((3, 2, 2), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("do not delete")
    with pytest.raises(FileExistsError, match="not a fastseq cache"):
        ds.save(other, np.zeros((1, 1), np.uint8), overwrite=True)
    assert (other / "thesis.tex").read_text() == "do not delete"


def test_cache_save_validates(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        ds.save(tmp_path / "a", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="x has 2 images, y has shape"):
        ds.save(tmp_path / "a", np.zeros((2, 2, 2), np.uint8), np.arange(3))
    with pytest.raises(ValueError, match=r"labels span 0..2 but class_names has 2"):
        ds.save(tmp_path / "a", np.zeros((3, 2, 2), np.uint8), np.arange(3), class_names=("a", "b"))
    assert not (tmp_path / "a").exists()
