"""fastseq.image_dataset_from_directory against keras.utils.image_dataset_from_directory, batch by batch.

One seeded folder of textured photos (``fastseq.bench.photos``: JPEG, PNG,
BMP and GIF of different sizes, an upper-case extension and a nested folder)
is read by both. Keras decodes with TensorFlow; fastseq decodes once into its
store and resamples with its own kernel, so pixels are compared within the
issue's bounds (mean absolute difference <= 1.0, 99th percentile <= 8, of
255), files, labels and shapes exactly.
"""

import os
import pathlib
import shutil

import numpy as np
import pytest

import fastseq
from fastseq.bench.photos import make_photo_folder

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

MEAN_BOUND, P99_BOUND = 1.0, 8.0


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """36 photos, 3 classes, 24..90 px, four formats; one upper-case extension and one nested folder."""
    root = make_photo_folder(tmp_path_factory.mktemp("photos") / "p", n_images=36, n_classes=3, sizes=(24, 90),
                             seed=3, formats=("jpg", "png", "jpg", "bmp", "jpeg", "gif"))
    os.rename(root / "class_0" / "img_00000.jpg", root / "class_0" / "IMG_00000.JPG")
    (root / "class_1" / "nested").mkdir()
    os.rename(root / "class_1" / "img_00001.png", root / "class_1" / "nested" / "img_00001.png")
    (root / "class_2" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def jpeg_png(tmp_path_factory):
    """JPEG and PNG only: Keras cannot read a BMP as grayscale (TensorFlow's BMP decoder refuses 1 channel)."""
    return make_photo_folder(tmp_path_factory.mktemp("jp") / "p", n_images=18, n_classes=3, sizes=(24, 90), seed=4,
                             formats=("jpg", "png"))


@pytest.fixture(scope="module")
def png_bmp(tmp_path_factory):
    """PNG and BMP only: Keras cannot read a JPEG as RGBA (TensorFlow's JPEG decoder refuses 4 channels)."""
    return make_photo_folder(tmp_path_factory.mktemp("pb") / "p", n_images=12, n_classes=2, sizes=(24, 90), seed=5,
                             formats=("png", "bmp"))


def keras_batches(directory, **kwargs):
    ds = keras.utils.image_dataset_from_directory(str(directory), verbose=False, **kwargs)
    return ds, [tuple(np.asarray(t) for t in (b if isinstance(b, tuple) else (b,))) for b in ds]


def ours(directory, cache, **kwargs):
    return fastseq.image_dataset_from_directory(str(directory), verbose=False, cache_dir=str(cache), **kwargs)


def served(seq):
    return [seq[i] for i in range(len(seq))]


def assert_close_pixels(a, b):
    # Keras' "nearest" keeps uint8 (tf.image.resize does for that method); fastseq serves float32 by default.
    assert a.shape == b.shape and a.dtype == np.float32 and b.dtype in (np.float32, np.uint8)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    assert diff.mean() <= MEAN_BOUND, f"mean abs diff {diff.mean():.3f}"
    assert np.percentile(diff, 99) <= P99_BOUND, f"99th percentile {np.percentile(diff, 99):.2f}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"crop_to_aspect_ratio": True},
        {"pad_to_aspect_ratio": True},
        {"image_size": (17, 45), "interpolation": "nearest"},
        {"image_size": 40, "interpolation": "bicubic"},
        {"interpolation": "area", "image_size": (20, 20)},
        {"interpolation": "lanczos3", "image_size": (50, 50)},
        {"interpolation": "lanczos5", "image_size": (24, 30), "crop_to_aspect_ratio": True},
        {"interpolation": "mitchellcubic", "image_size": (70, 30)},
        {"interpolation": "gaussian", "image_size": (20, 26), "pad_to_aspect_ratio": True},
        {"label_mode": "categorical", "color_mode": "grayscale", "folder": "jpeg_png"},
        {"label_mode": None, "color_mode": "rgba", "data_format": "channels_first", "folder": "png_bmp"},
    ],
)
def test_same_batches_as_keras_with_shuffle_false(request, cache, kwargs):
    kwargs = {"image_size": (32, 48), "batch_size": 8, **kwargs}
    photos = request.getfixturevalue(kwargs.pop("folder", "photos"))
    kds, kb = keras_batches(photos, shuffle=False, **kwargs)
    seq = ours(photos, cache, shuffle=False, **kwargs)
    assert seq.file_paths == kds.file_paths and seq.class_names == kds.class_names
    fb = served(seq)
    assert len(fb) == len(kb)
    for f, k in zip(fb, kb):
        assert len(f) == len(k)
        assert_close_pixels(f[0], k[0])
        if len(k) > 1:
            assert f[1].dtype == k[1].dtype and f[1].shape == k[1].shape
            np.testing.assert_array_equal(f[1], k[1])


def test_binary_labels_like_keras(photos, cache):
    names = ["class_0", "class_2"]
    kds, kb = keras_batches(photos, shuffle=False, label_mode="binary", class_names=names, image_size=(24, 24))
    fb = served(ours(photos, cache, shuffle=False, label_mode="binary", class_names=names, image_size=(24, 24)))
    for f, k in zip(fb, kb, strict=True):
        assert f[1].dtype == np.float32 and f[1].shape == k[1].shape
        np.testing.assert_array_equal(f[1], k[1])
        assert_close_pixels(f[0], k[0])


@pytest.mark.parametrize("seed,split", [(1, 0.25), (42, 0.5)])
def test_subset_both_same_files_and_validation_batches_as_keras(photos, cache, seed, split):
    kw = dict(seed=seed, validation_split=split, subset="both", image_size=(28, 28), batch_size=5)
    ktrain, kval = keras.utils.image_dataset_from_directory(str(photos), verbose=False, **kw)
    train, val = ours(photos, cache, **kw)
    assert train.file_paths == ktrain.file_paths and val.file_paths == kval.file_paths
    assert not set(train.file_paths) & set(val.file_paths)
    # Keras serves validation unshuffled: the very same batches.
    for f, k in zip(served(val), [tuple(np.asarray(t) for t in b) for b in kval], strict=True):
        np.testing.assert_array_equal(f[1], k[1])
        assert_close_pixels(f[0], k[0])
    # Training: each epoch serves every training file once, with its Keras label.
    label_of = {p: ktrain.class_names.index(os.path.relpath(p, photos).split(os.sep)[0]) for p in ktrain.file_paths}
    for _epoch in range(2):
        seen = np.concatenate([train.indices(i) for i in range(len(train))])
        assert sorted(seen.tolist()) == list(range(len(train.file_paths)))
        batches = served(train)
        labels = np.concatenate([b[1] for b in batches])
        np.testing.assert_array_equal(labels, [label_of[train.file_paths[i]] for i in seen])
        train.on_epoch_end()
    assert val.crop == train.crop and val.shuffle is False


def test_store_is_reused_whatever_the_size_split_or_seed(photos, tmp_path):
    first = ours(photos, tmp_path, image_size=(30, 30), seed=0)
    assert first.store.decoded == len(first.file_paths)
    again = [
        ours(photos, tmp_path, image_size=(64, 20), seed=0),
        *ours(photos, tmp_path, image_size=(16, 16), seed=9, validation_split=0.3, subset="both"),
        ours(photos, tmp_path, crop=fastseq.RandomResizedCrop(24, 24), image_size=24, seed=5),
    ]
    for seq in again:
        assert seq.store.decoded == 0
        assert seq.store.path == first.store.path


def test_batch_size_none_serves_single_samples_like_keras(photos, cache):
    kds = keras.utils.image_dataset_from_directory(str(photos), verbose=False, shuffle=False, batch_size=None,
                                                   image_size=(20, 30))
    k = [tuple(np.asarray(t) for t in b) for b in kds.take(3)]
    seq = ours(photos, cache, shuffle=False, batch_size=None, image_size=(20, 30))
    assert len(seq) == len(seq.file_paths)
    for i in range(3):
        image, label = seq[i]
        assert image.shape == k[i][0].shape == (20, 30, 3) and label.shape == k[i][1].shape == ()
        assert label == k[i][1]
        assert_close_pixels(image, k[i][0])
    images_only = ours(photos, cache, shuffle=False, batch_size=None, label_mode=None, image_size=(20, 30))
    assert images_only[0].shape == (20, 30, 3)


def epoch_pixels(seq, epoch):
    """{sample index: its pixels} for one whole epoch, requested in a scrambled batch order."""
    seq.set_epoch(epoch)
    out = {}
    for i in np.random.default_rng(epoch).permutation(len(seq)):
        idx = seq.indices(int(i))
        x = seq[int(i)][0]
        for j, s in enumerate(idx.tolist()):
            assert s not in out, "a sample served twice in one epoch"
            out[s] = x[j]
    return out


def test_exactly_once_and_same_pixels_whatever_the_batch_size_and_threads(photos, cache):
    kw = dict(image_size=(24, 24), seed=7, crop=fastseq.RandomResizedCrop(24, 24), flip="horizontal")
    a = ours(photos, cache, batch_size=4, **kw)
    b = ours(photos, cache, batch_size=7, workers=3, **kw)
    n = len(a.file_paths)
    for epoch in (0, 3):
        pa, pb = epoch_pixels(a, epoch), epoch_pixels(b, epoch)
        assert sorted(pa) == sorted(pb) == list(range(n))
        for s in range(n):
            np.testing.assert_array_equal(pa[s], pb[s])
    e0, e1 = epoch_pixels(a, 0), epoch_pixels(a, 1)
    assert any(not np.array_equal(e0[s], e1[s]) for s in range(n)), "augmentation must change between epochs"


def test_validation_of_random_resized_crop_is_a_deterministic_centre(photos, cache):
    train, val = ours(photos, cache, image_size=(24, 24), seed=2, validation_split=0.25, subset="both",
                      crop=fastseq.RandomResizedCrop(24, 24), flip="horizontal", mix=fastseq.MixUp(),
                      label_mode="categorical")
    assert isinstance(val.crop, fastseq.Resize) and val.crop.crop_to_aspect_ratio and val.crop.crop == (24, 24)
    assert val.flip is None and val.mix is None and val.shuffle is False
    first = served(val)
    val.on_epoch_end()
    for x, y in zip(first, served(val), strict=True):
        np.testing.assert_array_equal(x[0], y[0])


def test_fastseq_options_on_the_same_call(photos, cache):
    seq = ours(photos, cache, image_size=(16, 16), dtype="uint8", shuffle=False)
    x, y = seq[0]
    assert x.dtype == np.uint8 and x.shape == (32, 16, 16, 3)
    ref = ours(photos, cache, image_size=(16, 16), shuffle=False)[0][0]
    np.testing.assert_allclose(x.astype(np.float32), ref, atol=0.5 + 1e-4)
    norm = ours(photos, cache, image_size=(16, 16), shuffle=False, normalize=fastseq.Rescale(1 / 255))[0][0]
    np.testing.assert_allclose(norm, ref / 255, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"interpolation": "cubic"}, "interpolation"),
        ({"image_size": (3, 4, 5)}, "image_size"),
        ({"crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, "Only one of"),
        ({"format": "numpy"}, "format"),
        ({"data_format": "channels_middle"}, "data_format"),
        ({"label_mode": "sparse"}, "label_mode"),
        ({"validation_split": 0.2}, "inversely"),
    ],
)
def test_keras_argument_errors(photos, cache, kwargs, match):
    with pytest.raises(ValueError):
        batches = keras.utils.image_dataset_from_directory(str(photos), verbose=False, **kwargs)
        next(iter(batches))  # Keras checks some only while tracing its pipeline
    with pytest.raises(ValueError, match=match):
        ours(photos, cache, **kwargs)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"crop": fastseq.RandomCrop(8, 8)}, TypeError, "fixed window does not fit"),
        ({"crop": fastseq.RandomResizedCrop(8, 8), "image_size": 9}, ValueError, "must be image_size"),
        ({"crop": fastseq.RandomResizedCrop(8, 8), "image_size": 8, "crop_to_aspect_ratio": True}, ValueError,
         "do not apply"),
        ({"mix": fastseq.MixUp()}, ValueError, "label_mode='categorical'"),
        ({"dtype": "float64"}, ValueError, "dtype must be one of"),
        ({"dtype": "uint8", "normalize": fastseq.Rescale(1 / 255)}, ValueError, "raw pixels"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ],
)
def test_fastseq_argument_errors_come_before_any_decoding(photos, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        ours(photos, tmp_path, **kwargs)
    assert not any(tmp_path.iterdir()), "nothing may be decoded for a call that fails its argument checks"


def test_empty_folder_and_class_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images found"):
        ours(tmp_path / "empty", tmp_path / "cache")
    root = make_photo_folder(tmp_path / "p", n_images=4, n_classes=2, sizes=(10, 12))
    (root / "class_9").mkdir()
    with pytest.warns(UserWarning, match="class_9"):
        seq = ours(root, tmp_path / "cache", shuffle=False, image_size=8)
    assert seq.class_names == ["class_0", "class_1", "class_9"]
    assert sorted(np.concatenate([b[1] for b in served(seq)]).tolist()) == [0, 0, 1, 1]


def test_undecodable_file_is_left_out_with_a_warning_or_refused_when_strict(tmp_path):
    root = make_photo_folder(tmp_path / "p", n_images=6, n_classes=2, sizes=(10, 12))
    bad = root / "class_1" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        seq = ours(root, tmp_path / "c1", shuffle=False, image_size=8)
    assert str(bad) not in seq.file_paths and len(seq.file_paths) == 6
    with pytest.raises(ValueError, match="broken.jpg"):
        ours(root, tmp_path / "c2", shuffle=False, image_size=8, strict=True)


def test_exported_lazily_without_keras():
    import subprocess
    import sys

    code = "import sys, fastseq; fastseq.image_dataset_from_directory; assert 'image_dataset_from_directory' in fastseq.__all__"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys, fastseq; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_fit_with_validation_data_from_subset_both(photos, tmp_path, backend):
    from tests import keras_runs

    if not keras_runs.backend_available(backend):
        pytest.skip(f"{backend} not installed")
    import json
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = json.dumps({"directory": str(photos), "cache_dir": str(tmp_path)})
    proc = subprocess.run([sys.executable, "-m", "tests.folder_runs", "fit_both", args], capture_output=True,
                          text=True, timeout=600, cwd=root, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["backend"] == backend
    assert len(result["loss"]) == len(result["val_loss"]) == 2
    assert all(np.isfinite(result["loss"] + result["val_loss"]))
    assert result["batches_per_epoch"] == [result["len_train"]] * 2


def test_shutil_clean(tmp_path):
    # A store folder can be removed like any cache: the next call rebuilds it.
    root = make_photo_folder(tmp_path / "p", n_images=3, n_classes=1, sizes=(8, 9))
    seq = ours(root, tmp_path / "c", image_size=4)
    shutil.rmtree(tmp_path / "c")
    again = ours(root, tmp_path / "c", image_size=4)
    assert again.store.decoded == 3 and seq.store.decoded == 3


# ---- ArraySequence over a RaggedImages directly -------------------------------------------------


def ragged_images(n=9, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    from fastseq.ragged import RaggedImages

    return RaggedImages.from_images(
        [rng.integers(0, 256, (int(rng.integers(5, 30)), int(rng.integers(5, 30)), channels), dtype=np.uint8)
         for _ in range(n)]
    )


@pytest.mark.parametrize("resize", [fastseq.Resize(8, 10), fastseq.Resize(12, 12, crop=(8, 10)),
                                    fastseq.Resize(8, 10, crop_to_aspect_ratio=True),
                                    fastseq.Resize(8, 10, pad_to_aspect_ratio=True, interpolation="bicubic")])
def test_ragged_resize_batches_are_the_kernels_on_keras_boxes(resize):
    from fastseq.kernels import ragged as rk

    x = ragged_images()
    seq = fastseq.ArraySequence(x, np.arange(9), batch_size=4, shuffle=False, crop=resize)
    scaled = (resize.height, resize.width)
    plan = rk.RaggedResizePlan(x.pixels, x.offsets, x.shapes, size=resize.output_size, scaled_size=scaled,
                               interpolation=resize.interpolation)
    boxes = rk.keras_boxes(x.shapes, scaled, crop_to_aspect_ratio=resize.crop_to_aspect_ratio)
    windows = None
    if resize.pad_to_aspect_ratio:
        windows = rk.keras_pad_windows(x.shapes, scaled)
    for i in range(len(seq)):
        idx = np.arange(i * 4, min(i * 4 + 4, 9))
        expected = plan(idx, boxes[idx], None, windows=None if windows is None else windows[idx])
        got, y = seq[i]
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(y, idx)


def test_ragged_random_resized_crop_and_flips_are_the_kernels_draws():
    from fastseq.kernels import ragged as rk

    x = ragged_images(seed=1)
    crop = fastseq.RandomResizedCrop(6, 7, scale=(0.2, 1.0))
    seq = fastseq.ArraySequence(x, batch_size=9, seed=5, crop=crop, flip="horizontal_and_vertical", shuffle=False)
    draws = rk.RaggedResizedCropParams(x.shapes, scale=crop.scale, ratio=crop.ratio, horizontal=0.5, vertical=0.5)
    plan = rk.RaggedResizePlan(x.pixels, x.offsets, x.shapes, size=(6, 7))
    idx = np.arange(9)
    boxes, flips = draws(5, 0, idx)
    assert flips.any()
    np.testing.assert_array_equal(seq[0][0], plan(idx, boxes, flips))
    # Resize + flip: the flip bits any crop draws for the sample; flipped samples are mirrored.
    flipped = fastseq.ArraySequence(x, batch_size=9, seed=5, crop=fastseq.Resize(6, 7), flip="horizontal",
                                    shuffle=False)[0][0]
    plain = fastseq.ArraySequence(x, batch_size=9, seed=5, crop=fastseq.Resize(6, 7), shuffle=False)[0][0]
    bits = fastseq.kernels.RandomParams(image_size=(6, 7), crop_size=(6, 7), horizontal=0.5)(5, 0, idx)[1]
    assert 0 < bits.sum() < 9
    for k in range(9):
        np.testing.assert_array_equal(flipped[k], plain[k][:, ::-1] if bits[k] else plain[k])


def test_ragged_sequence_errors_evaluation_and_pickling():
    import pickle

    x = ragged_images(n=5, seed=2)
    for crop in (None, fastseq.CenterCrop(4, 4), fastseq.RandomCrop(4, 4)):
        with pytest.raises(ValueError, match="RaggedImages .*images of different sizes"):
            fastseq.ArraySequence(x, crop=crop)
    seq = fastseq.ArraySequence(x, np.arange(5), batch_size=2, crop=fastseq.RandomResizedCrop(8, 8), flip="horizontal")
    ev = seq.for_evaluation(x, np.arange(5))
    assert ev.crop == fastseq.Resize(9, 9, crop=(8, 8), crop_to_aspect_ratio=True) and ev.flip is None
    again = pickle.loads(pickle.dumps(seq))
    np.testing.assert_array_equal(again[1][0], seq[1][0])
    with pytest.raises(ValueError, match="photo folders"):
        fastseq.ArraySequence(np.zeros((2, 8, 8, 3), np.uint8), crop=fastseq.Resize(4, 4, interpolation="area"))


def test_bench_photo_rows(jpeg_png):
    import io

    from fastseq.bench import cli, photo_rows

    what, rows = photo_rows.photo_rows(str(jpeg_png))
    assert [r[0] for r in rows] == ["keras epoch", "fastseq first call", "fastseq second size 128", "fastseq epoch"]
    assert all(seconds > 0 for _, seconds, _ in rows)
    assert [r[2] for r in rows] == [18, 18, 0, 18]
    out = io.StringIO()
    photo_rows.render(what, rows, out)
    assert "fastseq first call" in out.getvalue() and "time / keras epoch" in out.getvalue()
    import argparse

    args = cli.configure_parser(argparse.ArgumentParser()).parse_args(["--photos", str(jpeg_png)])
    assert args.photos == str(jpeg_png)
    assert cli.configure_parser(argparse.ArgumentParser()).parse_args(["--photos"]).photos == ""


def test_exif_orientation_upright_by_default_and_keras_raw_on_request(tmp_path):
    from PIL import Image

    from fastseq.bench.photos import photo

    root = tmp_path / "p"
    (root / "a").mkdir(parents=True)
    pixels = photo(40, 64, seed=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    Image.fromarray(pixels).save(root / "a" / "rotated.jpg", quality=95, exif=exif)
    kds, kb = keras_batches(root, shuffle=False, image_size=(40, 64), label_mode=None)
    raw = served(ours(root, tmp_path / "c", shuffle=False, image_size=(40, 64), label_mode=None,
                      exif_transpose=False))[0][0]
    assert_close_pixels(raw, kb[0][0])  # Keras ignores the tag: the sensor's 40x64 pixels
    upright = served(ours(root, tmp_path / "c", shuffle=False, image_size=(64, 40), label_mode=None))[0][0]
    # Upright, as a viewer shows it: the raw image turned 90 degrees clockwise.
    turned = np.rot90(raw[0], k=-1)
    assert upright.shape == (1, 64, 40, 3)
    assert np.abs(upright[0] - turned).mean() <= MEAN_BOUND


def test_folder_sequence_pickles_for_worker_processes(photos, cache):
    import pickle

    seq = ours(photos, cache, image_size=(16, 16), seed=3, batch_size=None, crop=fastseq.RandomResizedCrop(16, 16))
    again = pickle.loads(pickle.dumps(seq))
    assert again.file_paths == seq.file_paths and again.class_names == seq.class_names and again.unbatched
    assert len(pickle.dumps(seq)) < 200_000, "the store's pixels must travel by reference, not by value"
    for i in (0, 5):
        np.testing.assert_array_equal(again[i][0], seq[i][0])
        assert again[i][1] == seq[i][1]


@pytest.mark.parametrize("label_mode", ["int", "categorical", "binary"])
def test_labels_as_a_list_give_keras_targets(jpeg_png, cache, label_mode):
    n = len(ours(jpeg_png, cache, shuffle=False, label_mode=None, image_size=8).file_paths)
    given = [(i * 5) % 2 for i in range(n)]
    kw = dict(labels=given, label_mode=label_mode, shuffle=False, image_size=(12, 12), batch_size=5)
    kds, kb = keras_batches(jpeg_png, **kw)
    seq = ours(jpeg_png, cache, **kw)
    assert seq.class_names == kds.class_names == ["0", "1"]
    for f, k in zip(served(seq), kb, strict=True):
        assert f[1].dtype == k[1].dtype and f[1].shape == k[1].shape
        np.testing.assert_array_equal(f[1], k[1])
