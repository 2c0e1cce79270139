"""RaggedImages: the flat container of variable-size images, its checks and its pickling."""

import pickle

import numpy as np
import pytest

from fastseq.ragged import RaggedImages


def _images(seed=0, n=5, channels=3):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(1, 9)), int(rng.integers(1, 9)), channels), dtype=np.uint8)
            for _ in range(n)]


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_from_images_round_trips_every_image(channels):
    images = _images(channels=channels)
    r = RaggedImages.from_images(images)
    assert len(r) == len(images) and r.channels == channels
    assert r.nbytes == sum(a.size for a in images)
    for i, a in enumerate(images):
        np.testing.assert_array_equal(r.image(i), a)
        assert not r.image(i).flags.writeable


def test_grayscale_2d_images_get_a_channel_axis():
    r = RaggedImages.from_images([np.arange(6, dtype=np.uint8).reshape(2, 3)])
    assert r.image(0).shape == (2, 3, 1)


def test_take_selects_shares_and_keeps_order():
    images = _images(n=6)
    r = RaggedImages.from_images(images)
    sub = r.take([4, 1, 1])
    assert len(sub) == 3 and np.shares_memory(sub.pixels, r.pixels)
    for k, i in enumerate([4, 1, 1]):
        np.testing.assert_array_equal(sub.image(k), images[i])
    with pytest.raises(IndexError, match="indices must lie in"):
        r.take([6])


def test_memmap_pixels_pickle_by_reference(tmp_path):
    images = _images(n=4)
    packed = RaggedImages.from_images(images)
    path = tmp_path / "pixels.u8"
    packed.pixels.tofile(path)
    mm = np.memmap(path, np.uint8, mode="r")
    r = RaggedImages(mm, packed.offsets, packed.shapes)
    blob = pickle.dumps(r)
    back = pickle.loads(blob)
    assert isinstance(back._pixels, np.memmap)
    for i, a in enumerate(images):
        np.testing.assert_array_equal(back.image(i), a)


def test_memmap_is_not_copied_when_pickled(tmp_path):
    big = np.zeros(1 << 20, np.uint8)
    path = tmp_path / "big.u8"
    big.tofile(path)
    r = RaggedImages(np.memmap(path, np.uint8, mode="r"), [0], [[512, 512, 4]])
    assert len(pickle.dumps(r)) < 10_000


@pytest.mark.parametrize(
    "pixels, offsets, shapes, error, match",
    [
        (np.zeros(10, np.float32), [0], [[1, 1, 1]], TypeError, "pixels must be a 1-D uint8"),
        (np.zeros((2, 5), np.uint8), [0], [[1, 1, 1]], TypeError, "pixels must be a 1-D uint8"),
        (np.zeros(10, np.uint8), [[0]], [[1, 1, 1]], TypeError, "offsets must be a 1-D integer"),
        (np.zeros(10, np.uint8), [0], [1, 1, 1], TypeError, r"shapes must be an integer array of shape \(N, 3\)"),
        (np.zeros(10, np.uint8), [0, 1], [[1, 1, 1]], ValueError, "one row per image"),
        (np.zeros(10, np.uint8), [0], [[0, 1, 1]], ValueError, "height and width >= 1"),
        (np.zeros(10, np.uint8), [0, 3], [[1, 1, 1], [1, 1, 3]], ValueError, "same channel count"),
        (np.zeros(10, np.uint8), [0], [[1, 1, 2]], ValueError, "same channel count"),
        (np.zeros(10, np.uint8), [5], [[2, 2, 3]], ValueError, "reaches outside pixels"),
        (np.zeros(10, np.uint8), [-1], [[1, 1, 1]], ValueError, "reaches outside pixels"),
    ],
)
def test_bad_arrays_name_the_argument(pixels, offsets, shapes, error, match):
    with pytest.raises(error, match=match):
        RaggedImages(pixels, np.asarray(offsets), np.asarray(shapes))


def test_image_index_out_of_range():
    r = RaggedImages.from_images(_images(n=2))
    with pytest.raises(IndexError, match="out of range for 2 images"):
        r.image(2)
