"""The shared photo folder generator: seeded, textured, laid out as Keras expects."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from fastseq.bench.photos import make_photo_folder, photo


def digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [p.relative_to(root).as_posix() for p in files], hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def test_same_seed_same_bytes_and_layout(tmp_path):
    a = make_photo_folder(tmp_path / "a", n_images=7, n_classes=3, sizes=(40, 60), seed=3, formats=("jpg", "png", "gif"))
    b = make_photo_folder(tmp_path / "b", n_images=7, n_classes=3, sizes=(40, 60), seed=3, formats=("jpg", "png", "gif"))
    names, da = digest(a)
    assert names == ["class_0/img_00000.jpg", "class_0/img_00003.jpg", "class_0/img_00006.jpg",
                     "class_1/img_00001.png", "class_1/img_00004.png", "class_2/img_00002.gif", "class_2/img_00005.gif"]
    assert digest(b)[1] == da
    c = make_photo_folder(tmp_path / "c", n_images=7, n_classes=3, sizes=(40, 60), seed=4, formats=("jpg", "png", "gif"))
    assert digest(c)[1] != da


def test_sizes_in_range_and_image_i_does_not_depend_on_n(tmp_path):
    small = make_photo_folder(tmp_path / "s", n_images=3, sizes=(30, 50))
    big = make_photo_folder(tmp_path / "b", n_images=6, sizes=(30, 50))
    for p in small.rglob("*.jpg"):
        assert (big / p.relative_to(small)).read_bytes() == p.read_bytes()
    for p in big.rglob("*.jpg"):
        w, h = Image.open(p).size
        assert 30 <= w <= 50 and 30 <= h <= 50


def test_photos_have_texture_not_flat_colour():
    a = photo(120, 90, seed=1).astype(np.int16)
    assert a.shape == (120, 90, 3)
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 1000
    # Neighbours correlate (smooth) but are not equal (textured).
    step = np.abs(np.diff(a, axis=1)).mean()
    assert 0.5 < step < 20


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="formats"):
        make_photo_folder(tmp_path, 1, formats=("tiff",))
    with pytest.raises(ValueError, match="sizes"):
        make_photo_folder(tmp_path, 1, sizes=(50, 10))
