"""Concurrency and layering: kernels are safe from many threads under any Numba threading layer."""

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastseq.kernels as K

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env):
    environ = dict(os.environ, **env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, env=environ, timeout=300
    )


def test_kernels_do_not_import_keras_or_tensorflow():
    proc = run_python(
        """
        import sys, numpy as np
        import fastseq.kernels as K
        K.fused(np.zeros((2, 4, 4, 3), np.uint8), [1, 0], mean=1, std=2)
        import fastseq.augment, fastseq.sequence.order, fastseq.datasets
        bad = [m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')]
        print('LOADED', bad)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def _batch_jobs(x, n_jobs=64):
    rng = np.random.default_rng(0)
    jobs = []
    for _ in range(n_jobs):
        idx = rng.integers(0, len(x), 96)
        origins, flips = K.random_params(1, 2, idx, image_size=x.shape[1:3], crop_size=(28, 28), padding=4)
        jobs.append((idx, origins, flips))
    return jobs


def test_eight_threads_out_of_order_give_serial_results():
    x = np.random.default_rng(1).integers(0, 256, (500, 32, 32, 3), dtype=np.uint8)
    plan = K.FusedPlan(x, crop=(28, 28), padding=4, pad_mode="reflect", mean=(1, 2, 3), std=(4, 5, 6))
    jobs = _batch_jobs(x)
    serial = [plan(*job) for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda j: plan(*jobs[j]), reversed(range(len(jobs)))))[::-1]
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_concurrent_calls_survive_the_workqueue_layer():
    """Numba's workqueue layer aborts on concurrent parallel launches; the launch guard prevents it."""
    proc = run_python(
        """
        import numpy as np, numba
        from concurrent.futures import ThreadPoolExecutor
        import fastseq.kernels as K
        x = np.random.default_rng(1).integers(0, 256, (400, 32, 32, 3), dtype=np.uint8)
        plan = K.FusedPlan(x, crop=(32, 32), padding=4, mean=1, std=2)
        idx = [np.random.default_rng(i).integers(0, 400, 128) for i in range(48)]
        expected = [K.gather(x, i).astype(np.float32) for i in idx]
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda i: plan(i, np.full((len(i), 2), 4)), idx))
            gathered = list(pool.map(lambda i: K.gather(x, np.repeat(i, 40)), idx))
        ok = all(np.array_equal(o, (e - 1) / np.float32(2)) for o, e in zip(outs, expected))
        ok &= all(np.array_equal(g[::40], x[i]) for g, i in zip(gathered, idx))
        print('LAYER', numba.threading_layer(), 'OK', ok)
        """,
        NUMBA_THREADING_LAYER="workqueue",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LAYER workqueue OK True" in proc.stdout


def test_fetch_add_hands_out_every_ticket_once_across_threads():
    """The fused kernel's block counter: parallel takers get every value exactly once, and no update is lost."""
    import numba
    from numba import njit, prange

    from fastseq.kernels._intrinsics import fetch_add

    @njit(parallel=True)
    def take_all(tickets, workers):
        counter = np.zeros(1, np.int64)
        taken = np.zeros(tickets, np.int64)
        for _ in prange(workers):
            while True:
                t = fetch_add(counter, 0, 1)
                if t >= tickets:
                    break
                taken[t] += 1
        return taken, counter  # the array: Numba does not see fetch_add's write, so counter[0] here would read 0

    workers = numba.config.NUMBA_NUM_THREADS * 4
    taken, counter = take_all(10_000, workers)
    np.testing.assert_array_equal(taken, np.ones(10_000, np.int64))
    assert counter[0] == 10_000 + workers  # each worker's one take past the end
