"""Two processes on loopback, ``keras.distribution.DataParallel`` on JAX CPU, one shard each.

The processes run ``tests/distributed_run.py`` (see there for what each
does). This test starts them on a free port, bounds them in time, kills them
on any failure, and checks what they report against a single-process
``ArraySequence`` built here.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests import distributed_run as run

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN, N_VAL, BATCH, EPOCHS = 51, 37, 4, 3  # odd sizes: the remainder rules are exercised
TIMEOUT = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install jax): the multi-process engine is keras.distribution on JAX")
    out_dir = tmp_path_factory.mktemp("distributed")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    port = free_port()
    procs, logs = [], []
    try:
        for i in range(2):
            args = dict(process_id=i, port=port, out_dir=str(out_dir), n_train=N_TRAIN, n_val=N_VAL,
                        batch_size=BATCH, epochs=EPOCHS)
            log = open(out_dir / f"stderr{i}.txt", "w")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "tests.distributed_run", json.dumps(args)],
                                          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + TIMEOUT
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    tails = "\n".join(f"--- process {i} ---\n" + (out_dir / f"stderr{i}.txt").read_text()[-3000:] for i in range(2))
    assert [p.returncode for p in procs] == [0, 0], f"return codes {[p.returncode for p in procs]}\n{tails}"
    return [json.loads((out_dir / f"result{i}.json").read_text()) for i in range(2)]


def served(log):
    """{epoch: {batch: (indices, digests)}}; the JAX probe's repeat of a batch must be identical."""
    by_epoch = {}
    for epoch, batch, indices, digests in log:
        seen = by_epoch.setdefault(epoch, {})
        assert seen.setdefault(batch, (indices, digests)) == (indices, digests)
    return by_epoch


def test_shards_and_lengths(results):
    assert [r["shard"] for r in results] == [[0, 2], [1, 2]]  # shard="auto" read the DataParallel
    assert results[0]["len"] == results[1]["len"] == -(-(N_TRAIN // 2) // BATCH)  # drop: 25 each, 7 steps
    assert results[0]["val_len"] == results[1]["val_len"] == -(-N_VAL // BATCH)  # repeat: all 37 each


def test_identical_weights_on_both_processes(results):
    assert results[0]["weights_md5"] == results[1]["weights_md5"]
    assert results[0]["resumed_weights_md5"] == results[1]["resumed_weights_md5"]


def test_every_sample_once_per_epoch_but_the_dropped_remainder(results):
    from fastseq.sequence import order

    logs = [served(r["log"]) for r in results]
    for epoch in range(EPOCHS):
        assert [sorted(lg[epoch]) for lg in logs] == [list(range(results[0]["len"]))] * 2
        per_process = [sorted(i for ind, _ in lg[epoch].values() for i in ind) for lg in logs]
        union = per_process[0] + per_process[1]
        assert len(union) == len(set(union)) == N_TRAIN - N_TRAIN % 2  # disjoint, 50 of 51
        dropped = set(range(N_TRAIN)) - set(union)
        assert dropped == {int(order.epoch_order(N_TRAIN, seed=run.SEED, epoch=epoch, shuffle=True)[-1])}
    # A different sample is left out each epoch (the permutation differs).
    assert len({tuple(sorted(set(range(N_TRAIN)) - {i for lg in logs for b in lg[e].values() for i in b[0]}))
                for e in range(EPOCHS)}) > 1


def test_pixels_and_global_batches_equal_a_single_process_sequence(results):
    from fastseq import ArraySequence

    x, y, _, _ = run.data(N_TRAIN, N_VAL)
    single = ArraySequence(x, y, shuffle=True, **dict(run.sequence_kwargs(2 * BATCH)))
    logs = [served(r["log"]) for r in results]
    for epoch in range(EPOCHS):
        single.set_epoch(epoch)
        for k in range(results[0]["len"]):
            one_batch = single.indices(k).tolist()
            bx = single[k][0]
            expected = dict(zip(one_batch, run.pixel_digests(bx)))
            together = []
            for lg in logs:
                indices, digests = lg[epoch][k]
                assert digests == [expected[i] for i in indices]  # the same crop and flip in either process
                together += indices
            # Batch k of both shards is batch k of one process with twice the batch, less the dropped sample.
            assert set(together) <= set(one_batch) and len(together) >= len(one_batch) - 1


def test_restarted_run_continues_each_shard_where_it_was(results):
    for r in results:
        # Each process backed up into its own shard's folder; the finished run deleted it.
        assert {"fastseq_sequence.json", "training_metadata.json"} <= set(r["backup_after_stop"])
        assert r["backup_after_resume"] == []
        uninterrupted, resumed = served(r["log"]), served(r["resumed_log"])
        # The restart trained only the last epoch, on the very batches the uninterrupted run trained.
        assert sorted(resumed) == [EPOCHS - 1]
        assert resumed[EPOCHS - 1] == uninterrupted[EPOCHS - 1]
    assert results[0]["resumed_weights_md5"] == results[0]["weights_md5"]


def test_two_process_evaluate_equals_one_process_on_the_whole_set(results):
    for r in results:
        for key in ("loss", "accuracy"):
            assert r["evaluate"][key] == pytest.approx(r["single_evaluate"][key], rel=1e-5, abs=1e-6), key
        # The validation during fit used the same sharded evaluation sequence.
        assert r["history"]["val_loss"][-1] == pytest.approx(r["single_evaluate"]["loss"], rel=1e-5)
    assert results[0]["evaluate"] == results[1]["evaluate"]
