"""fastseq.DeviceNormalize: uint8 batches normalised in the model equal the host path's float32 batches."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import fastseq  # noqa: E402
from fastseq import ArraySequence, DeviceNormalize, Normalize, RandomCrop, Rescale  # noqa: E402

SPECS = [
    Normalize(mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7)),
    Normalize(mean=72.9, std=90.0),
    Rescale(1 / 255),
    Rescale(scale=(2 / 255, 1 / 127.5, 1 / 100), offset=(-1.0, -1.0, 0.5)),
]


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_device_normalisation_equals_the_host_path(spec, data_format):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (37, 9, 7, 3), dtype=np.uint8)
    common = dict(batch_size=16, crop=RandomCrop(6, 5, padding=2), flip="horizontal", data_format=data_format, seed=4)
    host = ArraySequence(x, normalize=spec, **common)
    device = ArraySequence(x, dtype="uint8", **common)
    layer = DeviceNormalize(spec, data_format=data_format)
    for i in range(len(host)):
        (expected,), (raw,) = host[i], device[i]
        assert raw.dtype == np.uint8
        got = keras.ops.convert_to_numpy(layer(raw))
        assert got.dtype == np.float32 and got.shape == expected.shape
        # float32(v) * a + b with the kernel's own a and b: equal within float32 rounding.
        np.testing.assert_allclose(got, expected, rtol=2e-7, atol=2e-6)


def test_in_a_model_fit_and_saved(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 2, 64)
    spec = Normalize(mean=100.0, std=50.0)
    seq = ArraySequence(x, y, batch_size=16, dtype="uint8", crop=RandomCrop(8, 8, padding=1))
    model = keras.Sequential([keras.Input((8, 8, 1), dtype="uint8"), DeviceNormalize(spec), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(seq, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    batch = seq[0][0]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(batch)), keras.ops.convert_to_numpy(model(batch)))
    restored = loaded.layers[0]
    assert isinstance(restored, DeviceNormalize) and repr(restored.normalize) == repr(spec)


def test_the_uint8_error_names_the_one_line():
    with pytest.raises(ValueError, match=r"fastseq.DeviceNormalize\(Normalize\(mean=\[1.0\], std=\[2.0\]\)\) the model's"):
        ArraySequence(np.zeros((4, 4, 4, 3), np.uint8), dtype="uint8", normalize=Normalize(1, 2))


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"normalize must be fastseq.Normalize\(mean, std\) .* got \(1, 2\)"):
        DeviceNormalize((1, 2))
    with pytest.raises(ValueError, match="data_format must be"):
        DeviceNormalize(Rescale(1 / 255), data_format="NHWC")
    layer = DeviceNormalize(Normalize((1, 2, 3), (1, 1, 1)))
    with pytest.raises(ValueError, match=r"has 3 per-channel values but its input \(2, 4, 4, 2\) has 2 channels"):
        layer(np.zeros((2, 4, 4, 2), np.uint8))


def test_exported_lazily():
    assert fastseq.DeviceNormalize is DeviceNormalize


@pytest.mark.slow
def test_device_normalisation_on_jax():
    pytest.importorskip("jax")
    import subprocess
    import sys

    code = (
        "import numpy as np, keras, fastseq\n"
        "assert keras.backend.backend() == 'jax'\n"
        "x = np.random.default_rng(1).integers(0, 256, (20, 6, 5, 3), dtype=np.uint8)\n"
        "norm = fastseq.Normalize(mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7))\n"
        "host = fastseq.ArraySequence(x, batch_size=8, normalize=norm, shuffle=False)[0][0]\n"
        "raw = fastseq.ArraySequence(x, batch_size=8, dtype='uint8', shuffle=False)[0][0]\n"
        "got = keras.ops.convert_to_numpy(fastseq.DeviceNormalize(norm)(raw))\n"
        "np.testing.assert_allclose(got, host, rtol=2e-7, atol=2e-6)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
