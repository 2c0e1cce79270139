"""Sharded feed (issue 13): 2 processes x 1 Numba thread against 1 process x 2 threads, the same total work.

Group ``feed-shards-cifar-b512``. Each row runs the feed suite's ``model.fit``
on the trivial model, fed by ``ArraySequence`` over the memory-mapped
CIFAR-shaped ``.npy`` (the ``cifar_npy`` fixture), in fresh processes
(``benchmarks/shard_feed.py``): ``2p x 1t`` is two processes at once, each
``shard=(i, 2)`` with ``NUMBA_NUM_THREADS=1`` and ``steps`` steps; ``1p x 2t``
is one unsharded process with ``NUMBA_NUM_THREADS=2`` and ``2 * steps``
steps. Every process waits at a barrier after its warm-up steps, so the two
processes' timed steps overlap. Reported: each process's images/s and the
row's total, all images over the wall time from the first timed step to the
last, each the median of 3 rounds (fresh processes each round, the rows
interleaved round by round). Both rows leave TensorFlow its own threads. The processes are checked
after timing: disjoint shards, and the first batch of each equal, byte for
byte, to the same sequence built here, whose pixels are checked as crops of
the padded source images. With timing disabled (plain ``pytest``) each row
runs 2 small steps of the ``2p x 1t`` row only (``benchmarks/test_feed.py``'s
``fastseq-memmap`` row runs the unsharded feed).
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import checks, shard_feed, summary
from fastseq.bench import kernel_rows

pytestmark = pytest.mark.slow
GROUP = "feed-shards-cifar-b512"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_row(count, threads, steps, *, x_path, y_path, batch_size, warmup, tmp, tag=""):
    """Start the ``count`` processes of a row; :func:`finish` waits for them."""
    barrier = tmp / f"barrier-{count}x{threads}{tag}"
    barrier.mkdir()
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    row = []
    for i in range(count):
        out_path = tmp / f"r{count}{tag}-{i}.json"
        args = dict(index=i, count=count, x_path=str(x_path), y_path=str(y_path), batch_size=batch_size,
                    steps=steps, warmup=warmup, barrier_dir=str(barrier), out_path=str(out_path))
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.shard_feed", json.dumps(args)], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        row.append((proc, out_path))
    return row


def finish(*rows, timeout=600):
    """Wait for every process of ``rows`` (killing all on failure); their results, row by row."""
    procs = [p for row in rows for p, _ in row]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return [[json.loads(path.read_text()) for _, path in row] for row in rows]


def row_total(results, batch_size):
    """All images of a row's processes over the wall time from the first timed step to the last."""
    images = sum(r["steps"] for r in results) * batch_size
    return images / (max(r["end"] for r in results) - min(r["start"] for r in results))


def test_two_processes_against_two_threads(benchmark, cifar, cifar_npy, tmp_path):
    from fastseq import ArraySequence

    x, y = cifar
    timed = not benchmark.disabled
    # 2p x 1t: 45 of each shard's 49 batches of 512; 1p x 2t: twice that, in one process.
    batch_size, steps, warmup, rounds = (512, 45, 3, 3) if timed else (64, 2, 1, 1)
    y_path = tmp_path / "y.npy"
    np.save(y_path, y)
    int(cifar_npy.reshape(-1)[::4096].sum())  # page cache warm, as in the feed suite
    common = dict(x_path=cifar_npy.filename, y_path=y_path, batch_size=batch_size, warmup=warmup, tmp=tmp_path)
    rounds_of = {"1p x 2t": [], "2p x 1t": []}
    benchmark.group = GROUP

    def rows():
        for r in range(rounds):  # the rows interleaved round by round, as in the feed suite
            if timed:
                (one,) = finish(start_row(1, 2, 2 * steps, tag=f"-{r}", **common))
                (two,) = finish(start_row(2, 1, steps, tag=f"-{r}", **common))
                rounds_of["1p x 2t"].append(one)
            else:  # a correctness run of the sharded row (test_feed's fastseq-memmap row is the unsharded one)
                (two,) = finish(start_row(2, 1, steps, **common))
            rounds_of["2p x 1t"].append(two)

    benchmark.pedantic(rows, rounds=1, iterations=1)

    # Checks: the shards are disjoint, and each process's first batch is the one built here.
    job = kernel_rows.cifar_job(x, y)
    for two in rounds_of["2p x 1t"]:
        served = []
        for r in two:
            seq = ArraySequence(x, y, shard=(r["index"], 2), **shard_feed.sequence_kwargs(batch_size))
            assert r["batch0_indices"] == seq.indices(0).tolist()
            batch0 = seq[0][0]
            assert r["batch0_md5"] == hashlib.md5(np.ascontiguousarray(batch0).tobytes()).hexdigest()
            checks.check_baseline(batch0, job, seq.indices(0))
            served.append({int(s) for b in set(r["served"]) for s in seq.indices(b)})
        assert len(served[0]) >= (steps + warmup) * batch_size and not served[0] & served[1]
    for (one,) in rounds_of["1p x 2t"]:
        assert len(set(one["served"])) >= 2 * steps + warmup
    for rs in rounds_of.values():
        assert all(r["images_per_sec"] > 0 and np.isfinite(r["images_per_sec"]) for row in rs for r in row)

    gb = int(np.prod(x.shape[1:])) * 4 / 1e9
    rows_info = {}
    for name, rs in rounds_of.items():
        if not rs:
            continue
        totals = [row_total(row, batch_size) for row in rs]
        total = float(np.median(totals))
        threads = rs[0][0]["numba_threads"]
        rows_info[name] = {"images_per_sec": total, "GB_per_sec": total * gb, "threads": threads,
                           "rounds_images_per_sec": totals,
                           "note": f"total of {len(rs[0])} process{'es' if len(rs[0]) > 1 else ''}, median of "
                                   f"{len(rs)} round{'s' if len(rs) > 1 else ''}"}
        if len(rs[0]) > 1:
            for i in range(len(rs[0])):
                per = [row[i]["images_per_sec"] for row in rs]
                median = float(np.median(per))
                rows_info[f"{name}: p{i}"] = {"images_per_sec": median, "GB_per_sec": median * gb, "threads": threads,
                                              "rounds_images_per_sec": per, "note": "this process alone"}
    benchmark.extra_info.update({"rows": rows_info, "batch_size": batch_size, "rounds": rounds,
                                 "steps_per_process": {"1p x 2t": 2 * steps, "2p x 1t": steps}})
    if timed:
        summary.RESULTS[GROUP] = rows_info
