"""``python -m fastseq convert``: every source format into the .npy cache, atomically."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastseq.datasets as ds
from fastseq.datasets import convert
from fastseq.photos import store as image_store
from tests import dataset_files as files

REPO = Path(__file__).resolve().parents[1]


def _leftovers(parent):
    """Hidden temporary folders a failed convert could have left."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_cifar_archive(tmp_path, capsys):
    archive, batches = files.write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", n=3, n_test=2, seed=1)
    out = tmp_path / "out"
    assert convert.main([str(archive), str(out), "-q"]) == 0
    (ex_train, ey_train), (ex_test, ey_test) = files.expected_cifar(batches)
    train, test = ds.open(out / "train", verify=True), ds.open(out / "test", verify=True)
    assert_array_equal(train.x, ex_train)
    assert_array_equal(train.y, ey_train.ravel())
    assert_array_equal(test.x, ex_test)
    assert train.y.shape == (15,) and train.y.dtype == np.uint8
    assert train.class_names == ds.CIFAR10_CLASSES and train.name == "cifar10"
    line = capsys.readouterr().out.strip()
    assert "train 15 + test 2 images of 32x32x3 uint8, 10 classes" in line and str(out) in line
    assert line.count("\n") == 0


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path, gz):
    src = tmp_path / "fashion-mnist"
    _, arrays = files.write_idx_folder(src, gz=gz, seed=2)
    assert convert.main([str(src), str(tmp_path / "out"), "-q"]) == 0
    train, test = ds.open(tmp_path / "out" / "train"), ds.open(tmp_path / "out" / "test")
    assert_array_equal(train.x, arrays["x_train"])
    assert_array_equal(test.y, arrays["y_test"])
    assert train.class_names == ds.FASHION_MNIST_CLASSES  # "fashion" in the source path


def test_mnist_npz_and_explicit_format(tmp_path):
    path, arrays = files.write_mnist_npz(tmp_path / "mnist.npz", seed=3)
    assert convert.main([str(path), str(tmp_path / "a"), "-q"]) == 0
    assert convert.main([str(tmp_path), str(tmp_path / "b"), "--format", "mnist", "-q"]) == 0
    for out in ("a", "b"):
        train = ds.open(tmp_path / out / "train")
        assert_array_equal(train.x, arrays["x_train"])
        assert train.class_names == ds.MNIST_CLASSES


def test_image_folder_skips_unreadable(tmp_path, capsys):
    src = tmp_path / "pets"
    written = files.write_image_folder(src, classes=("dog", "cat"), per_class=3, hw=(6, 5), seed=4)
    (src / "cat" / "1b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (src / "cat" / "notes.txt").write_text("not an image, ignored")
    out = tmp_path / "out"
    assert convert.main([str(src), str(out), "-q", "--workers", "2"]) == 0
    s = image_store.open_store(out / "train")  # without --size: a ragged image store
    order = sorted(written, key=lambda p: (p.parent.name, p.name))  # classes sorted: cat, dog
    assert s.class_names == ("cat", "dog")
    assert s.files == [str(p) for p in order] and s.skipped == [str(src / "cat" / "1b.png")]
    assert_array_equal(s.images.shapes, [[6, 5, 3]] * 6)
    for i, p in enumerate(order):
        assert_array_equal(s.images.image(i), written[p][1])  # PNG is lossless
    assert s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    captured = capsys.readouterr()
    assert str(src / "cat" / "1b.png") in captured.err and "skipped 1 unreadable" in captured.out
    assert not (out / "test").exists() and _leftovers(tmp_path) == []


def test_image_folder_strict(tmp_path, capsys):
    src = tmp_path / "pets"
    files.write_image_folder(src, per_class=2)
    bad = src / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    assert convert.main([str(src), str(tmp_path / "out"), "--strict", "-q"]) == 1
    err = capsys.readouterr().err
    assert "unreadable image" in err and str(bad) in err and "--strict" in err
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_image_folder_mixed_sizes_ragged_or_resized(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "imgs"
    written = files.write_image_folder(src, classes=("a", "b"), per_class=2, hw=(6, 5), seed=5)
    odd = np.random.default_rng(6).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(odd).save(src / "b" / "big.png")
    # Without --size: every photo keeps its size in a ragged store; --max-side caps the long side.
    assert convert.main([str(src), str(tmp_path / "ragged"), "-q"]) == 0
    s = image_store.open_store(tmp_path / "ragged" / "train")
    assert s.images.shapes.tolist() == [[6, 5, 3]] * 4 + [[9, 7, 3]]  # a/0, a/1, b/0, b/1, b/big.png
    assert_array_equal(s.images.image(4), odd)
    assert s.labels.tolist() == [0, 0, 1, 1, 1] and s.class_names == ("a", "b")
    assert "ragged image store" in capsys.readouterr().out
    assert convert.main([str(src), str(tmp_path / "capped"), "-q", "--max-side", "6", "--grayscale"]) == 0
    capped = image_store.open_store(tmp_path / "capped" / "train")
    assert capped.images.shapes.tolist() == [[6, 5, 1]] * 4 + [[6, 5, 1]]  # 9x7 -> 6x4.67 -> 6x5
    assert convert.main([str(src), str(tmp_path / "bad"), "-q", "--max-side", "6", "--size", "4"]) == 1
    assert "--max-side 6 applies to the ragged store" in capsys.readouterr().err
    assert _leftovers(tmp_path) == []

    assert convert.main([str(src), str(tmp_path / "out"), "--size", "4", "3", "-q"]) == 0
    c = ds.open(tmp_path / "out" / "train")
    assert c.x.shape == (5, 4, 3, 3)
    expected = Image.fromarray(odd).resize((3, 4), Image.Resampling.BILINEAR)  # (width, height)
    assert_array_equal(c.x[4], np.asarray(expected))  # a/0, a/1, b/0, b/1, b/big.png
    first = written[src / "a" / "0.png"][1]
    assert_array_equal(c.x[0], np.asarray(Image.fromarray(first).resize((3, 4), Image.Resampling.BILINEAR)))


def test_square_size_grayscale_and_jpeg(tmp_path):
    from PIL import Image

    src = tmp_path / "imgs"
    written = files.write_image_folder(src, classes=("x",), per_class=2, hw=(8, 8), seed=7, fmt="JPEG")
    out = tmp_path / "out"
    assert convert.main([str(src), str(out), "--size", "4", "--grayscale", "--split", "val", "-q"]) == 0
    c = ds.open(out / "val")
    assert c.x.shape == (2, 4, 4, 1)
    path = sorted(written)[0]
    with Image.open(path) as im:
        expected = np.asarray(im.convert("L").resize((4, 4), Image.Resampling.BILINEAR))
    assert_array_equal(c.x[0, ..., 0], expected)


def test_threads_give_the_same_bytes(tmp_path):
    src = tmp_path / "imgs"
    files.write_image_folder(src, classes=("a", "b", "c"), per_class=25, hw=(7, 9), seed=8)
    convert.convert(src, tmp_path / "one", workers=1, quiet=True, size=(5, 5))
    convert.convert(src, tmp_path / "four", workers=4, quiet=True, size=(5, 5))
    one, four = ds.open(tmp_path / "one" / "train"), ds.open(tmp_path / "four" / "train")
    assert one.x.shape == (75, 5, 5, 3)
    assert_array_equal(one.x, four.x)
    assert one.manifest["arrays"] == four.manifest["arrays"]


def test_interrupted_convert_leaves_nothing(tmp_path, monkeypatch, capsys):
    src = tmp_path / "imgs"
    files.write_image_folder(src, per_class=40)

    calls = []

    def interrupted(*args):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    real = convert._decode_block
    monkeypatch.setattr(convert, "_decode_block", interrupted)
    assert convert.main([str(src), str(tmp_path / "out"), "-q", "--workers", "1", "--size", "4"]) == 130
    assert "was not written" in capsys.readouterr().err
    assert len(calls) == 2 and not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_interrupted_ragged_convert_leaves_nothing(tmp_path, monkeypatch, capsys):
    src = tmp_path / "imgs"
    files.write_image_folder(src, per_class=40)
    calls = []
    real = image_store._decode_file

    def interrupted(path, options):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(path, options)

    monkeypatch.setattr(image_store, "_decode_file", interrupted)
    assert convert.main([str(src), str(tmp_path / "out"), "-q", "--workers", "1"]) == 130
    assert "was not written" in capsys.readouterr().err
    assert len(calls) >= 5 and not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_existing_output_and_overwrite(tmp_path, capsys):
    path, arrays = files.write_mnist_npz(tmp_path / "mnist.npz", seed=9)
    out = tmp_path / "out"
    assert convert.main([str(path), str(out), "-q"]) == 0
    assert convert.main([str(path), str(out), "-q"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert convert.main([str(path), str(out), "-q", "--overwrite"]) == 0
    assert_array_equal(ds.open(out / "test").x, arrays["x_test"])


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["{src}", "{out}", "--size", "4"], "image folders only"),
        (["{src}", "{out}", "--size", "1", "2", "3"], "--size takes H W or N"),
        (["{tmp}/nowhere", "{out}"], "no such file or folder"),
        (["{tmp}/empty", "{out}"], "cannot tell the format"),
    ],
)
def test_bad_arguments(tmp_path, capsys, argv, problem):
    src, _ = files.write_mnist_npz(tmp_path / "mnist.npz")
    (tmp_path / "empty").mkdir()
    args = [a.format(src=src, out=tmp_path / "out", tmp=tmp_path) for a in argv]
    assert convert.main(args + ["-q"]) == 1
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_corrupt_source_is_reported(tmp_path, capsys):
    src = tmp_path / "digits"
    paths, _ = files.write_idx_folder(src, gz=True)
    blob = paths["x_test"].read_bytes()
    paths["x_test"].write_bytes(blob[: len(blob) // 2])
    assert convert.main([str(src), str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert str(paths["x_test"]) in err and "truncated" in err
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_command_line_subprocess(tmp_path):
    src = tmp_path / "imgs"
    files.write_image_folder(src, per_class=2)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fastseq", "convert", str(src), str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train 4 uint8 images of their own sizes (a ragged image store), 2 classes" in result.stdout
    assert str(out) in result.stdout
    assert "\x1b[" not in result.stderr  # no progress bar when stderr is not a terminal
    assert image_store.open_store(out / "train").images.shapes.tolist() == [[6, 5, 3]] * 4
    result = subprocess.run(cmd[:-1] + [str(tmp_path / "fixed"), "--size", "6", "5"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train 4 images of 6x5x3 uint8, 2 classes" in result.stdout
    assert ds.open(tmp_path / "fixed" / "train", verify=True).x.shape == (4, 6, 5, 3)
