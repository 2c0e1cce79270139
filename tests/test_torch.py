"""The torch backend's own promises, and the pure-PyTorch door, in one torch subprocess.

The promises every backend shares run on torch where the other backends run
them (tests/test_epochs.py, test_resume.py, test_soak.py, and test_fit.py
through test_backends.py). This module adds what is about torch itself:
``torch.utils.data.DataLoader(seq, batch_size=None)`` in a hand-written loop
and in ``model.fit`` (torch's workers instead of Keras' enqueuer, which the
JAX and torch backends' probe leaves a pass ahead), the batches reaching the
model as torch tensors of torch's dtypes, ``DeviceNormalize`` bit for bit
against the host path, and ``python -m fastseq profile`` under
``KERAS_BACKEND=torch``. Keras reads the backend at import, so all of it
runs in one interpreter with ``KERAS_BACKEND=torch`` (tests/keras_runs.py).
"""

import math

import pytest

from tests import keras_runs

pytestmark = pytest.mark.slow

SCENARIOS = ["dataloader", "fit_dataloader", "dtypes", "device_normalize", "profile_cli"]
# fastseq.image_dataset_from_directory's scenario (fit with a validation split) joins this list as
# "photo_folders" (see tests/keras_runs.py).


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory):
    keras_runs.require("torch")
    json_path = str(tmp_path_factory.mktemp("profile") / "profile.json")
    kwargs = {"profile_cli": {"json_path": json_path}}
    runs = [[name, kwargs.get(name, {})] for name in SCENARIOS]
    out = keras_runs.run("many", "torch", timeout=600, runs=runs)
    assert out["rc"] == 0 and out["result"] is not None, out["stderr"]
    return dict(zip(SCENARIOS, out["result"]))


def test_dataloader_gives_exactly_once_epochs_in_a_hand_loop(torch_runs):
    r = torch_runs["dataloader"]
    expected = r["hand_loop"]
    assert len({p["md5"] for p in expected}) == 3  # three epochs, three augmentations
    for mode in ("w0_end", "w0_set", "w2_end", "w2_set", "w2_shuffle"):
        passes = r[mode]
        for p, e in zip(passes, expected):
            assert sorted(p["samples"]) == list(range(100)), mode  # every sample once per epoch
            assert p["samples"] == e["samples"] and p["md5"] == e["md5"], mode  # the very batches of seq[i]
            assert p["dtypes"] == ["torch.float32"], mode
        # the epoch the loop's hook asked for; worker processes mark the position in the parent
        assert [p["epoch"] for p in passes] == [0, 1, 2], mode


def test_dataloader_bfloat16_batches_through_the_documented_collate_fn(torch_runs):
    r = torch_runs["dataloader"]["bf16_collate"]
    assert r == {"dtypes": ["torch.bfloat16"], "equal": True}


def test_fit_on_a_dataloader_with_workers_is_exactly_once(torch_runs):
    """Where Keras' enqueuer (``workers=2``) is a pass ahead on torch, torch's DataLoader workers are not."""
    r = torch_runs["fit_dataloader"]
    starts = r["epoch_starts"]
    epochs = [sum(r["batches"][a:b], []) for a, b in zip(starts, starts[1:])]
    assert len(epochs) == 3
    for e in epochs:
        assert sorted(e) == list(range(100))
    assert len({tuple(e) for e in epochs}) == 3  # a new order each epoch
    assert r["epoch_after"] == 3 and r["warnings"] == []


@pytest.mark.parametrize(
    "dtype, torch_dtype",
    [("float32", "torch.float32"), ("float16", "torch.float16"), ("bfloat16", "torch.bfloat16"), ("uint8", "torch.uint8")],
)
def test_batches_reach_the_model_as_torch_dtypes(torch_runs, dtype, torch_dtype):
    r = torch_runs["dtypes"][dtype]
    assert r["seen"] == [[step, "torch", torch_dtype] for step in ("predict", "test", "train")]
    assert all(math.isfinite(v) for v in r["loss"])


@pytest.mark.parametrize("spec", ["normalize", "rescale"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_device_normalize_equals_the_host_path_bitwise(torch_runs, spec, data_format):
    r = torch_runs["device_normalize"][f"{spec}_{data_format}"]
    assert r["dtype"] == "float32"
    assert r["bitwise"], r  # torch runs the cast, multiply and add unfused, as the kernel does
    assert r["predict_bitwise"], r


def test_profile_cli_under_torch(torch_runs):
    r = torch_runs["profile_cli"]
    assert r["rc"] == 0, r["stdout"]
    assert "keras" in r["stdout"] and "(torch)" in r["stdout"] and "fastseq profile: fastseq" in r["stdout"]
    (rep,) = r["json"]["reports"]
    assert rep["name"] == "fastseq" and rep["backend"] == "torch" and rep["input_dtype"] == "uint8"
    assert 0.0 <= rep["starvation"] <= 1.0 and rep["batch_size"] == 16
    assert rep["achieved_images_per_sec"] > 0 and rep["loader_images_per_sec"] > 0
