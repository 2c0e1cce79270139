"""The ordered ``augment=[...]`` list through the sequence: the pass against its NumPy twin, order, determinism, errors.

The twin (``reference.augment_pass``) runs the program one stage at a time:
the warp twin for each run, the color twins for the color stages, then
normalisation and the dtype. The draws are the sequence's own
(``seq._draws``), so the test checks the pass and the program; the ops'
draws and matrices are checked against Keras in test_geometry and test_color.

Compile budget: the three pass variants compile once each for float32
channels-last (the suite's precompile warms them); the other dtypes and
layouts are tested on the smallest variant (``copy``).
"""

import numpy as np
import pytest

import fastseq
from fastseq.augment import chain
from tests import reference as R

RNG = np.random.default_rng(7)
X = RNG.integers(0, 256, (40, 20, 23, 3), dtype=np.uint8)
Y = np.arange(40) % 5
GEOMETRY = [fastseq.RandomRotation(0.1), fastseq.RandomZoom(0.2), fastseq.RandomTranslation(0.1, 0.1)]
JITTER = fastseq.RandomColorJitter(brightness_factor=0.2, contrast_factor=0.3, saturation_factor=0.4, hue_factor=0.1)


def batch_and_twin(seq, i=0, epoch=0):
    """Batch ``i`` of ``seq`` and the twin's batch made from the same draws."""
    idx = seq.indices(i)
    got = seq[i][0]
    draw, _ = seq._draws(seq.seed, epoch, idx)
    p = seq._plan
    images = [seq.x[j] for j in idx] if isinstance(seq.x, np.ndarray) else [seq.x.image(j) for j in idx]
    normalize = {} if seq.normalize is None else seq.normalize.kernel_kwargs()
    want = R.augment_pass(images, draw.mats, draw.cparams, draw.fields, p.prog, p._run_interp, p._run_mode, p._run_fill,
                          p.out_size, dtype=seq.dtype, data_format=seq.data_format, **normalize)
    return got, want


CASES = {
    "geometry": dict(augment=GEOMETRY, crop=fastseq.RandomCrop(18, 21, padding=3), flip="horizontal"),
    "jitter": dict(augment=[JITTER], crop=fastseq.RandomCrop(20, 23, padding=2, pad_mode="reflect"), flip="vertical"),
    "color then geometry": dict(augment=[fastseq.RandomBrightness(0.3), fastseq.RandomRotation(0.2, fill_mode="constant")]),
    "geometry then color": dict(augment=[fastseq.RandomRotation(0.2, fill_mode="constant"), fastseq.RandomBrightness(0.3)]),
    "mixed rules": dict(augment=[fastseq.RandomShear(0.2, 0.1, interpolation="nearest", fill_mode="wrap"),
                                 fastseq.RandomPerspective(0.5), fastseq.RandomContrast(0.5)]),
    "elastic": dict(augment=[fastseq.RandomElasticTransform(1.0, 1.0), fastseq.RandomZoom(0.1)]),
    "resized crop": dict(augment=[fastseq.RandomAffine(rotation=0.05, scale=(0.9, 1.1)), fastseq.RandomGaussianBlur()],
                         crop=fastseq.RandomResizedCrop(16, 16), flip="horizontal"),
    "filters": dict(augment=[fastseq.RandomSharpness(0.5), fastseq.Equalization(), fastseq.AutoContrast()],
                    crop=fastseq.CenterCrop(16, 16)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pass_matches_its_twin(case):
    seq = fastseq.ArraySequence(X, Y, batch_size=12, seed=3, **CASES[case])
    got, want = batch_and_twin(seq)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "uint8"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_every_dtype_and_layout(dtype, data_format):
    normalize = None if dtype == "uint8" else fastseq.Normalize(mean=(120, 110, 100), std=(60, 62, 64))
    seq = fastseq.ArraySequence(X, Y, batch_size=9, seed=1, crop=fastseq.RandomCrop(18, 20, padding=2), flip="horizontal",
                                normalize=normalize, dtype=dtype, data_format=data_format,
                                augment=[fastseq.RandomBrightness(0.4), fastseq.RandomInvert(0.5)])
    got, want = batch_and_twin(seq)
    assert got.dtype == want.dtype and got.shape == want.shape
    if dtype == "uint8":
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # a half-way value may round either side
        assert (got != want).mean() < 0.01
    else:
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1e-5, rtol=1e-2)


@pytest.mark.parametrize("pad_mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_an_identity_op_gives_the_plain_sequence_exactly(pad_mode, dtype):
    """Crop, padding, flips and the dtype through the pass are the fused kernel's, bit for bit."""
    normalize = None if dtype == "uint8" else fastseq.Rescale(1 / 255, -0.5)
    kw = dict(batch_size=10, seed=5, crop=fastseq.RandomCrop(20, 23, padding=4, pad_mode=pad_mode, fill=7),
              flip="horizontal_and_vertical", normalize=normalize, dtype=dtype)
    plain = fastseq.ArraySequence(X, Y, **kw)
    same = fastseq.ArraySequence(X, Y, augment=[fastseq.RandomBrightness((0.0, 0.0))], **kw)
    for i in range(2):
        np.testing.assert_array_equal(same[i][0].view(np.uint8), plain[i][0].view(np.uint8))


def test_order_matters_and_each_order_is_its_twin():
    a = fastseq.ArraySequence(X, Y, batch_size=8, seed=2, **CASES["color then geometry"])[0][0]
    b = fastseq.ArraySequence(X, Y, batch_size=8, seed=2, **CASES["geometry then color"])[0][0]
    # Brightness before a constant-fill rotation leaves the fill at 0; after it, the fill is brightened too.
    assert np.abs(a - b).max() > 1.0


def test_one_resample_per_run():
    c = chain.Chain(GEOMETRY + [JITTER], crop=None, out_size=(20, 23), channels=3)
    assert len(c.runs) == 1 and c.variant == "warp_color"
    c = chain.Chain([fastseq.RandomRotation(0.1), fastseq.RandomBrightness(0.1), fastseq.RandomZoom(0.1)], crop=None,
                    out_size=(20, 23), channels=3)
    assert len(c.runs) == 2  # a color op between two geometric ones: Keras' order needs a second resample
    c = chain.Chain([fastseq.RandomRotation(0.1), fastseq.RandomZoom(0.1, fill_mode="constant")], crop=None,
                    out_size=(20, 23), channels=3)
    assert len(c.runs) == 2  # another border rule
    c = chain.Chain([JITTER, fastseq.Equalization()], crop=None, out_size=(20, 23), channels=3)
    assert c.variant == "copy" and len(c.runs) == 1


def test_draws_are_a_function_of_seed_epoch_and_sample():
    kw = dict(seed=11, crop=fastseq.RandomCrop(18, 21, padding=3), flip="horizontal", augment=GEOMETRY + [JITTER])
    big = fastseq.ArraySequence(X, Y, batch_size=40, shuffle=False, **kw)[0][0]
    small = fastseq.ArraySequence(X, Y, batch_size=7, shuffle=False, **kw)
    parts = np.concatenate([small[i][0] for i in range(len(small))])
    np.testing.assert_array_equal(parts, big)
    other_epoch = fastseq.ArraySequence(X, Y, batch_size=40, shuffle=False, **kw)
    other_epoch[0]
    other_epoch.on_epoch_end()
    assert np.abs(other_epoch[0][0] - big).max() > 0  # fresh augmentation each epoch


def test_threads_do_not_change_pixels():
    import numba

    def make():
        return fastseq.ArraySequence(X, Y, batch_size=40, shuffle=False, seed=4, augment=GEOMETRY + [JITTER])

    limit = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = make()[0][0]
    finally:
        numba.set_num_threads(limit)
    assert limit > 1 or numba.config.NUMBA_NUM_THREADS == 1
    np.testing.assert_array_equal(make()[0][0], one)


def test_adding_an_op_of_another_class_keeps_the_others_draws():
    rot = fastseq.RandomRotation(0.3, fill_mode="constant")
    a = chain.Chain([rot], crop=None, out_size=(20, 23), channels=3)
    b = chain.Chain([fastseq.RandomBrightness(0.2), rot], crop=None, out_size=(20, 23), channels=3)
    from fastseq.kernels.random import uniforms

    idx = np.arange(6)
    window = chain.window_matrices(None, None, None, 6, (20, 23), (20, 23))
    ma = a.draw(0, 0, idx, window, uniforms)[0]
    mb = b.draw(0, 0, idx, window, uniforms)[0]
    np.testing.assert_array_equal(ma[:, 0], mb[:, 1])  # in b the rotation is the second run (after a color op)


def test_for_evaluation_drops_every_random_op():
    seq = fastseq.ArraySequence(X, Y, batch_size=8, crop=fastseq.RandomCrop(18, 21, padding=3),
                                augment=GEOMETRY + [fastseq.AutoContrast(), JITTER])
    ev = seq.for_evaluation(X, Y)
    assert [type(op).__name__ for op in ev.augment] == ["AutoContrast"]
    got, want = batch_and_twin(ev)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)
    plain = fastseq.ArraySequence(X, Y, batch_size=8, crop=fastseq.RandomCrop(18, 21, padding=3), augment=GEOMETRY)
    ev = plain.for_evaluation(X, Y)
    assert ev.augment == []
    np.testing.assert_array_equal(ev[0][0], fastseq.ArraySequence(X, Y, batch_size=8, shuffle=False,
                                                                  crop=fastseq.CenterCrop(18, 21))[0][0])


def test_mix_and_cutout_after_the_list():
    seq = fastseq.ArraySequence(X, Y, batch_size=8, num_classes=5, seed=2, augment=GEOMETRY, mix=fastseq.MixUp(0.4),
                                cutout=fastseq.Cutout(4, fill=0.0))
    x, y = seq[0]
    assert x.shape == (8, 20, 23, 3) and y.shape == (8, 5)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    again = fastseq.ArraySequence(X, Y, batch_size=8, num_classes=5, seed=2, augment=GEOMETRY, mix=fastseq.MixUp(0.4),
                                  cutout=fastseq.Cutout(4, fill=0.0))
    np.testing.assert_array_equal(again[0][0], x)


def test_memmap_source(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    kw = dict(batch_size=12, seed=3, augment=GEOMETRY + [JITTER])
    np.testing.assert_array_equal(fastseq.ArraySequence(mapped, Y, **kw)[1][0], fastseq.ArraySequence(X, Y, **kw)[1][0])


def test_photo_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    root = tmp_path / "photos"
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (30 + 5 * i, 41 - 3 * i, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    for crop in (None, fastseq.RandomResizedCrop(16, 16)):
        seq = fastseq.image_dataset_from_directory(root, image_size=(16, 16), batch_size=5, seed=1, crop=crop,
                                                   augment=[fastseq.RandomRotation(0.1), JITTER], verbose=False,
                                                   cache_dir=tmp_path / "store")
        got, want = batch_and_twin(seq)
        assert got.shape == (5, 16, 16, 3)
        np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)
    # With nothing to augment, the photo resample of Resize is the folder's own (bilinear, clamped at the edge).
    kw = dict(image_size=(16, 16), batch_size=5, seed=1, verbose=False, cache_dir=tmp_path / "store", shuffle=False)
    plain = fastseq.image_dataset_from_directory(root, **kw)[0][0]
    same = fastseq.image_dataset_from_directory(root, augment=[fastseq.RandomBrightness((0.0, 0.0))], **kw)[0][0]
    np.testing.assert_allclose(same, plain, atol=1e-3, rtol=0)


def test_bad_arguments_say_what_and_how():
    with pytest.raises(TypeError, match=r"augment must be an op .* or a list of them, got str"):
        fastseq.ArraySequence(X, Y, augment="rotate")
    with pytest.raises(TypeError, match=r"augment\[1\] must be a fastseq augmentation op"):
        fastseq.ArraySequence(X, Y, augment=[fastseq.RandomRotation(0.1), fastseq.RandomFlip()])
    gray = np.ascontiguousarray(X[..., :1])
    with pytest.raises(ValueError, match="RandomSaturation"):
        fastseq.ArraySequence(gray, Y, augment=[fastseq.RandomSaturation(0.5)])
    from fastseq.ragged import RaggedImages

    photos = RaggedImages.from_images([X[0], X[1, :15]])
    with pytest.raises(ValueError, match="bilinear' or 'nearest'"):
        fastseq.ArraySequence(photos, crop=fastseq.Resize(16, 16, interpolation="bicubic"), augment=GEOMETRY)


def test_the_pass_refuses_a_bad_program():
    from fastseq.kernels.augment_pass import AugmentPass

    x = X.reshape(-1)
    kw = dict(out_size=(4, 4), run_interp=[1], run_mode=[0], run_fill=[0.0], n_params=1, n_fields=0, variant="copy")
    shapes = np.tile([20, 23, 3], (40, 1))
    offsets = np.arange(40) * 20 * 23 * 3
    for prog, match in (([[1, 1, 0, 1, -1]], "stage 0 an ungated warp"), ([[0, 3, -1, 0, -1]], "run or field"),
                        ([[0, 0, -1, 0, -1], [1, 1, 0, 2, -1]], "parameters outside"),
                        ([[0, 0, -1, 0, -1], [1, 1, 0, 1, 5]], "gate 5")):
        with pytest.raises(ValueError, match=match):
            AugmentPass(x, offsets, shapes, prog=prog, **kw)
