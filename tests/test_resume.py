"""fastseq.BackupAndRestore: a fit SIGKILLed mid-epoch and restarted trains, from the resumed epoch on,
on the same batches (sample indices and pixels) as the uninterrupted run, and ends with the same weights."""

import json

import numpy as np
import pytest

from tests import keras_runs

pytestmark = pytest.mark.slow

VARIANTS = {
    # name: fit arguments, the (epoch, step) at which the run kills itself
    "batchwise": (dict(epochs=4, shuffle=False), (2, 4)),
    "shuffled": (dict(epochs=4, shuffle=True), (2, 4)),
    # Keras epochs of 5 steps: the resumed epoch 3 starts half-way through the sequence's second pass
    "steps_per_epoch": (dict(epochs=6, shuffle=False, steps_per_epoch=5), (3, 2)),
}


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def by_epoch(lines):
    out = {}
    for line in lines:
        out.setdefault(line["epoch"], []).append((tuple(line["samples"]), line["md5"]))
    return out


@pytest.fixture(scope="module", params=[b for b in keras_runs.BACKENDS])
def resumed_runs(request, tmp_path_factory):
    backend = request.param
    keras_runs.require(backend)
    tmp = tmp_path_factory.mktemp(f"resume_{backend}")
    paths = {
        name: {k: str(tmp / f"{name}_{k}") for k in ("full_dir", "full_log", "full_w", "cut_dir", "cut_log", "cut_w")}
        for name in VARIANTS
    }
    names = list(VARIANTS)

    def full(name):
        fit, _ = VARIANTS[name]
        p = paths[name]
        return ["resume", dict(fit, backup_dir=p["full_dir"], log_path=p["full_log"], weights_path=p["full_w"])]

    def cut(name, kill=False):
        fit, kill_at = VARIANTS[name]
        p = paths[name]
        kwargs = dict(fit, backup_dir=p["cut_dir"], log_path=p["cut_log"], weights_path=p["cut_w"])
        return ["resume", dict(kwargs, kill_at=kill_at) if kill else kwargs]

    # One interpreter start per kill, not per run: each process resumes the previous variant, then
    # runs the next one until it kills itself (the uninterrupted runs share the first process).
    chain = [[full(n) for n in names] + [cut(names[0], kill=True)]]
    chain += [[cut(names[k]), cut(names[k + 1], kill=True)] for k in range(len(names) - 1)]
    chain += [[cut(names[-1])]]
    killed_len = {}
    for k, runs in enumerate(chain):
        proc = keras_runs.run("many", backend, runs=runs)
        if k < len(chain) - 1:
            assert proc["rc"] == -9, proc["stderr"]  # SIGKILL: no cleanup ran
            killed_len[names[k]] = len(read_log(paths[names[k]]["cut_log"]))
        else:
            assert proc["rc"] == 0, proc["stderr"]
    out = {}
    for name in names:
        p = paths[name]
        log = read_log(p["cut_log"])
        out[name] = dict(
            full=read_log(p["full_log"]),
            before=log[: killed_len[name]],
            after=log[killed_len[name] :],
            full_w=np.load(p["full_w"] + ".npy"),
            cut_w=np.load(p["cut_w"] + ".npy"),
        )
    return backend, out


def test_resume_batch_for_batch_with_fit_shuffle_false(resumed_runs):
    _, out = resumed_runs
    r = out["batchwise"]
    assert r["before"][-1]["epoch"] == 2 and r["before"][-1]["step"] == 4  # killed mid-epoch 2
    assert r["after"][0]["epoch"] == 2 and r["after"][0]["step"] == 0  # Keras resumes at epoch 2's start
    full, after = by_epoch(r["full"]), by_epoch(r["after"])
    assert sorted(after) == [2, 3]
    for epoch in (2, 3):
        assert after[epoch] == full[epoch]  # indices and pixel hashes, batch for batch
    assert full[1] != full[2]  # not trivially equal: each epoch is new
    np.testing.assert_array_equal(r["cut_w"], r["full_w"])


def test_resume_same_set_of_batches_with_fit_shuffle_true(resumed_runs):
    _, out = resumed_runs
    r = out["shuffled"]
    full, after = by_epoch(r["full"]), by_epoch(r["after"])
    assert sorted(after) == [2, 3]
    for epoch in (2, 3):
        assert sorted(after[epoch]) == sorted(full[epoch])  # Keras permutes the request order, not the batches
        assert sorted(s for samples, _ in after[epoch] for s in samples) == list(range(100))


def test_resume_with_steps_per_epoch_below_len(resumed_runs):
    _, out = resumed_runs
    r = out["steps_per_epoch"]
    full, after = by_epoch(r["full"]), by_epoch(r["after"])
    assert sorted(after) == [3, 4, 5]
    for epoch in (3, 4, 5):
        assert after[epoch] == full[epoch]
    second_pass = sum((list(s) for s, _ in full[2] + full[3]), [])
    assert sorted(second_pass) == list(range(100))  # Keras epochs 2 and 3 are one pass of the sequence
    np.testing.assert_array_equal(r["cut_w"], r["full_w"])


def test_backup_and_restore_is_keras_callback_with_a_sequence():
    import fastseq

    keras = pytest.importorskip("keras")
    seq = fastseq.ArraySequence(keras_runs.indexed_images(20), batch_size=5)
    with pytest.raises(TypeError, match="sequence must be a fastseq.ArraySequence"):
        fastseq.BackupAndRestore("/tmp/unused", object())
    cb = fastseq.BackupAndRestore("/tmp/unused", seq, save_freq=3)
    assert isinstance(cb, keras.callbacks.BackupAndRestore) and cb.save_freq == 3


def _tiny_fit(keras, seq, callbacks, epochs):
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, keras.layers.Dense(4)(keras.layers.Flatten()(inp)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(seq, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks)
    return model


def test_double_checkpoint_falls_back_with_keras(tmp_path):
    """Keras falls back to its previous backup when the latest is unreadable; the sequence's state follows it."""
    import fastseq

    keras = pytest.importorskip("keras")
    x, y = keras_runs.indexed_images(40), np.arange(40) % 4
    seq = fastseq.ArraySequence(x, y, batch_size=10, seed=1)
    backup = tmp_path / "b"
    kw = dict(double_checkpoint=True, delete_checkpoint=False)
    _tiny_fit(keras, seq, [fastseq.BackupAndRestore(str(backup), seq, **kw)], epochs=2)
    latest = json.loads((backup / "fastseq_sequence.json").read_text())
    previous = json.loads((backup / "fastseq_sequence.json.bkp").read_text())
    assert latest["keras_epoch"] == 2 and latest["state"]["epoch"] == 2 and latest["state"]["offset"] == 0
    assert previous["keras_epoch"] == 1 and previous["state"]["epoch"] == 1
    (backup / "latest.weights.h5").write_bytes(b"torn write")  # Keras restores latest.weights.h5.bkp instead
    restarted = fastseq.ArraySequence(x, y, batch_size=10, seed=1)
    seen = []

    class Seen(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((epoch, restarted.epoch))

    _tiny_fit(keras, restarted, [fastseq.BackupAndRestore(str(backup), restarted, **kw), Seen()], epochs=2)
    assert seen == [(1, 1)]  # resumed at Keras' previous backup, epoch 1, with the sequence at its epoch 1
    assert restarted.get_state()["epoch"] == 2


def test_a_keras_only_backup_is_refused_by_name(tmp_path):
    import fastseq

    keras = pytest.importorskip("keras")
    x, y = keras_runs.indexed_images(40), np.arange(40) % 4
    backup = tmp_path / "k"
    seq = fastseq.ArraySequence(x, y, batch_size=10)
    _tiny_fit(keras, seq, [keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False)], epochs=1)
    with pytest.raises(FileNotFoundError, match="written by keras.callbacks.BackupAndRestore"):
        _tiny_fit(keras, seq, [fastseq.BackupAndRestore(str(backup), seq)], epochs=2)
